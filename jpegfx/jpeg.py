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
The header is parsed here (marker walk, no entropy decoding) to refuse what the rest of the
package cannot represent *before* libjpeg runs: not a JPEG, truncated (no EOI after the scans),
lossless (SOF3/SOF11), hierarchical (SOF5–7, SOF13–15, DHP), precision other than 8 bits, CMYK/YCCK
(4 components), RGB colour space (Adobe transform 0, or component ids 'R','G','B' without JFIF: the
package's models expect YCbCr), DNL-defined heights, zero-size images, images above ``max_pixels``
(decompression-bomb guard), fractional sampling ratios, quantisation tables redefined between scans
and more than 48 APPn/COM segments (jpeglib's fixed marker arrays would overflow). Entropy decoding
is done by libjpeg-turbo through ``jpeglib`` (build ``turbo210`` when present, which also decodes
arithmetic-coded files), in one pass through jpeglib's C entry points with the header validated by
libjpeg first (see :func:`_fast_lib`); ``jpeglib.read_dct`` is the fallback. libjpeg always reads a
private temporary copy of the bytes that were parsed here.
libjpeg reports corrupt data as *warnings* on stderr and fills the rest with zeros; the warnings are
captured (file descriptor 2 is redirected for the duration of the call) and data-integrity warnings
("Corrupt JPEG data…", "Premature end of JPEG file", bad progression) become :class:`JpegError`.
libjpeg prints only the *first* warning of a decode; if that one is benign (unknown JFIF revision,
unknown Adobe transform, bad ICC marker) a later corruption warning is not seen — the marker walk
still catches truncation. Calls into libjpeg are serialised by a process-wide lock (use processes,
e.g. DataLoader workers, for parallel reading).

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

import contextlib
import ctypes
import functools
import io
import logging
import os
import sys
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO, Union

import numpy as np
import torch
import torch.nn.functional as F

from .errors import JpegError
from .transforms import BLOCK, NCOEF, from_dct, to_dct

log = logging.getLogger(__name__)

__all__ = [
    "JpegError",
    "Component",
    "JpegBatch",
    "read_jpeg",
    "stack",
    "encode",
    "decode",
    "upsample_chroma",
    "ycbcr_to_rgb_matrix",
    "rgb_to_ycbcr_matrix",
    "standard_qtables",
    "SUBSAMPLINGS",
]

Source = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, BinaryIO]

SUBSAMPLINGS: dict[str, tuple[int, int]] = {
    "4:4:4": (1, 1),
    "4:2:2": (1, 2),
    "4:2:0": (2, 2),
    "4:4:0": (2, 1),
}
"""Encoder subsampling names → luma sampling factors ``(vertical, horizontal)`` (chroma is 1×1)."""

# Chroma ratios (v_max / v_c, h_max / h_c) → conventional J:a:b names (luma at the maximum).
_RATIO_NAMES = {
    (1, 1): "4:4:4",
    (1, 2): "4:2:2",
    (2, 2): "4:2:0",
    (2, 1): "4:4:0",
    (1, 4): "4:1:1",
    (2, 4): "4:1:0",
}


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

    @property
    def subsampling(self) -> str:
        """"4:4:4", "4:2:2", "4:2:0", "4:4:0", "4:1:1", "4:1:0"; "4:0:0" for gray; otherwise the
        raw factors as "h{h}v{v}/…" per component (e.g. "h1v1/h2v2/h2v2")."""
        if self.color_space == "gray":
            return "4:0:0"
        vmax, hmax = self.max_sampling
        y, cb, cr = (c.sampling for c in self.components)
        if y == (vmax, hmax) and cb == cr and vmax % cb[0] == 0 and hmax % cb[1] == 0:
            name = _RATIO_NAMES.get((vmax // cb[0], hmax // cb[1]))
            if name is not None:
                return name
        return "/".join(f"h{h}v{v}" for v, h in (c.sampling for c in self.components))


# ============================================================================================
# Colour matrices and quantisation tables
# ============================================================================================
def ycbcr_to_rgb_matrix() -> tuple[torch.Tensor, torch.Tensor]:
    """JFIF YCbCr → RGB on the 0–255 scale: ``rgb = M @ [Y, Cb, Cr] + b``.

    Returns ``(M (3, 3), b (3,))`` float64 with libjpeg's constants (R = Y + 1.402 (Cr − 128),
    G = Y − 0.344136 (Cb − 128) − 0.714136 (Cr − 128), B = Y + 1.772 (Cb − 128)).
    """
    m = torch.tensor(
        [[1.0, 0.0, 1.402], [1.0, -0.344136, -0.714136], [1.0, 1.772, 0.0]], dtype=torch.float64
    )
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
# Header parsing (marker walk; no entropy decoding)
# ============================================================================================
_SOF_LOSSLESS = {0xC3: 3, 0xCB: 11}
_SOF_HIERARCHICAL = {0xC5: 5, 0xC6: 6, 0xC7: 7, 0xCD: 13, 0xCE: 14, 0xCF: 15}
_SOF_SUPPORTED = {0xC0: 0, 0xC1: 1, 0xC2: 2, 0xC9: 9, 0xCA: 10}
# jpeglib keeps APPn/COM segments in fixed arrays of 50 entries (MAX_MARKER) and overruns them
# beyond that; refuse such files before jpeglib sees them.
_MAX_APP_SEGMENTS = 48


@dataclass(frozen=True)
class _Header:
    height: int
    width: int
    components: tuple[tuple[int, int, int, int], ...]  # (id, v, h, table slot)
    color_space: str  # "gray" | "ycbcr"
    sof: int  # SOF number n of SOFn
    num_scans: int
    marker_bytes: int  # total payload of APPn/COM segments (what jpeglib's marker reader copies)

    @property
    def arithmetic(self) -> bool:
        return self.sof in (9, 10)

    @property
    def max_sampling(self) -> tuple[int, int]:
        return (max(c[1] for c in self.components), max(c[2] for c in self.components))

    def component_size(self, i: int) -> tuple[int, int]:
        vmax, hmax = self.max_sampling
        _, v, h, _ = self.components[i]
        return (-(-self.height * v // vmax), -(-self.width * h // hmax))


def _parse_header(data: bytes, max_pixels: int) -> _Header:
    n = len(data)
    if n == 0:
        raise JpegError("empty input: not a JPEG file")
    if n < 2 or data[0] != 0xFF or data[1] != 0xD8:
        raise JpegError("not a JPEG file (no SOI marker FF D8 at the start)")
    pos = 2
    frame = None  # (precision, height, width, components)
    sof = -1
    jfif = False
    adobe_transform = None
    tables: dict[int, bytes] = {}
    redefined: set[int] = set()
    scans = 0
    app_count = app_bytes = 0
    while True:
        if pos >= n:
            raise JpegError("truncated JPEG: data ends before the EOI marker")
        if data[pos] != 0xFF:
            raise JpegError(f"corrupt JPEG: expected a marker at byte {pos}, found 0x{data[pos]:02X}")
        while pos < n and data[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos >= n:
            raise JpegError("truncated JPEG: data ends inside a marker")
        code = data[pos]
        pos += 1
        if code == 0xD9:  # EOI
            break
        if 0xD0 <= code <= 0xD7 or code == 0x01:  # standalone markers (RSTn, TEM)
            continue
        if code in (0xD8, 0x00) or 0x02 <= code <= 0xBF or code == 0xC8:  # SOI again, reserved
            raise JpegError(f"corrupt JPEG: invalid marker 0xFF{code:02X} at byte {pos - 2}")
        if pos + 2 > n:
            raise JpegError("truncated JPEG: data ends inside a marker segment")
        length = (data[pos] << 8) | data[pos + 1]
        if length < 2:
            raise JpegError(f"corrupt JPEG: marker 0xFF{code:02X} has invalid length {length}")
        if pos + length > n:
            raise JpegError(
                f"truncated or corrupt JPEG: marker 0xFF{code:02X} segment (length {length}) overruns the data"
            )
        seg = data[pos + 2 : pos + length]
        pos += length

        if 0xE0 <= code <= 0xEF or code == 0xFE:
            app_count += 1
            app_bytes += length - 2
            if app_count > _MAX_APP_SEGMENTS:
                raise JpegError(f"JPEG with more than {_MAX_APP_SEGMENTS} APPn/COM segments is not supported")
        if code in _SOF_LOSSLESS:
            raise JpegError(f"lossless JPEG (SOF{_SOF_LOSSLESS[code]}) is not supported")
        if code in _SOF_HIERARCHICAL:
            raise JpegError(f"hierarchical JPEG (SOF{_SOF_HIERARCHICAL[code]}) is not supported")
        if code == 0xDE:
            raise JpegError("hierarchical JPEG (DHP marker) is not supported")
        if code == 0xDC:
            raise JpegError("JPEG with a DNL marker (height defined after the scan) is not supported")
        if code in _SOF_SUPPORTED:
            if frame is not None:
                raise JpegError("corrupt JPEG: more than one SOF marker")
            sof = _SOF_SUPPORTED[code]
            frame = _parse_sof(seg, max_pixels)
        elif code == 0xDB:
            _parse_dqt(seg, tables, redefined if scans else None)
        elif code == 0xE0 and len(seg) >= 14 and seg[:5] == b"JFIF\x00":
            jfif = True
        elif code == 0xEE and len(seg) >= 12 and seg[:5] == b"Adobe":
            adobe_transform = seg[11]
        elif code == 0xDA:  # SOS: skip the entropy-coded segment up to the next real marker
            if frame is None:
                raise JpegError("corrupt JPEG: scan (SOS) before the frame header (SOF)")
            scans += 1
            pos = _skip_entropy_coded(data, pos)
    if frame is None:
        raise JpegError("corrupt JPEG: no frame header (SOF marker)")
    if scans == 0:
        raise JpegError("corrupt JPEG: no image data (no SOS marker)")
    _precision, height, width, comps = frame
    for cid, _v, _h, slot in comps:
        if slot not in tables:
            raise JpegError(f"corrupt JPEG: quantisation table {slot} (component {cid}) is not defined")
        if slot in redefined:
            raise JpegError(f"quantisation table {slot} is redefined between scans: not supported")
    if len(comps) == 1:
        color_space = "gray"
    elif len(comps) == 3:
        color_space = _color_space(comps, jfif, adobe_transform)
    elif len(comps) == 4:
        raise JpegError("CMYK/YCCK JPEG (4 components) is not supported")
    else:
        raise JpegError(f"JPEG with {len(comps)} components is not supported (only 1 or 3)")
    vmax, hmax = max(c[1] for c in comps), max(c[2] for c in comps)
    for cid, v, h, _slot in comps:
        if vmax % v or hmax % h:
            raise JpegError(
                f"fractional sampling ratio (component {cid}: {h}x{v} of {hmax}x{vmax}) is not supported"
            )
    return _Header(height, width, comps, color_space, sof, scans, app_bytes)


def _skip_entropy_coded(data: bytes, pos: int) -> int:
    """Offset of the first marker after the entropy-coded data starting at ``pos``: a 0xFF that is
    not a stuffed zero (FF 00), a restart marker (FF D0-D7) or a fill byte."""
    find, n = data.find, len(data)
    while True:
        i = find(b"\xff", pos)
        if i < 0 or i + 1 >= n:
            raise JpegError("truncated JPEG: data ends inside the scan (no EOI marker)")
        nxt = data[i + 1]
        if nxt == 0x00 or 0xD0 <= nxt <= 0xD7:
            pos = i + 2
        elif nxt == 0xFF:
            pos = i + 1
        else:
            return i


def _parse_sof(seg: bytes, max_pixels: int) -> tuple[int, int, int, tuple[tuple[int, int, int, int], ...]]:
    if len(seg) < 6:
        raise JpegError("corrupt JPEG: SOF segment too short")
    precision = seg[0]
    height = (seg[1] << 8) | seg[2]
    width = (seg[3] << 8) | seg[4]
    nc = seg[5]
    if precision != 8:
        raise JpegError(f"{precision}-bit JPEG is not supported (only 8-bit precision)")
    if height == 0 or width == 0:
        raise JpegError(f"zero-size JPEG ({width}x{height} pixels, w x h)")
    if height * width > max_pixels:
        raise JpegError(
            f"JPEG too large: {width}x{height} = {height * width} pixels exceeds max_pixels={max_pixels}"
        )
    if nc == 0 or len(seg) != 6 + 3 * nc:
        raise JpegError("corrupt JPEG: bad SOF segment length")
    comps = []
    for i in range(nc):
        cid, hv, slot = seg[6 + 3 * i : 9 + 3 * i]
        h, v = hv >> 4, hv & 15
        if not (1 <= h <= 4 and 1 <= v <= 4):
            raise JpegError(f"corrupt JPEG: bad sampling factors {h}x{v} for component {cid}")
        if slot > 3:
            raise JpegError(f"corrupt JPEG: bad quantisation table slot {slot}")
        comps.append((cid, v, h, slot))
    return precision, height, width, tuple(comps)


def _parse_dqt(seg: bytes, tables: dict[int, bytes], redefined: set[int] | None) -> None:
    i = 0
    while i < len(seg):
        pq, slot = seg[i] >> 4, seg[i] & 15
        size = 64 * (2 if pq else 1)
        if pq > 1 or slot > 3 or i + 1 + size > len(seg):
            raise JpegError("corrupt JPEG: bad DQT segment")
        body = seg[i + 1 : i + 1 + size]
        if redefined is not None and slot in tables and tables[slot] != body:
            redefined.add(slot)
        tables[slot] = body
        i += 1 + size


def _color_space(comps: Sequence[tuple[int, int, int, int]], jfif: bool, adobe: int | None) -> str:
    """libjpeg-turbo's guess (jdapimin.c default_decompress_parms) for 3 components."""
    if jfif:
        return "ycbcr"
    if adobe is not None:
        if adobe == 0:
            raise JpegError("RGB colour-space JPEG (Adobe transform 0) is not supported; only YCbCr")
        return "ycbcr"  # 1 = YCbCr; other codes: libjpeg warns and assumes YCbCr
    if tuple(c[0] for c in comps) == (82, 71, 66):
        raise JpegError("RGB colour-space JPEG (component ids 'R','G','B') is not supported; only YCbCr")
    return "ycbcr"


# ============================================================================================
# libjpeg (through jpeglib): version choice, stderr capture, coefficient reading
# ============================================================================================
_LOCK = threading.RLock()
# Builds of libjpeg in jpeglib, best first: libjpeg-turbo (what Pillow and simplejpeg use, and it
# decodes arithmetic coding); IJG 6b, jpeglib's default, cannot decode arithmetic-coded files.
_PREFERRED_VERSIONS = (
    "turbo210", "turbo200", "turbo150", "turbo140", "turbo130", "turbo120",
    "9f", "9e", "9d", "9c", "9b", "9a", "9", "8d",
)  # fmt: skip
# libjpeg warnings (jerror.h JWRN_*): metadata-only ones are logged, data-integrity ones refuse.
_BENIGN_WARNINGS = (
    "Warning: unknown JFIF revision",
    "Unknown Adobe color transform",
    "Corrupt JPEG data: bad ICC marker",
)
_FATAL_WARNINGS = (
    "Corrupt JPEG data",
    "Premature end of JPEG file",
    "Inconsistent progression",
    "Invalid SOS parameters",
)


@functools.lru_cache(maxsize=None)
def _backend_version() -> str:
    import jpeglib

    available = set(jpeglib.version.versions())
    for v in _PREFERRED_VERSIONS:
        if v in available:
            return v
    return "6b"


def _supports_arithmetic(version: str) -> bool:
    return version != "6b"


@functools.lru_cache(maxsize=None)
def _fast_lib() -> ctypes.CDLL | None:
    """Our own handle on jpeglib's C library (no global version switch), or None.

    jpeglib's public ``read_dct`` entropy-decodes the file twice (once to count scans) and copies
    it twice; the fast path reads coefficients in one pass into buffers sized from the header
    parsed here. jpeglib's C ``read_jpeg_dct`` leaves its ``FILE *`` uninitialised when libjpeg
    fails while reading the *header* and then ``fclose``s garbage (a segfault), so the header is
    first validated with ``read_jpeg_markers`` (header only, safe on errors). Falls back to the
    public API when jpeglib's internals are not as expected.
    """
    try:
        from jpeglib._bind import CJpegLib

        lib = CJpegLib._bind_lib(version=_backend_version())
        lib.read_jpeg_dct  # noqa: B018 — AttributeError when absent
        lib.read_jpeg_markers  # noqa: B018
        return lib
    except Exception as exc:  # pragma: no cover - depends on the installed jpeglib
        log.debug("jpeglib fast path unavailable (%s); using jpeglib.read_dct", exc)
        return None


_STDERR_SINK: list[BinaryIO] = []  # one scratch file, reused under _LOCK


@contextlib.contextmanager
def _captured_stderr():
    """Redirect file descriptor 2 (where libjpeg prints) into a list of lines, filled on exit.

    Callers hold ``_LOCK``; the scratch file is created once and emptied before each use.
    """
    lines: list[str] = []
    with contextlib.suppress(Exception):
        sys.stderr.flush()  # nothing of Python's may land in the capture
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all: nothing to capture
        yield lines
        return
    if not _STDERR_SINK:
        _STDERR_SINK.append(tempfile.TemporaryFile())
    sink = _STDERR_SINK[0]
    sink.seek(0)
    sink.truncate()
    try:
        os.dup2(sink.fileno(), 2)
        yield lines
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        sink.seek(0)
        lines.extend(ln.strip() for ln in sink.read().decode("utf-8", "replace").splitlines() if ln.strip())


def _check_messages(lines: list[str], failed: bool) -> None:
    if failed:
        detail = lines[-1] if lines else "decoding failed"
        raise JpegError(f"libjpeg cannot decode the JPEG: {detail}")
    for line in lines:
        if line.startswith(_BENIGN_WARNINGS):
            log.debug("libjpeg: %s", line)
        elif line.startswith(_FATAL_WARNINGS):
            raise JpegError(f"corrupt JPEG data (libjpeg: {line})")
        else:
            log.warning("libjpeg: %s", line)


@contextlib.contextmanager
def _as_file(data: bytes):
    """jpeglib reads paths only: a private copy of ``data`` that has a path, removed afterwards.

    On Linux an anonymous in-memory file (``memfd_create``, opened through ``/proc/self/fd``) avoids
    the file system; elsewhere a temporary file.
    """
    if hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd"):
        fd = os.memfd_create("jpegfx", os.MFD_CLOEXEC)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return
    tmp = tempfile.NamedTemporaryFile(prefix="jpegfx-", suffix=".jpg", delete=False)
    try:
        with tmp:
            tmp.write(data)
        yield tmp.name
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp.name)


def _read_coefficients(path: str, header: _Header, fast: bool = True) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Quantised blocks ``(Hb_c, Wb_c, 8, 8)`` int16 and natural-order tables ``(64,)`` per component."""
    lib = _fast_lib() if fast else None
    with _LOCK:
        if lib is not None:
            return _read_fast(lib, path, header)
        return _read_public(path, header)


def _read_fast(lib: ctypes.CDLL, path: str, header: _Header) -> tuple[list[np.ndarray], list[np.ndarray]]:
    cpath = ctypes.c_char_p(os.fsencode(path))
    # 1. Header only (libjpeg's jpeg_read_header), safe on failure; the buffer receives the APPn/COM
    #    payloads, at most header.marker_bytes of them.
    markers = (ctypes.c_ubyte * (header.marker_bytes + 1))()
    with _captured_stderr() as lines:
        status = lib.read_jpeg_markers(cpath, markers)
    _check_messages(lines, failed=status == 0)
    # 2. Coefficients, into buffers sized from the (now libjpeg-validated) frame header.
    blocks = []
    for i in range(len(header.components)):
        hc, wc = header.component_size(i)
        blocks.append(np.zeros((-(-hc // BLOCK), -(-wc // BLOCK), NCOEF), dtype=np.int16))
    qt = np.zeros((4, NCOEF), dtype=np.uint16)
    slots = np.full(4, -1, dtype=np.int16)
    short_p = ctypes.POINTER(ctypes.c_short)
    ptrs = [b.ctypes.data_as(short_p) for b in blocks] + [None] * (4 - len(blocks))
    with _captured_stderr() as lines:
        status = lib.read_jpeg_dct(
            cpath, *ptrs, qt.ctypes.data_as(ctypes.POINTER(ctypes.c_ushort)), slots.ctypes.data_as(short_p)
        )
    _check_messages(lines, failed=status == 0)
    tables = []
    for i, (_cid, _v, _h, slot) in enumerate(header.components):
        if int(slots[i]) != slot:  # pragma: no cover - defensive
            raise JpegError(f"libjpeg uses quantisation table {int(slots[i])} for component {i}, not {slot}")
        tables.append(qt[slot].astype(np.int32))
    return [b.reshape(*b.shape[:2], BLOCK, BLOCK) for b in blocks], tables


def _read_public(path: str, header: _Header) -> tuple[list[np.ndarray], list[np.ndarray]]:
    import jpeglib

    with _captured_stderr() as lines, contextlib.redirect_stdout(io.StringIO()):
        try:
            with jpeglib.version(_backend_version()):
                jpeg = jpeglib.read_dct(path)
                planes = [jpeg.Y, jpeg.Cb, jpeg.Cr][: len(header.components)]
                qt, slots = jpeg.qt, jpeg.quant_tbl_no
                info = (jpeg.height, jpeg.width, jpeg.samp_factor.tolist())
            failed = False
        except (OSError, RuntimeError):
            failed = True
    _check_messages(lines, failed)
    want = (header.height, header.width, [[c[1], c[2]] for c in header.components])
    if info != want:  # pragma: no cover - defensive
        raise JpegError(f"libjpeg reads geometry {info}, the header says {want}")
    tables = [np.asarray(qt[int(s)]).reshape(NCOEF).astype(np.int32) for s in slots]
    out = []
    for i, plane in enumerate(planes):
        hb, wb = (-(-s // BLOCK) for s in header.component_size(i))
        out.append(np.ascontiguousarray(plane[:hb, :wb]).astype(np.int16, copy=False))
    return out, tables


def _source_bytes(source: Source) -> tuple[bytes, str]:
    """The file's bytes and a label for messages (path, or '' for in-memory data)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), ""
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        try:
            with open(path, "rb") as f:
                return f.read(), str(path)
        except OSError as exc:
            raise JpegError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    read = getattr(source, "read", None)
    if read is None:
        raise TypeError(f"read_jpeg expects a path, bytes or a binary file object, got {type(source).__name__}")
    data = read()
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError("read_jpeg needs a file object opened in binary mode")
    name = getattr(source, "name", None)
    return bytes(data), os.fsdecode(name) if isinstance(name, (str, bytes)) else ""


def read_jpeg(source: Source, *, max_pixels: int = 100_000_000) -> JpegBatch:
    """Read one JPEG's quantised DCT coefficients and tables into a batch of one.

    ``source``: a path, the file's bytes, or a binary file object (read to its end). Raises
    :class:`JpegError` (one-line message) for anything that is not a readable 8-bit sequential or
    progressive (Huffman or arithmetic) gray/YCbCr JPEG of at most ``max_pixels`` pixels; see the
    module docstring for the list. The header is checked before libjpeg decodes anything.
    """
    data, label = _source_bytes(source)
    try:
        return _read_bytes(data, max_pixels)
    except JpegError as exc:
        if label:
            raise JpegError(f"{label}: {exc}") from None
        raise


def _read_bytes(data: bytes, max_pixels: int, fast: bool = True) -> JpegBatch:
    header = _parse_header(data, max_pixels)
    if header.arithmetic and not _supports_arithmetic(_backend_version()):
        raise JpegError(  # pragma: no cover - depends on the installed jpeglib
            f"arithmetic-coded JPEG (SOF{header.sof}) is not supported by the jpeglib build {_backend_version()}"
        )
    # Always decode a private copy of the bytes parsed above: the buffers are sized from this header.
    with _as_file(data) as path:
        planes, tables = _read_coefficients(path, header, fast=fast)
    components = tuple(
        Component(
            coefficients=torch.from_numpy(plane).unsqueeze(0),
            qtable=torch.from_numpy(table).reshape(1, NCOEF),
            size=header.component_size(i),
            sampling=(header.components[i][1], header.components[i][2]),
        )
        for i, (plane, table) in enumerate(zip(planes, tables))
    )
    return JpegBatch(components=components, size=(header.height, header.width), color_space=header.color_space)


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
def _triangle(x: torch.Tensor, dim: int) -> torch.Tensor:
    """×2 along ``dim`` (-1 or -2): out[2i] = ¾ in[i] + ¼ in[i−1], out[2i+1] = ¾ in[i] + ¼ in[i+1],
    edges replicated."""
    if dim == -1:
        p = F.pad(x, (1, 1, 0, 0), mode="replicate")
        before, after = p[..., :-2], p[..., 2:]
    else:
        p = F.pad(x, (0, 0, 1, 1), mode="replicate")
        before, after = p[..., :-2, :], p[..., 2:, :]
    even = 0.75 * x + 0.25 * before
    odd = 0.75 * x + 0.25 * after
    out = torch.stack((even, odd), dim=dim)  # (..., n, 2) or (..., n, 2, w)
    if dim == -1:
        return out.flatten(-2)
    return out.flatten(-3, -2)


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
    hc, wc = plane.shape[-2:]
    h, w = size
    if fv * hc < h or fh * wc < w:
        raise ValueError(f"plane {hc}x{wc} upsampled by {fv}x{fh} cannot cover {h}x{w} (h x w)")
    x = plane
    fancy = method == "fancy" and (fv, fh) in ((2, 1), (1, 2), (2, 2)) and not (fh == 2 and wc <= 2)
    if fancy:
        if fv == 2:
            x = _triangle(x, -2)
        if fh == 2:
            x = _triangle(x, -1)
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
    m, b = ycbcr_to_rgb_matrix()
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
