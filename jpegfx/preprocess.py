"""Any photo in: the scaled float decode, centre crop and flip of a JPEG's coefficients (numpy only).

A converted network runs at one input size (its ``input_size``, C_h × C_w). A :class:`Policy` maps a
JPEG of any size and chroma layout onto that size the way the usual ImageNet pipeline does — shorter
side to at least ``resize`` pixels, then a centre crop — but without decoding at full size: JPEG's
own scaled decoding reconstructs an N/8-size image from each block's coefficients
(libjpeg's ``scale_num/8``), so the shorter side reaches ``resize`` with the smallest N/8,
N = 1 … 16, that gets there. :func:`model_input` then gives what the network reads: the block DCT
of the normalised crop, ``(C·64, Hb, Wb)`` (layout of :mod:`jpegfx.transforms`).

Everything from the file's quantised coefficients to that tensor is one **exact affine map**; this
module computes it block by block and serves both the torch model and onnxruntime (it needs no
torch). The steps, for a file of size ``h × w`` with per-component sampling ``(v_c, h_c)``:

1. **Scale N/8** (libjpeg-turbo's meaning, jdmaster.c / jidctred.c / jidctint.c). The output is
   ``ceil(h·N/8) × ceil(w·N/8)``. Component ``c`` is reconstructed with an ``s_c``-point IDCT,
   ``s_c = N·2^k`` the largest with ``s_c ≤ 8`` (or ``s_c = N`` when ``N ≥ 8``) such that
   ``v_max·N`` and ``h_max·N`` are multiples of ``2·v_c·s_c`` and ``2·h_c·s_c`` at each doubling
   (so 4:2:0 chroma at N < 8 is rebuilt at full output resolution, not upsampled). A block with
   dequantised coefficients ``F`` (8×8, orthonormal DCT, ``x = Cᵀ F C``) becomes the ``s × s`` block
   ``M_s F M_sᵀ + 128`` with the ``(s, 8)`` matrix

   * ``s`` divides 8 (1, 2, 4, 8): ``M_s[i, u] = (s/8) Σ_{m ∈ box i} C[u, m]`` — the mean of each
     ``8/s``-pixel box of the full-size block (libjpeg's reduced IDCTs; ``s = 1`` is the block mean);
   * otherwise: ``M_s[i, u] = a(u) cos((2i+1)uπ / 2s)`` for ``u < min(s, 8)``, 0 above, with
     ``a(0) = √(1/8)``, ``a(u) = √(2/8)`` — an ``s``-point orthonormal IDCT of the coefficients
     truncated (or zero-padded) to ``s × s`` and scaled by ``s/8``.

   The component's plane is cropped to ``ceil(h·v_c·s_c / (v_max·8))`` rows (columns alike).
2. **Upsample** each component by ``(v_max·N / (v_c·s_c), h_max·N / (h_c·s_c))`` with libjpeg's
   filter: "fancy" (triangle) for ×2 ratios when ``N > 1`` and, for horizontal ×2, the component is
   wider than 2 samples; replication otherwise, or always with ``upsampling="nearest"``.
3. **Colour**: JFIF YCbCr → RGB (:data:`YCBCR_TO_RGB`); a colour JPEG into a one-channel model gives
   it luma, a gray JPEG into a three-channel model luma three times.
4. **Crop** to the policy's centre window (torchvision's ``center_crop`` offsets), **flip**
   horizontally if asked, **normalise** ``(x/255 − mean)/std``, zero-pad to whole blocks, block DCT.

Only the blocks the crop needs are transformed: the crop selects whole MCUs of coefficients (plus one
MCU of margin on each side for the chroma filter, which crosses block borders), so the result equals
cropping the full decode, at a fraction of its cost. Nothing is rounded or clamped: this is the
float reference of a scaled decode (libjpeg's integer IDCT and clamping differ by about one level;
the tests compare against ``djpeg -scale N/8``).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Sequence, Union

import numpy as np

from jpegfx.errors import JpegError, UsageError
from jpegfx.reader import Batch, Coefficients

__all__ = ["Policy", "YCBCR_TO_RGB", "MAX_SCALE", "dct_matrix", "idct_matrix", "scaled_layout", "decode",
           "flip_blocks", "crop_blocks", "model_pixels", "model_pixels_many", "model_input", "model_inputs",
           "batch_pixels", "batch_inputs"]

BLOCK = 8
RESAMPLING = (None, "bilinear")
"""What may follow the N/8 scaling: nothing, or Pillow's antialiased bilinear filter."""
MAX_SCALE = 16
"""Largest scale numerator: libjpeg scales by N/8 for N = 1 … 16."""

YCBCR_TO_RGB = ((1.0, 0.0, 1.402), (1.0, -0.344136, -0.714136), (1.0, 1.772, 0.0))
"""JFIF YCbCr → RGB on the 0–255 scale with libjpeg's constants: ``rgb = M · (Y, Cb − 128, Cr − 128)``."""


# --------------------------------------------------------------------------------------------
# The policy
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Policy:
    """How a photo of any size becomes the network's input.

    ``resize``: scale so that the shorter side is at least this many pixels, by the smallest N/8
    (N = 1 … 16) that reaches it (``None``: no scaling). ``resample="bilinear"`` then brings the
    shorter side to exactly ``resize`` as torchvision's ``Resize(resize)`` does on a PIL image
    (Pillow's antialiased bilinear filter, the longer side ``int(resize · long / short)``) — an exact
    linear map too, applied to the rows and columns the crop needs; ``None`` keeps the N/8 size.
    ``crop``: the centre crop ``(h, w)`` (an int for a square; ``None``: the whole image, which must
    then be the network's size). ``flip``: mirror left–right (test-time augmentation).

    ``clamp=True`` gives what an 8-bit pipeline gives instead of the float decode: samples rounded
    (half up) and range-limited to 0–255 where libjpeg does (each component after its IDCT and after
    upsampling, RGB after the colour conversion) and where Pillow does when it resamples an 8-bit
    image (after the horizontal pass and after the vertical one). Use it for a network trained on
    ordinarily decoded images (Pillow, torchvision): they never see the ringing below 0 and above 255
    that the float decode keeps. The default is the float decode, the exact input of a conversion."""

    resize: int | None = None
    crop: tuple[int, int] | None = None
    flip: bool = False
    resample: str | None = None
    clamp: bool = False

    def __post_init__(self) -> None:
        if self.resize is not None and (isinstance(self.resize, bool) or not isinstance(self.resize, int)
                                        or self.resize < 1):
            raise UsageError(f"resize must be a positive integer or None, got {self.resize!r}")
        crop = self.crop
        if isinstance(crop, int) and not isinstance(crop, bool):
            crop = (crop, crop)
        if crop is not None:
            try:
                crop = tuple(int(c) for c in crop)
            except (TypeError, ValueError):
                raise UsageError(f"crop must be an int, (h, w) or None, got {self.crop!r}") from None
            if len(crop) != 2 or min(crop) < 1:
                raise UsageError(f"crop must be positive (h, w), got {self.crop!r}")
        object.__setattr__(self, "crop", crop)
        object.__setattr__(self, "flip", bool(self.flip))
        object.__setattr__(self, "clamp", bool(self.clamp))
        if self.resample not in RESAMPLING:
            raise UsageError(f"resample must be one of {RESAMPLING}, got {self.resample!r}")
        if self.resample is not None and self.resize is None:
            raise UsageError("resample needs resize (the shorter side to resample to)")

    @classmethod
    def imagenet(cls, size: int | tuple[int, int], resample: str | None = "bilinear") -> "Policy":
        """The usual evaluation policy for a ``size`` network: shorter side to ``size · 8/7`` (256 for
        224) — by N/8 scaling then, by default, bilinear resampling to exactly that, as torchvision's
        ``Resize`` (``resample=None``: N/8 scaling alone, at least that) — and a centre crop ``size``."""
        h, w = (size, size) if isinstance(size, int) else size
        return cls(resize=int(round(max(h, w) * 8 / 7)), crop=(h, w), resample=resample)

    def to_json(self) -> dict:
        return {"resize": self.resize, "crop": None if self.crop is None else list(self.crop), "flip": self.flip,
                "resample": self.resample, "clamp": self.clamp}

    @classmethod
    def from_json(cls, value) -> "Policy":
        if not isinstance(value, dict) or set(value) - {"resize", "crop", "flip", "resample", "clamp"}:
            raise UsageError("a preprocessing policy is a JSON object with resize, crop, flip, resample and clamp, "
                             f"got {value!r}")
        return cls(value.get("resize"), value.get("crop"), value.get("flip", False), value.get("resample"),
                   value.get("clamp", False))

    def describe(self) -> str:
        parts = []
        if self.resize is not None and self.resample is not None:
            parts.append(f"shorter side to {self.resize} by N/8 scaling and {self.resample} resampling")
        elif self.resize is not None:
            parts.append(f"shorter side to >= {self.resize} by N/8 scaling")
        if self.crop is not None:
            parts.append(f"centre crop {self.crop[0]}x{self.crop[1]}")
        if self.flip:
            parts.append("flipped left-right")
        if self.clamp:
            parts.append("8-bit samples")
        return ", ".join(parts) or "as is"

    def scale(self, size: tuple[int, int]) -> int:
        """N of the N/8 scaling for an image of ``size`` (8 without ``resize``); a one-line
        :class:`~jpegfx.errors.JpegError` when even 16/8 cannot reach ``resize``."""
        if self.resize is None:
            return BLOCK
        for n in range(1, MAX_SCALE + 1):
            if min(_ceil(size[0] * n, BLOCK), _ceil(size[1] * n, BLOCK)) >= self.resize:
                return n
        raise JpegError(f"image {size[0]}x{size[1]} is too small: its shorter side reaches only "
                        f"{_ceil(min(size) * MAX_SCALE, BLOCK)} at the largest scale 16/8, the policy needs "
                        f">= {self.resize}")

    def window(self, size: tuple[int, int]) -> tuple[int, tuple[int, int, int, int]]:
        """``(N, (top, left, height, width))``: the scale and the crop for an image of ``size``, in
        pixels of the N/8-scaled image (of the resampled image with ``resample``);
        :class:`~jpegfx.errors.JpegError` when the image cannot give the crop."""
        n = self.scale(size)
        out = (_ceil(size[0] * n, BLOCK), _ceil(size[1] * n, BLOCK))
        how = f"scaled by {n}/8 to {out[0]}x{out[1]}" if n != BLOCK else f"at {out[0]}x{out[1]}"
        if self.resample is not None:
            out = self.resampled_size(out)
            how += f", resampled to {out[0]}x{out[1]}"
        if self.crop is None:
            return n, (0, 0, out[0], out[1])
        ch, cw = self.crop
        if ch > out[0] or cw > out[1]:
            raise JpegError(f"image {size[0]}x{size[1]} is smaller than the {ch}x{cw} crop ({how})")
        return n, (int(round((out[0] - ch) / 2.0)), int(round((out[1] - cw) / 2.0)), ch, cw)

    def resampled_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """torchvision's ``Resize(resize)`` output size for ``size``: the shorter side ``resize``, the
        longer ``int(resize · long / short)``."""
        h, w = size
        if h <= w:
            return self.resize, int(self.resize * w / h)
        return int(self.resize * h / w), self.resize


# --------------------------------------------------------------------------------------------
# Transforms
# --------------------------------------------------------------------------------------------
def _ceil(a: int, b: int) -> int:
    return -(-a // b)


@functools.lru_cache(maxsize=None)
def _dct_matrix() -> np.ndarray:
    u = np.arange(BLOCK, dtype=np.float64)[:, None]
    m = np.arange(BLOCK, dtype=np.float64)[None, :]
    scale = np.full((BLOCK, 1), math.sqrt(2.0 / BLOCK))
    scale[0] = math.sqrt(1.0 / BLOCK)
    matrix = scale * np.cos((2 * m + 1) * u * math.pi / (2 * BLOCK))
    matrix.setflags(write=False)
    return matrix


def dct_matrix() -> np.ndarray:
    """The orthonormal 8-point DCT-II matrix ``C[u, m] = a(u) cos((2m + 1)uπ/16)`` (float64)."""
    return _dct_matrix().copy()


@functools.lru_cache(maxsize=None)
def _idct_matrix(s: int) -> np.ndarray:
    c = _dct_matrix()
    if BLOCK % s == 0:  # box means of the full-size reconstruction
        matrix = c.T.reshape(s, BLOCK // s, BLOCK).mean(axis=1)
    else:  # an s-point IDCT of the low min(s, 8) coefficients, scaled by s/8
        i = np.arange(s, dtype=np.float64)[:, None]
        u = np.arange(BLOCK, dtype=np.float64)[None, :]
        a = np.full((1, BLOCK), math.sqrt(2.0 / BLOCK))
        a[0, 0] = math.sqrt(1.0 / BLOCK)
        matrix = a * np.cos((2 * i + 1) * u * math.pi / (2 * s))
        matrix[:, s:] = 0.0
    matrix.setflags(write=False)
    return matrix


@functools.lru_cache(maxsize=None)
def _idct_kron(s: int) -> np.ndarray:
    """``(64, s²)``: a block's natural-order coefficients (row) times this = its ``s × s`` pixels."""
    m = _idct_matrix(s)
    kron = np.kron(m, m).T.copy()  # [(u, v), (i, j)] = M[i, u] M[j, v]
    kron.setflags(write=False)
    return kron


def idct_matrix(s: int) -> np.ndarray:
    """The ``(s, 8)`` matrix ``M_s`` of libjpeg's ``s × s`` scaled IDCT (module docstring, step 1):
    a block's pixels are ``M_s F M_sᵀ`` (+128). ``s = 8`` is the plain inverse DCT ``Cᵀ``."""
    if not 1 <= s <= MAX_SCALE:
        raise ValueError(f"IDCT size must be 1..{MAX_SCALE}, got {s}")
    return _idct_matrix(s).copy()


@dataclass(frozen=True)
class _ComponentPlan:
    idct: int  # s_c
    size: tuple[int, int]  # its plane at the scaled resolution (rows, columns)
    factors: tuple[int, int]  # upsampling (f_v, f_h) to the output


def scaled_layout(size: tuple[int, int], samplings: Sequence[tuple[int, int]], n: int
                  ) -> tuple[tuple[int, int], list[tuple[int, tuple[int, int], tuple[int, int]]]]:
    """libjpeg's geometry of an N/8 decode: the output size and, per component, ``(s_c, plane size,
    upsampling factors)`` (module docstring, steps 1–2)."""
    out, plans = _plan(tuple(size), tuple(tuple(s) for s in samplings), n)
    return out, [(p.idct, p.size, p.factors) for p in plans]


@functools.lru_cache(maxsize=1024)
def _plan(size: tuple[int, int], samplings: tuple[tuple[int, int], ...], n: int
          ) -> tuple[tuple[int, int], tuple[_ComponentPlan, ...]]:
    if not 1 <= n <= MAX_SCALE:
        raise ValueError(f"scale must be N/8 with N in 1..{MAX_SCALE}, got {n}")
    vmax, hmax = max(v for v, _ in samplings), max(h for _, h in samplings)
    plans = []
    for v, h in samplings:
        s = n
        while s < BLOCK and (vmax * n) % (v * s * 2) == 0 and (hmax * n) % (h * s * 2) == 0:
            s *= 2
        plane = (_ceil(size[0] * v * s, vmax * BLOCK), _ceil(size[1] * h * s, hmax * BLOCK))
        plans.append(_ComponentPlan(s, plane, ((vmax * n) // (v * s), (hmax * n) // (h * s))))
    return (_ceil(size[0] * n, BLOCK), _ceil(size[1] * n, BLOCK)), tuple(plans)


@functools.lru_cache(maxsize=256)
def _resample_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pillow's antialiased bilinear resampling along one axis (its ``precompute_coeffs``: a triangle
    filter widened by the downscale factor, taps at pixel centres, each output's weights normalised),
    without Pillow's rounding to 8 bits between the two axes: output ``i`` is
    ``Σ_t weights[i, t] · x[index[i, t]]`` (unused taps have weight 0)."""
    scale = in_size / out_size
    support = max(scale, 1.0)  # the bilinear filter's support (1) widened when downscaling
    taps = int(math.ceil(support)) * 2 + 1
    center = (np.arange(out_size) + 0.5) * scale
    lo = np.maximum((center - support + 0.5).astype(np.intp), 0)  # C's (int) truncation: arguments are > -1
    hi = np.minimum((center + support + 0.5).astype(np.intp), in_size)
    k = lo[:, None] + np.arange(taps)
    inside = k < hi[:, None]
    weights = np.where(inside, np.clip(1.0 - np.abs((k - center[:, None] + 0.5) / support), 0.0, None), 0.0)
    total = weights.sum(axis=1, keepdims=True)
    weights = np.divide(weights, total, out=np.zeros_like(weights), where=total > 0)
    index = np.minimum(k, hi[:, None] - 1)
    index.setflags(write=False)
    weights.setflags(write=False)
    return index, weights


def _band(in_size: int, out_size: int, start: int, length: int) -> tuple[np.ndarray, int]:
    """Outputs ``start … start + length − 1`` of :func:`_resample_taps` as a dense ``(length, n)``
    matrix over the ``n`` inputs they read, and the first of those inputs."""
    index, weights = (a[start:start + length] for a in _resample_taps(in_size, out_size))
    first = int(index.min())
    band = np.zeros((length, int(index.max()) + 1 - first))
    np.add.at(band, (np.arange(length)[:, None], index - first), weights)
    return band, first


def _resample_matrix(in_size: int, out_size: int) -> np.ndarray:
    """``(out_size, in_size)``: :func:`_resample_taps` as a dense matrix (for tests and reading)."""
    index, weights = _resample_taps(in_size, out_size)
    matrix = np.zeros((out_size, in_size))
    np.add.at(matrix, (np.arange(out_size)[:, None], index), weights)
    return matrix


def _triangle(x: np.ndarray, axis: int) -> np.ndarray:
    """×2 along ``axis`` (-1 or -2): out[2i] = ¾ x[i] + ¼ x[i−1], out[2i+1] = ¾ x[i] + ¼ x[i+1],
    edges replicated (libjpeg's fancy upsampling without its integer rounding)."""
    x = np.moveaxis(x, axis, -1)
    before = np.concatenate((x[..., :1], x[..., :-1]), axis=-1)
    after = np.concatenate((x[..., 1:], x[..., -1:]), axis=-1)
    out = np.stack((0.75 * x + 0.25 * before, 0.75 * x + 0.25 * after), axis=-1).reshape(*x.shape[:-1], -1)
    return np.moveaxis(out, -1, axis)


def _upsample(x: np.ndarray, factors: tuple[int, int], fancy: bool) -> np.ndarray:
    fv, fh = factors
    if fancy and (fv, fh) in ((2, 1), (1, 2), (2, 2)):
        if fv == 2:
            x = _triangle(x, -2)
        if fh == 2:
            x = _triangle(x, -1)
        return x
    if fv > 1:
        x = np.repeat(x, fv, axis=-2)
    if fh > 1:
        x = np.repeat(x, fh, axis=-1)
    return x


def _round(x: np.ndarray) -> np.ndarray:
    """An integer decoder's samples: rounded half up (libjpeg's DESCALE), range-limited to 0–255."""
    return np.clip(np.floor(x + 0.5), 0.0, 255.0)


Group = Union[Batch, Sequence[Coefficients]]
"""Files of one geometry computed together: a :class:`~jpegfx.reader.Batch` (stacked arrays) or a list
of :class:`~jpegfx.reader.Coefficients` of one size, layout and block-array shape (tables may differ)."""


def _header(group: Group):
    return group.header if isinstance(group, Batch) else group[0].header


def _blocks(group: Group, c: int, rows: slice, cols: slice) -> np.ndarray:
    """``(G, rows, cols, 8, 8)`` quantised blocks of component ``c``; only the blocks asked for are copied."""
    if isinstance(group, Batch):
        return group.planes[c][:, rows, cols]
    return np.stack([item.planes[c][rows, cols] for item in group])


def _plane_blocks(group: Group, c: int) -> tuple[int, int]:
    """Component ``c``'s block grid ``(rows, columns)``."""
    return group.planes[c].shape[1:3] if isinstance(group, Batch) else group[0].planes[c].shape[:2]


def _tables(group: Group, c: int) -> np.ndarray:
    """``(G, 64)`` quantisation tables of component ``c``."""
    return group.qtables[c] if isinstance(group, Batch) else np.stack([item.qtables[c] for item in group])


def _ycc(group: Group, n: int, region: tuple[int, int, int, int], components: Sequence[int],
         upsampling: str, clamp: bool = False) -> np.ndarray:
    """(G, K, h, w) float64 level-shifted components of the N/8 decode inside ``region`` (output pixels)
    of the ``G`` files of ``group``, computed together; ``clamp``: each component's samples rounded as
    :func:`_round` after the IDCT and after upsampling."""
    header = _header(group)
    samplings = header.samplings
    out, plans = _plan(header.size, samplings, n)
    top, left, height, width = region
    if top < 0 or left < 0 or height < 1 or width < 1 or top + height > out[0] or left + width > out[1]:
        raise ValueError(f"region {region} is not inside the {out[0]}x{out[1]} scaled image")
    vmax, hmax = max(v for v, _ in samplings), max(h for _, h in samplings)
    mcu_rows, mcu_cols = vmax * n, hmax * n  # output pixels per MCU
    # Whole MCUs covering the region, plus one on each side for the chroma filter.
    m0 = max(0, top // mcu_rows - 1)
    m1 = min(_ceil(out[0], mcu_rows), _ceil(top + height, mcu_rows) + 1)
    k0 = max(0, left // mcu_cols - 1)
    k1 = min(_ceil(out[1], mcu_cols), _ceil(left + width, mcu_cols) + 1)
    planes = []
    for c in components:
        plan, (v, h) = plans[c], samplings[c]
        s = plan.idct
        rows, cols = _plane_blocks(group, c)
        b0, b1 = m0 * v, min(m1 * v, rows)
        a0, a1 = k0 * h, min(k1 * h, cols)
        blocks = _blocks(group, c, slice(b0, b1), slice(a0, a1))
        g = blocks.shape[0]
        blocks = blocks.reshape(g, -1, BLOCK * BLOCK)
        tables = _tables(group, c).astype(np.float64)[:, None, :]
        x = ((blocks * tables) @ _idct_kron(s)).reshape(g, b1 - b0, a1 - a0, s, s)  # every block's M_s F M_sᵀ
        x = x.transpose(0, 1, 3, 2, 4).reshape(g, (b1 - b0) * s, (a1 - a0) * s)
        x = x[:, : min(b1 * s, plan.size[0]) - b0 * s, : min(a1 * s, plan.size[1]) - a0 * s] + 128.0
        fancy = upsampling == "fancy" and n > 1 and not (plan.factors[1] == 2 and plan.size[1] <= 2)
        if clamp:
            x = _round(x)
        x = _upsample(x, plan.factors, fancy)
        if clamp and plan.factors != (1, 1):
            x = _round(x)
        r, q = top - m0 * mcu_rows, left - k0 * mcu_cols
        planes.append(x[:, r:r + height, q:q + width])
    return np.stack(planes, axis=1)


def decode(coefs: Coefficients, *, scale: int = BLOCK, region: tuple[int, int, int, int] | None = None,
           upsampling: str = "fancy", clamp: bool = False) -> np.ndarray:
    """The float reference of libjpeg's ``scale``/8 decode: ``(3, h, w)`` RGB (``(1, h, w)`` for gray)
    float64 on the 0–255 scale, unrounded and unclamped; ``region = (top, left, height, width)`` in
    scaled pixels restricts it (only the MCUs the region needs are transformed).

    ``clamp=True`` rounds (half up) and clamps to 0–255 where an integer decoder does — each component
    after its IDCT and after upsampling, then RGB — for comparing with one (``djpeg -scale N/8``
    agrees to a mean of a few hundredths of a level; its integer filters round a little differently)."""
    if upsampling not in ("fancy", "nearest"):
        raise UsageError(f"upsampling must be 'fancy' or 'nearest', got {upsampling!r}")
    out, _ = _plan(coefs.header.size, coefs.header.samplings, scale)
    region = (0, 0, out[0], out[1]) if region is None else tuple(int(r) for r in region)
    gray = coefs.header.color_space == "gray"
    ycc = _ycc([coefs], scale, region, [0] if gray else [0, 1, 2], upsampling, clamp)[0]
    if gray:
        return ycc
    ycc[1:] -= 128.0
    rgb = _mix(np.asarray(YCBCR_TO_RGB), ycc)
    return _round(rgb) if clamp else rgb


def flip_blocks(coefs: Coefficients) -> Coefficients:
    """Mirror a JPEG left–right in its quantised coefficients, losslessly (as ``jpegtran -flip
    horizontal``): every component's block columns in reverse order, and in each block the odd
    horizontal frequencies negated (``C[v, 7 − n] = (−1)^v C[v, n]``, so mirroring a block's pixels
    negates its coefficients with odd ``v``). Exact for the whole image only when its width is a whole
    number of MCUs (``8·h_max`` pixels); otherwise a one-line :class:`~jpegfx.errors.JpegError` (the
    encoder's padding would move to the left edge)."""
    header = coefs.header
    hmax = max(h for _, h in header.samplings)
    if header.size[1] % (BLOCK * hmax):
        raise JpegError(f"width {header.size[1]} is not a multiple of the {BLOCK * hmax}-pixel MCU: "
                        "a lossless left-right flip needs whole MCUs")
    sign = np.where(np.arange(BLOCK) % 2 == 1, -1, 1).astype(np.int16)
    planes = tuple(np.ascontiguousarray(p[:, ::-1] * sign) for p in coefs.planes)
    return coefs._replace(planes=planes)


def crop_blocks(coefs: Coefficients, top: int, left: int, height: int, width: int) -> Coefficients:
    """A crop in the quantised coefficients, losslessly (as ``jpegtran -crop WxH+X+Y``): ``top`` and
    ``left`` must be multiples of the MCU (``8·v_max`` × ``8·h_max`` pixels), so each component keeps
    whole blocks; the result is the JPEG a decoder sees as its own image of ``height × width``
    (chroma filtering at its new edges replicates, as for any file)."""
    from jpegfx.reader import ComponentHeader, Header

    header = coefs.header
    samplings = header.samplings
    vmax, hmax = max(v for v, _ in samplings), max(h for _, h in samplings)
    h, w = header.size
    if top % (BLOCK * vmax) or left % (BLOCK * hmax):
        raise JpegError(f"crop offset ({top}, {left}) is not on the {BLOCK * vmax}x{BLOCK * hmax} MCU grid")
    if min(top, left) < 0 or height < 1 or width < 1 or top + height > h or left + width > w:
        raise JpegError(f"crop {height}x{width} at ({top}, {left}) is not inside the {h}x{w} image")
    planes, components = [], []
    for comp, plane in zip(header.components, coefs.planes):
        v, hc = comp.sampling
        size = (_ceil(height * v, vmax), _ceil(width * hc, hmax))
        blocks = (_ceil(size[0], BLOCK), _ceil(size[1], BLOCK))
        b0, a0 = top * v // (vmax * BLOCK), left * hc // (hmax * BLOCK)
        planes.append(np.ascontiguousarray(plane[b0:b0 + blocks[0], a0:a0 + blocks[1]]))
        components.append(ComponentHeader(comp.id, comp.sampling, size, blocks))
    header = Header((height, width), header.color_space, tuple(components), header.progressive, header.arithmetic)
    return coefs._replace(header=header, planes=tuple(planes))


# --------------------------------------------------------------------------------------------
# The network's input
# --------------------------------------------------------------------------------------------
def _normalization(normalize, channels: int) -> tuple[np.ndarray, np.ndarray]:
    if normalize is None:
        return np.zeros(channels), np.ones(channels)
    mean, std = (np.broadcast_to(np.asarray(v, dtype=np.float64).reshape(-1), (channels,)) for v in normalize)
    return mean, std


def _block_dct(x: np.ndarray) -> np.ndarray:
    """``(…, C, h, w)`` → ``(…, C·64, Hb, Wb)``: zero-pad to whole blocks, orthonormal DCT of each block."""
    *lead, ch, h, w = x.shape
    hb, wb = _ceil(h, BLOCK), _ceil(w, BLOCK)
    padded = np.zeros((*lead, ch, hb * BLOCK, wb * BLOCK), dtype=np.float64)
    padded[..., :h, :w] = x
    blocks = padded.reshape(-1, hb, BLOCK, wb, BLOCK).transpose(0, 1, 3, 2, 4).reshape(-1, BLOCK * BLOCK)
    f = (blocks @ _dct_kron()).reshape(-1, hb, wb, BLOCK * BLOCK)  # one GEMM: every block's C x Cᵀ
    return np.ascontiguousarray(f.transpose(0, 3, 1, 2)).reshape(*lead, ch * BLOCK * BLOCK, hb, wb)


@functools.lru_cache(maxsize=None)
def _dct_kron() -> np.ndarray:
    """``(64, 64)``: a block's pixels (row, natural order) times this = its coefficients (natural order)."""
    c = _dct_matrix()
    kron = np.kron(c, c).T.copy()  # [(m, n), (u, v)] = C[u, m] C[v, n]
    kron.setflags(write=False)
    return kron


def _mix(matrix: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``matrix (R, K)`` applied to the channels of ``x (…, K, h, w)``."""
    *lead, k, h, w = x.shape
    return (matrix @ x.reshape(*lead, k, h * w)).reshape(*lead, matrix.shape[0], h, w)


GROUP_VALUES = 1 << 22
"""At most this many output values (files × channels × pixels) are computed together in one group of
files of one geometry (:func:`model_pixels_many`): a batch of small files costs a handful of array
operations instead of a handful per file, and a batch of large photos no more memory than one at a
time would need."""


def _geometry(coefs: Coefficients) -> tuple:
    """What files must share to be computed together: size, layout and block-array shapes."""
    header = coefs.header
    return (tuple(header.size), header.color_space, tuple(tuple(s) for s in header.samplings),
            tuple(p.shape for p in coefs.planes))


def _check_options(channels: int, upsampling: str) -> None:
    if channels not in (1, 3):
        raise UsageError(f"JPEG input feeds models with 1 or 3 input channels, not {channels}")
    if upsampling not in ("fancy", "nearest"):
        raise UsageError(f"upsampling must be 'fancy' or 'nearest', got {upsampling!r}")


def _window(header, policy: Policy, input_size: tuple[int, int] | None) -> tuple[int, tuple]:
    """The policy's ``(N, region)`` for a file with this header; a one-line JpegError if it cannot give
    ``input_size``."""
    n, region = policy.window(header.size)
    if input_size is not None and (region[2], region[3]) != tuple(input_size):
        raise JpegError(f"image {header.size[0]}x{header.size[1]} gives {region[2]}x{region[3]} under "
                        f"the policy ({policy.describe()}), the model takes {input_size[0]}x{input_size[1]}")
    return n, region


def _pixels(group: Group, policy: Policy, input_size: tuple[int, int] | None, channels: int,
            normalize, upsampling: str) -> np.ndarray:
    """:func:`model_pixels` of the ``G`` files of ``group``, computed together: ``(G, channels, h, w)``."""
    header = _header(group)
    n, region = _window(header, policy, input_size)
    rows = cols = None
    if policy.resample is not None:  # the crop's rows and columns of the resampled image, from the N/8 one
        scaled, _ = _plan(header.size, header.samplings, n)
        resampled = policy.resampled_size(scaled)
        top, left, height, width = region
        (rows, r0), (cols, c0) = (_band(size_in, size_out, start, length)
                                  for start, length, size_in, size_out in ((top, height, scaled[0], resampled[0]),
                                                                          (left, width, scaled[1], resampled[1])))
        region = (r0, c0, rows.shape[1], cols.shape[1])
    clamp = policy.clamp
    if header.color_space == "gray" or channels == 1:
        x = _ycc(group, n, region, [0], upsampling, clamp)
        if channels == 3:
            x = np.repeat(x, 3, axis=1)
    else:
        x = _ycc(group, n, region, [0, 1, 2], upsampling, clamp)
        x[:, 1:] -= 128.0
        x = _mix(np.asarray(YCBCR_TO_RGB), x)
        if clamp:
            x = _round(x)
    if rows is not None and clamp:  # Pillow's order, each pass rounded to 8 bits
        x = rows @ _round(x @ cols.T)
        x = _round(x)
    elif rows is not None:  # the cheaper order of the two products
        r, w = x.shape[-2:]
        if rows.shape[0] * w * (r + cols.shape[0]) <= cols.shape[0] * r * (w + rows.shape[0]):
            x = (rows @ x) @ cols.T
        else:
            x = rows @ (x @ cols.T)
    if policy.flip:
        x = x[..., ::-1]
    mean, std = _normalization(normalize, channels)
    return (x / 255.0 - mean[:, None, None]) / std[:, None, None]


def _groups(items: Sequence[Coefficients], policy: Policy, input_size: tuple[int, int] | None, channels: int,
            normalize, upsampling: str):
    """``(positions, pixels (G, channels, h, w))`` for groups of files of one geometry, at most
    :data:`GROUP_VALUES` output values each; every file is checked, in order, before any work."""
    _check_options(channels, upsampling)
    groups: dict[tuple, list[int]] = {}
    values: dict[tuple, int] = {}
    for i, c in enumerate(items):
        key = _geometry(c)
        if key not in groups:
            _, region = _window(c.header, policy, input_size)
            groups[key], values[key] = [], channels * region[2] * region[3]
        groups[key].append(i)
    for key, positions in groups.items():
        step = max(1, GROUP_VALUES // values[key])
        for start in range(0, len(positions), step):
            chunk = positions[start:start + step]
            yield chunk, _pixels([items[i] for i in chunk], policy, input_size, channels, normalize, upsampling)


def model_pixels(coefs: Coefficients, policy: Policy, input_size: tuple[int, int] | None, channels: int,
                 normalize=None, upsampling: str = "fancy") -> np.ndarray:
    """What the *spatial* model sees for this JPEG under ``policy``: ``(channels, h, w)`` float64, the
    normalised crop (steps 1–4 of the module docstring before the block DCT). ``normalize``: ``None``
    for ``x/255``, or ``(mean, std)`` with one value or one per channel.

    One-line :class:`~jpegfx.errors.JpegError` when the image cannot give ``input_size`` under the
    policy (too small, or, without a crop, another size). ``input_size=None`` takes whatever size the
    policy gives (a network that runs at any size)."""
    _check_options(channels, upsampling)
    return _pixels([coefs], policy, input_size, channels, normalize, upsampling)[0]


def model_pixels_many(items: Sequence[Coefficients], policy: Policy, input_size: tuple[int, int] | None,
                      channels: int, normalize=None, upsampling: str = "fancy") -> list[np.ndarray]:
    """:func:`model_pixels` of each item, in order; files of one geometry (size, layout) are computed
    together, :data:`GROUP_VALUES` output values at a time (the same numbers, far fewer array
    operations per file). Every file is checked before any work; the first that does not fit raises."""
    out: list = [None] * len(items)
    for positions, x in _groups(items, policy, input_size, channels, normalize, upsampling):
        for i, pixels in zip(positions, x):
            out[i] = pixels
    return out


def batch_pixels(batch: Batch, policy: Policy, input_size: tuple[int, int] | None, channels: int,
                 normalize=None, upsampling: str = "fancy") -> np.ndarray:
    """:func:`model_pixels` of every file of a :class:`~jpegfx.reader.Batch` (one size and layout, read
    by :func:`jpegfx.reader.read_batches`), computed together from its stacked arrays:
    ``(N, channels, h, w)`` float64."""
    _check_options(channels, upsampling)
    return _pixels(batch, policy, input_size, channels, normalize, upsampling)


def batch_inputs(batch: Batch, policy: Policy, input_size: tuple[int, int], channels: int,
                 normalize=None, upsampling: str = "fancy", dtype=np.float32) -> np.ndarray:
    """:func:`model_input` of every file of a :class:`~jpegfx.reader.Batch`: ``(N, channels·64, Hb, Wb)``."""
    return _block_dct(batch_pixels(batch, policy, input_size, channels, normalize, upsampling)).astype(dtype, copy=False)


def model_input(coefs: Coefficients, policy: Policy, input_size: tuple[int, int], channels: int,
                normalize=None, upsampling: str = "fancy", dtype=np.float32) -> np.ndarray:
    """What a network converted for ``input_size`` and ``channels`` (1 or 3) reads for this JPEG under
    ``policy``: ``(channels·64, Hb, Wb)`` in ``dtype``, the block DCT of :func:`model_pixels`."""
    x = model_pixels(coefs, policy, input_size, channels, normalize, upsampling)
    return _block_dct(x).astype(dtype, copy=False)


def model_inputs(items: Sequence[Coefficients], policy: Policy, input_size: tuple[int, int], channels: int,
                 normalize=None, upsampling: str = "fancy", dtype=np.float32) -> np.ndarray:
    """:func:`model_input` of each item, stacked: ``(N, channels·64, Hb, Wb)``; files of one geometry are
    computed together (:func:`model_pixels_many`)."""
    if not len(items):
        raise UsageError("model_inputs needs at least one file")
    out = None
    for positions, x in _groups(items, policy, input_size, channels, normalize, upsampling):
        f = _block_dct(x).astype(dtype, copy=False)
        if out is None:
            out = np.empty((len(items), *f.shape[1:]), dtype=dtype)
        out[positions] = f
    return out
