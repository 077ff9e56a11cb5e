"""JPEG files ↔ quantised DCT coefficients, a float reference decoder and an in-memory encoder.

What this module stores (conventions of :mod:`jpegfx.transforms`)
-----------------------------------------------------------------
* A :class:`JpegBatch` holds, per colour component, the **quantised** coefficients exactly as the
  file stores them: ``int16 (N, Hb_c, Wb_c, 8, 8)`` indexed ``[n, block row, block column, u, v]``
  with ``u`` the vertical and ``v`` the horizontal frequency (natural order, ``k = 8u + v`` after a
  reshape to 64). The block grid is the component's *logical* grid ``ceil(size_c / 8)``; the extra
  blocks libjpeg keeps to complete MCUs are not part of it (libjpeg's ``height_in_blocks`` and
  ``width_in_blocks`` already exclude them).
* Each component carries its natural-order quantisation table **per image** (``int32 (N, 64)``), so
  images with different tables stack; dequantisation multiplies image ``n`` by its own table.
* Component sizes follow ITU T.81 A.1.1: ``size_c = (ceil(h · v_c / v_max), ceil(w · h_c / h_max))``.

Reading (:func:`read_jpeg`)
---------------------------
:func:`jpegfx.reader.read_coefficients` (libjpeg-turbo's ``jpeg_read_coefficients`` through a thin C
binding; every libjpeg warning is an error unless ``tolerant``; pixel, memory and scan limits from
the header; thread- and fork-safe) wrapped into a :class:`JpegBatch` without a copy. The reader's
module docstring lists what is refused and why.

Reference decode (:func:`decode`)
---------------------------------
Dequantise with each image's table, orthonormal IDCT (:func:`jpegfx.transforms.from_dct`), +128,
crop each component to its logical size, upsample it to the image size (:func:`upsample_chroma`,
libjpeg's "fancy" triangle filter as an exact linear float filter, or pixel replication), then JFIF
YCbCr → RGB. No rounding and no clamping: this is the float decode libjpeg approximates with its
integer IDCT, integer upsampling and 8-bit clamping. Measured against Pillow (libjpeg-turbo, ISLOW
IDCT, fancy upsampling): mean |Δ| 0.25 (gray) to 0.57; after clamping this decode to 0–255 the max
|Δ| is 2–6 on typical photos and up to ~16 next to saturated areas (libjpeg clamps every component
before upsampling and colour conversion); unclamped, max |Δ| reaches ~50 where Pillow clamps.

Encoder (:func:`encode`)
------------------------
Mirrors what libjpeg (cjpeg, Pillow) stores, in float: JFIF full-range RGB → YCbCr without rounding
the samples to integers, chroma box-averaged (libjpeg adds an alternating 1/2 rounding bias and
rounds to integers: ignored), edge replication exactly as libjpeg pads (full-resolution columns
replicated to the component's block-grid width before downsampling; full-resolution rows replicated
to a whole number of sampling rows, then downsampled rows replicated to the block-grid height),
orthonormal DCT, division by the table, round half to even (libjpeg rounds half away from zero on
its integer DCT output; ties do not occur in float). IJG quality scaling of the Annex K tables with
``force_baseline`` (entries clamped to 1…255) as Pillow and cjpeg use it.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from . import reader
from .errors import JpegError
from .reader import Source
from .preprocess import YCBCR_TO_RGB
from .transforms import BLOCK, NCOEF, from_dct, to_dct

log = logging.getLogger(__name__)

__all__ = [
    "JpegError",
    "Component",
    "JpegBatch",
    "read_jpeg",
    "read_jpegs",
    "from_coefficients",
    "from_batch",
    "stack",
    "encode",
    "decode",
    "upsample_chroma",
    "ycbcr_to_rgb_matrix",
    "rgb_to_ycbcr_matrix",
    "standard_qtables",
    "SUBSAMPLINGS",
]

SUBSAMPLINGS = reader.SUBSAMPLINGS

# ============================================================================================
# Data contract
# ============================================================================================
@dataclass(frozen=True)
class Component:
    """One colour component of a batch.

    ``coefficients``: ``int16 (N, Hb_c, Wb_c, 8, 8)`` quantised, natural ``(u, v)`` order, trimmed to
    the component's logical block grid. ``qtable``: ``int32 (N, 64)`` natural order, one table per
    image. ``size``: the component's logical size ``(h_c, w_c)``. ``sampling``: ``(v, h)`` factors.
    """

    coefficients: torch.Tensor
    qtable: torch.Tensor
    size: tuple[int, int]
    sampling: tuple[int, int]

    def __post_init__(self) -> None:
        c, q = self.coefficients, self.qtable
        if c.ndim != 5 or tuple(c.shape[-2:]) != (BLOCK, BLOCK):
            raise ValueError(f"coefficients must be (N, Hb, Wb, 8, 8), got {tuple(c.shape)}")
        if q.ndim != 2 or q.shape[1] != NCOEF or q.shape[0] != c.shape[0]:
            raise ValueError(f"qtable must be (N={c.shape[0]}, 64), got {tuple(q.shape)}")
        hb, wb = -(-self.size[0] // BLOCK), -(-self.size[1] // BLOCK)
        if tuple(c.shape[1:3]) != (hb, wb):
            raise ValueError(f"block grid {tuple(c.shape[1:3])} does not match size {self.size}")

    @property
    def blocks(self) -> tuple[int, int]:
        """The logical block grid ``(Hb_c, Wb_c)``."""
        return (int(self.coefficients.shape[1]), int(self.coefficients.shape[2]))


@dataclass(frozen=True)
class JpegBatch:
    """A batch of JPEG images with identical geometry: components Y or (Y, Cb, Cr)."""

    components: tuple[Component, ...]
    size: tuple[int, int]
    color_space: str

    def __post_init__(self) -> None:
        if self.color_space not in ("gray", "ycbcr"):
            raise ValueError(f"color_space must be 'gray' or 'ycbcr', got {self.color_space!r}")
        want = 1 if self.color_space == "gray" else 3
        if len(self.components) != want:
            raise ValueError(f"{self.color_space} needs {want} components, got {len(self.components)}")
        if len({c.coefficients.shape[0] for c in self.components}) != 1:
            raise ValueError("components disagree on the batch size")

    @property
    def batch_size(self) -> int:
        return int(self.components[0].coefficients.shape[0])

    @property
    def num_components(self) -> int:
        return len(self.components)

    @property
    def max_sampling(self) -> tuple[int, int]:
        return (max(c.sampling[0] for c in self.components), max(c.sampling[1] for c in self.components))

    def to(self, device: torch.device | str) -> "JpegBatch":
        """The same batch with its coefficients and tables on ``device``."""
        return JpegBatch(tuple(Component(c.coefficients.to(device), c.qtable.to(device), c.size, c.sampling)
                               for c in self.components), self.size, self.color_space)

    @property
    def subsampling(self) -> str:
        """"4:4:4", "4:2:2", "4:2:0", "4:4:0", "4:1:1", "4:1:0"; "4:0:0" for gray; otherwise the
        raw factors as "h{h}v{v}/…" per component (e.g. "h1v1/h2v2/h2v2")."""
        return reader.subsampling_name(self.color_space, tuple(c.sampling for c in self.components))


# ============================================================================================
# Colour matrices and quantisation tables
# ============================================================================================
def ycbcr_to_rgb_matrix() -> tuple[torch.Tensor, torch.Tensor]:
    """JFIF YCbCr → RGB on the 0–255 scale: ``rgb = M @ [Y, Cb, Cr] + b``.

    Returns ``(M (3, 3), b (3,))`` float64 with libjpeg's constants (R = Y + 1.402 (Cr − 128),
    G = Y − 0.344136 (Cb − 128) − 0.714136 (Cr − 128), B = Y + 1.772 (Cb − 128)).
    """
    m = torch.tensor(YCBCR_TO_RGB, dtype=torch.float64)
    b = -m @ torch.tensor([0.0, 128.0, 128.0], dtype=torch.float64)
    return m, b


def rgb_to_ycbcr_matrix() -> tuple[torch.Tensor, torch.Tensor]:
    """JFIF RGB → YCbCr (libjpeg's encoder constants): ``ycc = M @ [R, G, B] + b``, b = (0, 128, 128)."""
    m = torch.tensor(
        [[0.299, 0.587, 0.114], [-0.16874, -0.33126, 0.5], [0.5, -0.41869, -0.08131]],
        dtype=torch.float64,
    )
    return m, torch.tensor([0.0, 128.0, 128.0], dtype=torch.float64)


# Annex K (K.1, K.2) example tables in natural row-major order, as in libjpeg's jcparam.c. The
# standard prints them as 8×8 matrices indexed (u, v): only DQT segments store zigzag order.
_STD_LUMA = (
    16, 11, 10, 16, 24, 40, 51, 61,
    12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77,
    24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101,
    72, 92, 95, 98, 112, 100, 103, 99,
)  # fmt: skip
_STD_CHROMA = (
    17, 18, 24, 47, 99, 99, 99, 99,
    18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99,
    47, 66, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
)  # fmt: skip


def standard_qtables(quality: int) -> tuple[torch.Tensor, torch.Tensor]:
    """IJG-scaled Annex K tables ``(luma (64,), chroma (64,))`` int32, natural order.

    libjpeg's ``jpeg_quality_scaling`` + ``jpeg_add_quant_table(force_baseline=TRUE)``:
    ``s = 5000 / q`` for q < 50 else ``200 − 2q``; entry ``(t · s + 50) // 100`` clamped to 1…255.
    Quality 100 gives all-ones tables.
    """
    if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) or not 1 <= quality <= 100:
        raise ValueError(f"quality must be an integer in 1..100, got {quality!r}")
    scale = 5000 // int(quality) if quality < 50 else 200 - 2 * int(quality)

    def scaled(table: tuple[int, ...]) -> torch.Tensor:
        t = (torch.tensor(table, dtype=torch.int64) * scale + 50) // 100
        return t.clamp(1, 255).to(torch.int32)

    return scaled(_STD_LUMA), scaled(_STD_CHROMA)


# ============================================================================================
# Reading (jpegfx.reader: libjpeg-turbo's coefficient API, numpy only)
# ============================================================================================
def read_jpeg(
    source: Source,
    *,
    max_pixels: int = reader.MAX_PIXELS,
    max_bytes: int = reader.MAX_BYTES,
    max_scans: int = reader.MAX_SCANS,
    tolerant: bool = False,
) -> JpegBatch:
    """Read one JPEG's quantised DCT coefficients and tables into a batch of one.

    ``source``: a path, the file's bytes, or a binary file object (read to its end). Raises
    :class:`JpegError` (one line, naming the file when it has a path) for anything that is not a
    readable 8-bit sequential or progressive (Huffman or arithmetic) gray/YCbCr JPEG within the
    limits, and, unless ``tolerant``, for any libjpeg warning. See :mod:`jpegfx.reader`.
    """
    coefs = reader.read_coefficients(
        source, max_pixels=max_pixels, max_bytes=max_bytes, max_scans=max_scans, tolerant=tolerant
    )
    return from_coefficients(coefs)


def from_coefficients(coefs: reader.Coefficients) -> JpegBatch:
    """A batch of one from :func:`jpegfx.reader.read_coefficients`' arrays (no copy)."""
    return from_batch(reader.Batch(coefs.header, tuple(p[None] for p in coefs.planes),
                                   tuple(q.reshape(1, NCOEF) for q in coefs.qtables), (0,)))


def read_jpegs(
    sources: Sequence[Source],
    *,
    max_pixels: int = reader.MAX_PIXELS,
    max_bytes: int = reader.MAX_BYTES,
    max_scans: int = reader.MAX_SCANS,
    tolerant: bool = False,
) -> JpegBatch:
    """Read many JPEGs of one layout (size, colour space, sampling factors) into one batch.

    The batch reader (:func:`jpegfx.reader.read_batches`): each file is decoded straight into its slot
    of the stacked arrays, with no per-file arrays and no stacking copy, so the per-file cost of
    :func:`read_jpeg` + :func:`stack` is paid once. Limits and ``tolerant`` as in :func:`read_jpeg`.
    Raises :class:`JpegError` naming the first source that cannot be read, or the first whose layout
    differs from the first readable one's (:func:`jpegfx.reader.read_batches` groups mixed layouts).
    """
    sources = list(sources)
    if not sources:
        raise JpegError("read_jpegs needs at least one source")
    batches, errors = reader.read_batches(sources, max_pixels=max_pixels, max_bytes=max_bytes,
                                          max_scans=max_scans, tolerant=tolerant)
    if errors:
        i, exc = next(iter(errors.items()))
        raise JpegError(f"sources[{i}]: {exc}")
    if len(batches) > 1:
        first, other = batches[0], batches[1]
        raise JpegError(f"sources[{other.indices[0]}]: {_layout_text(other.header)} does not match "
                        f"sources[{first.indices[0]}]'s {_layout_text(first.header)}; read mixed layouts with "
                        "jpegfx.reader.read_batches")
    return from_batch(batches[0])


def _layout_text(header: reader.Header) -> str:
    h, w = header.size
    return f"{w}x{h} (w x h) {header.color_space} {header.subsampling}"


def from_batch(batch: reader.Batch) -> JpegBatch:
    """A batch from :func:`jpegfx.reader.read_batches`' stacked arrays (no copy)."""
    head = batch.header
    components = tuple(
        Component(coefficients=torch.from_numpy(plane), qtable=torch.from_numpy(table), size=c.size,
                  sampling=c.sampling)
        for c, plane, table in zip(head.components, batch.planes, batch.qtables)
    )
    return JpegBatch(components=components, size=head.size, color_space=head.color_space)


# ============================================================================================
# Batching
# ============================================================================================
def stack(batches: Sequence[JpegBatch]) -> JpegBatch:
    """Concatenate batches along N. Size, colour space, component count and every component's
    sampling factors must match; otherwise :class:`JpegError` names the first mismatch.
    Per-image tables are kept, so images with different tables stack."""
    batches = list(batches)
    if not batches:
        raise JpegError("stack needs at least one batch")
    first = batches[0]
    for i, b in enumerate(batches[1:], start=1):
        if b.color_space != first.color_space:
            raise JpegError(f"batches[{i}]: colour space {b.color_space} does not match {first.color_space}")
        if b.num_components != first.num_components:
            raise JpegError(f"batches[{i}]: {b.num_components} components do not match {first.num_components}")
        if b.size != first.size:
            raise JpegError(f"batches[{i}]: size (h, w) {b.size} does not match {first.size}")
        for c, (cb, cf) in enumerate(zip(b.components, first.components)):
            if cb.sampling != cf.sampling:
                raise JpegError(
                    f"batches[{i}]: subsampling {b.subsampling} does not match {first.subsampling}"
                    f" (component {c} sampling (v, h) {cb.sampling} vs {cf.sampling})"
                )
    if len(batches) == 1:
        return first
    components = tuple(
        Component(
            coefficients=torch.cat([b.components[c].coefficients for b in batches]),
            qtable=torch.cat([b.components[c].qtable for b in batches]),
            size=first.components[c].size,
            sampling=first.components[c].sampling,
        )
        for c in range(first.num_components)
    )
    return JpegBatch(components=components, size=first.size, color_space=first.color_space)


# ============================================================================================
# Upsampling (a fixed linear map, differentiable)
# ============================================================================================
def upsample_chroma(
    plane: torch.Tensor, factors: tuple[int, int], size: tuple[int, int], method: str = "fancy"
) -> torch.Tensor:
    """Upsample a component plane ``(N, C, h_c, w_c)`` (its logical size) by integer ``factors``
    ``(f_v, f_h)`` and crop to ``size = (h, w)``.

    ``"fancy"`` is libjpeg(-turbo)'s jdsample.c as an exact linear float filter: ×2 ratios use the
    triangle filter (h2v1, h1v2, h2v2 = vertical then horizontal, edges replicated at the plane's
    logical border); like libjpeg, h2v1/h2v2 fall back to replication when ``w_c <= 2`` and every
    other ratio (4:1:1, h4v1, …) replicates. ``"nearest"`` always replicates pixels.
    Built from torch ops: differentiable, works for any float dtype and device.
    """
    if method not in ("fancy", "nearest"):
        raise ValueError(f"upsampling must be 'fancy' or 'nearest', got {method!r}")
    fv, fh = int(factors[0]), int(factors[1])
    if fv < 1 or fh < 1:
        raise ValueError(f"upsampling factors must be positive integers, got {factors}")
    hc, wc = (int(d) for d in plane.shape[-2:])  # static: constants in exported graphs
    h, w = size
    if fv * hc < h or fh * wc < w:
        raise ValueError(f"plane {hc}x{wc} upsampled by {fv}x{fh} cannot cover {h}x{w} (h x w)")
    x = plane
    fancy = method == "fancy" and (fv, fh) in ((2, 1), (1, 2), (2, 2)) and not (fh == 2 and wc <= 2)
    if fancy:
        # The triangle filter out[2i] = ¾ in[i] + ¼ in[i−1], out[2i+1] = ¾ in[i] + ¼ in[i+1] (edges
        # replicated) is bilinear interpolation with half-pixel centres: output 2i+t samples input
        # position i − ¼ + t/2, and a clamped coordinate replicates the edge. One resampling op does both
        # directions (one Resize node in ONNX).
        x = F.interpolate(x, size=(fv * hc, fh * wc), mode="bilinear", align_corners=False)
    else:
        if fv > 1:
            x = x.repeat_interleave(fv, dim=-2)
        if fh > 1:
            x = x.repeat_interleave(fh, dim=-1)
    return x[..., :h, :w]


# ============================================================================================
# Reference decode
# ============================================================================================
def _component_pixels(comp: Component) -> torch.Tensor:
    """Dequantised IDCT of a component, +128, cropped to its logical size: (N, 1, h_c, w_c) float64."""
    c = comp.coefficients.to(torch.float64)
    n, hb, wb = c.shape[:3]
    coeffs = c.reshape(n, hb, wb, NCOEF) * comp.qtable.to(torch.float64)[:, None, None, :]
    coeffs = coeffs.permute(0, 3, 1, 2)  # (N, 64, Hb, Wb), plane k = 8u + v
    return from_dct(coeffs, comp.size) + 128.0


def decode(batch: JpegBatch, *, upsampling: str = "fancy") -> torch.Tensor:
    """Float reference decode: ``(N, 3, h, w)`` RGB (or ``(N, 1, h, w)`` gray) float64, 0–255 scale.

    Dequantise (each image with its own table), IDCT, +128, crop, upsample every component smaller
    than the image (:func:`upsample_chroma` with ``upsampling`` = "fancy" | "nearest"), JFIF
    YCbCr → RGB. No rounding, no clamping.
    """
    if upsampling not in ("fancy", "nearest"):
        raise ValueError(f"upsampling must be 'fancy' or 'nearest', got {upsampling!r}")
    vmax, hmax = batch.max_sampling
    planes = []
    for comp in batch.components:
        x = _component_pixels(comp)
        if comp.size != batch.size:
            factors = (vmax // comp.sampling[0], hmax // comp.sampling[1])
            x = upsample_chroma(x, factors, batch.size, upsampling)
        planes.append(x)
    ycc = torch.cat(planes, dim=1)
    if batch.color_space == "gray":
        return ycc
    m, b = (t.to(ycc.device) for t in ycbcr_to_rgb_matrix())
    return torch.einsum("rc,nchw->nrhw", m, ycc) + b[None, :, None, None]


# ============================================================================================
# Encoder
# ============================================================================================
def _as_table(t, name: str) -> torch.Tensor:
    t = torch.as_tensor(t).reshape(-1)
    if t.numel() != NCOEF:
        raise ValueError(f"{name} must have 64 entries, got {t.numel()}")
    t64 = t.to(torch.float64)
    if bool((t64 != t64.round()).any()) or bool((t64 < 1).any()) or bool((t64 > 65535).any()):
        raise ValueError(f"{name} entries must be integers in 1..65535")
    return t64.to(torch.int32)


def _pad_replicate(x: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """Replicate the last row/column of ``(N, C, h, w)`` to reach ``rows`` × ``cols``."""
    h, w = x.shape[-2:]
    if rows > h:
        x = torch.cat([x, x[..., -1:, :].expand(*x.shape[:-2], rows - h, x.shape[-1])], dim=-2)
    if cols > w:
        x = torch.cat([x, x[..., -1:].expand(*x.shape[:-1], cols - w)], dim=-1)
    return x


def _encode_plane(plane: torch.Tensor, factors: tuple[int, int], table: torch.Tensor) -> torch.Tensor:
    """One component ``(N, 1, h, w)`` (level-shifted samples) → int16 ``(N, Hb_c, Wb_c, 8, 8)``."""
    fv, fh = factors
    h, w = plane.shape[-2:]
    hc, wc = -(-h // fv), -(-w // fh)
    hb, wb = -(-hc // BLOCK), -(-wc // BLOCK)
    # libjpeg: full-resolution columns replicated to the block-grid width × fh (jcsample.c
    # expand_right_edge), rows to whole sampling groups (jcprepct.c), then downsampled rows to the
    # block-grid height.
    x = _pad_replicate(plane, -(-h // fv) * fv, wb * BLOCK * fh)
    if fv > 1 or fh > 1:
        x = F.avg_pool2d(x, kernel_size=(fv, fh), stride=(fv, fh))
    x = _pad_replicate(x, hb * BLOCK, wb * BLOCK)
    coeffs = to_dct(x) / table.to(torch.float64)[None, :, None, None]  # (N, 64, Hb, Wb)
    q = coeffs.round().clamp(-32768, 32767).to(torch.int16)
    n = q.shape[0]
    return q.reshape(n, BLOCK, BLOCK, hb, wb).permute(0, 3, 4, 1, 2).contiguous()


def encode(images, *, quality: int = 75, subsampling: str = "4:2:0", qtables=None) -> JpegBatch:
    """In-memory JPEG encoder: what libjpeg stores for ``images`` (no entropy coding).

    ``images``: ``(N, C, h, w)`` float on the 0–255 scale or uint8; C = 1 → gray, C = 3 → RGB,
    converted to JFIF YCbCr. ``subsampling`` ∈ {"4:4:4", "4:2:2", "4:2:0", "4:4:0"} (ignored for
    gray). ``qtables``: optional natural-order tables overriding ``quality``: one (64,) table for
    every component, or two (luma, chroma). See the module docstring for how this differs from
    libjpeg's integer pipeline.
    """
    if subsampling not in SUBSAMPLINGS:
        raise ValueError(f"subsampling must be one of {sorted(SUBSAMPLINGS)}, got {subsampling!r}")
    x = torch.as_tensor(images)
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"images must be (N, 1|3, h, w), got {tuple(x.shape)}")
    if x.shape[0] < 1 or x.shape[2] < 1 or x.shape[3] < 1:
        raise ValueError(f"images must be non-empty, got {tuple(x.shape)}")
    x = x.to(torch.float64)
    if not bool(torch.isfinite(x).all()):
        raise ValueError("images contain NaN or infinite values")
    if qtables is None:
        luma, chroma = standard_qtables(quality)
    else:
        tabs = [qtables] if torch.is_tensor(qtables) and qtables.ndim == 1 else list(qtables)
        if len(tabs) not in (1, 2):
            raise ValueError(f"qtables: give 1 or 2 tables of 64 entries, got {len(tabs)}")
        luma = _as_table(tabs[0], "qtables[0]")
        chroma = _as_table(tabs[-1], f"qtables[{len(tabs) - 1}]")
    n, c, h, w = x.shape
    if c == 1:
        planes, samplings, tabs_used, space = [x], [(1, 1)], [luma], "gray"
    else:
        m, b = rgb_to_ycbcr_matrix()
        ycc = torch.einsum("kc,nchw->nkhw", m, x) + b[None, :, None, None]
        planes = [ycc[:, i : i + 1] for i in range(3)]
        samplings = [SUBSAMPLINGS[subsampling], (1, 1), (1, 1)]
        tabs_used, space = [luma, chroma, chroma], "ycbcr"
    vmax, hmax = samplings[0]
    components = []
    for plane, (v, hs), table in zip(planes, samplings, tabs_used):
        factors = (vmax // v, hmax // hs)
        coeffs = _encode_plane(plane - 128.0, factors, table)
        size = (-(-h * v // vmax), -(-w * hs // hmax))
        components.append(Component(coeffs, table.reshape(1, NCOEF).repeat(n, 1), size, (v, hs)))
    return JpegBatch(components=tuple(components), size=(h, w), color_space=space)
