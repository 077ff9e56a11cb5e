"""jpegfx.datasets: IDX parsing, Fashion-MNIST loading, and the shipped Fashion-MNIST model and samples."""
from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch
from PIL import Image

import jpegfx
from jpegfx import datasets
from jpegfx import jpeg as jpeg_io
from jpegfx.datasets import (FASHION_MNIST_CLASSES, class_slug, default_meta, default_model, load_fashion_mnist,
                             load_idx, pad_to_32, sample_jpegs, sample_label)


def _idx_bytes(array: np.ndarray, code: int) -> bytes:
    header = struct.pack(">BBBB", 0, 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


# ---------------------------------------------------------------------------------------------
# IDX
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "gzip"])
def test_load_idx_round_trip(tmp_path, compressed):
    images = np.random.default_rng(0).integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    data = _idx_bytes(images, 0x08)
    path = tmp_path / ("x-idx3-ubyte.gz" if compressed else "x-idx3-ubyte")
    path.write_bytes(gzip.compress(data) if compressed else data)
    out = load_idx(path)
    assert out.dtype == np.uint8 and out.shape == (5, 28, 28)
    np.testing.assert_array_equal(out, images)


def test_load_idx_multibyte_types_are_native_endian(tmp_path):
    values = np.arange(-6, 6, dtype=np.int32).reshape(3, 4) * 1000
    path = tmp_path / "ints.idx"
    path.write_bytes(_idx_bytes(values, 0x0C))
    out = load_idx(path)
    assert out.dtype == np.dtype(np.int32) and out.dtype.isnative
    np.testing.assert_array_equal(out, values)
    floats = np.linspace(-1, 1, 6).astype(np.float32)
    path.write_bytes(_idx_bytes(floats, 0x0D))
    np.testing.assert_array_equal(load_idx(path), floats)


@pytest.mark.parametrize("mutate, message", [
    (lambda d: b"\x01\x02" + d[2:], "magic number"),
    (lambda d: d[:2] + b"\x07" + d[3:], "unknown IDX data type"),
    (lambda d: d[:3] + b"\x00" + d[4:], "0 dimensions"),
    (lambda d: d[:6], "truncated IDX header"),
    (lambda d: d[:-1], "data bytes"),
    (lambda d: d + b"\x00", "data bytes"),
    (lambda d: d[:3] + b"\x02" + d[4:], "data bytes"),  # declares one dimension fewer
    (lambda d: b"", "not an IDX file"),
])
def test_load_idx_rejects_bad_files(tmp_path, mutate, message):
    good = _idx_bytes(np.zeros((2, 3, 4), dtype=np.uint8), 0x08)
    path = tmp_path / "bad.idx"
    path.write_bytes(mutate(good))
    with pytest.raises(ValueError, match=message) as info:
        load_idx(path)
    assert str(path) in str(info.value)


def test_load_idx_rejects_corrupt_gzip(tmp_path):
    blob = bytearray(gzip.compress(_idx_bytes(np.zeros((2, 3), dtype=np.uint8), 0x08)))
    path = tmp_path / "bad.gz"
    path.write_bytes(bytes(blob[:12]))  # gzip magic, truncated stream
    with pytest.raises(ValueError, match="gzip"):
        load_idx(path)


def test_pad_to_32():
    images = np.full((3, 28, 28), 7, dtype=np.uint8)
    out = pad_to_32(images)
    assert out.shape == (3, 32, 32) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[:, 2:30, 2:30], images)
    assert out.sum() == images.sum()
    with pytest.raises(ValueError, match="28, 28"):
        pad_to_32(np.zeros((3, 32, 32), dtype=np.uint8))


def test_class_names_and_slugs():
    assert len(FASHION_MNIST_CLASSES) == 10
    assert class_slug("T-shirt/top") == "t-shirt-top" and class_slug("Ankle boot") == "ankle-boot"
    assert sample_label("0001_trouser.jpg") == 1 and sample_label("0000_ankle-boot.jpg") == 9
    with pytest.raises(ValueError):
        sample_label("0001_kitten.jpg")


# ---------------------------------------------------------------------------------------------
# Fashion-MNIST (the Debian package dataset-fashion-mnist)
# ---------------------------------------------------------------------------------------------
def test_missing_dataset_names_the_debian_package(tmp_path, monkeypatch):
    monkeypatch.setenv(datasets.FASHION_MNIST_ENV, str(tmp_path))
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        load_fashion_mnist(split="test")
    with pytest.raises(ValueError, match="split"):
        load_fashion_mnist(tmp_path, split="validation")


def test_root_argument_and_environment_override(tmp_path, monkeypatch):
    images = np.random.default_rng(1).integers(0, 256, size=(10000, 28, 28), dtype=np.uint8)
    labels = (np.arange(10000) % 10).astype(np.uint8)
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(_idx_bytes(images, 0x08))
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(labels, 0x08)))
    monkeypatch.setenv(datasets.FASHION_MNIST_ENV, str(tmp_path))
    x, y = load_fashion_mnist(split="test")
    assert y.dtype == np.int64
    np.testing.assert_array_equal(x, images)
    np.testing.assert_array_equal(y, labels)
    monkeypatch.setenv(datasets.FASHION_MNIST_ENV, str(tmp_path / "nowhere"))
    x, _ = load_fashion_mnist(tmp_path, split="test")  # the argument wins over the environment
    assert x.shape == (10000, 28, 28)


def _installed_root():
    root = datasets.fashion_mnist_root()
    if not (root / "t10k-labels-idx1-ubyte.gz").is_file() and not (root / "t10k-labels-idx1-ubyte").is_file():
        pytest.skip(f"Fashion-MNIST not installed at {root} (apt-get install {datasets.FASHION_MNIST_PACKAGE})")
    return root


@pytest.mark.parametrize("split, count", [("train", 60000), ("test", 10000)])
def test_load_fashion_mnist(split, count):
    _installed_root()
    images, labels = load_fashion_mnist(split=split)
    assert images.dtype == np.uint8 and images.shape == (count, 28, 28)
    assert labels.dtype == np.int64 and labels.shape == (count,)
    np.testing.assert_array_equal(np.bincount(labels, minlength=10), np.full(10, count // 10))


# ---------------------------------------------------------------------------------------------
# The shipped model and samples (jpegfx/data)
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model():
    return default_model()


@pytest.fixture(scope="module")
def samples():
    paths = sample_jpegs()
    assert len(paths) == 8
    return paths


def test_shipped_files_are_small(samples):
    checkpoint = datasets._data_file(datasets.CHECKPOINT_NAME)
    with checkpoint.open("rb") as fh:
        assert len(fh.read()) < 1_000_000
    for path in samples:
        assert path.stat().st_size < 4096, path


def test_checkpoint_is_a_plain_float32_state_dict():
    with datasets._data_file(datasets.CHECKPOINT_NAME).open("rb") as fh:
        state = torch.load(fh, map_location="cpu", weights_only=True)
    assert isinstance(state, dict)
    for name, tensor in state.items():
        assert isinstance(tensor, torch.Tensor), name
        assert tensor.dtype == (torch.int64 if name.endswith("num_batches_tracked") else torch.float32), name


def test_meta_describes_the_model(model):
    meta = default_meta()
    assert meta["classes"] == list(FASHION_MNIST_CLASSES)
    assert meta["input_size"] == [32, 32] and meta["normalize"] is None
    assert meta["accuracy_spatial"] >= 0.85
    assert abs(meta["accuracy_jpeg_domain"] - meta["accuracy_spatial"]) < 0.01
    assert meta["jpeg_evaluation"]["max_rel_logit_diff"] < 1e-5
    assert {"command", "seed", "epochs"} <= set(meta["training"])
    assert not model.training


def test_samples_are_one_per_class_gray_32x32(samples):
    labels = [sample_label(p) for p in samples]
    assert len(set(labels)) == 8
    for path in samples:
        with Image.open(path) as im:
            assert im.format == "JPEG" and im.mode == "L" and im.size == (32, 32)


def _pillow_pixels(paths) -> torch.Tensor:
    arrays = []
    for path in paths:
        with Image.open(path) as im:
            arrays.append(np.asarray(im.convert("L"), dtype=np.float32))
    return torch.from_numpy(np.stack(arrays)).unsqueeze(1) / 255.0


def test_spatial_model_classifies_the_samples(model, samples):
    with torch.no_grad():
        predicted = model(_pillow_pixels(samples)).argmax(1).tolist()
    labels = [sample_label(p) for p in samples]
    correct = sum(p == t for p, t in zip(predicted, labels))
    assert correct >= 7, list(zip([p.name for p in samples], predicted))


def test_jpeg_domain_model_matches_spatial_on_the_samples(model, samples):
    batch = jpeg_io.stack([jpeg_io.read_jpeg(p) for p in samples])
    jpeg_model = jpegfx.convert(model, 32, subsampling="gray")
    with torch.no_grad():
        jpeg_logits = jpeg_model(batch)
        spatial_logits = model((jpeg_io.decode(batch) / 255.0).to(torch.float32))
    assert torch.equal(jpeg_logits.argmax(1), spatial_logits.argmax(1))
    err = (jpeg_logits - spatial_logits).abs().max()
    assert err <= 1e-5 * spatial_logits.abs().max(), err


# ---------------------------------------------------------------------------------------------
# MNIST and CIFAR from local files
# ---------------------------------------------------------------------------------------------
def test_load_mnist_from_idx_files(tmp_path):
    rng = np.random.default_rng(1)
    expected = {}
    for split, prefix, n in (("train", "train", 7), ("test", "t10k", 3)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n).astype(np.uint8)
        (tmp_path / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(images, 0x08)))
        (tmp_path / f"{prefix}-labels-idx1-ubyte").write_bytes(_idx_bytes(labels, 0x08))
        expected[split] = images, labels
    for split, (images, labels) in expected.items():
        x, y = datasets.load_mnist(tmp_path, split)
        np.testing.assert_array_equal(x, images)
        np.testing.assert_array_equal(y, labels.astype(np.int64))
        assert y.dtype == np.int64
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(_idx_bytes(np.full(3, 12, np.uint8), 0x08))
    with pytest.raises(ValueError, match="labels in 0..9"):
        datasets.load_mnist(tmp_path, "test")
    with pytest.raises(FileNotFoundError, match="MNIST train split not found"):
        datasets.load_mnist(tmp_path / "nowhere", "train")


def _cifar_batch(path, rng, n: int, key: bytes, classes: int, protocol: int) -> tuple[np.ndarray, list[int]]:
    """A batch in the layout of the CIFAR "python version" (bytes keys, uint8 (N, 3072), list labels)."""
    import pickle

    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labels = [int(v) for v in rng.integers(0, classes, size=n)]
    batch = {b"batch_label": b"testing batch", key: labels, b"data": data,
             b"filenames": [b"img%d.png" % i for i in range(n)]}
    path.write_bytes(pickle.dumps(batch, protocol=protocol))
    return data, labels


@pytest.mark.parametrize("protocol", [2, 5])
def test_load_cifar10_and_100(tmp_path, protocol):
    rng = np.random.default_rng(2)
    c10 = tmp_path / "cifar-10-batches-py"
    c10.mkdir()
    parts = [_cifar_batch(c10 / f"data_batch_{i}", rng, 4, b"labels", 10, protocol) for i in range(1, 6)]
    test = _cifar_batch(c10 / "test_batch", rng, 3, b"labels", 10, protocol)
    x, y = datasets.load_cifar(tmp_path, 10, "train")
    assert x.shape == (20, 3, 32, 32) and x.dtype == np.uint8
    np.testing.assert_array_equal(x[4:8].reshape(4, -1), parts[1][0])  # batches in order, R then G then B planes
    np.testing.assert_array_equal(y, np.concatenate([p[1] for p in parts]))
    x, y = datasets.load_cifar(c10, 10, "test")
    np.testing.assert_array_equal(x.reshape(3, -1), test[0])

    c100 = tmp_path / "cifar-100-python"
    c100.mkdir()
    train = _cifar_batch(c100 / "train", rng, 5, b"fine_labels", 100, protocol)
    _cifar_batch(c100 / "test", rng, 2, b"fine_labels", 100, protocol)
    x, y = datasets.load_cifar(tmp_path, 100, "train")
    np.testing.assert_array_equal(y, train[1])
    with pytest.raises(FileNotFoundError, match="missing CIFAR-10 file data_batch_1"):
        datasets.load_cifar(tmp_path / "empty", 10)


class _Payload:
    """Unpickling this runs ``open(marker, "w")``: the test checks it never happens."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_cifar_reader_refuses_code_in_pickles(tmp_path):
    import pickle

    marker = tmp_path / "pwned"
    c10 = tmp_path / "cifar-10-batches-py"
    c10.mkdir()
    (c10 / "data_batch_1").write_bytes(pickle.dumps({b"data": _Payload(str(marker)), b"labels": []}, protocol=2))
    with pytest.raises(ValueError, match=r"data_batch_1: not a plain-data pickle: refusing to load (builtins|io|_io)\.open"):
        datasets.load_cifar(tmp_path, 10, "train")
    assert not marker.exists()
    (c10 / "data_batch_1").write_bytes(b"not a pickle at all")
    with pytest.raises(ValueError, match="not a plain-data pickle"):
        datasets.load_cifar(tmp_path, 10, "train")
