"""Pooling in the JPEG domain (paper §4.5 for global pooling).

* :class:`JpegAdaptiveAvgPool2d` to (1, 1): the channel mean is ``8 · Σ DC / (h · w)`` over all blocks
  (a block's DC is 8 × its mean = its pixel sum / 8; padding pixels are zero, so partial boundary blocks are weighted
  correctly by construction). The result leaves the JPEG domain: ``(N, C, 1, 1)`` like the spatial op.
  Other output sizes go through the exact spatial route.
* :class:`JpegMaxPool2d`:
    - ``exact``: block IDCT → max-pool on the logical image → block DCT;
    - ``asm`` (k frequencies): the same masking idea as ASM ReLU. The winner of each window is chosen
      on the k-frequency reconstruction ``Dᵀ_k F``, and its value is read from the exact
      reconstruction. Ties and near-ties are the only source of error; the output is always one of
      the true input values of the window. ``k = 15`` is exact.
* :class:`JpegAvgPool2d`: exact through block IDCT → average pool → block DCT (PyTorch's
  ``ceil_mode``/``count_include_pad``/``divisor_override`` semantics are those of the spatial op).

Max and average pooling can also read and write pixels (see :mod:`jpegfx.ops.base`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from jpegfx import transforms as T
from jpegfx.ops.base import ANY_DOMAIN, JPEG, PIXELS, JpegModule, to_jpeg, to_spatial
from jpegfx.ops.base import pair as _pair
from jpegfx.transforms import MAX_FREQUENCIES, NCOEF, BlockGeometry

MAXPOOL_MODES = ("exact", "asm")


def _pool_geometry(g: BlockGeometry, kernel, stride, padding, dilation=1, ceil_mode=False) -> BlockGeometry:
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = map(_pair, (kernel, stride, padding, dilation))
    probe = torch.empty(1, 1, g.h, g.w, device="meta")
    out = F.max_pool2d(probe, (kh, kw), (sh, sw), (ph, pw), (dh, dw), ceil_mode)
    return BlockGeometry(*out.shape[-2:])


class JpegMaxPool2d(JpegModule):
    """``nn.MaxPool2d`` on JPEG-domain tensors, exact or with ASM-style winner selection."""

    def __init__(self, kernel_size, stride, padding, dilation, ceil_mode: bool, geometry: BlockGeometry,
                 mode: str = "exact", frequencies: int = MAX_FREQUENCIES,
                 dtype: torch.dtype = torch.float32) -> None:
        stride = kernel_size if stride is None else stride
        super().__init__(geometry, _pool_geometry(geometry, kernel_size, stride, padding, dilation, ceil_mode))
        if mode not in MAXPOOL_MODES:
            raise ValueError(f"unknown max-pool mode {mode!r}; expected one of {MAXPOOL_MODES}")
        self.kernel_size, self.stride, self.padding = _pair(kernel_size), _pair(stride), _pair(padding)
        self.dilation, self.ceil_mode, self.mode, self.frequencies = _pair(dilation), ceil_mode, mode, frequencies
        self.register_low_frequency_maps(frequencies, dtype)

    @classmethod
    def from_spatial(cls, pool: nn.MaxPool2d, geometry: BlockGeometry, mode: str = "exact",
                     frequencies: int = MAX_FREQUENCIES, dtype: torch.dtype = torch.float32) -> JpegMaxPool2d:
        if pool.return_indices:
            raise ValueError("MaxPool2d with return_indices=True has no JPEG-domain lowering")
        return cls(pool.kernel_size, pool.stride, pool.padding, pool.dilation, pool.ceil_mode, geometry,
                   mode, frequencies, dtype)

    def _pool(self, x: torch.Tensor, indices: bool = False):
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode,
                            return_indices=indices)

    def supported_domains(self) -> frozenset[tuple[str, str]]:
        return ANY_DOMAIN

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        exact = self.pixels_in(x)
        if self.mode == "exact":
            return self.emit(self._pool(exact))
        g = self.in_geometry
        _, winners = self._pool(T.unblockify(self.low_frequency_blocks(x), (g.h, g.w)), indices=True)
        picked = exact.flatten(2).gather(2, winners.flatten(2)).reshape(winners.shape)
        return self.emit(picked)

    def extra_repr(self) -> str:
        k = "" if self.mode == "exact" else f", k={self.frequencies}"
        return (f"kernel={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"mode={self.mode}{k}, {super().extra_repr()}")


class JpegAvgPool2d(JpegModule):
    """``nn.AvgPool2d`` on JPEG-domain tensors (exact)."""

    def __init__(self, pool: nn.AvgPool2d, geometry: BlockGeometry) -> None:
        stride = pool.kernel_size if pool.stride is None else pool.stride
        probe = torch.empty(1, 1, geometry.h, geometry.w, device="meta")
        out = F.avg_pool2d(probe, pool.kernel_size, stride, pool.padding, pool.ceil_mode,
                           pool.count_include_pad, pool.divisor_override)
        super().__init__(geometry, BlockGeometry(*out.shape[-2:]))
        self.pool = nn.AvgPool2d(pool.kernel_size, stride, pool.padding, pool.ceil_mode,
                                 pool.count_include_pad, pool.divisor_override)

    @classmethod
    def from_spatial(cls, pool: nn.AvgPool2d, geometry: BlockGeometry) -> JpegAvgPool2d:
        return cls(pool, geometry)

    def supported_domains(self) -> frozenset[tuple[str, str]]:
        return ANY_DOMAIN

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.emit(self.pool(self.pixels_in(x)))


class JpegAdaptiveAvgPool2d(JpegModule):
    """``nn.AdaptiveAvgPool2d`` ending the JPEG domain: returns spatial ``(N, C, oh, ow)``.

    Global pooling (output 1×1) reads only the DC coefficients (paper Fig. 2).
    """

    def __init__(self, output_size, geometry: BlockGeometry) -> None:
        oh, ow = _pair(output_size) if output_size is not None else (geometry.h, geometry.w)
        oh, ow = (geometry.h if oh is None else oh), (geometry.w if ow is None else ow)
        super().__init__(geometry, BlockGeometry(oh, ow))
        self.output_size = (oh, ow)

    @classmethod
    def from_spatial(cls, pool: nn.AdaptiveAvgPool2d, geometry: BlockGeometry) -> JpegAdaptiveAvgPool2d:
        return cls(pool.output_size, geometry)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.output_size == (1, 1):
            return spatial_mean(x, self.in_geometry)[:, :, None, None]
        return F.adaptive_avg_pool2d(to_spatial(x, self.in_geometry), self.output_size)


def spatial_mean(x: torch.Tensor, geometry: BlockGeometry) -> torch.Tensor:
    """Per-channel mean of the logical pixels, ``(N, C)``, from DC only: ``8 · Σ DC / (h · w)``."""
    n, c64, hb, wb = x.shape
    dc = x.reshape(n, c64 // NCOEF, NCOEF, hb * wb)[:, :, 0]
    return dc.sum(dim=-1) * (8.0 / (geometry.h * geometry.w))


class JpegSpatialMean(JpegModule):
    """``x.mean((2, 3), keepdim)`` (e.g. the squeeze of squeeze-excitation): a DC read that ends the
    JPEG domain, ``(N, C, 1, 1)`` or ``(N, C)`` like the spatial op. Exact."""

    def __init__(self, geometry: BlockGeometry, keepdim: bool) -> None:
        super().__init__(geometry, BlockGeometry(1, 1))
        self.keepdim = keepdim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = spatial_mean(x, self.in_geometry)
        return mean[:, :, None, None] if self.keepdim else mean


class JpegToSpatial(JpegModule):
    """Leave the JPEG domain: ``(N, C·64, Hb, Wb)`` → pixels ``(N, C, h, w)`` (exact inverse block DCT).

    Inserted before ops that run on pixels and for decoded outputs. Reading pixels (a producer that
    already computed them), it is the identity, and ``elide_transforms`` removes it.
    """

    def __init__(self, geometry: BlockGeometry) -> None:
        super().__init__(geometry)
        self.out_domain = PIXELS

    def natural_domains(self) -> tuple[str, str]:
        return JPEG, PIXELS

    def supported_domains(self) -> frozenset[tuple[str, str]]:
        return frozenset({(JPEG, PIXELS), (PIXELS, PIXELS)})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pixels_in(x)


class JpegFromPixels(JpegModule):
    """Enter the JPEG domain: logical pixels ``(N, C, h, w)`` → ``(N, C·64, Hb, Wb)`` (exact block DCT).

    Inserted where a value computed in pixels feeds JPEG-domain consumers. Feeding a consumer that
    reads pixels, it is the identity, and ``elide_transforms`` removes it.
    """

    def __init__(self, geometry: BlockGeometry) -> None:
        super().__init__(geometry)
        self.in_domain = PIXELS

    def natural_domains(self) -> tuple[str, str]:
        return PIXELS, JPEG

    def supported_domains(self) -> frozenset[tuple[str, str]]:
        return frozenset({(PIXELS, JPEG), (PIXELS, PIXELS)})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.emit(x)


class JpegShortcutA(JpegModule):
    """CIFAR option-A shortcut: keep every ``stride``-th pixel, then add ``pad_channels`` zero
    channels on each side. Exact: subsampling through the pixel domain; the zero channels are zero
    coefficient planes (``pad_channels · 64`` planes on each side in the (N, C·64, Hb, Wb) layout)."""

    def __init__(self, stride: int, pad_channels: int, geometry: BlockGeometry) -> None:
        super().__init__(geometry, BlockGeometry(-(-geometry.h // stride), -(-geometry.w // stride)))
        self.stride, self.pad_channels = stride, pad_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = to_jpeg(to_spatial(x, self.in_geometry)[:, :, :: self.stride, :: self.stride])
        pad = self.pad_channels * NCOEF
        return F.pad(x, (0, 0, 0, 0, pad, pad))
