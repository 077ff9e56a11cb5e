"""Piecewise-linear activations in the JPEG domain: LeakyReLU, ReLU6 and hardtanh, exact or with the
paper's approximations (§4.2) carried over from ReLU.

A piecewise-linear ``f`` is ``f(x) = aᵢ·x + bᵢ`` on the piece ``i`` that contains ``x``. ReLU's
approximations generalise directly (``Dᵀ`` exact inverse block DCT, ``Dᵀ_k`` the inverse DCT on the
``k`` lowest spatial frequencies, u + v < k):

* ``exact``: ``out = D · f(Dᵀ F)``;
* ``asm``: the piece of every pixel is chosen on the approximation ``Dᵀ_k F`` and applied to the
  exact value: ``out = D · (a_{i(p)} ⊙ Dᵀ F + b_{i(p)})`` with ``i(p)`` the piece of ``(Dᵀ_k F)(p)``
  (for ReLU, ``a ∈ {0, 1}``, ``b = 0``: the paper's spatial mask, eq. 19);
* ``apx``: ``out = D · f(Dᵀ_k F)``.

``k = 15`` keeps every coefficient: all three are exact. Approximate outputs are re-masked on the
pixel grid, so padding pixels stay zero. Every mode reads and writes pixels too (see
:mod:`jpegfx.ops.base`).
"""
from __future__ import annotations

import torch
from torch import nn

from jpegfx import transforms as T
from jpegfx.ops.base import ANY_DOMAIN, PIXELS, JpegModule, block_pixel_mask
from jpegfx.transforms import MAX_FREQUENCIES, NCOEF, BlockGeometry

MODES = ("exact", "asm", "apx")


class JpegPiecewiseLinear(JpegModule):
    """``f(x) = slope·x`` for ``x < 0``, ``x`` on ``[0, ∞)``, clamped to ``[low, high]``: LeakyReLU
    (``low = −∞``, ``high = ∞``), ReLU6 (slope 0, ``[0, 6]``) and hardtanh (slope 1, ``[low, high]``)."""

    def __init__(self, geometry: BlockGeometry, slope: float = 0.0, low: float = -float("inf"),
                 high: float = float("inf"), mode: str = "exact", frequencies: int = MAX_FREQUENCIES,
                 dtype: torch.dtype = torch.float32) -> None:
        super().__init__(geometry)
        if mode not in MODES:
            raise ValueError(f"unknown activation mode {mode!r}; expected one of {MODES}")
        self.slope, self.low, self.high = float(slope), float(low), float(high)
        self.mode, self.frequencies = mode, frequencies
        self.register_low_frequency_maps(frequencies, dtype)
        self.register_map("inverse", T.dct_basis().T.contiguous(), dtype)
        if mode != "exact" and not geometry.is_aligned:
            self.register_map("valid", block_pixel_mask(geometry, torch.float64), dtype)
        else:
            self.valid = None

    @classmethod
    def from_spatial(cls, module: nn.Module, geometry: BlockGeometry, mode: str = "exact",
                     frequencies: int = MAX_FREQUENCIES, dtype: torch.dtype = torch.float32) -> JpegPiecewiseLinear:
        if isinstance(module, nn.LeakyReLU):
            return cls(geometry, module.negative_slope, mode=mode, frequencies=frequencies, dtype=dtype)
        if isinstance(module, nn.Hardtanh):  # ReLU6 is hardtanh on [0, 6]
            return cls(geometry, 1.0, module.min_val, module.max_val, mode, frequencies, dtype)
        raise TypeError(f"no piecewise-linear form for {type(module).__name__}")

    def supported_domains(self) -> frozenset[tuple[str, str]]:
        return ANY_DOMAIN

    def f(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.where(x < 0, x * self.slope, x) if self.slope != 1.0 else x
        return y.clamp(self.low, self.high)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "exact":
            return self.emit(self.f(self.pixels_in(x)))
        approx = self.low_frequency_blocks(x)
        if self.mode == "apx":
            out = self.f(approx)
        else:  # asm: the piece from the approximation, applied to the exact pixels
            exact = T.blockify(x) if self.in_domain == PIXELS else T.apply_block_map(x, self.inverse)
            out = torch.where(approx < 0, exact * self.slope, exact)
            out = torch.where(approx < self.low, torch.full_like(exact, self.low), out)
            out = torch.where(approx > self.high, torch.full_like(exact, self.high), out)
        if self.valid is not None:
            out = out * self.valid.repeat(out.shape[1] // NCOEF, 1, 1)
        return self.emit_blocks(out)

    def extra_repr(self) -> str:
        k = "" if self.mode == "exact" else f", k={self.frequencies}"
        return (f"slope={self.slope}, range=[{self.low}, {self.high}], mode={self.mode}{k}, "
                f"{super().extra_repr()}")
