"""Datasets and the shipped demo model: Fashion-MNIST from IDX files, and a trained ``paper`` network.

* :func:`load_idx` reads one IDX file (gzip-compressed or plain), validating its header and size;
* :func:`load_fashion_mnist` reads a split of Fashion-MNIST (Xiao et al. 2017) from a directory of the
  four standard IDX files — by default the one installed by the Debian package
  ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``), or ``root=`` / the environment
  variable ``JPEGFX_FASHION_MNIST``. Nothing is ever downloaded;
* :func:`load_mnist` reads MNIST from the same four IDX files in a directory the caller names, and
  :func:`load_cifar` CIFAR-10 / CIFAR-100 from their "python version" batches. Those batches are
  pickles; they are read by :class:`RestrictedUnpickler`, which builds only dicts, lists, strings and
  numpy uint8/int arrays and refuses every other global, so a crafted file cannot run code;
* :func:`pad_to_32` zero-pads 28×28 images to 32×32 (2 px border), as the paper pads MNIST;
* :func:`default_model`, :func:`default_meta` and :func:`sample_jpegs` give the ``paper`` network
  trained on Fashion-MNIST by ``tools/train_paper.py`` (weights, its JSON record, and eight gray
  sample JPEGs of the test set), shipped in :mod:`jpegfx.data`.
"""
from __future__ import annotations

import gzip
import io
import json
import logging
import os
import pickle
import zlib
from importlib import resources
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
"""Fashion-MNIST class names, indexed by label."""

DEFAULT_FASHION_MNIST_ROOT = "/usr/share/datasets/fashion-mnist"
"""Where the Debian package :data:`FASHION_MNIST_PACKAGE` installs the IDX files."""
FASHION_MNIST_ENV = "JPEGFX_FASHION_MNIST"
"""Environment variable overriding :data:`DEFAULT_FASHION_MNIST_ROOT`."""
FASHION_MNIST_PACKAGE = "dataset-fashion-mnist"

_SPLITS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", 60000),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 10000),
}

# IDX type codes → big-endian numpy dtypes.
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"

CHECKPOINT_NAME = "paper_fashion_mnist.pt"
META_NAME = "paper_fashion_mnist.json"
SAMPLES_DIR = "samples"


# ============================================================================================
# IDX
# ============================================================================================
def _read_idx_bytes(path: Path) -> bytes:
    with open(path, "rb") as fh:
        data = fh.read()
    if not data.startswith(_GZIP_MAGIC):
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise ValueError(f"{path}: corrupt gzip stream: {exc}") from None


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Parse the (uncompressed) bytes of an IDX file; see :func:`load_idx`."""
    if len(data) < 4:
        raise ValueError(f"{name}: not an IDX file: {len(data)} byte(s), the header needs at least 4")
    if data[0] != 0 or data[1] != 0:
        raise ValueError(f"{name}: not an IDX file: magic number starts with 0x{data[0]:02x}{data[1]:02x}, "
                         "expected 0x0000")
    code, ndim = data[2], data[3]
    if code not in _IDX_DTYPES:
        raise ValueError(f"{name}: unknown IDX data type 0x{code:02x} "
                         f"(valid: {', '.join(f'0x{c:02x}' for c in _IDX_DTYPES)})")
    if ndim < 1:
        raise ValueError(f"{name}: IDX header declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{name}: truncated IDX header: {ndim} dimension(s) need {header} bytes, "
                         f"the file has {len(data)}")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[code]
    expected = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if len(data) - header != expected:
        raise ValueError(f"{name}: IDX shape {shape} of {dtype.name} needs {expected} data bytes, "
                         f"the file has {len(data) - header}")
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=True)


def load_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (LeCun's MNIST format), gzip-compressed (detected by content) or plain.

    Returns a native-endian array of the declared type and shape (uint8, int8, int16, int32,
    float32 or float64). Raises :class:`ValueError` naming the file for a bad magic number, an unknown
    type code, a truncated header, a size that does not match the declared dimensions, or a corrupt
    gzip stream; :class:`FileNotFoundError` if the file does not exist.
    """
    path = Path(path)
    return parse_idx(_read_idx_bytes(path), str(path))


# ============================================================================================
# Fashion-MNIST
# ============================================================================================
def fashion_mnist_root(root: str | os.PathLike | None = None) -> Path:
    """``root``, else ``$JPEGFX_FASHION_MNIST``, else :data:`DEFAULT_FASHION_MNIST_ROOT`."""
    if root is not None:
        return Path(root)
    env = os.environ.get(FASHION_MNIST_ENV)
    return Path(env) if env else Path(DEFAULT_FASHION_MNIST_ROOT)


def _find_idx(root: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (root / name).is_file():
            return root / name
    return None


def load_fashion_mnist(root: str | os.PathLike | None = None,
                       split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST ``split`` ("train": 60 000 images, "test": 10 000) from the IDX files in ``root``.

    ``root`` defaults to ``$JPEGFX_FASHION_MNIST`` or :data:`DEFAULT_FASHION_MNIST_ROOT` (the Debian
    package ``dataset-fashion-mnist``); the files may be gzip-compressed (``*.gz``) or plain.
    Returns ``(images uint8 (N, 28, 28), labels int64 (N,))``. Raises :class:`FileNotFoundError` if
    the files are missing and :class:`ValueError` if they are not the expected data.
    """
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {tuple(_SPLITS)}, got {split!r}")
    root = fashion_mnist_root(root)
    image_stem, label_stem, count = _SPLITS[split]
    found = {stem: _find_idx(root, stem) for stem in (image_stem, label_stem)}
    missing = [stem for stem, p in found.items() if p is None]
    if missing:
        raise FileNotFoundError(
            f"Fashion-MNIST {split} split not found in {root} (missing {', '.join(s + '[.gz]' for s in missing)}); "
            f"install the Debian package {FASHION_MNIST_PACKAGE} (apt-get install {FASHION_MNIST_PACKAGE}), "
            f"or pass root= / set {FASHION_MNIST_ENV} to a directory holding the IDX files")
    images, labels = load_idx(found[image_stem]), load_idx(found[label_stem])
    if images.dtype != np.uint8 or images.shape != (count, 28, 28):
        raise ValueError(f"{found[image_stem]}: expected uint8 images of shape ({count}, 28, 28), "
                         f"got {images.dtype} {images.shape}")
    if labels.dtype != np.uint8 or labels.shape != (count,):
        raise ValueError(f"{found[label_stem]}: expected uint8 labels of shape ({count},), "
                         f"got {labels.dtype} {labels.shape}")
    if int(labels.max()) >= len(FASHION_MNIST_CLASSES):
        raise ValueError(f"{found[label_stem]}: label {int(labels.max())} out of range 0..9")
    log.debug("loaded Fashion-MNIST %s: %d images from %s", split, count, root)
    return images, labels.astype(np.int64)


def load_mnist(root: str | os.PathLike, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """MNIST ``split`` from the standard IDX files (``train-images-idx3-ubyte[.gz]`` …) in ``root``.

    Returns ``(images uint8 (N, 28, 28), labels int64 (N,))``; :class:`FileNotFoundError` for missing
    files, :class:`ValueError` for files that are not MNIST-shaped data.
    """
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {tuple(_SPLITS)}, got {split!r}")
    root = Path(root)
    image_stem, label_stem, _ = _SPLITS[split]
    found = {stem: _find_idx(root, stem) or _find_idx(root, stem.replace("-idx", ".idx"))
             for stem in (image_stem, label_stem)}
    missing = [stem for stem, p in found.items() if p is None]
    if missing:
        raise FileNotFoundError(f"MNIST {split} split not found in {root} (missing "
                                f"{', '.join(s + '[.gz]' for s in missing)})")
    images, labels = load_idx(found[image_stem]), load_idx(found[label_stem])
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(f"{found[image_stem]}: expected uint8 images (N, 28, 28), got {images.dtype} {images.shape}")
    if labels.dtype != np.uint8 or labels.shape != images.shape[:1] or int(labels.max(initial=0)) > 9:
        raise ValueError(f"{found[label_stem]}: expected {len(images)} uint8 labels in 0..9, "
                         f"got {labels.dtype} {labels.shape}")
    return images, labels.astype(np.int64)


# ============================================================================================
# CIFAR-10 / CIFAR-100 ("python version" batches)
# ============================================================================================
class RestrictedUnpickler(pickle.Unpickler):
    """Unpickle plain data only: containers, strings, numbers and numpy arrays of plain dtypes.

    ``find_class`` allows just the numpy functions that rebuild an ``ndarray`` from bytes (and
    ``_codecs.encode``, which turns a string into bytes); any other
    global (``os.system``, ``builtins.eval``, a user class …) raises :class:`pickle.UnpicklingError`
    before it is called.
    """

    ALLOWED = frozenset({
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("_codecs", "encode"),  # how Python 3 writes bytes at protocol ≤ 2: encode(str, "latin1")
    })

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: not plain data")
        return super().find_class(module, name)


def restricted_unpickle(data: bytes, name: str = "<bytes>"):
    """:class:`RestrictedUnpickler` on ``data`` (Python 2 strings decoded as bytes); ``ValueError`` naming
    ``name`` for anything that is not plain data or not a pickle."""
    try:
        return RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise ValueError(f"{name}: not a plain-data pickle: {exc}") from None


def load_cifar(root: str | os.PathLike, which: int = 10,
               split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-``which`` (10 or 100) ``split`` from the "python version" files in ``root``.

    ``root`` is the extracted directory (``cifar-10-batches-py`` / ``cifar-100-python``) or its parent.
    CIFAR-10 trains on ``data_batch_1 … 5`` and tests on ``test_batch``; CIFAR-100 uses ``train`` /
    ``test`` with the fine labels. Returns ``(images uint8 (N, 3, 32, 32) RGB, labels int64 (N,))``.
    """
    if which not in (10, 100):
        raise ValueError(f"which must be 10 or 100, got {which}")
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {tuple(_SPLITS)}, got {split!r}")
    root = Path(root)
    sub = root / ("cifar-10-batches-py" if which == 10 else "cifar-100-python")
    root = sub if sub.is_dir() else root
    if which == 10:
        names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
        key = b"labels"
    else:
        names, key = [split], b"fine_labels"
    images, labels = [], []
    for name in names:
        path = root / name
        if not path.is_file():
            raise FileNotFoundError(f"{root}: missing CIFAR-{which} file {name}")
        batch = restricted_unpickle(path.read_bytes(), str(path))
        if not isinstance(batch, dict) or b"data" not in batch or key not in batch:
            raise ValueError(f"{path}: not a CIFAR-{which} batch (expected a dict with b'data' and {key!r})")
        data = np.asarray(batch[b"data"])
        y = np.asarray(batch[key])
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or y.shape != data.shape[:1]:
            raise ValueError(f"{path}: expected uint8 data (N, 3072) and N labels, got {data.dtype} {data.shape} "
                             f"and {y.shape}")
        if y.size and (int(y.min()) < 0 or int(y.max()) >= which):
            raise ValueError(f"{path}: labels outside 0..{which - 1}")
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(y.astype(np.int64))
    return np.concatenate(images), np.concatenate(labels)


def pad_to_32(images: np.ndarray) -> np.ndarray:
    """Zero-pad 28×28 images ``(..., 28, 28)`` to ``(..., 32, 32)`` with a 2-pixel border (same dtype)."""
    images = np.asarray(images)
    if images.ndim < 2 or images.shape[-2:] != (28, 28):
        raise ValueError(f"pad_to_32 expects (..., 28, 28) images, got shape {images.shape}")
    pad = [(0, 0)] * (images.ndim - 2) + [(2, 2), (2, 2)]
    return np.pad(images, pad, mode="constant", constant_values=0)


def class_slug(name: str) -> str:
    """A file-name form of a class name: lowercase, "/" and spaces become "-" ("T-shirt/top" → "t-shirt-top")."""
    return name.lower().replace("/", "-").replace(" ", "-")


def sample_label(path: str | os.PathLike) -> int:
    """The label encoded in a sample's file name ``<index>_<class slug>.jpg``."""
    stem = Path(path).stem
    _, _, slug = stem.partition("_")
    slugs = [class_slug(c) for c in FASHION_MNIST_CLASSES]
    if slug not in slugs:
        raise ValueError(f"{Path(path).name}: no Fashion-MNIST class named {slug!r} "
                         "(expected <index>_<class>.jpg)")
    return slugs.index(slug)


# ============================================================================================
# The shipped demo model (jpegfx/data)
# ============================================================================================
def _data_file(name: str):
    ref = resources.files("jpegfx.data") / name
    if not ref.is_file():
        raise FileNotFoundError(f"jpegfx.data/{name} is not installed; it is written by tools/train_paper.py "
                                "and shipped as package data")
    return ref


def default_model():
    """The ``paper`` network (1 channel, 10 classes, 32×32 input of ``pixels / 255``) with the shipped
    Fashion-MNIST weights (loaded with ``weights_only=True``), in eval mode."""
    import torch

    from jpegfx.models import create_model

    model = create_model("paper", num_classes=len(FASHION_MNIST_CLASSES), in_channels=1)
    with _data_file(CHECKPOINT_NAME).open("rb") as fh:
        state = torch.load(fh, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.eval()


def default_meta() -> dict:
    """The shipped model's record (classes, input size, normalisation, accuracies, training command…)."""
    return json.loads(_data_file(META_NAME).read_text(encoding="utf-8"))


def sample_jpegs() -> list[Path]:
    """The shipped sample JPEGs (gray, 32×32, one Fashion-MNIST test image per class for 8 classes),
    sorted by name; the label is in the name (:func:`sample_label`)."""
    ref = resources.files("jpegfx.data") / SAMPLES_DIR
    if not ref.is_dir():
        raise FileNotFoundError(f"jpegfx.data/{SAMPLES_DIR}/ is not installed")
    return sorted(Path(os.fspath(p)) for p in ref.iterdir() if p.name.lower().endswith(".jpg"))
