"""Training in the JPEG domain (jpegfx.train, ``jpegfx train``) on folders of JPEG files.

* fine-tuning with exact ReLU equals spatial fine-tuning of the same model on the float decode of the
  same files, step for step (torch's own SGD and autograd on the spatial side);
* the saved weights are the spatial model's ``state_dict`` (``strict=True``), and a checkpoint resumes
  to the same weights as an uninterrupted run;
* two processes under ``torchrun`` (gloo) equal one process with the same global batch and seed;
* photos of any size through a policy, trained, exported and served by onnxruntime.
"""
from __future__ import annotations

import json
import re
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from conftest import RTOL, package_file
from jpegfx import models
from jpegfx import preprocess as pp
from jpegfx import train as jt
from jpegfx.cli import main
from jpegfx.data import Collate, JpegFolder, RandomCrop, RandomFlip
from jpegfx.errors import UsageError
from jpegfx.preprocess import Policy
from jpegfx.reader import read_coefficients

CLASSES = 3


def _write(path, pixels: np.ndarray, quality: int, subsampling: int | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(np.ascontiguousarray(pixels))
    options = {} if subsampling is None else {"subsampling": subsampling}
    image.save(path, format="JPEG", quality=quality, **options)


@pytest.fixture(scope="module")
def gray_folder(tmp_path_factory):
    """32×32 gray JPEGs in three class folders, 8 per class, textures a small network can tell apart."""
    root = tmp_path_factory.mktemp("gray") / "train"
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:32, 0:32]
    for label in range(CLASSES):
        for i in range(8):
            stripes = np.sin((xx if label == 0 else yy if label == 1 else xx + yy) * (0.4 + 0.1 * i))
            pixels = np.clip(128 + 90 * stripes + rng.normal(0, 20, (32, 32)), 0, 255).astype(np.uint8)
            _write(root / f"class{label}" / f"{i}.jpg", pixels, quality=70 + 3 * i)
    return root


def _weights_close(a: dict, b: dict, rtol: float) -> None:
    assert a.keys() == b.keys()
    for k in a:
        if a[k].is_floating_point():
            scale = b[k].abs().max().clamp_min(1e-30)
            assert (a[k] - b[k]).abs().max() <= rtol * scale, k


@pytest.mark.parametrize("domains", ["jpeg", "pixels"])
def test_finetuning_matches_spatial_step_for_step(gray_folder, domains):
    """float64, exact ReLU, train-mode BN: each SGD step of the JPEG-domain model (on quantised
    coefficients) gives the weights the spatial model gets on the float decode of the same files."""
    torch.manual_seed(1)
    spatial = models.paper(num_classes=CLASSES).double().train()
    start = {k: v.clone() for k, v in spatial.state_dict().items()}
    options = jt.TrainOptions(batch_size=8, lr=0.05, weight_decay=1e-3, schedule="constant", seed=3)
    jpeg_model = jt.convert(models.paper(num_classes=CLASSES).double().train(), 32, any_size=False, domains=domains)
    jpeg_model.network.load_state_dict(start)
    data = JpegFolder(gray_folder, augment=[RandomFlip()], seed=3)
    loader = jt.make_loader(data, Collate.for_model(jpeg_model), options)
    loader.sampler.set_epoch(0)
    jopt, sopt = jt.make_optimizer(jpeg_model, options), jt.make_optimizer(spatial, options)
    assert len(loader) == 3
    for batch, labels in loader:
        for model, opt, x in ((jpeg_model, jopt, batch), (spatial, sopt, jpeg_model.spatial_input(batch))):
            opt.zero_grad()
            F.cross_entropy(model(x), labels).backward()
            opt.step()
        _weights_close(jt.spatial_state_dict(jpeg_model, spatial), spatial.state_dict(), RTOL[torch.float64])
    moved = max(float((spatial.state_dict()[k] - start[k]).abs().max()) for k in start if start[k].is_floating_point())
    assert moved > 1e-3  # the steps changed the weights

    # fit() does the same three steps
    torch.manual_seed(1)
    fresh = models.paper(num_classes=CLASSES).double()
    fresh.load_state_dict(start)
    result = jt.fit(fresh, JpegFolder(gray_folder, augment=[RandomFlip()], seed=3), input_size=32, options=options,
                    domains=domains)
    assert result.model is fresh and len(result.history) == 1 and result.history[0]["steps"] == 3
    _weights_close(fresh.state_dict(), spatial.state_dict(), RTOL[torch.float64])


def test_saved_weights_load_into_the_original_class(gray_folder, tmp_path):
    torch.manual_seed(0)
    model = models.paper(num_classes=CLASSES)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    options = jt.TrainOptions(epochs=2, batch_size=8, lr=0.05)
    result = jt.fit(model, JpegFolder(gray_folder), input_size=32, val_data=JpegFolder(gray_folder),
                    options=options, out_dir=tmp_path)
    state = torch.load(tmp_path / "model.pt", weights_only=True)
    fresh = models.paper(num_classes=CLASSES)
    fresh.load_state_dict(state, strict=True)
    for k, v in model.state_dict().items():
        assert torch.equal(v, fresh.state_dict()[k]), k
    assert any(not torch.equal(before[k], state[k]) for k in state if state[k].is_floating_point())
    assert state["bn1.num_batches_tracked"] == 2 * 3  # train-mode BN ran every step
    rows = json.loads((tmp_path / "log.json").read_text())
    assert [r["epoch"] for r in rows] == [1, 2] and all(0 <= r["val_top1"] <= 1 for r in rows)
    csv = (tmp_path / "log.csv").read_text().splitlines()
    assert csv[0].split(",") == list(jt.LOG_FIELDS) and len(csv) == 3
    assert result.history == rows


def test_resume_gives_the_uninterrupted_weights(gray_folder, tmp_path):
    options = dict(epochs=3, batch_size=8, lr=0.05, momentum=0.9, schedule="cosine", warmup_epochs=1)
    data = dict(augment=[RandomFlip()], seed=7)

    def run(out, resume=False, **extra):
        torch.manual_seed(0)
        model = models.paper(num_classes=CLASSES)
        jt.fit(model, JpegFolder(gray_folder, **data), input_size=32, options=jt.TrainOptions(**options, **extra),
               out_dir=out, resume=resume)
        return model.state_dict()

    whole = run(tmp_path / "whole")
    run(tmp_path / "parts", max_steps=3)  # one epoch of 3 steps, then stop
    assert json.loads((tmp_path / "parts" / "log.json").read_text())[-1]["epoch"] == 1
    resumed = run(tmp_path / "parts", resume=True)
    for k in whole:
        assert torch.equal(whole[k], resumed[k]), k
    with pytest.raises(UsageError, match="other options .*lr"):
        jt.fit(models.paper(num_classes=CLASSES), JpegFolder(gray_folder), input_size=32,
               options=jt.TrainOptions(**{**options, "lr": 0.1}), out_dir=tmp_path / "parts", resume=True)
    with pytest.raises(UsageError, match="no checkpoint"):
        jt.fit(models.paper(num_classes=CLASSES), JpegFolder(gray_folder), input_size=32, out_dir=tmp_path / "none",
               resume=True)


def test_workers_do_not_change_training(gray_folder):
    def run(workers):
        torch.manual_seed(0)
        model = models.paper(num_classes=CLASSES)
        jt.fit(model, JpegFolder(gray_folder, augment=[RandomFlip()], seed=2), input_size=32,
               options=jt.TrainOptions(batch_size=8, workers=workers))
        return model.state_dict()

    serial, parallel = run(0), run(2)
    for k in serial:
        assert torch.equal(serial[k], parallel[k]), k


def test_asm_training_is_the_same_in_both_domains(gray_folder):
    """An approximate ReLU trains the same parameters (the spatial kernels) through its JPEG-domain maps,
    and the fast graph (every other op on pixels) takes the paper's all-coefficient graph's steps."""
    trained = {}
    for domains in ("jpeg", "pixels"):
        torch.manual_seed(0)
        model = models.paper(num_classes=CLASSES).double()
        before = {k: v.clone() for k, v in model.state_dict().items()}
        result = jt.fit(model, JpegFolder(gray_folder), input_size=32, relu="asm", frequencies=4, domains=domains,
                        options=jt.TrainOptions(batch_size=8, lr=0.05))
        assert result.jpeg_model.spec.relu == "asm" and result.jpeg_model.spec.frequencies == 4
        assert not torch.equal(before["conv1.weight"], model.state_dict()["conv1.weight"])
        trained[domains] = model.state_dict()
    _weights_close(trained["pixels"], trained["jpeg"], RTOL[torch.float64])


@pytest.mark.slow
def test_torchrun_two_processes_equal_one(gray_folder, tmp_path):
    """The acceptance test: 2 processes (gloo, CPU) and 1 process, same global batch and seed, a few
    steps (BN frozen: each process would otherwise normalise by its own half of the batch)."""
    common = [str(gray_folder), "--batch-size", "8", "--epochs", "2", "--lr", "0.05", "--freeze-bn", "--seed", "4",
              "--augment", "flip", "--json"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for attempt in range(2):  # one retry, only for a process killed by a signal (a gloo socket torn down under load)
        two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                              "-m", "jpegfx", "train", *common, "--out-dir", str(tmp_path / "two")],
                             capture_output=True, text=True, env=env, timeout=600)
        if two.returncode == 0 or "Signal " not in two.stderr:
            break
    assert two.returncode == 0, two.stderr[:6000]
    one = subprocess.run([sys.executable, "-m", "jpegfx", "train", *common, "--out-dir", str(tmp_path / "one")],
                         capture_output=True, text=True, env=env, timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    assert json.loads(one.stdout)["history"][-1]["steps"] == 6
    a = torch.load(tmp_path / "one" / "model.pt", weights_only=True)
    b = torch.load(tmp_path / "two" / "model.pt", weights_only=True)
    torch.manual_seed(4)
    start = models.paper(num_classes=CLASSES).state_dict()
    for k in a:
        if a[k].is_floating_point():
            moved = (a[k] - start[k]).abs().max()
            assert (a[k] - b[k]).abs().max() <= max(1e-3 * moved, RTOL[torch.float32] * a[k].abs().max()), k
    assert any((a[k] - start[k]).abs().max() > 1e-4 for k in a if a[k].is_floating_point())


def test_validation_labels_must_be_training_classes(gray_folder):
    paths = [p for p, _ in JpegFolder(gray_folder).samples]
    with pytest.raises(UsageError, match="label beyond the training data's 3 classes"):
        jt.fit(models.paper(num_classes=CLASSES), JpegFolder(gray_folder), input_size=32,
               val_data=JpegFolder(samples=[(paths[0], 5)]), options=jt.TrainOptions(batch_size=8))


def test_class_count_must_match_the_model(gray_folder):
    with pytest.raises(UsageError, match=r"gives \(10,\) outputs per image, the training data has 3 classes"):
        jt.fit(models.paper(num_classes=10), JpegFolder(gray_folder), input_size=32, options=jt.TrainOptions(batch_size=8))


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory):
    """Crops of scikit-learn's china.jpg and flower.jpg of several sizes and chroma layouts."""
    root = tmp_path_factory.mktemp("photos")
    for label, name in enumerate(("china.jpg", "flower.jpg")):
        with Image.open(package_file("sklearn", "datasets", "images", name)) as image:
            pixels = np.asarray(image.convert("RGB"))
        for i, (h, w, sub) in enumerate([(101, 139, 2), (77, 90, 0), (120, 83, 1), (64, 64, 2)]):
            top, left = 37 * i, 61 * i
            _write(root / "train" / name.split(".")[0] / f"{i}.jpg", pixels[top:top + h, left:left + w], 85, sub)
            _write(root / "val" / name.split(".")[0] / f"{i}.jpg", pixels[200 + top:200 + top + h, left:left + w], 85, sub)
    return root


def test_photos_of_any_size_train_export_and_serve(photo_folder, tmp_path):
    """Mixed sizes and layouts through a policy (random MCU-aligned crop, flip, N/8 + bilinear to 40,
    centre crop 32), then the exported ONNX file served by onnxruntime gives the trained model's logits."""
    pytest.importorskip("onnxruntime")
    from jpegfx.runtime import Session

    torch.manual_seed(0)
    model = models.paper(num_classes=2, in_channels=3)
    policy = Policy(resize=40, crop=32, resample="bilinear")
    train = JpegFolder(photo_folder / "train", augment=[RandomCrop(scale=(0.5, 1.0)), RandomFlip()])
    val = JpegFolder(photo_folder / "val")
    result = jt.fit(model, train, input_size=32, normalize="imagenet", policy=policy, val_data=val,
                    options=jt.TrainOptions(epochs=2, batch_size=4, lr=0.02), out_dir=tmp_path, onnx=True)
    assert len(result.history) == 2 and result.history[-1]["val_top1"] is not None
    files = [p for p, _ in val.samples]
    session = Session(result.files["onnx"], providers=["CPUExecutionProvider"])
    served = torch.from_numpy(session.run([read_coefficients(f) for f in files])).double()
    jm = result.jpeg_model.eval()
    with torch.no_grad():
        expected = jm(jm.prepare(files, policy)).double()
    assert (served - expected).abs().max() <= RTOL[torch.float32] * 10 * expected.abs().max()
    top1 = [p.top1 for p in session.predict(files, top_k=1)]
    assert top1 == expected.argmax(1).tolist()


# --------------------------------------------------------------------------------------------
# The command line
# --------------------------------------------------------------------------------------------
def test_cli_train(gray_folder, tmp_path, capsys):
    code = main(["train", str(gray_folder), "--val", str(gray_folder), "--batch-size", "8", "--epochs", "1",
                 "--out-dir", str(tmp_path), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["classes"] == ["class0", "class1", "class2"] and out["train_files"] == 24
    assert out["history"][0]["steps"] == 3 and set(out["files"]) >= {"weights", "checkpoint", "log"}
    model = models.paper(num_classes=CLASSES)
    model.load_state_dict(torch.load(out["files"]["weights"], weights_only=True), strict=True)


def test_cli_trains_on_the_scaled_image_and_serves_it(gray_folder, tmp_path, capsys):
    """``--resize 16 --resample none --input-size 16``: the network trains on the 1/2-scale image taken
    from the coefficients of 32x32 files (libjpeg's scaled decode, no resampling), and the exported
    policy file serves the files as the trained model does."""
    pytest.importorskip("onnxruntime")
    from jpegfx.runtime import Session

    code = main(["train", str(gray_folder), "--val", str(gray_folder), "--batch-size", "8", "--epochs", "1",
                 "--input-size", "16", "--resize", "16", "--resample", "none", "--onnx", "--out-dir", str(tmp_path),
                 "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    session = Session(out["files"]["onnx"], providers=["CPUExecutionProvider"])
    assert session.spec.preprocess == Policy(resize=16, crop=(16, 16))
    model = models.paper(num_classes=CLASSES)
    model.load_state_dict(torch.load(out["files"]["weights"], weights_only=True), strict=True)
    files = sorted(gray_folder.rglob("*.jpg"))
    pixels = torch.stack([torch.from_numpy(pp.decode(read_coefficients(f), scale=4).copy()) for f in files]) / 255.0
    with torch.no_grad():
        expected = model.eval().double()(pixels)
    served = torch.from_numpy(session.run([read_coefficients(f) for f in files])).double()
    assert pixels.shape[-2:] == (16, 16)
    assert (served - expected).abs().max() <= RTOL[torch.float32] * 10 * expected.abs().max()


@pytest.mark.parametrize("argv,message", [
    (["--augment", "crop"], "--augment crop changes the image size: give --resize"),
    (["--augment", "rotate"], "unknown augmentation"),
    (["--resume"], "no checkpoint to resume from"),
    (["--batch-size", "100"], "do not fill one batch of 100"),
    (["--input-size", "48", "--batch-size", "8"], "image 32x32, the network trains at 48x48: .*--resize.* \\(and 23 more file\\(s\\)\\)"),
    (["--lr", "-1"], "lr must be > 0"),
    pytest.param(["--device", "cuda"], "no CUDA device", marks=pytest.mark.skipif(
        torch.cuda.is_available(), reason="this machine has a CUDA device")),
])
def test_cli_train_errors(gray_folder, tmp_path, capsys, argv, message):
    code = main(["train", str(gray_folder), "--out-dir", str(tmp_path / "out"), *argv])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("jpegfx: error:")
    assert re.search(message, err), err


def test_cli_train_names_a_broken_file(gray_folder, tmp_path, capsys):
    import shutil

    root = tmp_path / "train"
    shutil.copytree(gray_folder, root)
    good = (root / "class1" / "0.jpg").read_bytes()
    (root / "class1" / "broken.jpg").write_bytes(good[:200])
    code = main(["train", str(root), "--batch-size", "5", "--out-dir", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "broken.jpg" in err and len(err.splitlines()) == 1
    code = main(["train", str(root), "--batch-size", "5", "--on-error", "skip", "--out-dir", str(tmp_path / "out")])
    assert code == 0


@pytest.mark.parametrize("relu", ["exact", "asm"])
def test_weights_that_do_not_give_back_the_model_are_not_saved(gray_folder, tmp_path, monkeypatch, relu):
    """A mapping that puts a weight in the wrong place (two same-shaped kernels swapped) is caught before
    model.pt is written, in exact and approximate modes alike."""
    real = jt.spatial_state_dict

    def swapped(jpeg_model, model):
        state = real(jpeg_model, model)
        a, b = "layer1.0.conv1.weight", "layer1.0.conv2.weight"
        state[a], state[b] = state[b], state[a]
        return state

    monkeypatch.setattr(jt, "spatial_state_dict", swapped)
    torch.manual_seed(0)
    with pytest.raises(jt.ConversionError, match="do not give back the trained JPEG-domain model"):
        jt.fit(models.paper(num_classes=CLASSES), JpegFolder(gray_folder), input_size=32, relu=relu, frequencies=6,
               options=jt.TrainOptions(batch_size=8), out_dir=tmp_path)
    assert not (tmp_path / "model.pt").exists() and (tmp_path / "checkpoint.pt").exists()


@pytest.mark.parametrize("domains", ["jpeg", "pixels"])
def test_mixed_precision_takes_nearly_the_float32_steps(gray_folder, domains):
    """bfloat16 autocast (on the CPU here; the same code on CUDA): the weights move as in float32, to
    bfloat16's precision, and stay float32; BN statistics are computed in float32."""
    moved = {}
    for amp in (False, True):
        torch.manual_seed(0)
        model = models.paper(num_classes=CLASSES)
        start = {k: v.clone() for k, v in model.state_dict().items()}
        jt.fit(model, JpegFolder(gray_folder), input_size=32, domains=domains,
               options=jt.TrainOptions(batch_size=8, lr=0.05, amp=amp))
        moved[amp] = torch.cat([(model.state_dict()[k] - start[k]).flatten() for k in start
                                if start[k].is_floating_point() and "running" not in k])
        assert all(v.dtype in (torch.float32, torch.int64) for v in model.state_dict().values())
    cosine = float(F.cosine_similarity(moved[True], moved[False], dim=0))
    relative = float((moved[True] - moved[False]).norm() / moved[False].norm())
    assert cosine > 0.99 and relative < 0.1, (cosine, relative)


def test_cli_reset_head_fine_tunes_pretrained_weights_for_new_classes(gray_folder, tmp_path, capsys):
    """The shipped 10-class paper network fine-tuned on a 3-class folder: every pretrained tensor is kept
    but the classifier, which starts fresh for 3 classes; without --reset-head the mismatch is refused."""
    from jpegfx import datasets

    pretrained = tmp_path / "pretrained.pt"
    torch.save(datasets.default_model().state_dict(), pretrained)
    argv = ["train", str(gray_folder), "--batch-size", "8", "--weights", str(pretrained), "--freeze-bn",
            "--lr", "1e-9", "--out-dir", str(tmp_path / "out"), "--json"]
    assert main(argv) == 2
    assert "fc.weight: (10, 64) vs (3, 64)" in capsys.readouterr().err
    assert main(argv + ["--reset-head"]) == 0
    out = json.loads(capsys.readouterr().out)
    trained = torch.load(out["files"]["weights"], weights_only=True)
    original = datasets.default_model().state_dict()
    assert trained["fc.weight"].shape == (3, 64)
    for k in ("conv1.weight", "layer3.0.conv2.weight", "bn1.running_var"):  # lr 1e-9, BN frozen: kept
        assert torch.allclose(trained[k], original[k], atol=1e-6), k
    assert main(["train", str(gray_folder), "--reset-head", "--out-dir", str(tmp_path / "x")]) == 2


def test_files_that_cannot_reach_the_network_are_found_before_training(gray_folder, tmp_path):
    """Every file's header is checked before the first step: a file of another size (no policy) or one
    too small for the policy stops the run at once, named, or is left out with on_error='skip'."""
    import shutil

    from jpegfx.errors import JpegError

    root = tmp_path / "train"
    shutil.copytree(gray_folder, root)
    _write(root / "class2" / "odd.jpg", np.full((40, 32), 128, np.uint8), quality=90)
    options = jt.TrainOptions(batch_size=8)
    with pytest.raises(JpegError, match=r"odd\.jpg: image 40x32, the network trains at 32x32"):
        jt.fit(models.paper(num_classes=CLASSES), JpegFolder(root), input_size=32, options=options,
               out_dir=tmp_path / "out")
    assert not (tmp_path / "out" / "checkpoint.pt").exists()
    skipping = JpegFolder(root, on_error="skip")
    result = jt.fit(models.paper(num_classes=CLASSES), skipping, input_size=32, options=options)
    assert len(skipping) == 24 and result.history[0]["steps"] == 3

    _write(root / "class1" / "tiny.jpg", np.full((12, 30), 128, np.uint8), quality=90)
    policy = Policy(resize=32, crop=32, resample="bilinear")
    with pytest.raises(JpegError, match=r"tiny\.jpg: image 12x30 is too small"):
        jt.fit(models.paper(num_classes=CLASSES), JpegFolder(root), input_size=32, policy=policy, options=options)


def test_random_crop_keeps_crops_the_policy_can_scale(gray_folder):
    with pytest.raises(UsageError, match="random crop changes the image size"):
        jt.fit(models.paper(num_classes=CLASSES), JpegFolder(gray_folder, augment=[RandomCrop()]), input_size=32)
    with pytest.raises(UsageError, match="min_side"):
        RandomCrop(min_side=0)
    crop = RandomCrop(scale=(0.05, 0.2), min_side=40)
    for seed in range(20):
        top, left, h, w = crop.window((100, 120), (16, 16), np.random.default_rng(seed))
        assert min(h, w) >= 40 or (h, w) == (100, 120)


def test_resume_refuses_another_schedule(gray_folder, tmp_path):
    """The learning-rate schedule spans the run's epochs: resuming with more epochs is refused, not
    silently trained at the old schedule's final rate."""
    torch.manual_seed(0)
    jt.fit(models.paper(num_classes=CLASSES), JpegFolder(gray_folder), input_size=32,
           options=jt.TrainOptions(epochs=1, batch_size=8), out_dir=tmp_path)
    with pytest.raises(UsageError, match="other options .*epochs"):
        jt.fit(models.paper(num_classes=CLASSES), JpegFolder(gray_folder), input_size=32,
               options=jt.TrainOptions(epochs=2, batch_size=8), out_dir=tmp_path, resume=True)


def test_cli_trains_from_csv_lists(gray_folder, tmp_path, capsys):
    from jpegfx.data import read_list

    files = sorted(gray_folder.rglob("*.jpg"))
    lines = ["path,label"] + [f"{p},{int(p.parent.name[-1])}" for p in files]
    (tmp_path / "train.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "val.csv").write_text("\n".join(f"{os.path.relpath(p, tmp_path)},{int(p.parent.name[-1])}"
                                                for p in files[:6]) + "\n")
    assert [label for _, label in read_list(tmp_path / "val.csv")] == [0] * 6
    code = main(["train", str(tmp_path / "train.csv"), "--val", str(tmp_path / "val.csv"), "--batch-size", "8",
                 "--out-dir", str(tmp_path / "out"), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["train_files"] == 24 and out["val_files"] == 6 and out["classes"] == ["0", "1", "2"]
    (tmp_path / "bad.csv").write_text("a.jpg,1\nb.jpg,x\n")
    assert main(["train", str(tmp_path / "bad.csv"), "--out-dir", str(tmp_path / "o2")]) == 2
    assert "bad.csv:2: label 'x' is not an integer" in capsys.readouterr().err


def test_schedules_and_optimizers():
    """Cosine with linear warm-up, one-cycle (PyTorch's) and constant, over the run's steps; AdamW."""
    def rates(**options):
        opts = jt.TrainOptions(epochs=2, lr=0.1, **options)
        optimizer = jt.make_optimizer(torch.nn.Linear(2, 2), opts)
        schedule = jt.make_schedule(optimizer, opts, steps_per_epoch=5)
        out = []
        for _ in range(10):
            out.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            schedule.step()
        return out, optimizer

    cosine, sgd = rates(schedule="cosine", warmup_epochs=0.4)
    assert cosine[:2] == pytest.approx([0.05, 0.1]) and cosine[-1] < 0.01  # 2 warm-up steps, then down to ~0
    assert all(a >= b for a, b in zip(cosine[1:], cosine[2:]))
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["nesterov"]
    constant, _ = rates(schedule="constant")
    assert constant == [0.1] * 10
    onecycle, adamw = rates(schedule="onecycle", optimizer="adamw")
    assert max(onecycle) == pytest.approx(0.1, rel=0.05) and onecycle[0] < 0.01 and isinstance(adamw, torch.optim.AdamW)
    with pytest.raises(UsageError, match="optimizer"):
        jt.TrainOptions(optimizer="lamb")
