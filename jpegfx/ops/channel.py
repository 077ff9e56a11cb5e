"""Channel-wise scaling and shape queries on JPEG-domain tensors.

* :class:`JpegScale` — ``x * g`` or ``x / g`` where ``g`` is a number or a tensor constant over the
  image plane (shape ``(N|1, C|1, 1, 1)`` or fewer dims, e.g. a squeeze-excitation gate): scaling a
  channel's pixels by a constant scales each of its coefficients by the same constant (the DCT is
  linear), and zero padding stays zero. Exact.
* :class:`JpegShape` — ``x.shape`` / ``x.size(d)`` of the spatial value ``(N, C, h, w)``, read off
  the JPEG-domain tensor ``(N, C·64, Hb, Wb)``: the batch is the same, channels and size are static.
"""
from __future__ import annotations

import operator

import torch
from torch import nn

from jpegfx.transforms import NCOEF, BlockGeometry

SCALE_OPS = {"mul": operator.mul, "div": operator.truediv}


class JpegScale(nn.Module):
    """``x * g`` (``op="mul"``) or ``x / g`` (``op="div"``) with ``g`` constant over each channel's
    pixels; ``x`` JPEG-domain ``(N, C·64, Hb, Wb)``, ``g`` a number or a tensor broadcasting to
    ``(N, C, 1, 1)``."""

    def __init__(self, op: str) -> None:
        super().__init__()
        if op not in SCALE_OPS:
            raise ValueError(f"JpegScale op must be one of {tuple(SCALE_OPS)}, got {op!r}")
        self.op = op

    def forward(self, x: torch.Tensor, g) -> torch.Tensor:
        fn = SCALE_OPS[self.op]
        if not isinstance(g, torch.Tensor) or g.numel() == 1 and g.dim() < 4:
            return fn(x, g)
        n, c64, hb, wb = x.shape
        g = g.reshape((1,) * (4 - g.dim()) + tuple(g.shape))  # (N|1, C|1, 1, 1)
        y = fn(x.reshape(n, c64 // NCOEF, NCOEF, hb, wb), g.unsqueeze(2))
        return y.reshape(y.shape[0], -1, hb, wb)

    def extra_repr(self) -> str:
        return f"op={self.op}"


class JpegShape(nn.Module):
    """The spatial ``shape`` (``dim=None``) or ``size(dim)`` of a JPEG-domain tensor of ``channels``
    channels and logical size ``geometry``."""

    def __init__(self, channels: int, geometry: BlockGeometry) -> None:
        super().__init__()
        self.channels, self.geometry = channels, geometry

    def forward(self, x: torch.Tensor, dim: int | None = None):
        shape = torch.Size((x.shape[0], self.channels, self.geometry.h, self.geometry.w))
        return shape if dim is None else shape[dim]

    def extra_repr(self) -> str:
        return f"channels={self.channels}, {self.geometry.h}x{self.geometry.w}"
