"""Size-free converted models in torch: convert once, run at any size the spatial model runs at.

``jpegfx.convert(model)`` without ``input_size`` (or with ``any_size=True``) keeps a copy of the
spatial model; a batch of another size runs the model converted for that size, so every
size-dependent constant comes from the actual size. Checked against the spatial model on the float
decode of the same coefficients (``JpegModel.spatial_input``), on real photo crops at sizes that are
not multiples of 8 or 16.
"""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import jpegfx
from jpegfx import models
from jpegfx.errors import JpegfxError, UsageError
from jpegfx.jpeg import read_jpeg, stack
from tests.conftest import RTOL, assert_close_rel, package_file


def _photo(package: str, *parts: str) -> Image.Image:
    with Image.open(package_file(package, *parts)) as image:
        return image.convert("RGB")


def _jpegs(image: Image.Image, size: tuple[int, int], count: int = 2, subsampling: int = 2):
    """``count`` crops of ``image`` of ``size = (h, w)`` as one JpegBatch (read back from JPEG bytes)."""
    h, w = size
    batch = []
    for i in range(count):
        left, top = (image.width - w) * i // max(count - 1, 1), (image.height - h) * (count - 1 - i) // max(count - 1, 1)
        buf = io.BytesIO()
        image.crop((left, top, left + w, top + h)).save(buf, format="JPEG", quality=80 + 5 * i,
                                                         subsampling=subsampling)
        batch.append(read_jpeg(buf.getvalue()))
    return stack(batch)


def _check(spatial: nn.Module, jpeg_model, batch) -> None:
    with torch.no_grad():
        ours = jpeg_model(batch)
        reference = spatial(jpeg_model.spatial_input(batch))
    assert_close_rel(ours, reference, RTOL[torch.float32])
    assert torch.equal(ours.argmax(1), reference.argmax(1))


def test_convert_without_size_runs_at_any_size():
    """ResNet-20 (global pooling) converted once: crops of 32×32, 37×45 (4:2:0) and 61×50 (4:4:4),
    each exact; a size's model is converted once and reused."""
    china = _photo("sklearn", "datasets", "images", "china.jpg")
    torch.manual_seed(0)
    spatial = models.resnet20()
    models.randomize_batchnorm(spatial, torch.Generator().manual_seed(0))
    spatial.eval()
    jpeg_model = jpegfx.convert(spatial, normalize="imagenet").eval()
    assert jpeg_model.any_size and tuple(jpeg_model.spec.input_size) == (224, 224)
    assert not any(k.startswith("_source") for k in jpeg_model.state_dict())
    for size, subsampling in (((32, 32), 2), ((37, 45), 2), ((61, 50), 0)):
        _check(spatial, jpeg_model, _jpegs(china, size, subsampling=subsampling))
    assert jpeg_model.at_size((37, 45)) is jpeg_model.at_size((37, 45))
    assert jpeg_model.at_size(224) is jpeg_model
    assert jpeg_model.at_size((37, 45)).spec.input_size == (37, 45)


def test_any_size_follows_dtype_and_mode():
    china = _photo("sklearn", "datasets", "images", "china.jpg")
    torch.manual_seed(0)
    spatial = models.resnet20().eval()
    jpeg_model = jpegfx.convert(spatial, 32, any_size=True).eval().double()
    batch = _jpegs(china, (40, 33))
    with torch.no_grad():
        ours = jpeg_model(batch)
        reference = spatial.double()(jpeg_model.spatial_input(batch))
    assert ours.dtype == torch.float64 and not jpeg_model.at_size((40, 33)).training
    assert_close_rel(ours, reference, RTOL[torch.float64])


def test_one_size_models_refuse_other_sizes():
    china = _photo("sklearn", "datasets", "images", "china.jpg")
    jpeg_model = jpegfx.convert(models.resnet20().eval(), 32).eval()
    assert not jpeg_model.any_size
    with pytest.raises(UsageError, match=r"image size 40x33 does not match the model's input size 32x32 "
                                         r"\(convert with any_size=True"):
        jpeg_model(_jpegs(china, (40, 33)))


class _Flat(nn.Module):
    """A classifier that needs one input size: flatten without global pooling."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.fc = nn.Linear(4 * 16 * 16, 10)

    def forward(self, x):
        return self.fc(torch.flatten(torch.relu(self.conv(x)), 1))


def test_size_bound_models_need_their_size():
    """A flatten without global pooling pins the size: converting it for 32×32 works, without a size it
    fails with one line, and so does running it at another size."""
    china = _photo("sklearn", "datasets", "images", "china.jpg")
    model = _Flat().eval()
    _check(model, jpegfx.convert(model, 32).eval(), _jpegs(china, (32, 32)))
    with pytest.raises(JpegfxError) as info:
        jpegfx.convert(model)
    assert "\n" not in str(info.value)
    any_size = jpegfx.convert(model, 32, any_size=True).eval()
    with pytest.raises(JpegfxError) as info:
        any_size(_jpegs(china, (40, 40)))
    assert "\n" not in str(info.value)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_resnets_converted_once_run_at_the_acceptance_sizes(name):
    """ResNet-18 and ResNet-50, converted once: real photos at 224×224, 257×193, 427×640 (china.jpg
    itself, 4:4:4) and 600×512 (grace_hopper.jpg itself, 4:2:0), exact and with the same top-1."""
    china = _photo("sklearn", "datasets", "images", "china.jpg")
    grace = _photo("matplotlib", "mpl-data", "sample_data", "grace_hopper.jpg")
    torch.manual_seed(0)
    spatial = models.create_model(name, num_classes=10)
    models.randomize_batchnorm(spatial, torch.Generator().manual_seed(0))
    spatial.eval()
    jpeg_model = jpegfx.convert(spatial, normalize="imagenet").eval()
    _check(spatial, jpeg_model, _jpegs(china, (224, 224)))
    _check(spatial, jpeg_model, _jpegs(grace, (257, 193)))
    _check(spatial, jpeg_model, _jpegs(china, (427, 640), count=1, subsampling=0))
    _check(spatial, jpeg_model, _jpegs(grace, (600, 512), count=1))


@pytest.mark.slow
def test_any_size_model_exports_one_file_per_size(tmp_path):
    """The ONNX side of a size-free model: one export per size (the block grids of an ONNX graph are
    fixed), each equal in onnxruntime to the torch model at that size."""
    from jpegfx.export import export_onnx
    from jpegfx.runtime import Session

    china = _photo("sklearn", "datasets", "images", "china.jpg")
    grace = _photo("matplotlib", "mpl-data", "sample_data", "grace_hopper.jpg")
    torch.manual_seed(0)
    spatial = models.resnet18(num_classes=10)
    models.randomize_batchnorm(spatial, torch.Generator().manual_seed(0))
    jpeg_model = jpegfx.convert(spatial.eval(), normalize="imagenet").eval()
    for image, size in ((china, (224, 224)), (grace, (257, 193)), (china, (427, 640)), (grace, (600, 512))):
        batch = _jpegs(image, size, count=1)
        at_size = jpeg_model.at_size(size)
        path = export_onnx(at_size, tmp_path / f"r18_{size[0]}x{size[1]}.onnx")
        with torch.no_grad():
            want = jpeg_model(batch).numpy()
        got = Session(path, providers=["CPUExecutionProvider"]).run(batch)
        assert abs(got - want).max() <= RTOL[torch.float32] * abs(want).max()
        assert (got.argmax(1) == want.argmax(1)).all()


def _photo_files(tmp_path) -> list[tuple[str, tuple[int, int]]]:
    """Real photos written at the acceptance sizes, in several layouts: (path, (h, w))."""
    china = _photo("sklearn", "datasets", "images", "china.jpg")
    grace = _photo("matplotlib", "mpl-data", "sample_data", "grace_hopper.jpg")
    files = []
    for i, (image, (h, w), subsampling) in enumerate(((china, (224, 224), 2), (grace, (257, 193), 1),
                                                      (china, (427, 640), 0), (grace, (600, 512), 2))):
        path = tmp_path / f"photo{i}.jpg"
        image.crop((0, 0, w, h)).save(path, format="JPEG", quality=85, subsampling=subsampling)
        files.append((str(path), (h, w)))
    gray = tmp_path / "gray.jpg"
    china.convert("L").crop((17, 3, 17 + 301, 3 + 233)).save(gray, format="JPEG", quality=90)
    files.append((str(gray), (233, 301)))
    return files


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_one_onnx_file_runs_every_size(tmp_path, name):
    """Converted once (on pixels, for any size) and exported once without a crop: onnxruntime runs each
    photo at its own size (224×224, 257×193, 427×640, 600×512, a gray 233×301) in that one file, each
    equal to the spatial model on the float decode of the same coefficients."""

    from jpegfx import preprocess
    from jpegfx.export import export_onnx
    from jpegfx.reader import read_coefficients
    from jpegfx.runtime import Session

    torch.manual_seed(0)
    spatial = models.create_model(name, num_classes=10)
    models.randomize_batchnorm(spatial, torch.Generator().manual_seed(0))
    spatial.eval()
    jpeg_model = jpegfx.convert(spatial, normalize="imagenet", domains="pixels").eval()
    policy = preprocess.Policy()  # no scaling, no crop: every photo at its own size
    path = export_onnx(jpeg_model, tmp_path / f"{name}.onnx", preprocess=policy)
    session = Session(path, providers=["CPUExecutionProvider"])
    assert session.spec.any_size and session.spec.pixel_input
    files = _photo_files(tmp_path)
    coefs = [read_coefficients(f) for f, _ in files]
    got = session.run(coefs)  # one call: one onnxruntime run per size
    for row, (c, (_, size)) in enumerate(zip(coefs, files)):
        pixels = preprocess.model_pixels(c, policy, None, 3, jpeg_model.spec.normalize)
        assert pixels.shape[1:] == size
        with torch.no_grad():
            want = spatial.double()(torch.from_numpy(pixels[None])).numpy()
        assert np.abs(got[row] - want[0]).max() <= RTOL[torch.float32] * np.abs(want).max(), size
        assert got[row].argmax() == want[0].argmax()
        spatial.float()
    predictions = session.predict([f for f, _ in files], top_k=1)
    assert [p.top1 for p in predictions] == [int(r.argmax()) for r in got]


def test_size_free_onnx_needs_a_size_free_network(tmp_path):
    """A file without a crop has dynamic height and width only for a network on pixels converted for
    any size; it is checked at a second size before it is written."""
    from jpegfx import preprocess
    from jpegfx.export import export_onnx
    from jpegfx.runtime import Session

    torch.manual_seed(0)
    spatial = models.resnet20().eval()
    one_size = jpegfx.convert(spatial, 32, domains="pixels").eval()
    with pytest.raises(UsageError, match="converted for any size"):
        export_onnx(one_size, tmp_path / "a.onnx", preprocess=preprocess.Policy())
    # a network that needs its size (flatten without global pooling): the spatial model fails at the second size
    fixed = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 32 * 32, 5)).eval()
    with pytest.raises(UsageError, match="does not run at .*export with a crop"):
        export_onnx(jpegfx.convert(fixed, 32, domains="pixels", any_size=True).eval(), tmp_path / "b.onnx",
                    preprocess=preprocess.Policy())
    assert not (tmp_path / "b.onnx").exists()
    # coefficient-domain approximations hold maps for one block grid: the file takes the model's size only
    asm = jpegfx.convert(spatial, 32, domains="pixels", relu="asm", frequencies=6, any_size=True).eval()
    session = Session(export_onnx(asm, tmp_path / "c.onnx", preprocess=preprocess.Policy()),
                      providers=["CPUExecutionProvider"])
    assert not session.spec.pixel_input and not session.spec.any_size


def test_cli_no_crop_serves_photos_at_their_own_scale(tmp_path, capsys):
    import json

    from jpegfx.cli import main

    files = [f for f, _ in _photo_files(tmp_path)]
    out = tmp_path / "r20.onnx"
    code = main(["convert", "--model", "resnet20", "--domains", "pixels", "--resize", "40", "--no-crop",
                 "--check", "0", "-o", str(out), "--json"])
    assert code == 0, capsys.readouterr().err
    capsys.readouterr()
    assert main(["predict", str(out), *files, "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert [r["file"] for r in results] == files and all(r["error"] is None for r in results)
    code = main(["convert", "--model", "resnet20", "--resize", "40", "--no-crop", "-o", str(tmp_path / "x.onnx")])
    err = capsys.readouterr().err
    assert code == 2 and "--no-crop needs --domains pixels" in err and len(err.strip().splitlines()) == 1
    own = tmp_path / "own.onnx"  # without --resize: every photo at its own size
    assert main(["convert", "--model", "resnet20", "--domains", "pixels", "--no-crop", "--check", "0",
                 "-o", str(own)]) == 0
    capsys.readouterr()
    assert main(["predict", str(own), *files, "--json"]) == 0
    assert all(r["error"] is None for r in json.loads(capsys.readouterr().out))


def test_large_photos_at_their_own_size_run_in_parts(tmp_path, monkeypatch):
    """A batch of photos at their own size is split so that no onnxruntime run holds more than
    runtime.CALL_PIXELS pixels per plane; the results are those of one photo per run, in order."""
    from jpegfx import preprocess, runtime
    from jpegfx.export import export_onnx
    from jpegfx.reader import read_coefficients

    torch.manual_seed(0)
    jpeg_model = jpegfx.convert(models.resnet20().eval(), domains="pixels").eval()
    session = runtime.Session(export_onnx(jpeg_model, tmp_path / "r20.onnx", preprocess=preprocess.Policy()),
                              providers=["CPUExecutionProvider"])
    china = _photo("sklearn", "datasets", "images", "china.jpg")
    paths = []
    for i in range(5):
        paths.append(tmp_path / f"{i}.jpg")
        china.crop((20 * i, 0, 20 * i + 96, 80)).save(paths[-1], format="JPEG", quality=85)
    coefs = [read_coefficients(p) for p in paths]
    calls = []
    real_run = session._session_run
    monkeypatch.setattr(session, "_session_run", lambda feed: calls.append(next(iter(feed.values())).shape)
                        or real_run(feed))
    monkeypatch.setattr(runtime, "CALL_PIXELS", 2 * 80 * 96)
    together = session.run(coefs)
    assert [shape[0] for shape in calls] == [2, 2, 1]
    alone = np.concatenate([session.run([c]) for c in coefs])
    assert np.allclose(together, alone, rtol=1e-5, atol=1e-6)
    # predict reads the five files as one batch and computes their pixels from its stacked arrays, in parts too
    calls.clear()
    predictions = session.predict(paths, top_k=10)
    assert [shape[0] for shape in calls] == [2, 2, 1]
    probabilities = np.exp(alone - alone.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    for p, expected in zip(predictions, probabilities, strict=True):
        assert np.allclose(np.asarray(p.scores), expected[list(p.indices)], rtol=1e-4, atol=1e-6)
    # two sizes, interleaved: every run within the budget, results in the caller's order
    for i in (1, 3):
        china.crop((0, 30 * i, 64, 30 * i + 48)).save(paths[i], format="JPEG", quality=85)
    coefs = [read_coefficients(p) for p in paths]
    calls.clear()
    together = session.run(coefs)
    assert all(n * h * w <= 2 * 80 * 96 for n, _, h, w in calls) and sum(n for n, *_ in calls) == 5
    calls.clear()
    alone = np.concatenate([session.run([c]) for c in coefs])
    assert np.allclose(together, alone, rtol=1e-5, atol=1e-6)


def test_a_model_in_train_mode_refuses_other_sizes():
    """Per-size conversions hold their own weights: training through one would train a copy, silently.
    A size-free model in train mode runs at its own size only."""
    china = _photo("sklearn", "datasets", "images", "china.jpg")
    torch.manual_seed(0)
    jpeg_model = jpegfx.convert(models.resnet20().train(), 32, any_size=True)
    assert jpeg_model.training
    jpeg_model(_jpegs(china, (32, 32)))  # its own size runs
    with pytest.raises(UsageError, match="train mode runs at its own input size 32x32 only"):
        jpeg_model(_jpegs(china, (40, 33)))
    jpeg_model.eval()
    with torch.no_grad():
        jpeg_model(_jpegs(china, (40, 33)))  # in eval mode, any size
