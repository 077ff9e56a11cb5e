"""ReLU in the JPEG domain (paper §4.2, eq. 14–20): exact, ASM(k) and APX(k).

Write ``Dᵀ`` for the exact block inverse DCT and ``Dᵀ_k`` for the inverse DCT restricted to the ``k``
lowest spatial frequencies (coefficients with u + v < k, Theorem 1's least-squares approximation).

* ``exact``:  ``out = D · relu(Dᵀ F)``.
* ``asm``:    Approximated Spatial Masking. The non-negative mask ``G = nnm(Dᵀ_k F)`` (eq. 18) is taken
  from the approximation, and applied to the **exact** block: ``out = D · (G ⊙ Dᵀ F)`` (eq. 19).
  Two evaluations of the last step are provided and agree:

  - ``method="spatial"`` ("half-spatial masking"): inverse DCT, multiply, DCT — 2·64 MACs per pixel
    for the two inverse maps (stacked into one 128×64 map) plus 64 for the DCT;
  - ``method="harmonic"``: the Harmonic Mixing Tensor (eq. 17) ``out[k'] = Σ_{k,p} H[k', k, p] F[k] G[p]``
    — 64³ MACs per block, the paper's formulation.

* ``apx``:    ReLU of the approximation itself: ``out = D · relu(Dᵀ_k F)``.

With ``k = 15`` all 64 coefficients are kept and ASM = APX = exact. Exact ReLU and ASM keep zero
padding zero; APX can make padding pixels positive, so its output is re-masked on the pixel grid.

Domains (see :mod:`jpegfx.ops.base`): every mode but the harmonic method reads and writes pixels too.
From pixel blocks ``P`` the approximation is ``Dᵀ_k D P``: the same least-squares k-frequency
reconstruction, computed without the exact inverse transform.
"""
from __future__ import annotations

import torch

from jpegfx import transforms as T
from jpegfx.ops.base import (
    ANY_DOMAIN,
    JPEG,
    JPEG_ONLY,
    PIXELS,
    JpegModule,
    block_pixel_mask,
)
from jpegfx.transforms import MAX_FREQUENCIES, NCOEF, BlockGeometry

MODES = ("exact", "asm", "apx")
METHODS = ("spatial", "harmonic")


class JpegReLU(JpegModule):
    """ReLU on JPEG-domain tensors ``(N, C·64, Hb, Wb)`` with a choice of approximation."""

    def __init__(self, geometry: BlockGeometry, mode: str = "exact", frequencies: int = MAX_FREQUENCIES,
                 method: str = "spatial", dtype: torch.dtype = torch.float32) -> None:
        super().__init__(geometry)
        if mode not in MODES:
            raise ValueError(f"unknown ReLU mode {mode!r}; expected one of {MODES}")
        if method not in METHODS:
            raise ValueError(f"unknown ASM method {method!r}; expected one of {METHODS}")
        self.mode = mode
        self.frequencies, self.method = frequencies, method
        approx_inverse = self.register_low_frequency_maps(frequencies, dtype)  # Dᵀ_k, Dᵀ_k D
        d = T.dct_basis()  # D[k, p]
        self.register_map("forward_map", d, dtype)
        self.register_map("inverse_maps", torch.cat([d.T, approx_inverse]), dtype)
        if method == "harmonic":
            self.register_map("harmonic", T.harmonic_mixing_tensor(), dtype)
        if self.mode == "apx" and not geometry.is_aligned:
            self.register_map("valid", block_pixel_mask(geometry, torch.float64), dtype)
        else:
            self.valid = None

    def supported_domains(self) -> frozenset[tuple[str, str]]:
        return JPEG_ONLY if self.mode == "asm" and self.method == "harmonic" else ANY_DOMAIN

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "exact":
            if (self.in_domain, self.out_domain) == (JPEG, JPEG):  # stays in the block layout
                pixels = T.apply_block_map(x, self.forward_map.T)
                return T.apply_block_map(torch.relu(pixels), self.forward_map)
            return self.emit(torch.relu(self.pixels_in(x)))
        if self.mode == "asm" and self.method == "harmonic":
            mask = (T.apply_block_map(x, self.approx_inverse) > 0).to(x.dtype)
            n, c64, hb, wb = x.shape
            f = x.reshape(n, c64 // NCOEF, NCOEF, hb, wb)
            g = mask.reshape(n, c64 // NCOEF, NCOEF, hb, wb)
            # legend: j = out coefficient k', k = in coefficient, p = pixel (eq. 17)
            return torch.einsum("jkp,nckxy,ncpxy->ncjxy", self.harmonic, f, g).reshape(n, c64, hb, wb)
        if self.mode == "apx":
            approx = torch.relu(self.low_frequency_blocks(x))
            if self.valid is not None:
                approx = approx * self.valid.repeat(approx.shape[1] // NCOEF, 1, 1)
            return self.emit_blocks(approx)
        if self.in_domain == PIXELS:
            exact = T.blockify(x)
            approx = T.apply_block_map(exact, self.projection)
        else:  # both inverse maps as one (128, 64) product
            n, c64, hb, wb = x.shape
            both = T.apply_block_map(x, self.inverse_maps).reshape(n, c64 // NCOEF, 2, NCOEF, hb, wb)
            exact = both[:, :, 0].reshape(n, c64, hb, wb)
            approx = both[:, :, 1].reshape(n, c64, hb, wb)
        return self.emit_blocks(torch.where(approx > 0, exact, torch.zeros_like(exact)))

    def extra_repr(self) -> str:
        extra = "" if self.mode == "exact" else f", k={self.frequencies}, method={self.method}"
        return f"mode={self.mode}{extra}, {super().extra_repr()}"


def relu_block_error(blocks: torch.Tensor, mode: str, frequencies: int) -> torch.Tensor:
    """Per-block RMSE of a ReLU approximation against the true ReLU, for pixel blocks (B, 8, 8).

    The paper's Fig. 4a measure; ``blocks`` are spatial, the op runs on their DCT coefficients.
    """
    b = blocks.shape[0]
    pixels = blocks.reshape(b, NCOEF).T.reshape(1, NCOEF, b, 1)  # one image, a column of b blocks
    op = JpegReLU(BlockGeometry(8 * b, 8), mode, frequencies, dtype=blocks.dtype)
    got = T.block_idct(op(T.block_dct(pixels)))
    return (got - torch.relu(pixels)).pow(2).mean(dim=1).reshape(b).sqrt()

