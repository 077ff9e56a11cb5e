"""Group normalisation in the JPEG domain (as batch norm, paper §4.3, with per-sample group statistics).

``GN(x)`` normalises each sample's group of ``C/G`` channels by the mean and biased variance of its
``n = (C/G)·h·w`` logical pixels, then applies the per-channel affine ``γ_c, β_c``. Statistics come
from the coefficients alone (padding pixels are zero):

* mean ``μ = 8 · Σ DC / n`` (a block's DC is 8 × its mean);
* variance, two-pass and exact by Parseval: the centred value ``x − μ·valid`` has coefficients
  ``F − μ · pattern`` (``pattern`` = the DCT of the validity mask: 8 on DC of whole blocks), so
  ``σ² = Σ (F − μ·pattern)² / n``;
* output ``γ_c (F − μ·pattern) / sqrt(σ² + ε) + β_c · pattern``: a scale of every coefficient and a
  shift of the logical pixels, padding kept zero.

GroupNorm has no running statistics: train and eval compute the same. It commutes with the block
DCT in the sense above, so it also runs on pixels (``F.group_norm``) for values kept in pixels.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from jpegfx.ops.base import PIXELS, SAME_DOMAIN, JpegModule, at_least_float32
from jpegfx.transforms import NCOEF, BlockGeometry


class JpegGroupNorm(JpegModule):
    """``nn.GroupNorm`` on JPEG-domain tensors ``(N, C·64, Hb, Wb)``."""

    def __init__(self, num_groups: int, num_channels: int, geometry: BlockGeometry, eps: float = 1e-5,
                 affine: bool = True, dtype: torch.dtype = torch.float32) -> None:
        super().__init__(geometry)
        self.num_groups, self.num_channels, self.eps, self.affine = num_groups, num_channels, eps, affine
        if affine:
            self.weight = nn.Parameter(torch.ones(num_channels, dtype=dtype))
            self.bias = nn.Parameter(torch.zeros(num_channels, dtype=dtype))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        self.register_map("pattern", geometry.constant_pattern(), dtype)

    @classmethod
    def from_spatial(cls, gn: nn.GroupNorm, geometry: BlockGeometry) -> JpegGroupNorm:
        dtype = gn.weight.dtype if gn.affine else torch.get_default_dtype()
        out = cls(gn.num_groups, gn.num_channels, geometry, gn.eps, gn.affine, dtype)
        out.load_state_dict(gn.state_dict())
        out.train(gn.training)
        return out

    def supported_domains(self) -> frozenset[tuple[str, str]]:
        return SAME_DOMAIN

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.in_domain == PIXELS:
            return F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)
        x = at_least_float32(x)  # statistics of a whole group: float32 at least under autocast
        n, c64, hb, wb = x.shape
        g = self.num_groups
        coeffs = x.reshape(n, g, c64 // NCOEF // g, NCOEF, hb, wb)
        count = coeffs.shape[2] * self.in_geometry.h * self.in_geometry.w
        mean = coeffs[:, :, :, 0].sum(dim=(2, 3, 4)) * (8.0 / count)  # (N, G)
        centred = coeffs - mean[:, :, None, None, None, None] * self.pattern.reshape(1, 1, 1, NCOEF, hb, wb)
        var = centred.pow(2).sum(dim=(2, 3, 4, 5)) / count
        y = (centred * torch.rsqrt(var + self.eps)[:, :, None, None, None, None]).reshape(n, -1, NCOEF, hb, wb)
        if self.affine:
            y = y * self.weight.reshape(1, -1, 1, 1, 1) + self.bias.reshape(1, -1, 1, 1, 1) * self.pattern
        return y.reshape(n, c64, hb, wb)

    def extra_repr(self) -> str:
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}, {super().extra_repr()}"
