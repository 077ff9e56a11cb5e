"""jpegfx.jpeg: reading coefficients, the float reference decode, the encoder, refusals, stacking.

Every fixture is generated here from images shipped by installed packages (scikit-learn's
china.jpg, matplotlib's grace_hopper.jpg) through Pillow, cjpeg and jpegtran; nothing binary is
committed. libjxl-testdata and libjpeg-turbo-progs are installed by CI (.ci/); the tests that need
them skip with a reason when they are absent.
"""
from __future__ import annotations

import glob
import importlib.util
import io
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image

from jpegfx.jpeg import (
    Component,
    JpegBatch,
    JpegError,
    decode,
    encode,
    read_jpeg,
    read_jpegs,
    stack,
    standard_qtables,
    upsample_chroma,
    ycbcr_to_rgb_matrix,
    rgb_to_ycbcr_matrix,
)
from jpegfx.transforms import unzigzag

JPEGTRAN = shutil.which("jpegtran")
CJPEG = shutil.which("cjpeg")
LIBJXL_JPEGS = sorted(
    glob.glob("/usr/share/libjxl-testdata/**/*.jpg", recursive=True)
    + glob.glob("/usr/share/libjxl-testdata/**/*.jpeg", recursive=True)
)
# Refused on purpose: colour transform "none" (Adobe transform 0), i.e. RGB-coded components.
LIBJXL_REFUSED = {"flower.png.im_q85_rgb.jpg", "flower.png.im_q85_rgb_subsample_blue.jpg"}
PILLOW_SUBSAMPLING = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}
CJPEG_SAMPLE = {"4:4:4": "1x1", "4:2:2": "2x1", "4:2:0": "2x2", "4:4:0": "1x2"}  # luma h x v


# --------------------------------------------------------------------------------------------
# Fixture helpers
# --------------------------------------------------------------------------------------------
def sklearn_sample(name: str) -> str:
    """Path of a sample image shipped by scikit-learn (found without importing sklearn: slow)."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("scikit-learn is not installed")
    path = os.path.join(list(spec.submodule_search_locations)[0], "datasets", "images", name)
    if not os.path.exists(path):
        pytest.skip(f"scikit-learn ships no {name}")
    return path


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """scikit-learn's china.jpg (what load_sample_image returns): (427, 640, 3) uint8."""
    with Image.open(sklearn_sample("china.jpg")) as image:
        return np.ascontiguousarray(np.asarray(image.convert("RGB")))


def crop_of(photo: np.ndarray, h: int, w: int, top: int = 100, left: int = 200) -> np.ndarray:
    return photo[top : top + h, left : left + w].copy()


def pillow_jpeg(pixels: np.ndarray, quality: int = 75, subsampling: str = "4:2:0", **kw) -> bytes:
    buf = io.BytesIO()
    image = Image.fromarray(pixels)
    if image.mode == "L":
        image.save(buf, format="JPEG", quality=quality, **kw)
    else:
        image.save(buf, format="JPEG", quality=quality, subsampling=PILLOW_SUBSAMPLING[subsampling], **kw)
    return buf.getvalue()


def cjpeg_jpeg(pixels: np.ndarray, tmp_path, *args: str) -> bytes:
    src = tmp_path / "src.ppm"
    Image.fromarray(pixels).save(src)
    return subprocess.run([CJPEG, *args, str(src)], check=True, capture_output=True).stdout


def jpeg_file(pixels, subsampling, tmp_path, quality=75) -> bytes:
    """A libjpeg-written file: Pillow where it can, cjpeg for 4:4:0."""
    if subsampling in PILLOW_SUBSAMPLING:
        return pillow_jpeg(pixels, quality, subsampling)
    if CJPEG is None:
        pytest.skip("cjpeg (libjpeg-turbo-progs) is not installed: Pillow cannot write 4:4:0")
    return cjpeg_jpeg(pixels, tmp_path, "-quality", str(quality), "-sample", CJPEG_SAMPLE[subsampling])


def pillow_pixels(source) -> torch.Tensor:
    """Pillow's (libjpeg-turbo's) decode as (1, C, h, w) float64."""
    image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
    image = image.convert("L" if image.mode == "L" else "RGB")
    x = torch.from_numpy(np.array(image)).to(torch.float64)
    return x[None, None] if x.ndim == 2 else x.permute(2, 0, 1)[None]


def errors(ours: torch.Tensor, pillow: torch.Tensor) -> tuple[float, float, float]:
    """(mean |Δ|, max |Δ|, max |Δ| after clamping ours to 0..255 as libjpeg does)."""
    d = (ours - pillow).abs()
    return float(d.mean()), float(d.max()), float((ours.clamp(0, 255) - pillow).abs().max())


def same_coefficients(a: JpegBatch, b: JpegBatch) -> bool:
    return a.num_components == b.num_components and all(
        torch.equal(x.coefficients, y.coefficients) and torch.equal(x.qtable, y.qtable)
        for x, y in zip(a.components, b.components)
    )


def jpeglib_batch(path: str) -> JpegBatch:
    """The same file read by jpeglib (its own libjpeg-turbo build): an independent coefficient reader."""
    jpeglib = pytest.importorskip("jpeglib", reason="jpeglib (test extra) cross-checks the coefficients")
    with jpeglib.version("turbo210"):
        j = jpeglib.read_dct(path)
    ours = read_jpeg(path)
    comps = []
    for c, plane, slot in zip(ours.components, [j.Y, j.Cb, j.Cr], j.quant_tbl_no):
        hb, wb = c.blocks
        coefficients = torch.from_numpy(np.ascontiguousarray(plane[:hb, :wb]).astype(np.int16))[None]
        qtable = torch.from_numpy(np.asarray(j.qt[int(slot)]).reshape(1, 64).astype(np.int32))
        comps.append(Component(coefficients, qtable, c.size, c.sampling))
    return JpegBatch(tuple(comps), ours.size, ours.color_space)


def crop_batch(batch: JpegBatch, max_side: int) -> JpegBatch:
    """The top-left crop of whole MCUs, at most ``max_side`` pixels a side (decode speed in tests)."""
    vmax, hmax = batch.max_sampling
    h = min(batch.size[0], max(1, max_side // (8 * vmax)) * 8 * vmax)
    w = min(batch.size[1], max(1, max_side // (8 * hmax)) * 8 * hmax)
    comps = []
    for c in batch.components:
        size = (-(-h * c.sampling[0] // vmax), -(-w * c.sampling[1] // hmax))
        hb, wb = -(-size[0] // 8), -(-size[1] // 8)
        comps.append(Component(c.coefficients[:, :hb, :wb].contiguous(), c.qtable, size, c.sampling))
    return JpegBatch(tuple(comps), (h, w), batch.color_space)


# --------------------------------------------------------------------------------------------
# 1. Reference decode against Pillow
# --------------------------------------------------------------------------------------------
DECODE_CASES = [(s, size) for s in ("4:4:4", "4:2:2", "4:2:0", "4:4:0") for size in ((48, 64), (45, 61))]


@pytest.mark.parametrize(
    "subsampling,size", DECODE_CASES, ids=[f"{s}-{w}x{h}" for s, (h, w) in DECODE_CASES]
)
def test_decode_matches_pillow(photo, tmp_path, subsampling, size):
    data = jpeg_file(crop_of(photo, *size), subsampling, tmp_path)
    batch = read_jpeg(data)
    assert batch.size == size and batch.subsampling == subsampling
    ref = pillow_pixels(data)
    fancy = decode(batch, upsampling="fancy")
    assert fancy.shape == ref.shape and fancy.dtype == torch.float64
    mean_f, max_f, max_fc = errors(fancy, ref)
    # Measured (china.jpg crops, q75): mean 0.52-0.57; clamped max 2-4. Unclamped max reaches ~35
    # where libjpeg clamps saturated pixels (the reference decode does not clamp).
    assert mean_f < 1.0 and max_fc <= 8, (mean_f, max_f, max_fc)
    mean_n, _, _ = errors(decode(batch, upsampling="nearest"), ref)
    if subsampling == "4:4:4":
        assert mean_n == pytest.approx(mean_f)
    else:  # measured: 4:2:2 0.57 vs 0.79, 4:2:0 0.55 vs 1.59
        assert mean_f < 0.85 * mean_n, (mean_f, mean_n)


def test_decode_grace_hopper():
    import matplotlib

    path = os.path.join(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg")
    batch = read_jpeg(path)
    assert batch.subsampling == "4:2:0" and batch.size == (600, 512)
    ref = pillow_pixels(path)
    mean_f, _, _ = errors(decode(batch), ref)
    mean_n, _, _ = errors(decode(batch, upsampling="nearest"), ref)
    assert mean_f < 0.6 and mean_f < 0.6 * mean_n, (mean_f, mean_n)  # measured 0.52 vs 1.02


def test_decode_gray(photo):
    gray = np.ascontiguousarray(np.asarray(Image.fromarray(crop_of(photo, 45, 61)).convert("L")))
    data = pillow_jpeg(gray)
    batch = read_jpeg(data)
    assert batch.color_space == "gray" and batch.num_components == 1 and batch.subsampling == "4:0:0"
    ours = decode(batch)
    assert ours.shape == (1, 1, 45, 61)
    mean, _, max_c = errors(ours, pillow_pixels(data))
    assert mean < 0.6 and max_c <= 2


# --------------------------------------------------------------------------------------------
# 2. Encoder against libjpeg (Pillow)
# --------------------------------------------------------------------------------------------
ENCODE_CASES = [(s, q, (96, 128)) for s in ("4:4:4", "4:2:0") for q in (50, 75)]
ENCODE_CASES += [("4:2:0", 50, (45, 61)), ("4:2:2", 75, (46, 62))]  # partial blocks and MCUs


@pytest.mark.parametrize(
    "subsampling,quality,size", ENCODE_CASES, ids=[f"{s}-q{q}-{w}x{h}" for s, q, (h, w) in ENCODE_CASES]
)
def test_encode_matches_libjpeg(photo, subsampling, quality, size):
    pixels = crop_of(photo, *size)
    theirs = read_jpeg(pillow_jpeg(pixels, quality, subsampling))
    ours = encode(torch.from_numpy(pixels).permute(2, 0, 1)[None], quality=quality, subsampling=subsampling)
    assert ours.subsampling == theirs.subsampling and ours.size == theirs.size
    for i, (a, b) in enumerate(zip(ours.components, theirs.components)):
        assert a.size == b.size and a.sampling == b.sampling
        assert torch.equal(a.qtable, b.qtable), f"component {i}: tables differ"
        diff = (a.coefficients.int() - b.coefficients.int()).abs()
        same = float((diff == 0).double().mean())
        # Measured (96x128 crop): luma 99.6 % (q50) / 99.2 % (q75) identical, chroma 99.6-99.9 %; every
        # difference is ±1; edge blocks of odd sizes agree as well (same edge replication as libjpeg). libjpeg rounds the YCbCr samples and box averages to integers and uses an
        # integer DCT; the float encoder does not, so agreement drops as tables shrink (q90: luma
        # 97.5 %, q95: 94.9 %; rounding the samples as libjpeg does would give 99.0 % / 98.1 %).
        assert same >= (0.99 if i == 0 else 0.985), f"component {i}: {same:.4f} identical"
        assert int(diff.max()) <= 1, f"component {i}: max |diff| {int(diff.max())}"


def test_standard_qtables():
    luma, chroma = standard_qtables(50)
    assert luma.dtype == torch.int32 and luma.shape == (64,)
    assert luma[:8].tolist() == [16, 11, 10, 16, 24, 40, 51, 61]  # Annex K row u = 0
    assert luma.reshape(8, 8)[:, 0].tolist() == [16, 12, 14, 14, 18, 24, 49, 72]  # column v = 0
    assert chroma.reshape(8, 8)[0, :4].tolist() == [17, 18, 24, 47]
    assert all(bool((t == 1).all()) for t in standard_qtables(100))
    assert all(int(t.max()) == 255 for t in standard_qtables(1))  # force_baseline clamp
    q90 = standard_qtables(90)[0]
    assert q90[:4].tolist() == [3, 2, 2, 3]
    for bad in (0, 101, 50.5, True):
        with pytest.raises(ValueError):
            standard_qtables(bad)


def test_qtables_from_dqt_bytes(photo):
    """The natural-order tables read_jpeg returns are unzigzag(DQT payload)."""
    data = pillow_jpeg(crop_of(photo, 16, 16), 80, "4:2:0")
    i = data.find(b"\xff\xdb")
    length = (data[i + 2] << 8) | data[i + 3]
    seg = data[i + 4 : i + 2 + length]
    stored = torch.tensor(list(seg[1:65]), dtype=torch.int32)  # table 0, 8-bit, zigzag order
    assert seg[0] == 0
    assert torch.equal(read_jpeg(data).components[0].qtable[0], unzigzag(stored))


def test_encode_custom_qtables_and_options(photo):
    x = torch.from_numpy(crop_of(photo, 45, 61)).permute(2, 0, 1)[None].to(torch.float64)
    q = torch.arange(1, 65, dtype=torch.int32)
    b = encode(x, qtables=[q, 2 * q], subsampling="4:4:0")
    assert b.subsampling == "4:4:0" and b.components[0].sampling == (2, 1)
    assert [c.size for c in b.components] == [(45, 61), (23, 61), (23, 61)]
    assert torch.equal(b.components[0].qtable[0], q) and torch.equal(b.components[2].qtable[0], 2 * q)
    one = encode(x, qtables=q)
    assert all(torch.equal(c.qtable[0], q) for c in one.components)
    gray = encode(x[:, :1], quality=90)
    assert gray.color_space == "gray" and gray.components[0].coefficients.dtype == torch.int16
    with pytest.raises(ValueError):
        encode(x, subsampling="4:1:1")
    with pytest.raises(ValueError):
        encode(x, qtables=[q.double() + 0.5])
    with pytest.raises(ValueError):
        encode(x[:, :2])


# --------------------------------------------------------------------------------------------
# 3. Round trip
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [(48, 64), (45, 61), (1, 1)], ids=["64x48", "61x45", "1x1"])
def test_round_trip_quality_100(photo, size):
    x = torch.from_numpy(crop_of(photo, *size)).permute(2, 0, 1)[None].to(torch.float64)
    noise = torch.rand((1, 3, *size), generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 255
    x = torch.cat([x, noise])
    y = decode(encode(x, quality=100, subsampling="4:4:4"))
    # Every coefficient is rounded (|e| <= 1/2): measured max error per Y/Cb/Cr plane 1.0-1.2, mean
    # 0.39 in RGB; RGB amplifies the plane errors (B = Y + 1.772 Cb'): measured RGB max 2.2-2.7.
    m, _ = rgb_to_ycbcr_matrix()
    plane_error = torch.einsum("kc,nchw->nkhw", m, y - x).abs()
    assert float(plane_error.max()) < 2.0
    assert float((y - x).abs().max()) < 4.0 and float((y - x).abs().mean()) < 0.5
    g = decode(encode(x[:, :1], quality=100))
    assert float((g - x[:, :1]).abs().max()) < 2.0


# --------------------------------------------------------------------------------------------
# 4. Lossless transforms with jpegtran keep every coefficient
# --------------------------------------------------------------------------------------------
JPEGTRAN_CASES = {
    "progressive": ["-progressive"],
    "restart1": ["-restart", "1"],
    "restart-blocks": ["-restart", "3B"],
    "arithmetic": ["-arithmetic"],
    "arithmetic-progressive": ["-arithmetic", "-progressive"],
    "optimize": ["-optimize"],
    "grayscale": ["-grayscale"],
}


@pytest.mark.parametrize("name", list(JPEGTRAN_CASES), ids=list(JPEGTRAN_CASES))
@pytest.mark.parametrize("subsampling", ["4:2:0", "4:4:4"])
def test_jpegtran_preserves_coefficients(photo, tmp_path, name, subsampling):
    if JPEGTRAN is None:
        pytest.skip("jpegtran (libjpeg-turbo-progs) is not installed")
    src = tmp_path / "src.jpg"
    src.write_bytes(pillow_jpeg(crop_of(photo, 101, 157), 85, subsampling))
    cmd = [JPEGTRAN, "-copy", "none", *JPEGTRAN_CASES[name], str(src)]
    out = subprocess.run(cmd, check=True, capture_output=True).stdout
    a, b = read_jpeg(src), read_jpeg(out)
    if name == "grayscale":  # luma is kept bit-exactly, chroma dropped
        assert b.color_space == "gray" and b.num_components == 1
        assert torch.equal(a.components[0].coefficients, b.components[0].coefficients)
        assert torch.equal(a.components[0].qtable, b.components[0].qtable)
    else:
        assert b.size == a.size and b.subsampling == a.subsampling
        assert same_coefficients(a, b)


# --------------------------------------------------------------------------------------------
# 5. Every JPEG of libjxl-testdata: decoded like Pillow, or refused with one line
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "path",
    LIBJXL_JPEGS or [None],
    ids=[os.path.basename(p) for p in LIBJXL_JPEGS] or ["libjxl-testdata-missing"],
)
def test_libjxl_testdata(path):
    if path is None:
        pytest.skip("libjxl-testdata is not installed (no JPEGs under /usr/share/libjxl-testdata)")
    name = os.path.basename(path)
    try:
        batch = read_jpeg(path)
    except JpegError as exc:
        assert "\n" not in str(exc) and str(exc)
        assert name in LIBJXL_REFUSED, f"unexpected refusal: {exc}"
        return
    assert name not in LIBJXL_REFUSED
    # jpegfx's binding and jpeglib (a separate libjpeg-turbo build) agree bit for bit.
    assert same_coefficients(batch, jpeglib_batch(path))
    try:
        ref = pillow_pixels(path)
    except Exception:  # pragma: no cover - Pillow cannot decode it: nothing to compare
        return
    small = crop_batch(batch, 512)  # decode speed: top-left whole MCUs, edges excluded below
    ours = decode(small)
    h, w = small.size
    mh = 16 if h < batch.size[0] else 0
    mw = 16 if w < batch.size[1] else 0
    ours, ref = ours[..., : h - mh, : w - mw], ref[..., : h - mh, : w - mw]
    mean, _, _ = errors(ours, ref)
    assert mean < 1.5, mean  # measured 0.25 (gray) … 0.56


# --------------------------------------------------------------------------------------------
# 6. Bad inputs: one-line JpegError, no crash
# --------------------------------------------------------------------------------------------
def _scan_middle(data: bytes) -> int:
    i = data.find(b"\xff\xda")
    start = i + 2 + ((data[i + 2] << 8) | data[i + 3])
    return (start + len(data)) // 2


def _patched_sof(data: bytes, offset: int, value: int) -> bytes:
    i = data.find(b"\xff\xc0")
    assert i > 0
    d = bytearray(data)
    d[i + offset] = value
    return bytes(d)


def _bad_input(kind: str, photo: np.ndarray, tmp_path) -> tuple[bytes, dict]:
    good = pillow_jpeg(crop_of(photo, 120, 160), 90, "4:2:0")
    if kind == "empty":
        return b"", {}
    if kind == "random":
        return np.random.default_rng(0).bytes(4096), {}
    if kind == "random-after-soi":
        return b"\xff\xd8" + np.random.default_rng(1).bytes(4096), {}
    if kind == "png":
        buf = io.BytesIO()
        Image.fromarray(crop_of(photo, 16, 16)).save(buf, format="PNG")
        return buf.getvalue(), {}
    if kind == "truncated-50%":
        return good[: len(good) // 2], {}
    if kind == "truncated-50%+eoi":  # libjpeg itself sees the premature end
        return good[: len(good) // 2] + b"\xff\xd9", {}
    if kind == "corrupt-scan":
        d = bytearray(good)
        m = _scan_middle(good)
        d[m : m + 16] = bytes(x ^ 0xFF for x in d[m : m + 16])
        return bytes(d), {}
    if kind == "cmyk":
        buf = io.BytesIO()
        Image.fromarray(crop_of(photo, 32, 32)).convert("CMYK").save(buf, format="JPEG")
        return buf.getvalue(), {}
    if kind == "rgb-colourspace":
        if CJPEG is None:
            pytest.skip("cjpeg (libjpeg-turbo-progs) is not installed")
        return cjpeg_jpeg(crop_of(photo, 32, 32), tmp_path, "-rgb"), {}
    if kind == "12-bit":  # header-patched: refused from the SOF header before any decoding
        return _patched_sof(good, 4, 12), {}
    if kind == "lossless-sof3":  # header-patched (cjpeg -lossless needs libjpeg-turbo 3)
        return _patched_sof(good, 1, 0xC3), {}
    if kind == "hierarchical-sof5":
        return _patched_sof(good, 1, 0xC5), {}
    if kind == "zero-height":
        d = bytearray(good)
        i = good.find(b"\xff\xc0")
        d[i + 5 : i + 7] = b"\x00\x00"
        return bytes(d), {}
    if kind == "above-max-pixels":
        return good, {"max_pixels": 160 * 120 - 1}
    raise AssertionError(kind)


BAD_INPUTS = {
    "empty": "empty input",
    "random": "not a JPEG",
    "random-after-soi": "corrupt|truncated",
    "png": "not a JPEG",
    "truncated-50%": "truncated",
    "truncated-50%+eoi": "corrupt|Premature",
    "corrupt-scan": "corrupt",
    "cmyk": "CMYK",
    "rgb-colourspace": "RGB colour-space",
    "12-bit": "12-bit",
    "lossless-sof3": "lossless",
    "hierarchical-sof5": "hierarchical",
    "zero-height": "zero-size",
    "above-max-pixels": "max_pixels",
}


@pytest.mark.parametrize("kind", list(BAD_INPUTS), ids=list(BAD_INPUTS))
def test_bad_input_raises_one_line_jpeg_error(photo, tmp_path, kind):
    import re

    data, kwargs = _bad_input(kind, photo, tmp_path)
    with pytest.raises(JpegError) as info:
        read_jpeg(data, **kwargs)
    message = str(info.value)
    assert message and "\n" not in message and len(message) < 300
    assert re.search(BAD_INPUTS[kind], message), message
    assert isinstance(info.value, ValueError)


def test_path_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"GIF89a")
    with pytest.raises(JpegError, match="bad.jpg: not a JPEG"):
        read_jpeg(bad)
    with pytest.raises(JpegError, match="cannot read"):
        read_jpeg(tmp_path / "missing.jpg")
    with pytest.raises(TypeError):
        read_jpeg(12345)


FUZZ_SCRIPT = textwrap.dedent(
    """
    import io, sys, numpy as np
    from PIL import Image
    from jpegfx.jpeg import read_jpeg, JpegError
    rng = np.random.default_rng(1234)
    img = (np.indices((64, 80)).sum(0)[..., None] * [3, 5, 7] % 256).astype(np.uint8)
    bases = []
    for ss, prog in [(0, False), (2, True), (2, False)]:
        b = io.BytesIO(); Image.fromarray(img).save(b, format="JPEG", quality=85, subsampling=ss, progressive=prog)
        bases.append(b.getvalue())
    refused = 0
    for it in range(int(sys.argv[1])):
        d = bytearray(bases[it % len(bases)])
        kind = it % 4
        if kind == 0:
            for _ in range(rng.integers(1, 10)): d[rng.integers(2, len(d))] = rng.integers(256)
        elif kind == 1:
            d = d[: rng.integers(2, len(d))] + b"\\xff\\xd9"
        elif kind == 2:
            for _ in range(rng.integers(1, 4)): d[rng.integers(2, min(640, len(d)))] = rng.integers(256)
        else:
            p = rng.integers(len(d) // 2, len(d) - 2); d[p:p + 32] = rng.bytes(32)[: len(d[p:p + 32])]
        try:
            read_jpeg(bytes(d))
        except JpegError as e:
            assert "\\n" not in str(e)
            refused += 1
    print("refused", refused)
    """
)


def test_fuzzed_inputs_never_crash():
    """Mutated files (bytes flipped, cut, garbage in the scan) in a child process: a libjpeg crash
    would kill pytest otherwise. Development fuzzing ran ~30 000 such cases without a crash."""
    proc = subprocess.run(
        [sys.executable, "-c", FUZZ_SCRIPT, "400"], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, f"rc={proc.returncode}\n{proc.stderr[-2000:]}"
    assert int(proc.stdout.split()[-1]) > 100


# --------------------------------------------------------------------------------------------
# 7. stack
# --------------------------------------------------------------------------------------------
def test_stack(photo):
    a = read_jpeg(pillow_jpeg(crop_of(photo, 48, 64), 60, "4:2:0"))
    b = read_jpeg(pillow_jpeg(crop_of(photo, 48, 64, top=200), 95, "4:2:0"))
    s = stack([a, b, a])
    assert s.batch_size == 3 and s.size == (48, 64) and s.subsampling == "4:2:0"
    for i, src in enumerate((a, b, a)):
        for cs, cx in zip(s.components, src.components):
            assert torch.equal(cs.coefficients[i], cx.coefficients[0])
            assert torch.equal(cs.qtable[i], cx.qtable[0])  # per-image tables kept
    assert not torch.equal(s.components[0].qtable[0], s.components[0].qtable[1])
    torch.testing.assert_close(decode(s), torch.cat([decode(a), decode(b), decode(a)]), rtol=0, atol=1e-9)
    assert stack([a]) is a


def test_stack_mismatches(photo):
    base = read_jpeg(pillow_jpeg(crop_of(photo, 48, 64), 75, "4:2:0"))
    other_size = read_jpeg(pillow_jpeg(crop_of(photo, 48, 56), 75, "4:2:0"))
    other_sampling = read_jpeg(pillow_jpeg(crop_of(photo, 48, 64), 75, "4:4:4"))
    gray = read_jpeg(pillow_jpeg(np.ascontiguousarray(crop_of(photo, 48, 64)[..., 0]), 75))
    with pytest.raises(JpegError, match=r"batches\[2\]: size \(h, w\) \(48, 56\) does not match \(48, 64\)"):
        stack([base, base, other_size])
    with pytest.raises(JpegError, match=r"batches\[1\]: subsampling 4:4:4 does not match 4:2:0"):
        stack([base, other_sampling])
    with pytest.raises(JpegError, match="colour space gray"):
        stack([base, gray])
    with pytest.raises(JpegError):
        stack([])


def test_read_jpegs_is_the_stack_of_read_jpeg(photo, tmp_path):
    files = [pillow_jpeg(crop_of(photo, 45, 61, top=t), q, "4:2:0") for t, q in ((100, 60), (150, 95), (200, 75))]
    path = tmp_path / "p.jpg"
    path.write_bytes(files[1])
    sources = [files[0], str(path), io.BytesIO(files[2])]  # bytes, a path and a file object
    batch = read_jpegs(sources)
    ref = stack([read_jpeg(f) for f in files])
    assert batch.size == ref.size == (45, 61) and batch.color_space == "ycbcr" and batch.batch_size == 3
    assert same_coefficients(batch, ref)
    assert [c.sampling for c in batch.components] == [c.sampling for c in ref.components]
    assert [c.size for c in batch.components] == [c.size for c in ref.components]
    assert not torch.equal(batch.components[0].qtable[0], batch.components[0].qtable[1])  # per-image tables
    gray = read_jpegs([pillow_jpeg(np.ascontiguousarray(crop_of(photo, 16, 24)[..., 0]), 80)])
    assert gray.color_space == "gray" and gray.batch_size == 1


def test_read_jpegs_names_the_bad_source(photo):
    good = pillow_jpeg(crop_of(photo, 48, 64), 75, "4:2:0")
    with pytest.raises(JpegError, match=r"^sources\[1\]: .*"):
        read_jpegs([good, good[: len(good) // 2], good])
    other = pillow_jpeg(crop_of(photo, 48, 64), 75, "4:4:4")
    with pytest.raises(JpegError, match=r"^sources\[2\]: 64x48 \(w x h\) ycbcr 4:4:4 does not match "
                                        r"sources\[0\]'s 64x48 \(w x h\) ycbcr 4:2:0"):
        read_jpegs([good, good, other])
    same_grid = pillow_jpeg(crop_of(photo, 47, 64), 75, "4:2:0")  # one row less: the same block grids
    with pytest.raises(JpegError, match=r"^sources\[1\]: 64x47 \(w x h\) ycbcr 4:2:0 does not match"):
        read_jpegs([good, same_grid])
    with pytest.raises(JpegError, match="at least one"):
        read_jpegs([])


# --------------------------------------------------------------------------------------------
# 8. Sources
# --------------------------------------------------------------------------------------------
def test_sources_path_bytes_file_object(photo, tmp_path):
    data = pillow_jpeg(crop_of(photo, 45, 61), 75, "4:2:2")
    path = tmp_path / "x.jpg"
    path.write_bytes(data)
    ref = read_jpeg(str(path))
    with open(path, "rb") as f:
        from_file = read_jpeg(f)
    for batch in (read_jpeg(path), read_jpeg(data), read_jpeg(bytearray(data)), read_jpeg(io.BytesIO(data)), from_file):
        assert batch.size == ref.size and batch.subsampling == ref.subsampling == "4:2:2"
        assert same_coefficients(batch, ref)
    assert [c.size for c in ref.components] == [(45, 61), (45, 31), (45, 31)]
    assert [c.blocks for c in ref.components] == [(6, 8), (6, 4), (6, 4)]
    assert ref.components[0].coefficients.dtype == torch.int16
    assert ref.components[0].qtable.dtype == torch.int32 and ref.components[0].qtable.shape == (1, 64)


# --------------------------------------------------------------------------------------------
# Upsampling and colour
# --------------------------------------------------------------------------------------------
def test_upsample_chroma_fancy_formula():
    x = torch.tensor([[[[10.0, 20.0, 40.0]]]], dtype=torch.float64)  # (1, 1, 1, 3)
    y = upsample_chroma(x, (1, 2), (1, 6))
    assert y.flatten().tolist() == [10.0, 12.5, 17.5, 25.0, 35.0, 40.0]
    v = upsample_chroma(x.transpose(-1, -2), (2, 1), (5, 1))  # h1v2, cropped to 5 rows
    assert v.flatten().tolist() == [10.0, 12.5, 17.5, 25.0, 35.0]
    n = upsample_chroma(x, (1, 2), (1, 5), method="nearest")
    assert n.flatten().tolist() == [10.0, 10.0, 20.0, 20.0, 40.0]
    # h2v2 is separable: (3·near + far)/4 vertically, then horizontally (jdsample.c: (3a+b)·3+(3c+d))/16).
    p = torch.arange(12, dtype=torch.float64).reshape(1, 1, 3, 4) ** 2
    both = upsample_chroma(p, (2, 2), (6, 8))
    assert torch.allclose(both, upsample_chroma(upsample_chroma(p, (2, 1), (6, 4)), (1, 2), (6, 8)))
    # 3·(3·p[1,1] + p[0,1]) + (3·p[1,0] + p[0,0]) over 16 = output row 2, column 2 (top-left neighbours)
    expect = (3 * (3 * p[0, 0, 1, 1] + p[0, 0, 0, 1]) + (3 * p[0, 0, 1, 0] + p[0, 0, 0, 0])) / 16
    assert float(both[0, 0, 2, 2]) == pytest.approx(float(expect))
    # libjpeg: h2 with a component of width <= 2, and ratios other than 2 replicate pixels
    narrow = torch.tensor([[[[1.0, 5.0]]]])
    assert upsample_chroma(narrow, (1, 2), (1, 4)).flatten().tolist() == [1.0, 1.0, 5.0, 5.0]
    assert upsample_chroma(x, (1, 4), (1, 12)).flatten().tolist() == [10.0] * 4 + [20.0] * 4 + [40.0] * 4
    with pytest.raises(ValueError):
        upsample_chroma(x, (1, 2), (1, 7))


def _jdsample_h2v2(p: torch.Tensor) -> torch.Tensor:
    """libjpeg's h2v2 fancy upsampling written out pixel by pixel: each output pixel is
    (9·nearest + 3·(the two next nearest) + 1·(diagonal)) / 16 of its 2×2 input neighbourhood, the
    neighbours outside the plane replaced by its edge."""
    h, w = p.shape
    out = torch.empty(2 * h, 2 * w, dtype=p.dtype)
    for i in range(2 * h):
        r, dr = i // 2, (-1 if i % 2 == 0 else 1)
        for j in range(2 * w):
            c, dc = j // 2, (-1 if j % 2 == 0 else 1)
            r2, c2 = min(max(r + dr, 0), h - 1), min(max(c + dc, 0), w - 1)
            out[i, j] = (9 * p[r, c] + 3 * p[r2, c] + 3 * p[r, c2] + p[r2, c2]) / 16
    return out


@pytest.mark.parametrize("shape", [(3, 5), (4, 4), (1, 6), (7, 3)])
def test_upsample_chroma_h2v2_is_the_jdsample_filter_at_every_pixel(shape):
    p = torch.rand(*shape, generator=torch.Generator().manual_seed(sum(shape)), dtype=torch.float64) * 255
    got = upsample_chroma(p[None, None], (2, 2), (2 * shape[0], 2 * shape[1]))[0, 0]
    assert torch.allclose(got, _jdsample_h2v2(p), rtol=0, atol=1e-12)
    odd = upsample_chroma(p[None, None], (2, 2), (2 * shape[0] - 1, 2 * shape[1] - 1))[0, 0]  # cropped
    assert torch.equal(odd, got[:-1, :-1])


def test_upsample_chroma_is_linear_and_differentiable():
    x = torch.rand(2, 1, 5, 7, dtype=torch.float64, requires_grad=True)
    y = upsample_chroma(x, (2, 2), (10, 13))
    assert y.shape == (2, 1, 10, 13)
    small = torch.rand(1, 1, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: upsample_chroma(t, (2, 2), (5, 7)), (small,), fast_mode=True)
    # Linear: the adjoint identity <A x, g> = <x, Aᵀ g> with Aᵀ g from autograd.
    g = torch.rand_like(y)
    (adjoint,) = torch.autograd.grad(y, x, g)
    assert torch.allclose((y * g).sum(), (x * adjoint).sum())
    # Each output is a convex combination: constants stay constant.
    c = upsample_chroma(torch.full((1, 1, 4, 4), 3.0), (2, 2), (8, 8))
    assert torch.allclose(c, torch.full_like(c, 3.0))


def test_colour_matrices():
    m, b = ycbcr_to_rgb_matrix()
    f, g = rgb_to_ycbcr_matrix()
    assert m.dtype == torch.float64 and m.shape == (3, 3) and b.shape == (3,)
    rgb = torch.tensor([[12.0, 200.0, 77.0], [0.0, 0.0, 0.0], [255.0, 255.0, 255.0]], dtype=torch.float64)
    back = (m @ (f @ rgb.T + g[:, None]) + b[:, None]).T
    assert torch.allclose(back, rgb, atol=2e-3)  # JFIF's 6-digit constants are near inverses
    gray = m @ torch.tensor([100.0, 128.0, 128.0], dtype=torch.float64) + b
    assert torch.allclose(gray, torch.full((3,), 100.0, dtype=torch.float64))


def test_subsampling_names():
    def batch(samplings):
        comps = tuple(
            Component(torch.zeros(1, 1, 1, 8, 8, dtype=torch.int16), torch.ones(1, 64, dtype=torch.int32), (8, 8), s)
            for s in samplings
        )
        return JpegBatch(comps, (8, 8), "ycbcr")

    assert batch([(1, 4), (1, 1), (1, 1)]).subsampling == "4:1:1"
    assert batch([(2, 2), (2, 2), (2, 2)]).subsampling == "4:4:4"
    assert batch([(2, 2), (1, 2), (2, 1)]).subsampling == "h2v2/h2v1/h1v2"
    with pytest.raises(ValueError):
        Component(torch.zeros(1, 2, 1, 8, 8, dtype=torch.int16), torch.ones(1, 64, dtype=torch.int32), (8, 8), (1, 1))
