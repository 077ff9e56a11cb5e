"""Shared machinery of the JPEG-domain modules.

Every JPEG-domain activation is a tensor ``(N, C·64, Hb, Wb)`` (see :mod:`jpegfx.transforms`) whose
logical size is static: each module knows the :class:`~jpegfx.transforms.BlockGeometry` of its input
and output, fixed when it is built from its spatial counterpart.

Domains. A module reads and writes JPEG-domain tensors by default. Modules that compute in pixels
(exact ReLU, the factored convolution, pooling) begin with a block IDCT and end with a block DCT; when
two of them are chained, the DCT of one and the IDCT of the next cancel (``Dᵀ D = I``, the DCT is
orthonormal). The ``elide_transforms`` pass then sets the producer's ``out_domain`` and the
consumer's ``in_domain`` to ``"pixels"``: the value between them is the logical image ``(N, C, h, w)``
and neither transform runs. :meth:`JpegModule.supported_domains` says which ``(in, out)`` pairs a
module can run with.

Derived maps. The constant linear maps of the ops (DCT bases, ``Dᵀ_k``, padding masks, constant
patterns, …) are computed in float64 and registered through :meth:`DerivedMaps.register_map`, which
keeps the float64 master and re-rounds the buffer from it whenever the module changes dtype or device:
``round_{dtype'}(master)``, never ``round_{dtype'}(round_{dtype}(master))``. A model converted in float32
and then ``.double()``-ed is therefore float64-exact.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from jpegfx import transforms as T
from jpegfx.transforms import NCOEF, BlockGeometry

JPEG, PIXELS = "jpeg", "pixels"
JPEG_ONLY = frozenset({(JPEG, JPEG)})
SAME_DOMAIN = frozenset({(JPEG, JPEG), (PIXELS, PIXELS)})  # ops that commute with the block DCT
ANY_DOMAIN = frozenset({(JPEG, JPEG), (JPEG, PIXELS), (PIXELS, JPEG), (PIXELS, PIXELS)})


@dataclass
class _Map:
    master: torch.Tensor  # float64, where it was built
    fixed: torch.dtype | None  # the dtype it keeps, or None: follows the module
    buffer: torch.Tensor  # the buffer last set from ``master``


class DerivedMaps(nn.Module):
    """A module holding constant maps derived in float64 (see the module docstring).

    :meth:`register_map` keeps the float64 master as a plain attribute (not a buffer: not in the
    state dict, not moved by ``.to``) and the map, rounded to ``dtype``, as a non-persistent buffer.
    After ``nn.Module._apply`` (which ``.double()``, ``.float()``, ``.half()``, ``.to(…)``, ``.cuda()``
    go through) every map whose buffer changed dtype or device is re-rounded from its master to the
    buffer's new dtype and device; a ``fixed`` map keeps its own dtype and only follows the device.
    A buffer replaced by other means (assignment, ``register_buffer``) is no longer a map: it is
    converted the ordinary way.
    """

    def register_map(self, name: str, value: torch.Tensor, dtype: torch.dtype, fixed: bool = False) -> None:
        """Register the float64 ``value`` as map ``name``: a buffer of ``dtype`` re-rounded from
        ``value`` on every dtype/device conversion (``fixed``: stays ``dtype``, follows the device)."""
        if value.dtype != torch.float64:
            raise TypeError(f"map {name!r} must be built in float64, got {value.dtype}")
        buffer = value.detach().to(dtype)
        self.register_buffer(name, buffer, persistent=False)
        maps: dict[str, _Map] = self.__dict__.setdefault("_derived_maps", {})
        maps[name] = _Map(value.detach().clone(), dtype if fixed else None, buffer)

    def _apply(self, fn, recurse: bool = True):
        maps: dict[str, _Map] = self.__dict__.get("_derived_maps", {})
        for name in [n for n, m in maps.items() if self._buffers.get(n) is not m.buffer]:
            del maps[name]  # replaced since it was registered: an ordinary buffer now
        before = {name: (m.buffer.dtype, m.buffer.device) for name, m in maps.items()}
        super()._apply(fn, recurse)
        for name, m in maps.items():
            buffer = self._buffers[name]
            if (buffer.dtype, buffer.device) != before[name]:
                buffer = m.master.to(device=buffer.device, dtype=buffer.dtype if m.fixed is None else m.fixed)
                self._buffers[name] = buffer
            m.buffer = buffer
        return self


class JpegModule(DerivedMaps):
    """Base class: a module mapping JPEG-domain tensors of ``in_geometry`` to ``out_geometry``."""

    def __init__(self, in_geometry: BlockGeometry, out_geometry: BlockGeometry | None = None) -> None:
        super().__init__()
        self.in_geometry = in_geometry
        self.out_geometry = in_geometry if out_geometry is None else out_geometry
        self.in_domain, self.out_domain = JPEG, JPEG

    def supported_domains(self) -> frozenset[tuple[str, str]]:
        """The ``(in_domain, out_domain)`` pairs this module can run with (see the module docstring)."""
        return JPEG_ONLY

    def natural_domains(self) -> tuple[str, str]:
        """The ``(in, out)`` domains of the module's own input and output, before any elision: JPEG
        both ways, except for the transforms that enter or leave the JPEG domain."""
        return JPEG, JPEG

    def set_domains(self, in_domain: str, out_domain: str) -> None:
        if (in_domain, out_domain) not in self.supported_domains():
            raise ValueError(f"{type(self).__name__} cannot run {in_domain} -> {out_domain}")
        self.in_domain, self.out_domain = in_domain, out_domain

    def pixels_in(self, x: torch.Tensor) -> torch.Tensor:
        """The input as logical pixels ``(N, C, h, w)``: inverse DCT unless it already is."""
        return x if self.in_domain == PIXELS else to_spatial(x, self.in_geometry)

    def emit(self, y: torch.Tensor) -> torch.Tensor:
        """Logical output pixels ``(N, C, h, w)`` in the output domain: DCT unless pixels are wanted."""
        return y if self.out_domain == PIXELS else to_jpeg(y)

    def register_low_frequency_maps(self, frequencies: int, dtype: torch.dtype) -> torch.Tensor:
        """Maps for a k-frequency approximation: ``approx_inverse`` = ``Dᵀ_k`` (coefficients →
        k-frequency pixel blocks) and ``projection`` = ``Dᵀ_k D`` (pixel blocks → the same). Returns
        ``Dᵀ_k`` in float64."""
        keep = T.frequency_mask(frequencies).double()  # validates 1..15
        approx_inverse = (T.dct_basis() * keep[:, None]).T  # Dᵀ_k[p, k]
        self.register_map("approx_inverse", approx_inverse, dtype)
        self.register_map("projection", approx_inverse @ T.dct_basis(), dtype)
        return approx_inverse

    def low_frequency_blocks(self, x: torch.Tensor) -> torch.Tensor:
        """The k-frequency reconstruction of the input as pixel blocks ``(N, C·64, Hb, Wb)``, from either
        domain (needs :meth:`register_low_frequency_maps`)."""
        if self.in_domain == PIXELS:
            return T.apply_block_map(T.blockify(x), self.projection)
        return T.apply_block_map(x, self.approx_inverse)

    def emit_blocks(self, blocks: torch.Tensor) -> torch.Tensor:
        """Output pixel blocks ``(N, C·64, Hb, Wb)`` in the output domain."""
        if self.out_domain == PIXELS:
            return T.unblockify(blocks, (self.out_geometry.h, self.out_geometry.w))
        return T.block_dct(blocks)

    def extra_repr(self) -> str:
        a, b = self.in_geometry, self.out_geometry
        domains = "" if (self.in_domain, self.out_domain) == (JPEG, JPEG) else f", {self.in_domain} -> {self.out_domain}"
        return f"{a.h}x{a.w} -> {b.h}x{b.w}{domains}"


def pair(v) -> tuple[int, int]:
    """An int or a pair (PyTorch's kernel/stride/padding arguments) as a tuple of two ints."""
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def channels_of(x: torch.Tensor) -> int:
    """Number of image channels C of a JPEG-domain tensor ``(N, C·64, Hb, Wb)``."""
    return x.shape[1] // NCOEF


def to_spatial(x: torch.Tensor, geometry: BlockGeometry) -> torch.Tensor:
    """JPEG-domain ``(N, C·64, Hb, Wb)`` → pixels ``(N, C, h, w)`` (exact inverse DCT, cropped)."""
    return T.from_dct(x, (geometry.h, geometry.w))


def to_jpeg(x: torch.Tensor) -> torch.Tensor:
    """Pixels ``(N, C, h, w)`` → JPEG-domain ``(N, C·64, Hb, Wb)`` with zero padding."""
    return T.to_dct(x)


def block_pixel_mask(geometry: BlockGeometry, dtype: torch.dtype) -> torch.Tensor:
    """(64, Hb, Wb) mask in block-pixel layout: 1 on logical pixels, 0 on padding."""
    return T.blockify(geometry.pixel_mask())[0].to(dtype)


def constant_pattern(geometry: BlockGeometry, channels: int, dtype: torch.dtype) -> torch.Tensor:
    """(C·64, Hb, Wb): ``c · pattern`` adds ``c`` to every logical pixel of every channel."""
    return geometry.constant_pattern().to(dtype).repeat(channels, 1, 1)


def add_channel_constant(x: torch.Tensor, shift: torch.Tensor, pattern: torch.Tensor,
                         scale: torch.Tensor | None = None) -> torch.Tensor:
    """Add the per-channel constant ``shift`` (C,) to every logical pixel of ``x``, after multiplying
    channel ``c`` by ``scale[c]`` when given (one fused multiply-add).

    ``pattern`` is the (64, Hb, Wb) :meth:`BlockGeometry.constant_pattern`: on whole blocks it is
    8 on DC and 0 elsewhere (orthonormal DC = 8 · mean), on partial blocks it keeps the padding zero.
    """
    c64, hb, wb = x.shape[1:]
    bias = (shift.reshape(-1, 1, 1, 1) * pattern.unsqueeze(0)).reshape(1, c64, hb, wb)  # (C, 64, Hb, Wb)
    if scale is None:
        return x + bias
    return torch.addcmul(bias, x, scale.repeat_interleave(NCOEF).reshape(1, -1, 1, 1))


class PaddingMask(DerivedMaps):
    """Zero the padding pixels of the last block row / column (exact; identity when aligned).

    Boundary blocks get ``F' = P F`` with ``P = D · diag(valid) · Dᵀ``; the valid pixels of a block
    in the last row/column are a product of a row and a column mask, so one 64×64 map for the last
    block row and one for the last block column suffice (the corner gets both).
    """

    def __init__(self, geometry: BlockGeometry, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.geometry = geometry
        d = T.dct_basis()
        rows = torch.arange(T.BLOCK)
        row_valid = (rows < (geometry.h - 8 * (geometry.hb - 1))).double()
        col_valid = (rows < (geometry.w - 8 * (geometry.wb - 1))).double()
        ones = torch.ones(T.BLOCK, dtype=torch.float64)
        self.mask_rows = geometry.h % T.BLOCK != 0
        self.mask_cols = geometry.w % T.BLOCK != 0
        row_map = d @ torch.diag(torch.kron(row_valid, ones)) @ d.T
        col_map = d @ torch.diag(torch.kron(ones, col_valid)) @ d.T
        self.register_map("row_map", row_map, dtype)
        self.register_map("col_map", col_map, dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mask_rows:
            x = torch.cat([x[:, :, :-1], T.apply_block_map(x[:, :, -1:], self.row_map)], dim=2)
        if self.mask_cols:
            x = torch.cat([x[:, :, :, :-1], T.apply_block_map(x[:, :, :, -1:], self.col_map)], dim=3)
        return x


def at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """``x`` in float32 when it is a 16-bit float (under autocast): batch statistics (sums of squares over
    a whole batch) are computed in float32 at least, as PyTorch's own normalisation layers do."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
