"""Converted models on real JPEG files: ``convert(model)(read_jpeg(file))`` equals
``model(normalise(decode(read_jpeg(file))))`` for every subsampling, photo and random content, sizes
that are and are not multiples of 8 (exact ReLU; float32 relative error ≤ 1e-5)."""
from __future__ import annotations

import io
import shutil
import subprocess

import numpy as np
import pytest
import torch
from PIL import Image

import jpegfx
from conftest import RTOL, assert_close_rel
from jpegfx import models
from jpegfx import transforms as T
from jpegfx.jpeg import encode, read_jpeg, stack
from jpegfx.ops.input import JpegInputStage, batch_tensors, spatial_model_input

CJPEG = shutil.which("cjpeg")
PIL_SUBSAMPLING = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    from sklearn.datasets import load_sample_image

    return load_sample_image("china.jpg")  # 427×640 RGB


def image(content: str, photo: np.ndarray, h: int, w: int, seed: int = 0) -> np.ndarray:
    if content == "photo":
        return np.ascontiguousarray(photo[100 + seed: 100 + seed + h, 200: 200 + w])
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def jpeg_bytes(pixels: np.ndarray, subsampling: str, quality: int, tmp_path) -> bytes:
    if subsampling in PIL_SUBSAMPLING:
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, "JPEG", quality=quality, subsampling=PIL_SUBSAMPLING[subsampling])
        return buf.getvalue()
    if CJPEG is None:
        pytest.skip("4:4:0 files are written with cjpeg (Debian libjpeg-turbo-progs), which is not installed")
    src = tmp_path / "src.ppm"
    Image.fromarray(pixels).save(src)
    return subprocess.run([CJPEG, "-quality", str(quality), "-sample", "1x2", str(src)], capture_output=True,
                          check=True).stdout


@pytest.fixture(scope="module")
def resnet20():
    torch.manual_seed(0)
    return models.randomize_batchnorm(models.create_model("resnet20"), torch.Generator().manual_seed(0)).eval()


@pytest.mark.parametrize("h,w", [(64, 48), (61, 45)], ids=["64x48", "61x45"])
@pytest.mark.parametrize("content", ["photo", "random"])
@pytest.mark.parametrize("subsampling", ["4:4:4", "4:2:2", "4:2:0", "4:4:0"])
def test_file_through_converted_model_equals_spatial_on_float_decode(subsampling, content, h, w, photo,
                                                                      resnet20, tmp_path):
    data = jpeg_bytes(image(content, photo, h, w), subsampling, 75, tmp_path)
    path = tmp_path / "x.jpg"
    path.write_bytes(data)
    batch = read_jpeg(path)
    assert batch.subsampling == subsampling and batch.size == (h, w)
    jpeg_model = jpegfx.convert(resnet20, (h, w), normalize="imagenet", subsampling=subsampling)
    report = jpegfx.verify(resnet20, jpeg_model, batch)
    assert report.max_rel_error <= 1e-5, report.summary()
    stage = jpeg_model.input_stage(batch)
    assert isinstance(stage, JpegInputStage) and stage.samplings == tuple(c.sampling for c in batch.components)


def test_per_image_tables_in_one_batch(photo, resnet20, tmp_path):
    files = [jpeg_bytes(image("photo", photo, 48, 40, seed), "4:2:0", q, tmp_path)
             for seed, q in ((0, 30), (5, 60), (9, 95))]
    batch = stack([read_jpeg(f) for f in files])
    tables = batch.components[0].qtable
    assert not torch.equal(tables[0], tables[1]) and not torch.equal(tables[1], tables[2])
    jpeg_model = jpegfx.convert(resnet20, (48, 40), normalize="imagenet")
    report = jpegfx.verify(resnet20, jpeg_model, batch)
    assert report.max_rel_error <= 1e-5 and report.top1_agreement == 1.0
    with torch.no_grad():
        one_by_one = torch.cat([jpeg_model(read_jpeg(f)) for f in files])
        together = jpeg_model(batch)
    assert torch.allclose(together, one_by_one, rtol=0, atol=1e-5 * float(one_by_one.abs().max()))


def test_gray_jpeg_into_rgb_model_replicates_luma(photo, resnet20):
    buf = io.BytesIO()
    Image.fromarray(image("photo", photo, 40, 40)).convert("L").save(buf, "JPEG", quality=80)
    batch = read_jpeg(buf.getvalue())
    assert batch.color_space == "gray"
    jpeg_model = jpegfx.convert(resnet20, 40, normalize="imagenet")
    assert jpegfx.verify(resnet20, jpeg_model, batch).max_rel_error <= 1e-5
    x = jpeg_model.spatial_input(batch)
    mean = torch.tensor([0.485, 0.456, 0.406]).reshape(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).reshape(3, 1, 1)
    pixels = x[0] * std + mean
    assert torch.allclose(pixels[0], pixels[1], atol=1e-6) and torch.allclose(pixels[1], pixels[2], atol=1e-6)


def test_colour_jpeg_into_one_channel_model_takes_luma(photo, tmp_path):
    torch.manual_seed(1)
    model = models.randomize_batchnorm(models.create_model("paper")).eval()
    batch = read_jpeg(jpeg_bytes(image("photo", photo, 32, 32), "4:2:0", 90, tmp_path))
    jpeg_model = jpegfx.convert(model, 32)
    assert jpegfx.verify(model, jpeg_model, batch).max_rel_error <= 1e-5
    gray = np.asarray(Image.open(io.BytesIO(jpeg_bytes(image("photo", photo, 32, 32), "4:2:0", 90, tmp_path))).convert("L"))
    luma = jpeg_model.spatial_input(batch)[0, 0] * 255
    assert float((luma - torch.from_numpy(gray.astype(np.float32))).abs().mean()) < 1.0  # Pillow's L is luma


@pytest.mark.parametrize("upsampling", ["fancy", "nearest"])
def test_upsampling_option(upsampling, photo, resnet20, tmp_path):
    batch = read_jpeg(jpeg_bytes(image("photo", photo, 40, 40), "4:2:0", 75, tmp_path))
    jpeg_model = jpegfx.convert(resnet20, 40, upsampling=upsampling)
    assert jpegfx.verify(resnet20, jpeg_model, batch).max_rel_error <= 1e-5


def test_fancy_upsampling_is_closer_to_libjpeg_than_nearest(photo, tmp_path):
    data = jpeg_bytes(image("photo", photo, 64, 64), "4:2:0", 90, tmp_path)
    pillow = torch.from_numpy(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(np.float64)).permute(2, 0, 1)
    errors = {}
    for up in ("fancy", "nearest"):
        jpeg_model = jpegfx.convert(models.create_model("resnet20").eval(), 64, upsampling=up)
        x = jpeg_model.spatial_input(read_jpeg(data)).double()[0] * 255
        errors[up] = float((x.clamp(0, 255) - pillow).abs().mean())
    assert errors["fancy"] < errors["nearest"]


def test_wrong_image_size_is_one_line_error(photo, resnet20, tmp_path):
    jpeg_model = jpegfx.convert(resnet20, 32)
    batch = read_jpeg(jpeg_bytes(image("photo", photo, 40, 32), "4:2:0", 75, tmp_path))
    with pytest.raises(ValueError, match=r"^image size 40x32 does not match the model's input size 32x32 "
                                         r"\(convert with any_size=True, or without input_size, to run at any size\)$"):
        jpeg_model(batch)


def test_bad_conversion_options():
    model = models.create_model("paper")
    with pytest.raises(ValueError, match="subsampling must be one of"):
        jpegfx.convert(model, 32, subsampling="4:1:1")
    with pytest.raises(ValueError, match="upsampling must be one of"):
        jpegfx.convert(model, 32, upsampling="bicubic")
    with pytest.raises(ValueError, match="normalize must be"):
        jpegfx.convert(model, 32, normalize="cifar")


@pytest.mark.parametrize("built,converted", [(torch.float32, torch.float64), (torch.float64, torch.float32)],
                         ids=["f32-then-double", "f64-then-float"])
@pytest.mark.parametrize("subsampling", ["4:4:4", "4:2:0"])
def test_input_stage_maps_are_rebuilt_on_dtype_conversion(subsampling, built, converted):
    """An input stage built in one dtype and converted holds exactly the maps of a stage built in the
    target dtype (colour/normalisation map, constant pattern, padding masks re-rounded from float64)
    and equals the float decode at the target dtype's RTOL."""
    images = torch.rand(2, 3, 13, 21, generator=torch.Generator().manual_seed(11), dtype=torch.float64) * 255
    batch = encode(images, quality=90, subsampling=subsampling)
    samplings = tuple(c.sampling for c in batch.components)

    def stage(dtype: torch.dtype) -> JpegInputStage:
        return JpegInputStage((13, 21), samplings, "ycbcr", 3, "imagenet", "fancy", dtype)

    converted_stage = stage(built).to(converted)
    direct = stage(converted)
    got, want = dict(converted_stage.named_buffers()), dict(direct.named_buffers())
    assert got.keys() == want.keys() and {"mix", "offset", "pattern", "mask.row_map"} <= got.keys()
    for name, tensor in got.items():
        assert tensor.dtype == want[name].dtype == converted and torch.equal(tensor, want[name]), name
    out = T.from_dct(converted_stage(*batch_tensors(batch)), (13, 21))
    expected = spatial_model_input(batch, 3, "imagenet", "fancy", torch.float64).to(converted)
    assert_close_rel(out, expected, RTOL[converted])


@pytest.mark.parametrize("samplings", [
    ((2, 2), (1, 1), (1, 1)),  # 4:2:0: Cb and Cr share one inverse DCT and one upsampling
    ((1, 1), (1, 1), (1, 1)),  # 4:4:4: all three at full size
    ((2, 2), (1, 2), (2, 1)),  # Cb h2v1-like, Cr h1v2-like: two geometries, two runs
    ((1, 2), (1, 1), (1, 2)),  # Cr at luma's size between a subsampled Cb and luma
], ids=["420", "444", "mixed", "cr-full"])
@pytest.mark.parametrize("size", [(32, 48), (37, 29)], ids=["32x48", "37x29"])
def test_pixels_equal_the_inverse_dct_of_the_stage_output(samplings, size):
    """``JpegInputStage.pixels`` (the folded input of pixel-domain networks) is the stage's own block-DCT
    output, inverted: for every layout, whether or not components share a geometry."""
    from jpegfx.ops.input import component_layout

    stage = JpegInputStage(size, samplings, "ycbcr", 3, "imagenet", "fancy", torch.float64)
    sizes, _ = component_layout(size, samplings)
    gen = torch.Generator().manual_seed(7)
    coefficients = [torch.randint(-60, 61, (2, -(-h // 8), -(-w // 8), 8, 8), generator=gen, dtype=torch.int16)
                    for h, w in sizes]
    tables = [torch.randint(1, 30, (2, 64), generator=gen, dtype=torch.int32) for _ in sizes]
    with torch.no_grad():
        assert_close_rel(stage.pixels(*coefficients, *tables), T.from_dct(stage(*coefficients, *tables), size))
