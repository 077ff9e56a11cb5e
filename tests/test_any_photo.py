"""Any photo in, end to end: one converted network, one exported file, photos of every size and layout.

Real photos: scikit-learn's china.jpg and flower.jpg (640×427, 4:4:4), matplotlib's grace_hopper.jpg
(512×600, 4:2:0), and crops of china.jpg written here by Pillow as gray and 4:2:2 at odd sizes. The
spatial model runs on the pixel reference (the scaled float decode, centre-cropped and normalised:
:func:`jpegfx.preprocess.model_pixels`); the converted network runs on the coefficients
(:meth:`JpegModel.prepare`), in torch and in onnxruntime.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import jpegfx
from jpegfx import cli, models, preprocess, reader
from jpegfx.errors import JpegError, UsageError
from jpegfx.export import export_onnx, read_spec
from jpegfx.preprocess import Policy
from jpegfx.runtime import Session
from tests.conftest import RTOL, assert_close_rel, package_file


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> list[str]:
    """Five photos, four layouts: 4:4:4 ×2, 4:2:0, gray 301×257 and 4:2:2 333×411 (odd sizes)."""
    china = package_file("sklearn", "datasets", "images", "china.jpg")
    flower = package_file("sklearn", "datasets", "images", "flower.jpg")
    grace = package_file("matplotlib", "mpl-data", "sample_data", "grace_hopper.jpg")
    d = tmp_path_factory.mktemp("photos")
    with Image.open(china) as image:
        rgb = image.convert("RGB")
        rgb.crop((100, 50, 357, 351)).convert("L").save(d / "gray.jpg", quality=85)
        rgb.crop((20, 10, 431, 343)).save(d / "422.jpg", quality=80, subsampling=1)
    return [china, flower, grace, str(d / "gray.jpg"), str(d / "422.jpg")]


def _layouts(paths) -> set[str]:
    return {reader.read_header(p).subsampling for p in paths}


@pytest.fixture(scope="module")
def resnet18():
    torch.manual_seed(0)
    spatial = models.resnet18(num_classes=10)
    models.randomize_batchnorm(spatial, torch.Generator().manual_seed(0))
    spatial.eval()
    return spatial, jpegfx.convert(spatial, 224, normalize="imagenet").eval()


def test_one_converted_network_takes_every_photo(photos, resnet18):
    """ResNet-18 converted once at 224×224: five photos of four layouts and four sizes, each scaled by
    its own N/8 and centre-cropped in its coefficients, match the spatial model on the pixel
    reference to float rounding."""
    assert _layouts(photos) == {"4:4:4", "4:2:0", "4:0:0", "4:2:2"}
    spatial, jpeg_model = resnet18
    policy = Policy.imagenet(224)
    assert {policy.scale(reader.read_header(p).size) for p in photos} == {5, 4, 8, 7}  # 427, 512, 257, 333: a different N per size
    with torch.no_grad():
        ours = jpeg_model(jpeg_model.prepare(photos, policy))
        reference = spatial(jpeg_model.spatial_prepare(photos, policy))
    assert_close_rel(ours, reference, RTOL[torch.float32])
    assert torch.equal(ours.argmax(1), reference.argmax(1))


def test_flip_policy_is_the_mirrored_crop(photos, resnet18):
    spatial, jpeg_model = resnet18
    policy = Policy(resize=256, crop=224, flip=True)
    plain = jpeg_model.spatial_prepare(photos[:2], Policy(resize=256, crop=224))
    flipped = jpeg_model.spatial_prepare(photos[:2], policy)
    assert torch.equal(flipped, plain.flip(-1))
    with torch.no_grad():
        assert_close_rel(jpeg_model(jpeg_model.prepare(photos[:2], policy)), spatial(flipped), RTOL[torch.float32])


def test_one_onnx_file_serves_every_photo(photos, resnet18, tmp_path):
    """One exported file, five photos in one call: a result for each, in order, equal to the torch
    model on the same input; bytes and paths alike."""
    spatial, jpeg_model = resnet18
    path = export_onnx(jpeg_model, tmp_path / "r18.onnx", preprocess=Policy.imagenet(224),
                       class_names=[f"c{i}" for i in range(10)])
    spec = read_spec(path)
    assert spec.preprocess == Policy.imagenet(224) and spec.input_names == ("x",)
    assert spec.color_space == spec.subsampling == "any" and "any photo" in spec.layout
    session = Session(path, providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = jpeg_model(jpeg_model.prepare(photos)).numpy()
    logits = session.run([reader.read_coefficients(p) for p in photos])
    assert np.abs(logits - expected).max() <= RTOL[torch.float32] * np.abs(expected).max()
    items = photos[:3] + [open(photos[3], "rb").read(), photos[4]]
    predictions = session.predict(items, batch_size=4, top_k=3)
    assert [p.path for p in predictions] == photos[:3] + ["<bytes #3>", photos[4]]
    assert all(p.ok for p in predictions)
    assert [p.top1 for p in predictions] == list(expected.argmax(1))


def test_too_small_photos_are_refused_from_the_header(photos, resnet18, tmp_path, counting_reader):
    """A photo the policy cannot bring to the model's size gets its own one-line error before its scans
    are decoded; its neighbours still get results."""
    _, jpeg_model = resnet18
    path = export_onnx(jpeg_model, tmp_path / "r18.onnx", preprocess=Policy.imagenet(224))
    session = Session(path, providers=["CPUExecutionProvider"])
    tiny = tmp_path / "tiny.jpg"
    with Image.open(photos[0]) as image:
        image.convert("RGB").crop((0, 0, 100, 120)).save(tiny, quality=80)  # 16/8 gives 200 < 256
    results = session.predict([photos[2], str(tiny), photos[0]], on_error="skip", top_k=1)
    assert [r.ok for r in results] == [True, False, True] and counting_reader.decoded == 2
    assert results[1].error.startswith(str(tiny)) and "too small" in results[1].error
    assert "\n" not in results[1].error
    with pytest.raises(JpegError, match="too small"):
        session.predict([str(tiny)])


def test_one_channel_model_takes_colour_and_gray_photos(photos, tmp_path):
    """A gray-input model reads luma from colour photos and the gray file as it is."""
    torch.manual_seed(1)
    spatial = models.resnet20(in_channels=1).eval()
    jpeg_model = jpegfx.convert(spatial, 48).eval()
    policy = Policy(resize=56, crop=48)
    with torch.no_grad():
        ours = jpeg_model(jpeg_model.prepare(photos, policy))
        reference = spatial(jpeg_model.spatial_prepare(photos, policy))
    assert_close_rel(ours, reference, RTOL[torch.float32])
    path = export_onnx(jpeg_model, tmp_path / "gray.onnx", preprocess=policy)
    logits = Session(path, providers=["CPUExecutionProvider"]).run([reader.read_coefficients(p) for p in photos])
    assert np.abs(logits - ours.numpy()).max() <= RTOL[torch.float32] * ours.abs().max().item()


def test_export_refuses_a_crop_that_is_not_the_model_size(resnet18, tmp_path):
    _, jpeg_model = resnet18
    with pytest.raises(UsageError, match="crop 200x200 is not the model's input size 224x224"):
        export_onnx(jpeg_model, tmp_path / "x.onnx", preprocess=Policy(resize=256, crop=200))
    with pytest.raises(UsageError, match="Policy"):
        export_onnx(jpeg_model, tmp_path / "x.onnx", preprocess={"resize": 256})
    assert not (tmp_path / "x.onnx").exists()


def test_policy_metadata_is_checked(resnet18, tmp_path):
    """A policy whose crop disagrees with the size, or that is not JSON, is a one-line UsageError."""
    import onnx

    _, jpeg_model = resnet18
    path = export_onnx(jpeg_model, tmp_path / "r18.onnx", preprocess=Policy.imagenet(224))
    for value, needle in (('{"resize": 256, "crop": [200, 200], "flip": false}', "not the input_size"),
                          ("{resize", "not JSON"), ('{"resize": 0}', "resize must be a positive integer"),
                          ('{"scale": 2}', "JSON object with resize, crop, flip, resample and clamp")):
        model = onnx.load(path)
        onnx.helper.set_model_props(model, {p.key: (value if p.key == "preprocess" else p.value)
                                            for p in model.metadata_props})
        bad = tmp_path / "bad.onnx"
        onnx.save(model, bad)
        with pytest.raises(UsageError, match="'preprocess'") as info:
            Session(bad, providers=["CPUExecutionProvider"])
        assert needle in str(info.value) and "\n" not in str(info.value)


def test_cli_convert_resize_then_predict_any_photo(photos, tmp_path, capsys):
    """`jpegfx convert --resize` writes a file for any photo; `jpegfx predict` gives every photo a
    result, in order, with --json."""
    path = tmp_path / "paper.onnx"
    assert cli.main(["convert", "--model", "paper", "--resize", "40", "--check", "1", "-o", str(path),
                     "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["preprocess"] == {"resize": 40, "crop": [32, 32], "flip": False, "resample": "bilinear",
                                     "clamp": False}
    assert cli.main(["predict", str(path), *photos, "--json", "--top-k", "2"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["file"] for r in rows] == photos
    assert all(r["error"] is None and len(r["top"]) == 2 for r in rows)


def test_cli_convert_clamp_serves_8_bit_samples(photos, tmp_path, capsys):
    """`--clamp`: the file computes the 8-bit samples a Pillow pipeline gives, and serves what the
    model gives on them, not on the float decode."""
    from jpegfx.datasets import default_model

    spatial = default_model()
    weights = tmp_path / "paper.pt"
    torch.save(spatial.state_dict(), weights)
    path = tmp_path / "paper.onnx"
    assert cli.main(["convert", "--model", "paper", "--weights", str(weights), "--resize", "40", "--clamp",
                     "--check", "1", "-o", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["preprocess"]["clamp"] is True
    session = Session(path, providers=["CPUExecutionProvider"])
    policy = Policy(resize=40, crop=32, resample="bilinear", clamp=True)
    assert session.spec.preprocess == policy
    pixels = torch.from_numpy(np.stack([preprocess.model_pixels(reader.read_coefficients(p), policy, (32, 32), 1)
                                        for p in photos])).float()
    assert torch.equal(pixels * 255, (pixels * 255).round())  # 8-bit samples
    with torch.no_grad():
        expected = spatial(pixels)
    served = session.run([reader.read_coefficients(p) for p in photos])
    assert np.abs(served - expected.numpy()).max() <= 10 * RTOL[torch.float32] * expected.abs().max().item()


@pytest.mark.parametrize("argv, needle", [
    (["--clamp"], "--clamp goes with --resize, --crop or --no-crop"),
    (["--resize", "100", "--input-size", "224"], "--resize 100 is smaller than the input size 224x224"),
    (["--resize", "auto", "--subsampling", "4:2:2"], "give one"),
    (["--resize", "0"], "must be at least 1"),
])
def test_cli_resize_argument_errors(argv, needle, capsys, tmp_path):
    assert cli.main(["convert", "--model", "paper", "--check", "0", "-o", str(tmp_path / "x.onnx"), *argv]) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_resnet50_converted_once_serves_every_photo(photos, tmp_path):
    torch.manual_seed(0)
    spatial = models.resnet50(num_classes=10)
    models.randomize_batchnorm(spatial, torch.Generator().manual_seed(0))
    spatial.eval()
    jpeg_model = jpegfx.convert(spatial, 224, normalize="imagenet").eval()
    with torch.no_grad():
        ours = jpeg_model(jpeg_model.prepare(photos))
        reference = spatial(jpeg_model.spatial_prepare(photos))
    assert_close_rel(ours, reference, RTOL[torch.float32])
    assert torch.equal(ours.argmax(1), reference.argmax(1))
    path = export_onnx(jpeg_model, tmp_path / "r50.onnx", preprocess=Policy.imagenet(224))
    logits = Session(path, providers=["CPUExecutionProvider"]).run([reader.read_coefficients(p) for p in photos])
    assert np.abs(logits - ours.numpy()).max() <= RTOL[torch.float32] * ours.abs().max().item()


def test_preprocessing_needs_no_torch():
    """Serving computes the network's input with numpy alone."""
    import subprocess
    import sys

    code = ("import sys; import jpegfx.preprocess, jpegfx.runtime; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0
    assert preprocess.MAX_SCALE == 16
