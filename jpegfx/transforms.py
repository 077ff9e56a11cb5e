"""Pure JPEG transform maths: the conventions every other module relies on.

Conventions (declared here once; paper §3, DESIGN §1)
------------------------------------------------------
* **Blocks.** An image plane of logical size ``(h, w)`` is zero-padded on the bottom/right to
  ``Hb = ceil(h / 8)`` by ``Wb = ceil(w / 8)`` blocks of 8×8 pixels. The logical size travels with
  every JPEG-domain value as static metadata (:class:`BlockGeometry`); padding pixels are **zero**
  in every JPEG-domain tensor (the *padding invariant*), and every op keeps them zero.
* **Transform.** Orthonormal 8×8 DCT-II. With ``C[u, m] = a(u) cos((2m + 1) u π / 16)``,
  ``a(0) = sqrt(1/8)``, ``a(u > 0) = sqrt(2/8)``, a block ``x`` (pixels ``m, n``) has coefficients
  ``F = C x Cᵀ`` and ``x = Cᵀ F C``. The DC coefficient is ``8 · mean(block)``.
* **Coefficient order.** Natural row-major ``k = 8u + v`` everywhere inside the code. Zigzag is an
  I/O permutation only (:func:`zigzag`, :func:`unzigzag`).
* **Layout.** A JPEG-domain activation is a tensor ``(N, C·64, Hb, Wb)``: channel ``c`` owns the 64
  consecutive planes ``64c … 64c + 63``, plane ``64c + k`` holds coefficient ``k`` of every block.
  This is exactly PyTorch's ``pixel_unshuffle(·, 8)`` channel order, so a block DCT is
  ``pixel_unshuffle`` followed by one 64×64 map per channel, and a block-grid ``Conv2d`` with
  ``Cin·64 → Cout·64`` channels is a linear map between JPEG-domain tensors.
* **Quantisation.** The paper's map J divides by a table ``q`` (eq. 7, S); decompression multiplies
  (eq. 9, S̃). Inside a network we use ``q = 1`` (plain DCT); file coefficients are dequantised by
  the first op with the per-image tables.
* **Spatial frequencies.** "k spatial frequencies" keeps the coefficients with ``u + v < k``;
  ``k = 15`` keeps all 64.

Every builder returns a fresh float64 tensor computed once (cached); callers cast at the end.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from jpegfx import preprocess

BLOCK = 8
"""Block side in pixels."""
NCOEF = BLOCK * BLOCK
"""Coefficients per block."""
MAX_FREQUENCIES = 2 * BLOCK - 1
"""Number of spatial frequencies u + v ∈ {0, …, 14}; keeping all of them is exact."""

__all__ = [
    "BLOCK",
    "NCOEF",
    "MAX_FREQUENCIES",
    "BlockGeometry",
    "dct_matrix",
    "dct_basis",
    "zigzag_order",
    "zigzag",
    "unzigzag",
    "frequency_mask",
    "quantise",
    "dequantise",
    "blockify",
    "unblockify",
    "apply_block_map",
    "block_dct",
    "block_idct",
    "to_dct",
    "from_dct",
    "channels_last",
    "compression_map",
    "decompression_map",
    "harmonic_mixing_tensor",
    "conv_output_size",
]


# --------------------------------------------------------------------------------------------
# 8×8 DCT
# --------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _dct_matrix() -> torch.Tensor:
    return torch.from_numpy(preprocess.dct_matrix())  # one definition, shared with the numpy preprocessing


def dct_matrix() -> torch.Tensor:
    """The orthonormal 1-D DCT-II matrix ``C`` (8, 8), indexed ``[u, m]`` (paper eq. 5, one axis)."""
    return _dct_matrix().clone()


@functools.lru_cache(maxsize=None)
def _dct_basis() -> torch.Tensor:
    c = _dct_matrix()
    # D[(u, v), (m, n)] = C[u, m] · C[v, n]  — the 2-D DCT as a 64×64 matrix (Kronecker product).
    return torch.kron(c, c)


def dct_basis() -> torch.Tensor:
    """The 2-D block DCT as a (64, 64) orthogonal matrix ``D[k, p]``, ``k = 8u + v``, ``p = 8m + n``.

    Forward: ``F_k = Σ_p D[k, p] x_p``; inverse: ``x_p = Σ_k D[k, p] F_k`` (paper eq. 5, D is its own
    inverse up to transposition because the basis is orthonormal).
    """
    return _dct_basis().clone()


# --------------------------------------------------------------------------------------------
# Zigzag (presentation order only) and frequency masks
# --------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _zigzag_order() -> torch.Tensor:
    order = []
    for s in range(MAX_FREQUENCIES):  # anti-diagonals u + v = s
        cells = [(u, s - u) for u in range(BLOCK) if 0 <= s - u < BLOCK]
        if s % 2 == 0:  # even diagonals run bottom-left → top-right
            cells.reverse()
        order.extend(BLOCK * u + v for u, v in cells)
    return torch.tensor(order, dtype=torch.long)


def zigzag_order() -> torch.Tensor:
    """``order[i]`` = natural index ``8u + v`` of the i-th coefficient in JPEG zigzag order (eq. 6)."""
    return _zigzag_order().clone()


def zigzag(coefficients: torch.Tensor) -> torch.Tensor:
    """Natural → zigzag order along the last axis (64). ``zigzag(arange(64))[:4] == [0, 1, 8, 16]``."""
    return coefficients[..., _zigzag_order()]


def unzigzag(coefficients: torch.Tensor) -> torch.Tensor:
    """Zigzag → natural order along the last axis (64); the inverse of :func:`zigzag`."""
    inverse = torch.empty(NCOEF, dtype=torch.long)
    inverse[_zigzag_order()] = torch.arange(NCOEF)
    return coefficients[..., inverse]


def frequency_mask(k: int) -> torch.Tensor:
    """Boolean (64,) mask in natural order keeping the ``k`` lowest spatial frequencies (u + v < k).

    ``k`` ranges over 1 … 15; ``k = 1`` keeps DC only, ``k = 15`` keeps all 64 coefficients.
    """
    if not 1 <= k <= MAX_FREQUENCIES:
        raise ValueError(f"spatial frequencies must be in 1..{MAX_FREQUENCIES}, got {k}")
    u = torch.arange(BLOCK)[:, None]
    v = torch.arange(BLOCK)[None, :]
    return (u + v < k).reshape(NCOEF)


# --------------------------------------------------------------------------------------------
# Quantisation (eq. 7 and 9)
# --------------------------------------------------------------------------------------------
def quantise(coefficients: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """S (eq. 7): divide natural-order coefficients ``(..., 64)`` by a (…, 64) table. No rounding."""
    return coefficients / table


def dequantise(coefficients: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """S̃ (eq. 9): multiply quantised natural-order coefficients ``(..., 64)`` by their table."""
    return coefficients * table


# --------------------------------------------------------------------------------------------
# Geometry of a JPEG-domain value
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BlockGeometry:
    """Logical size ``(h, w)`` of an image plane and its block grid ``(Hb, Wb)``."""

    h: int
    w: int

    def __post_init__(self) -> None:
        if self.h < 1 or self.w < 1:
            raise ValueError(f"logical size must be at least 1×1, got {self.h}×{self.w}")

    @property
    def hb(self) -> int:
        return -(-self.h // BLOCK)

    @property
    def wb(self) -> int:
        return -(-self.w // BLOCK)

    @property
    def padded(self) -> tuple[int, int]:
        return (BLOCK * self.hb, BLOCK * self.wb)

    @property
    def is_aligned(self) -> bool:
        """True when no block is partial (h and w are multiples of 8)."""
        return self.h % BLOCK == 0 and self.w % BLOCK == 0

    def pixel_mask(self) -> torch.Tensor:
        """(1, 1, 8·Hb, 8·Wb) float64: 1 on logical pixels, 0 on padding."""
        return _pixel_mask(self.h, self.w).clone()

    def constant_pattern(self) -> torch.Tensor:
        """(64, Hb, Wb) float64: the coefficients of the image that is 1 on every logical pixel.

        Adding a constant ``c`` to every logical pixel (and none of the padding) adds
        ``c · constant_pattern`` to the coefficients; on whole blocks it is 8 on DC and 0 elsewhere.
        This is how BN shifts and conv biases keep the padding invariant.
        """
        return _constant_pattern(self.h, self.w).clone()

    def coefficient_mask(self) -> torch.Tensor:
        """(64, 64, Hb, Wb) float64 map ``P`` that zeroes padding pixels: ``F' = Σ_k P[k', k] F_k``
        per block; the identity on whole blocks."""
        return _coefficient_mask(self.h, self.w).clone()


@functools.lru_cache(maxsize=64)
def _pixel_mask(h: int, w: int) -> torch.Tensor:
    g = BlockGeometry(h, w)
    mask = torch.zeros(1, 1, *g.padded, dtype=torch.float64)
    mask[..., :h, :w] = 1.0
    return mask


@functools.lru_cache(maxsize=64)
def _constant_pattern(h: int, w: int) -> torch.Tensor:
    return block_dct(blockify(_pixel_mask(h, w)))[0]


@functools.lru_cache(maxsize=64)
def _coefficient_mask(h: int, w: int) -> torch.Tensor:
    d = _dct_basis()
    valid = blockify(_pixel_mask(h, w))[0]  # (64 pixels, Hb, Wb)
    # P[k', k, X, Y] = Σ_p D[k', p] valid[p, X, Y] D[k, p]
    return torch.einsum("ap,pxy,bp->abxy", d, valid, d)


# --------------------------------------------------------------------------------------------
# Blocking (B, eq. 4) and the block DCT on the (N, C·64, Hb, Wb) layout
# --------------------------------------------------------------------------------------------
def blockify(x: torch.Tensor) -> torch.Tensor:
    """B (eq. 4): pixels ``(N, C, h, w)`` → pixel blocks ``(N, C·64, Hb, Wb)``, zero-padded.

    Plane ``64c + 8m + n`` holds pixel ``(m, n)`` of each block of channel ``c`` (the order of
    ``pixel_unshuffle(·, 8)``, written as reshape + permute so that ONNX export sees plain ops).
    """
    c, h, w = (int(d) for d in x.shape[-3:])  # logical sizes are static: constants in exported graphs
    g = BlockGeometry(h, w)
    if (h, w) != g.padded:
        x = F.pad(x, (0, g.padded[1] - w, 0, g.padded[0] - h))
    x = x.reshape(-1, c, g.hb, BLOCK, g.wb, BLOCK).permute(0, 1, 3, 5, 2, 4)  # (N, C, m, n, Hb, Wb)
    return x.reshape(-1, c * NCOEF, g.hb, g.wb)


def unblockify(blocks: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Inverse of :func:`blockify`: ``(N, C·64, Hb, Wb)`` → ``(N, C, h, w)`` cropped to ``size``.

    This is ``pixel_shuffle(·, 8)`` (one DepthToSpace node in ONNX, far faster in onnxruntime than
    the equivalent 6-D transpose).
    """
    x = F.pixel_shuffle(blocks, BLOCK)
    if size is not None:
        x = x[..., : size[0], : size[1]]
    return x


SMALL_GRID = 8
"""Block grids with fewer blocks than this are transformed as one GEMM over all blocks."""


def apply_block_map(x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Apply a (64, 64) map ``out_k = Σ_j matrix[k, j] in_j`` to every block of ``(N, C·64, Hb, Wb)``.

    ``matrix`` may also be (M, 64): the output then has ``C·M`` planes.
    """
    c64, hb, wb = (int(d) for d in x.shape[-3:])
    c, blocks, m = c64 // NCOEF, hb * wb, matrix.to(device=x.device, dtype=x.dtype)  # cached maps live on the CPU
    x = x.reshape(-1, c, NCOEF, blocks)
    if blocks >= SMALL_GRID:  # one (M, 64) × (64, Hb·Wb) product per image and channel
        y = torch.matmul(m, x)
    else:  # small grids: one GEMM over all N·C·Hb·Wb blocks beats many tiny products (5–20× measured)
        y = (x.transpose(2, 3).reshape(-1, NCOEF) @ m.T).reshape(-1, c, blocks, m.shape[0]).transpose(2, 3)
    return y.reshape(-1, c * m.shape[0], hb, wb)


def block_dct(blocks: torch.Tensor) -> torch.Tensor:
    """DCT of every block: pixel blocks ``(N, C·64, Hb, Wb)`` → coefficients, same layout."""
    return apply_block_map(blocks, _dct_basis())


def block_idct(coefficients: torch.Tensor) -> torch.Tensor:
    """Inverse DCT of every block: coefficients ``(N, C·64, Hb, Wb)`` → pixel blocks, same layout."""
    return apply_block_map(coefficients, _dct_basis().T)


def to_dct(x: torch.Tensor) -> torch.Tensor:
    """Pixels ``(N, C, h, w)`` → JPEG-domain ``(N, C·64, Hb, Wb)`` (q = 1, padding zero).

    One stride-8 convolution with the 64 DCT basis images as filters, on every channel as its own
    image: the block layout is never materialised (2–3× faster than blockify + product in torch and
    in onnxruntime, measured on 64×56×56).
    """
    c, h, w = (int(d) for d in x.shape[-3:])  # static: constants in exported graphs
    g = BlockGeometry(h, w)
    if (h, w) != g.padded:
        x = F.pad(x, (0, g.padded[1] - w, 0, g.padded[0] - h))
    basis = _dct_basis().to(dtype=x.dtype, device=x.device).reshape(NCOEF, 1, BLOCK, BLOCK)
    y = F.conv2d(x.reshape(-1, 1, g.padded[0], g.padded[1]), basis, stride=BLOCK)
    return y.reshape(-1, c * NCOEF, g.hb, g.wb)


def from_dct(coefficients: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """JPEG-domain ``(N, C·64, Hb, Wb)`` → pixels ``(N, C, h, w)`` of logical ``size``."""
    return unblockify(block_idct(coefficients), size)


def channels_last(pixels: torch.Tensor) -> torch.Tensor:
    """Pixels ``(N, C, h, w)`` in channels-last memory order, the strides of a decoder's HWC output
    (what oneDNN's CPU convolutions run fastest on); same values.

    On one channel ``contiguous(memory_format=torch.channels_last)`` keeps the NCHW strides (a size-1
    dimension's stride does not count), and convolutions then choose NCHW for the whole network; the
    view of an HWC buffer has the strides a decoder's gray output has."""
    if pixels.shape[1] == 1:
        n, _, h, w = pixels.shape
        return pixels.reshape(n, h, w, 1).permute(0, 3, 1, 2)
    return pixels.contiguous(memory_format=torch.channels_last)


# --------------------------------------------------------------------------------------------
# Dense maps of the paper (eq. 8, 10, 17, 20). Reference forms: O((h·w)²) memory, small sizes only.
# --------------------------------------------------------------------------------------------
def _table(q: torch.Tensor | None) -> torch.Tensor:
    if q is None:
        return torch.ones(NCOEF, dtype=torch.float64)
    q = torch.as_tensor(q, dtype=torch.float64).reshape(NCOEF)
    if bool((q <= 0).any()):
        raise ValueError("quantisation table entries must be positive")
    return q


def compression_map(h: int, w: int, q: torch.Tensor | None = None) -> torch.Tensor:
    """J (eq. 8): ``(Hb, Wb, 64, h, w)`` float64 with ``I'[x, y, k] = Σ_hw J[x, y, k, h, w] I[h, w]``.

    ``q`` is a (64,) natural-order table (default 1). Zigzag (Z) is omitted: presentation only.
    """
    g = BlockGeometry(h, w)
    eye = torch.eye(h * w, dtype=torch.float64).reshape(h * w, 1, h, w)
    coeffs = quantise(to_dct(eye).reshape(h * w, NCOEF, g.hb, g.wb).permute(0, 2, 3, 1), _table(q))
    return coeffs.permute(1, 2, 3, 0).reshape(g.hb, g.wb, NCOEF, h, w)


def decompression_map(h: int, w: int, q: torch.Tensor | None = None) -> torch.Tensor:
    """J̃ (eq. 10): ``(h, w, Hb, Wb, 64)`` float64 with ``I[h, w] = Σ J̃[h, w, x, y, k] I'[x, y, k]``."""
    g = BlockGeometry(h, w)
    n = g.hb * g.wb * NCOEF
    eye = torch.eye(n, dtype=torch.float64).reshape(n, g.hb, g.wb, NCOEF)
    coeffs = dequantise(eye, _table(q)).permute(0, 3, 1, 2).reshape(n, NCOEF, g.hb, g.wb)
    pixels = from_dct(coeffs, (h, w))  # (n, 1, h, w)
    return pixels.reshape(g.hb, g.wb, NCOEF, h, w).permute(3, 4, 0, 1, 2).contiguous()


@functools.lru_cache(maxsize=None)
def _harmonic_mixing_tensor() -> torch.Tensor:
    d = _dct_basis()
    # H[k', k, p] = D[k, p] · D[k', p]   (eq. 17)
    return torch.einsum("kp,jp->jkp", d, d)


def harmonic_mixing_tensor(q: torch.Tensor | None = None) -> torch.Tensor:
    """The Harmonic Mixing Tensor H (eq. 17; eq. 20 with a table): ``(64, 64, 64)`` float64.

    For a coefficient block ``F`` and a spatial mask ``G`` (pixels p = 8m + n),
    ``F'[k'] = Σ_{k, p} H[k', k, p] F[k] G[p]`` is the DCT of ``G ⊙ IDCT(F)``. With a table ``q``
    both the input and output blocks are quantised: ``H_q[k', k, p] = q[k] H[k', k, p] / q[k']``.
    """
    h = _harmonic_mixing_tensor().clone()
    if q is None:
        return h
    t = _table(q)
    return h * t[None, :, None] / t[:, None, None]


def conv_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> int:
    """Output length of a convolution or pooling window along one axis (PyTorch's formula)."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
