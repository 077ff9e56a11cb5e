"""jpegfx.runtime.Session: an exported model in onnxruntime on real JPEG files.

Fixtures are written here with Pillow from scikit-learn's china.jpg (64×48 crops, 4:2:0, a
different quality per file so the tables differ); the model is a random-weight ResNet-20 converted
at 64×48 (small and quick to export), shared by the whole module.
"""
from __future__ import annotations

import importlib.util
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

import jpegfx
from jpegfx import models
from jpegfx.export import export_onnx
from jpegfx.jpeg import JpegError, read_jpeg, stack
from jpegfx.runtime import Prediction, Session, default_providers

SIZE = (64, 48)  # (h, w)
QUALITIES = (55, 75, 92)
CLASSES = [f"class_{i}" for i in range(10)]


def china() -> Image.Image:
    """scikit-learn's china.jpg (what ``sklearn.datasets.load_sample_image('china.jpg')`` returns),
    opened directly: importing sklearn.datasets is slow."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("scikit-learn is not installed")
    path = os.path.join(list(spec.submodule_search_locations)[0], "datasets", "images", "china.jpg")
    with Image.open(path) as image:
        return image.convert("RGB")


def crop(image: Image.Image, top: int, left: int, size=SIZE) -> Image.Image:
    h, w = size
    return image.crop((left, top, left + w, top + h))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Three good 4:2:0 files and the bad ones, by kind."""
    d = tmp_path_factory.mktemp("jpegs")
    image = china()
    good = []
    for i, quality in enumerate(QUALITIES):
        path = d / f"good_{i}.jpg"
        crop(image, 120 + 40 * i, 200 + 90 * i).save(path, quality=quality, subsampling=2)
        good.append(str(path))
    bad = {
        "size": d / "wrong_size.jpg",
        "444": d / "full_chroma.jpg",
        "gray": d / "gray.jpg",
        "png": d / "not_a_jpeg.jpg",
    }
    crop(image, 10, 10, (64, 40)).save(bad["size"], quality=75, subsampling=2)
    crop(image, 10, 10).save(bad["444"], quality=75, subsampling=0)
    crop(image, 10, 10).convert("L").save(bad["gray"], quality=75)
    crop(image, 10, 10).save(bad["png"], format="PNG")
    return good, {k: str(v) for k, v in bad.items()}


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    torch.manual_seed(0)
    spatial = models.resnet20()
    models.randomize_batchnorm(spatial, torch.Generator().manual_seed(0))
    jpeg_model = jpegfx.convert(spatial.eval(), SIZE, subsampling="4:2:0", normalize="imagenet").eval()
    path = export_onnx(jpeg_model, tmp_path_factory.mktemp("model") / "resnet20.onnx", class_names=CLASSES)
    return jpeg_model, path


@pytest.fixture(scope="module")
def session(model):
    return Session(model[1], providers=["CPUExecutionProvider"], intra_op_threads=1)


def test_session_reads_the_spec(session, model):
    jpeg_model, path = model
    assert session.providers == ["CPUExecutionProvider"]
    assert session.spec.input_size == SIZE and session.spec.subsampling == "4:2:0"
    assert session.spec.samplings == jpeg_model.spec.samplings()[1]
    assert session.class_names == tuple(CLASSES)
    assert default_providers()[-1] == "CPUExecutionProvider"
    assert str(path) in repr(session)


def test_predict_matches_torch_on_real_files(session, model, files):
    jpeg_model, _ = model
    good, _ = files
    batch = stack([read_jpeg(p) for p in good])
    tables = batch.components[0].qtable
    assert len({tuple(t.tolist()) for t in tables}) == len(good), "the files should have different tables"
    with torch.no_grad():
        want = jpeg_model(batch)
    preds = session.predict(good, batch_size=2, top_k=3)  # two batches: 2 + 1
    assert [p.path for p in preds] == good
    assert all(isinstance(p, Prediction) and p.ok for p in preds)
    assert [p.top1 for p in preds] == want.argmax(dim=1).tolist()
    probs = torch.softmax(want.double(), dim=1)
    for p, row in zip(preds, probs):
        assert len(p.indices) == 3 and list(p.scores) == sorted(p.scores, reverse=True)
        assert p.labels == tuple(CLASSES[i] for i in p.indices)
        np.testing.assert_allclose(p.scores, row[list(p.indices)].numpy(), rtol=1e-4, atol=1e-6)
    logits = session.run(batch)
    assert np.abs(logits - want.numpy()).max() <= 1e-5 * np.abs(want.numpy()).max()


@pytest.mark.parametrize("kind, needle", [
    ("size", "image size 64x40 does not match the model's 64x48"),
    ("444", "subsampling 4:4:4 does not match the model's 4:2:0"),
    ("gray", "grayscale JPEG does not match the model's colour input"),
    ("png", "not a JPEG file"),
], ids=["wrong-size", "444-into-420", "gray-into-colour", "not-a-jpeg"])
def test_bad_files_give_one_line_errors(session, files, kind, needle):
    good, bad = files
    for call in (lambda: session.check(bad[kind]), lambda: session.predict([good[0], bad[kind]])):
        with pytest.raises(JpegError) as info:
            call()
        message = str(info.value)
        assert "\n" not in message and message.startswith(bad[kind] + ": "), message
        assert needle in message
    if kind == "444":
        assert "re-export with subsampling='4:4:4'" in message


def test_predict_can_skip_bad_files(session, files, caplog):
    good, bad = files
    paths = [good[0], bad["gray"], good[1], bad["png"]]
    with caplog.at_level("WARNING", logger="jpegfx.runtime"):
        preds = session.predict(paths, batch_size=3, on_error="skip")
    assert [p.path for p in preds] == paths
    assert [p.ok for p in preds] == [True, False, True, False]
    assert preds[1].error.startswith(bad["gray"]) and preds[1].indices == ()
    assert [p.top1 for p in (preds[0], preds[2])] == [p.top1 for p in session.predict(good[:2])]
    assert sum("skipping" in r.message for r in caplog.records) == 2
    with pytest.raises(ValueError, match="on_error"):
        session.predict(good, on_error="ignore")


def test_check_accepts_batches(session, files):
    good, bad = files
    batch = stack([read_jpeg(p) for p in good])
    assert session.check(batch) is batch
    with pytest.raises(JpegError, match=r"^subsampling 4:4:4"):
        session.check(read_jpeg(bad["444"]))
    with pytest.raises(JpegError, match=r"^photo: subsampling 4:4:4"):
        session.check(read_jpeg(bad["444"]), name="photo")


def test_files_without_jpegfx_metadata_are_refused(tmp_path):
    node = onnx.helper.make_node("Identity", ["x"], ["y"])
    graph = onnx.helper.make_graph([node], "g", [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
                                   [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)]), tmp_path / "plain.onnx")
    with pytest.raises(ValueError, match=r"plain.onnx: not a jpegfx model") as info:
        Session(tmp_path / "plain.onnx", providers=["CPUExecutionProvider"])
    assert "\n" not in str(info.value)
    (tmp_path / "junk.onnx").write_bytes(b"this is not an onnx file")
    with pytest.raises(ValueError, match=r"junk.onnx: onnxruntime cannot load it") as info:
        Session(tmp_path / "junk.onnx")
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="no such file"):
        Session(tmp_path / "missing.onnx")


def test_two_threads_give_the_same_results(session, files):
    good, _ = files
    paths = good * 2
    expected = session.predict(paths, batch_size=4)
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda _: session.predict(paths, batch_size=4), range(6)))
    assert all(r == expected for r in results)
