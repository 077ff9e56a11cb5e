"""Datasets of JPEG files, read as quantised coefficients and never decoded.

* :class:`JpegFolder` — the usual class-per-folder layout (``root/<class>/<file>.jpg``, classes in
  sorted order, as torchvision's ``ImageFolder``) or a list of ``(path, label)`` (:func:`read_list`
  reads one from a CSV file). An item is ``(Coefficients, label)``: the file's quantised
  coefficients and per-image tables (:func:`jpegfx.reader.read_coefficients`), after the dataset's
  augmentations. :meth:`JpegFolder.check` reads every header before training starts.
* Augmentations that are exact operations on the quantised coefficients — each equals what
  ``jpegtran`` writes for the same operation, so the augmented item is itself a JPEG file:

  - :class:`RandomCrop` — a random block-aligned crop (``jpegtran -crop WxH+X+Y``): a random area
    fraction and aspect ratio, as torchvision's ``RandomResizedCrop`` draws them, with the origin on
    the MCU grid. The resizing half comes from the collate's :class:`~jpegfx.preprocess.Policy`
    (N/8 scaling, then bilinear resampling), so crop + policy is the JPEG-domain ``RandomResizedCrop``;
  - :class:`RandomFlip` — a left–right mirror (``jpegtran -flip horizontal -trim``): block columns
    reversed and odd horizontal frequencies negated; a partial MCU column at the right edge (fewer
    than ``8·h_max`` pixels) is dropped first, as ``-trim`` does, since a lossless flip needs whole
    MCUs.

  The random draws of item ``i`` in epoch ``e`` come from ``numpy.random.default_rng((seed, e, i))``:
  the same item gets the same augmentation whichever process or DataLoader worker reads it, so
  batches do not depend on the number of workers or processes.
* :class:`Collate` — a DataLoader ``collate_fn`` that turns a list of items into ``(x, labels)``:
  with a :class:`~jpegfx.preprocess.Policy`, ``x`` is the network's JPEG-domain input
  ``(N, C·64, Hb, Wb)`` (any mix of sizes and chroma layouts: each file is scaled by N/8, resampled
  and centre-cropped to the model's size in the coefficients, :mod:`jpegfx.preprocess`); without
  one, ``x`` is a :class:`~jpegfx.jpeg.JpegBatch` of the files' quantised coefficients and tables
  (the model's own input stage dequantises them), which needs every file of the batch to share one
  size and chroma layout.

Everything here is picklable and fork-safe (the reader keeps no state shared between processes), so
DataLoader worker processes work as they do for any dataset.
"""
from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from jpegfx import preprocess, reader
from jpegfx.errors import JpegError, UsageError
from jpegfx.preprocess import Policy

log = logging.getLogger(__name__)

__all__ = ["JPEG_SUFFIXES", "JpegFolder", "RandomCrop", "RandomFlip", "Collate", "Unreadable", "read_list"]

JPEG_SUFFIXES = (".jpg", ".jpeg", ".jpe", ".jfif")
"""File name endings a folder scan takes (case-insensitive)."""


def _mcu(header: reader.Header) -> tuple[int, int]:
    """The MCU's size in pixels, ``(8·v_max, 8·h_max)``."""
    return (8 * max(v for v, _ in header.samplings), 8 * max(h for _, h in header.samplings))


@dataclass(frozen=True)
class RandomCrop:
    """A random crop on the MCU grid, losslessly in the coefficients (``jpegtran -crop``).

    Draws an area fraction from ``scale`` (uniform) and an aspect ratio ``w/h`` from ``ratio``
    (log-uniform), as torchvision's ``RandomResizedCrop``; up to ten draws that fit the image (and
    whose shorter side is at least ``min_side``: what the collate's policy can still scale to the
    network's size), else the whole image. The crop's origin is uniform over the MCU-aligned
    positions where it fits."""

    scale: tuple[float, float] = (0.25, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    min_side: int = 1

    def __post_init__(self) -> None:
        lo, hi = self.scale
        if not 0 < lo <= hi <= 1:
            raise UsageError(f"RandomCrop scale must satisfy 0 < min <= max <= 1, got {self.scale!r}")
        if not 0 < self.ratio[0] <= self.ratio[1]:
            raise UsageError(f"RandomCrop ratio must satisfy 0 < min <= max, got {self.ratio!r}")
        if isinstance(self.min_side, bool) or not isinstance(self.min_side, int) or self.min_side < 1:
            raise UsageError(f"RandomCrop min_side must be a positive integer, got {self.min_side!r}")

    def window(self, size: tuple[int, int], mcu: tuple[int, int], rng: np.random.Generator
               ) -> tuple[int, int, int, int]:
        """``(top, left, height, width)`` for an image of ``size`` with MCUs of ``mcu`` pixels."""
        h, w = size
        area = h * w
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target = area * rng.uniform(*self.scale)
            aspect = math.exp(rng.uniform(*log_ratio))
            cw, ch = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
            if max(1, self.min_side) <= min(ch, cw) and ch <= h and cw <= w:
                top = mcu[0] * int(rng.integers(0, (h - ch) // mcu[0] + 1))
                left = mcu[1] * int(rng.integers(0, (w - cw) // mcu[1] + 1))
                return top, left, ch, cw
        return 0, 0, h, w

    def __call__(self, coefs: reader.Coefficients, rng: np.random.Generator) -> reader.Coefficients:
        top, left, ch, cw = self.window(coefs.header.size, _mcu(coefs.header), rng)
        return preprocess.crop_blocks(coefs, top, left, ch, cw)


@dataclass(frozen=True)
class RandomFlip:
    """Mirror left–right with probability ``p``, losslessly (``jpegtran -flip horizontal -trim``)."""

    p: float = 0.5

    def __post_init__(self) -> None:
        if not 0 <= self.p <= 1:
            raise UsageError(f"RandomFlip p must be in [0, 1], got {self.p!r}")

    def __call__(self, coefs: reader.Coefficients, rng: np.random.Generator) -> reader.Coefficients:
        if rng.random() >= self.p:
            return coefs
        return self.flip(coefs)

    @staticmethod
    def flip(coefs: reader.Coefficients) -> reader.Coefficients:
        """The mirror image; a partial MCU column at the right edge is dropped first (``-trim``)."""
        h, w = coefs.header.size
        whole = w - w % _mcu(coefs.header)[1]
        if whole == 0:
            raise JpegError(f"image {h}x{w} is narrower than one MCU: it cannot be flipped losslessly")
        if whole != w:
            coefs = preprocess.crop_blocks(coefs, 0, 0, h, whole)
        return preprocess.flip_blocks(coefs)


@dataclass(frozen=True)
class Unreadable:
    """An item whose file could not be read (``JpegFolder(..., on_error="skip")``); :class:`Collate`
    leaves it out of the batch."""

    path: str
    error: str


class JpegFolder:
    """JPEG files with integer labels, read as quantised coefficients (see the module docstring).

    ``root``: a folder with one subfolder per class (sorted names are the classes; files anywhere
    below a class folder whose names end in :data:`JPEG_SUFFIXES`); or ``samples``: ``(path, label)``
    pairs with ``classes`` naming the labels (default ``"0"``, ``"1"`` …). ``augment``: callables
    ``(Coefficients, rng) -> Coefficients`` applied in order (:class:`RandomCrop`,
    :class:`RandomFlip`). ``on_error``: "raise" (a file that cannot be read raises a one-line
    :class:`~jpegfx.errors.JpegError` naming it) or "skip" (the item becomes :class:`Unreadable`,
    logged, and :class:`Collate` drops it). ``tolerant`` reads files libjpeg decodes only with warnings.
    """

    def __init__(self, root: str | os.PathLike | None = None, *,
                 samples: Sequence[tuple[str | os.PathLike, int]] | None = None,
                 classes: Sequence[str] | None = None, augment: Sequence = (), seed: int = 0,
                 on_error: str = "raise", tolerant: bool = False) -> None:
        if (root is None) == (samples is None):
            raise UsageError("JpegFolder needs a root folder or a list of (path, label) samples, not both")
        if on_error not in ("raise", "skip"):
            raise UsageError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        if root is not None:
            self.root = Path(root)
            found_classes, samples = _scan(self.root)
            if classes is not None and list(classes) != found_classes:
                raise UsageError(f"{self.root}: class folders {found_classes} do not match the classes given {list(classes)}")
            classes = found_classes
        else:
            self.root = None
            samples = [(str(p), int(label)) for p, label in samples]
            if not samples:
                raise UsageError("JpegFolder: the sample list is empty")
            top = max(label for _, label in samples)
            if min(label for _, label in samples) < 0:
                raise UsageError("JpegFolder: labels must be non-negative")
            classes = [str(i) for i in range(top + 1)] if classes is None else list(classes)
            if top >= len(classes):
                raise UsageError(f"JpegFolder: label {top} but only {len(classes)} classes")
        self.samples: list[tuple[str, int]] = samples
        self.classes: list[str] = list(classes)
        self.augment = tuple(augment)
        self.seed, self.epoch = int(seed), 0
        self.on_error, self.tolerant = on_error, tolerant

    def __len__(self) -> int:
        return len(self.samples)

    def check(self, fits) -> list[tuple[str, str]]:
        """Read every file's header (no scan is decoded) and ask ``fits(header)`` for a problem (a string)
        or ``None``; returns ``[(path, problem), …]`` for the files that cannot be read or do not fit.
        With ``on_error="skip"`` those files are removed from the dataset (and logged); with "raise" a
        one-line :class:`~jpegfx.errors.JpegError` names the first and counts them. A training run calls
        this before its first step, so a file that would stop it half-way is found at the start."""
        problems = []
        for path, _ in self.samples:
            try:
                problem = fits(reader.read_header(path, tolerant=self.tolerant))
            except JpegError as exc:
                problem = str(exc)
            if problem is not None:
                problems.append((path, problem if problem.startswith(path) else f"{path}: {problem}"))
        if problems and self.on_error == "raise":
            more = f" (and {len(problems) - 1} more file(s))" if len(problems) > 1 else ""
            raise JpegError(problems[0][1] + more)
        if problems:
            bad = {path for path, _ in problems}
            for _, problem in problems:
                log.warning("leaving out %s", problem)
            self.samples = [(p, label) for p, label in self.samples if p not in bad]
        return problems

    def set_epoch(self, epoch: int) -> None:
        """Draw the augmentations of ``epoch`` (call before each epoch; a DataLoader's workers are
        made afresh each epoch unless ``persistent_workers``, and copy the dataset then)."""
        self.epoch = int(epoch)

    def rng(self, index: int) -> np.random.Generator:
        """The random generator of item ``index`` in the current epoch."""
        return np.random.default_rng((self.seed, self.epoch, int(index)))

    def __getitem__(self, index: int) -> tuple[reader.Coefficients | Unreadable, int]:
        path, label = self.samples[index]
        try:
            coefs = reader.read_coefficients(path, tolerant=self.tolerant)
            if self.augment:  # a generator costs tens of microseconds: only when something draws from it
                rng = self.rng(index)
                for op in self.augment:
                    coefs = op(coefs, rng)
        except JpegError as exc:
            if self.on_error == "raise":
                raise JpegError(f"{path}: {exc}") if path not in str(exc) else exc
            log.warning("skipping %s: %s", path, exc)
            return Unreadable(path, str(exc)), label
        return coefs, label


def read_list(path: str | os.PathLike) -> list[tuple[str, int]]:
    """``(path, label)`` pairs from a CSV file of two columns, ``path,label`` (a first row whose label is
    not an integer is a header). Relative paths are taken from the CSV file's folder. Every problem is
    a one-line :class:`~jpegfx.errors.UsageError` naming the line."""
    import csv

    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read the sample list: {getattr(exc, 'strerror', None) or exc}") from None
    samples = []
    for number, row in enumerate(rows, 1):
        if not row or not "".join(row).strip():
            continue
        if len(row) != 2:
            raise UsageError(f"{path}:{number}: expected path,label, got {len(row)} column(s)")
        try:
            label = int(row[1])
        except ValueError:
            if number == 1:
                continue  # a header
            raise UsageError(f"{path}:{number}: label {row[1]!r} is not an integer") from None
        file = Path(row[0].strip())
        samples.append((str(file if file.is_absolute() else path.parent / file), label))
    if not samples:
        raise UsageError(f"{path}: no samples (expected lines path,label)")
    return samples


def _scan(root: Path) -> tuple[list[str], list[tuple[str, int]]]:
    if not root.is_dir():
        raise UsageError(f"{root}: not a folder")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise UsageError(f"{root}: no class folders (expected {root}/<class>/<image>.jpg)")
    samples = []
    for label, name in enumerate(classes):
        files = sorted(p for p in (root / name).rglob("*")
                       if p.suffix.lower() in JPEG_SUFFIXES and p.is_file() and not p.name.startswith("."))
        samples += [(str(p), label) for p in files]
    if not samples:
        raise UsageError(f"{root}: no JPEG files ({', '.join(JPEG_SUFFIXES)}) in its class folders")
    return classes, samples


@dataclass(frozen=True)
class Collate:
    """A DataLoader ``collate_fn``: ``[(Coefficients, label), …]`` → ``(x, labels)`` (module docstring).

    ``policy``: a :class:`~jpegfx.preprocess.Policy` that brings every file to ``input_size``
    (``x`` is then the float JPEG-domain input, ``(N, channels·64, Hb, Wb)``, in ``dtype``); ``None``
    gives a :class:`~jpegfx.jpeg.JpegBatch` (one size and layout per batch, else a one-line
    :class:`~jpegfx.errors.JpegError`). :meth:`for_model` takes the rest from a converted model."""

    policy: Policy | None = None
    input_size: tuple[int, int] | None = None
    channels: int = 3
    normalize: tuple | None = None
    upsampling: str = "fancy"
    dtype: str = "float32"

    def __post_init__(self) -> None:
        if self.policy is not None and self.input_size is None:
            raise UsageError("Collate with a policy needs the model's input_size")

    @classmethod
    def for_model(cls, jpeg_model, policy: Policy | None = None) -> "Collate":
        """The collate feeding ``jpeg_model`` (a :class:`~jpegfx.convert.JpegModel`): its size, channels,
        normalisation, chroma filter and dtype."""
        spec = jpeg_model.spec
        dtype = str(jpeg_model.dtype).removeprefix("torch.")
        return cls(policy, tuple(spec.input_size), spec.channels, spec.normalize, spec.upsampling, dtype)

    def __call__(self, items: Sequence[tuple]):
        import torch

        from jpegfx import jpeg as jpeg_io

        kept = [(c, label) for c, label in items if not isinstance(c, Unreadable)]
        if not kept:
            raise JpegError(f"every file of the batch was unreadable (first: {items[0][0].path})")
        labels = torch.tensor([label for _, label in kept], dtype=torch.int64)
        coefs = [c for c, _ in kept]
        if self.policy is not None:
            x = preprocess.model_inputs(coefs, self.policy, self.input_size, self.channels, self.normalize,
                                        self.upsampling, np.dtype(self.dtype))
            return torch.from_numpy(x), labels
        layouts = {c.header.layout for c in coefs}
        if len(layouts) > 1:
            found = sorted({f"{c.header.size[0]}x{c.header.size[1]} {c.header.subsampling}" for c in coefs})
            raise JpegError(f"a batch mixes image sizes or layouts ({', '.join(found)}): give a preprocessing "
                            "policy (resize and crop) to bring every file to the model's size")
        return jpeg_io.stack([jpeg_io.from_coefficients(c) for c in coefs]), labels
