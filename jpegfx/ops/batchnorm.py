"""Batch normalisation in the JPEG domain (paper §4.3, eq. 21–24).

``BN(x) = γ (x − μ) / sqrt(σ² + ε) + β`` is a per-channel affine map ``x ↦ a·x + c``:

* the scale ``a`` multiplies every coefficient of the channel (the DCT is linear, eq. 24);
* the shift ``c`` is a constant added to every *logical* pixel: ``c · constant_pattern``, which on
  whole blocks is ``8c`` on DC only (orthonormal DC = 8 · block mean) and keeps padding zero on
  partial boundary blocks.

Training statistics come straight from the coefficients (padding pixels are zero, n = N·h·w):

* mean ``μ = 8 · Σ DC / n`` (a block's DC is 8 × its mean = its pixel sum / 8);
* variance by the DCT mean-variance theorem (Theorem 2; Parseval for an orthonormal DCT,
  ``Σ pixels² = Σ coefficients²``) applied to the *centred* image ``x − μ · valid``, whose
  coefficients are ``F − μ · constant_pattern``: ``σ² = Σ (F − μ · pattern)² / n`` (biased, used to
  normalise). This is the two-pass form; the one-pass ``Σ F² / n − μ²`` cancels catastrophically
  when ``|μ| ≫ σ``. The running variance is updated with the unbiased ``σ² · n / (n − 1)``, exactly
  as ``nn.BatchNorm2d``.

BN commutes with the block DCT, so it also runs on pixels (``in_domain = out_domain = "pixels"``,
statistics over the pixels), for values the ``elide_transforms`` pass keeps in pixels.
"""
from __future__ import annotations

import torch
from torch import nn

from jpegfx.ops.base import PIXELS, SAME_DOMAIN, JpegModule, add_channel_constant, at_least_float32
from jpegfx.transforms import NCOEF, BlockGeometry


class JpegBatchNorm2d(JpegModule):
    """``nn.BatchNorm2d`` on JPEG-domain tensors ``(N, C·64, Hb, Wb)``, eval and train mode."""

    def __init__(self, num_features: int, geometry: BlockGeometry, eps: float = 1e-5,
                 momentum: float | None = 0.1, affine: bool = True, track_running_stats: bool = True,
                 dtype: torch.dtype = torch.float32) -> None:
        super().__init__(geometry)
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        if affine:
            self.weight = nn.Parameter(torch.ones(num_features, dtype=dtype))
            self.bias = nn.Parameter(torch.zeros(num_features, dtype=dtype))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", torch.zeros(num_features, dtype=dtype))
            self.register_buffer("running_var", torch.ones(num_features, dtype=dtype))
            self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))
        else:
            self.running_mean = self.running_var = self.num_batches_tracked = None
        self.register_map("pattern", geometry.constant_pattern(), dtype)

    @classmethod
    def from_spatial(cls, bn: nn.BatchNorm2d, geometry: BlockGeometry) -> JpegBatchNorm2d:
        dtype = bn.weight.dtype if bn.affine else (bn.running_mean.dtype if bn.track_running_stats
                                                    else torch.get_default_dtype())
        out = cls(bn.num_features, geometry, bn.eps, bn.momentum, bn.affine, bn.track_running_stats, dtype)
        out.load_state_dict(bn.state_dict())
        out.train(bn.training)
        return out

    def supported_domains(self) -> frozenset[tuple[str, str]]:
        return SAME_DOMAIN

    def _batch_statistics(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel mean and biased variance of the logical pixels, from coefficients only (in float32
        at least)."""
        x = at_least_float32(x)
        if self.in_domain == PIXELS:
            return x.mean(dim=(0, 2, 3)), x.var(dim=(0, 2, 3), unbiased=False)
        n, c64, hb, wb = x.shape
        count = n * self.in_geometry.h * self.in_geometry.w
        coeffs = x.reshape(n, c64 // NCOEF, NCOEF, hb, wb)
        mean = coeffs[:, :, 0].sum(dim=(0, 2, 3)) * (8.0 / count)
        centred = coeffs - mean.reshape(1, -1, 1, 1, 1) * self.pattern  # DCT of x − μ · valid
        return mean, centred.pow(2).sum(dim=(0, 2, 3, 4)) / count  # Theorem 2 / Parseval

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        use_batch_stats = self.training or not self.track_running_stats
        if use_batch_stats:
            mean, var = self._batch_statistics(x)
            if self.training and self.track_running_stats:
                self._update_running_stats(mean, var, x.shape[0])
        else:
            mean, var = self.running_mean, self.running_var
        scale = torch.rsqrt(var + self.eps)
        shift = -mean * scale
        if self.affine:
            scale, shift = scale * self.weight, shift * self.weight + self.bias
        if self.in_domain == PIXELS:
            return x * scale.reshape(1, -1, 1, 1) + shift.reshape(1, -1, 1, 1)
        return add_channel_constant(x, shift, self.pattern, scale)

    @torch.no_grad()
    def _update_running_stats(self, mean: torch.Tensor, var: torch.Tensor, batch: int) -> None:
        self.num_batches_tracked += 1
        factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        count = batch * self.in_geometry.h * self.in_geometry.w
        unbiased = var * count / max(count - 1, 1)
        self.running_mean.mul_(1 - factor).add_(factor * mean)
        self.running_var.mul_(1 - factor).add_(factor * unbiased)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, {super().extra_repr()}"

