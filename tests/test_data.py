"""jpegfx.data: datasets of JPEG files, coefficient-domain augmentations and the collate.

References nobody here wrote: ``jpegtran`` (libjpeg-turbo-progs) for the lossless crop and flip of
the augmentations, Pillow's decoder for the flipped pixels, torch's DataLoader with worker processes.
"""
from __future__ import annotations

import io
import shutil
import subprocess

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import RTOL, assert_close_rel, package_file
from jpegfx import jpeg as jpeg_io
from jpegfx import preprocess as pp
from jpegfx.data import Collate, JpegFolder, RandomCrop, RandomFlip, Unreadable
from jpegfx.errors import JpegError, UsageError
from jpegfx.preprocess import Policy
from jpegfx.reader import read_coefficients

JPEGTRAN = shutil.which("jpegtran")
SUBSAMPLING = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}


def _jpegtran(src, out, *options) -> str:
    if JPEGTRAN is None:
        pytest.skip("jpegtran (Debian libjpeg-turbo-progs) is not installed")
    subprocess.run([JPEGTRAN, "-copy", "none", *options, "-outfile", str(out), str(src)], check=True,
                   capture_output=True)
    return str(out)


@pytest.fixture(scope="module")
def china() -> np.ndarray:
    with Image.open(package_file("sklearn", "datasets", "images", "china.jpg")) as image:
        return np.asarray(image.convert("RGB"))


def _jpeg(pixels: np.ndarray, subsampling: str | None, quality: int = 85) -> bytes:
    buf = io.BytesIO()
    image = Image.fromarray(np.ascontiguousarray(pixels))
    if subsampling is None:
        image.convert("L").save(buf, format="JPEG", quality=quality)
    else:
        image.save(buf, format="JPEG", quality=quality, subsampling=SUBSAMPLING[subsampling])
    return buf.getvalue()


# (class, subsampling or None for gray, (h, w), (top, left)): sizes not multiples of 8 or 16
PHOTOS = [
    ("cat", "4:2:0", (101, 139), (0, 0)),
    ("cat", "4:4:4", (77, 90), (150, 300)),
    ("dog", "4:2:2", (120, 83), (200, 100)),
    ("dog", None, (96, 131), (300, 400)),
    ("dog", "4:2:0", (88, 88), (40, 520)),
    ("eel", "4:2:0", (130, 150), (250, 250)),
]


@pytest.fixture
def folder(tmp_path, china):
    root = tmp_path / "train"
    for i, (label, sub, (h, w), (top, left)) in enumerate(PHOTOS):
        (root / label).mkdir(parents=True, exist_ok=True)
        (root / label / f"{i}.JPG").write_bytes(_jpeg(china[top:top + h, left:left + w], sub))
    (root / "dog" / "notes.txt").write_text("not an image")
    (root / "dog" / ".hidden.jpg").write_bytes(b"ignored")
    return root


# --------------------------------------------------------------------------------------------
# The dataset
# --------------------------------------------------------------------------------------------
def test_folder_layout(folder):
    data = JpegFolder(folder)
    assert data.classes == ["cat", "dog", "eel"]
    assert len(data) == len(PHOTOS)
    assert [label for _, label in data.samples] == [0, 0, 1, 1, 1, 2]
    coefs, label = data[2]
    assert label == 1 and coefs.header.size == (120, 83) and coefs.header.subsampling == "4:2:2"
    plain = read_coefficients(data.samples[2][0])
    for a, b in zip(coefs.planes, plain.planes):
        assert np.array_equal(a, b)


def test_sample_list(folder):
    paths = [p for p, _ in JpegFolder(folder).samples]
    data = JpegFolder(samples=[(paths[0], 3), (paths[1], 0)], classes=["a", "b", "c", "d"])
    assert [data[i][1] for i in range(2)] == [3, 0]
    assert JpegFolder(samples=[(paths[0], 2)]).classes == ["0", "1", "2"]
    with pytest.raises(UsageError, match="label 3 but only 2 classes"):
        JpegFolder(samples=[(paths[0], 3)], classes=["a", "b"])
    with pytest.raises(UsageError, match="not both"):
        JpegFolder(folder, samples=[(paths[0], 0)])


def test_folder_errors(tmp_path):
    with pytest.raises(UsageError, match="not a folder"):
        JpegFolder(tmp_path / "missing")
    with pytest.raises(UsageError, match="no class folders"):
        JpegFolder(tmp_path)
    (tmp_path / "a").mkdir()
    with pytest.raises(UsageError, match="no JPEG files"):
        JpegFolder(tmp_path)


def test_unreadable_file_raises_or_is_skipped(folder, china):
    good = (folder / "cat" / "0.JPG").read_bytes()
    (folder / "eel" / "broken.jpg").write_bytes(good[:len(good) // 2])
    data = JpegFolder(folder)
    index = [p for p, _ in data.samples].index(str(folder / "eel" / "broken.jpg"))
    with pytest.raises(JpegError, match="broken.jpg"):
        data[index]
    skipping = JpegFolder(folder, on_error="skip")
    item, label = skipping[index]
    assert isinstance(item, Unreadable) and "broken.jpg" in item.path and label == 2
    policy = Policy(resize=48, crop=48, resample="bilinear")
    x, labels = Collate(policy, (48, 48))([skipping[0], skipping[index], skipping[1]])
    assert x.shape == (2, 3 * 64, 6, 6) and labels.tolist() == [0, 0]
    with pytest.raises(JpegError, match="every file of the batch was unreadable"):
        Collate(policy, (48, 48))([skipping[index]])


# --------------------------------------------------------------------------------------------
# Augmentations against jpegtran and against pixels
# --------------------------------------------------------------------------------------------
def _same(a, b) -> None:
    assert a.header.size == b.header.size and a.header.samplings == b.header.samplings
    for x, y in zip(a.planes, b.planes):
        assert x.shape == y.shape and np.array_equal(x, y)


@pytest.mark.parametrize("index", range(len(PHOTOS)))
def test_random_crop_is_jpegtran_crop(folder, tmp_path, index):
    data = JpegFolder(folder)
    path = data.samples[index][0]
    coefs = read_coefficients(path)
    crop = RandomCrop(scale=(0.2, 0.6))
    mcu = (8 * max(v for v, _ in coefs.header.samplings), 8 * max(h for _, h in coefs.header.samplings))
    for seed in range(3):
        top, left, h, w = crop.window(coefs.header.size, mcu, np.random.default_rng(seed))
        assert top % mcu[0] == 0 and left % mcu[1] == 0
        assert top + h <= coefs.header.size[0] and left + w <= coefs.header.size[1]
        assert 0.2 * 0.8 <= h * w / (coefs.header.size[0] * coefs.header.size[1]) <= 0.6 * 1.2
        ours = crop(coefs, np.random.default_rng(seed))
        theirs = read_coefficients(_jpegtran(path, tmp_path / f"crop{seed}.jpg", "-crop", f"{w}x{h}+{left}+{top}"))
        _same(ours, theirs)
        if coefs.header.subsampling in ("4:4:4", "4:0:0"):  # no chroma filter crossing the new edges
            expected = pp.decode(coefs)[:, top:top + h, left:left + w]
            assert_close_rel(torch.from_numpy(pp.decode(ours)), torch.from_numpy(expected.copy()),
                             RTOL[torch.float64])


@pytest.mark.parametrize("index", range(len(PHOTOS)))
def test_random_flip_is_jpegtran_flip_trim(folder, tmp_path, index):
    data = JpegFolder(folder)
    path = data.samples[index][0]
    coefs = read_coefficients(path)
    flipped = RandomFlip(p=1.0)(coefs, np.random.default_rng(0))
    theirs = read_coefficients(_jpegtran(path, tmp_path / "flip.jpg", "-flip", "horizontal", "-trim"))
    _same(flipped, theirs)
    h, w = flipped.header.size
    # pixels: the trimmed image mirrored, in the float decode and (within a level) in Pillow's decode
    trimmed = pp.crop_blocks(coefs, 0, 0, h, w)
    assert_close_rel(torch.from_numpy(pp.decode(flipped)), torch.from_numpy(pp.decode(trimmed)[:, :, ::-1].copy()),
                     RTOL[torch.float64])
    with Image.open(path) as image:
        pillow = np.asarray(image.crop((0, 0, w, h)), dtype=np.float64)
    pillow = pillow[None] if pillow.ndim == 2 else pillow.transpose(2, 0, 1)
    # chroma at the trimmed edge is filtered from other neighbours than in the full image
    diff = np.abs(pp.decode(flipped, clamp=True) - pillow[:, :, ::-1])[:, :, 2:-2]
    assert diff.mean() < 0.25 and diff.max() <= 4.0
    assert RandomFlip(p=0.0)(coefs, np.random.default_rng(0)) is coefs


def test_augment_draws_depend_on_seed_epoch_and_index(folder):
    data = JpegFolder(folder, augment=[RandomCrop(), RandomFlip()], seed=5)
    first = [data[i][0].header.size for i in range(len(data))]
    assert first == [data[i][0].header.size for i in range(len(data))]  # same epoch: same draws
    data.set_epoch(1)
    assert first != [data[i][0].header.size for i in range(len(data))]
    data.set_epoch(0)
    assert first == [data[i][0].header.size for i in range(len(data))]


def test_option_errors():
    with pytest.raises(UsageError, match="scale"):
        RandomCrop(scale=(0.5, 1.5))
    with pytest.raises(UsageError, match="ratio"):
        RandomCrop(ratio=(2.0, 1.0))
    with pytest.raises(UsageError, match="p must be"):
        RandomFlip(p=2)
    with pytest.raises(UsageError, match="input_size"):
        Collate(Policy(resize=32, crop=32))


# --------------------------------------------------------------------------------------------
# Collate and DataLoader workers
# --------------------------------------------------------------------------------------------
def test_collate_with_policy_mixes_sizes_and_layouts(folder):
    data = JpegFolder(folder)
    policy = Policy(resize=64, crop=56, resample="bilinear")
    x, labels = Collate(policy, (56, 56), channels=3, normalize=((0.5,), (0.25,)))([data[i] for i in range(len(data))])
    assert x.dtype == torch.float32 and x.shape == (len(PHOTOS), 3 * 64, 7, 7)
    assert labels.tolist() == [0, 0, 1, 1, 1, 2]
    for i in (0, 3):  # each row is the policy's model input of that file
        expected = pp.model_input(data[i][0], policy, (56, 56), 3, ((0.5,), (0.25,)))
        assert np.array_equal(x[i].numpy(), expected)


def test_collate_without_policy_gives_a_jpeg_batch(tmp_path, china):
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"{i}.jpg")
        paths[-1].write_bytes(_jpeg(china[40 * i:40 * i + 32, :32], None, quality=70 + i))
    data = JpegFolder(samples=[(p, i) for i, p in enumerate(paths)])
    batch, labels = Collate()([data[i] for i in range(3)])
    assert isinstance(batch, jpeg_io.JpegBatch) and batch.batch_size == 3 and batch.size == (32, 32)
    assert labels.tolist() == [0, 1, 2]
    for i in range(3):  # coefficients and each file's own table
        one = jpeg_io.read_jpeg(str(paths[i]))
        assert torch.equal(batch.components[0].coefficients[i], one.components[0].coefficients[0])
        assert torch.equal(batch.components[0].qtable[i], one.components[0].qtable[0])
    other = tmp_path / "other.jpg"
    other.write_bytes(_jpeg(china[:40, :32], None))
    with pytest.raises(JpegError, match="mixes image sizes .*32x32 4:0:0, 40x32 4:0:0.*policy"):
        Collate()([data[0], (read_coefficients(str(other)), 0)])


def test_dataloader_workers_give_the_same_batches(folder):
    data = JpegFolder(folder, augment=[RandomCrop(scale=(0.3, 1.0)), RandomFlip()], seed=11)
    collate = Collate(Policy(resize=40, crop=32, resample="bilinear"), (32, 32))

    def batches(workers: int, epoch: int) -> list:
        data.set_epoch(epoch)
        loader = torch.utils.data.DataLoader(data, batch_size=4, shuffle=True, num_workers=workers,
                                             collate_fn=collate, generator=torch.Generator().manual_seed(epoch))
        return list(loader)

    for epoch in (0, 1):
        serial, parallel = batches(0, epoch), batches(2, epoch)
        assert len(serial) == len(parallel) == 2
        for (xa, ya), (xb, yb) in zip(serial, parallel):
            assert torch.equal(ya, yb) and torch.equal(xa, xb)
    assert not torch.equal(batches(0, 0)[0][0], batches(0, 1)[0][0])
