"""Convolution in the JPEG domain (paper §4.1, eq. 11–13): three exact lowerings of ``nn.Conv2d``.

``fused``
    The paper's map Ξ = J̃ ∘ K ∘ J precomputed as a convolution on the block grid. An output block at
    block position X reads the input pixel rows ``8·s·X − p … 8·s·X + 7s + k − 1 − p``, i.e. input
    blocks ``s·X + lo … s·X + hi`` with ``lo = ⌊−p/8⌋`` and ``hi = ⌊(7s + k − 1 − p)/8⌋``; so Ξ is a
    ``Conv2d(Cin·64 → Cout·64, kernel kb = hi − lo + 1, stride s)`` on the block grid, independent
    of the image size. Ξ is separable per spatial tap: with the 1-D DCT matrix ``C`` and the 0/1
    selector ``R[a, t, m', m] = [m = s·m' + a − p − 8·lo − 8·t]`` (tap a, block offset t),

        T[a, t, u', u] = Σ_{m', m} C[u', m'] R[a, t, m', m] C[u, m]
        Ξ[o u' v', i u v, tx, ty] = Σ_{a, b} K[o, i, a, b] · T_rows[a, tx, u', u] · T_cols[b, ty, v', v]

    (eq. 12–13 evaluated on the basis "images" analytically). Memory: ``64² · kb² / k²`` times the
    spatial weight, so it is estimated first and refused above a budget. While training, the spatial
    kernel stays the Parameter and Ξ is rebuilt from it differentiably; in eval it is cached.
    Output pixels past the logical output size are zeroed by a :class:`PaddingMask`.

``factored``
    Block IDCT → spatial convolution on the logical image → block DCT. Exact, memory of the order of
    the spatial weights; the lowering real ResNets use.

``pointwise``
    A 1×1 stride-1 convolution commutes with the block DCT (it mixes channels, not pixels), so it is
    the same channel mix applied to every coefficient: no transform at all.

Domains (see :mod:`jpegfx.ops.base`): ``factored`` can read and write pixels, ``pointwise`` runs in
either domain (in = out), ``fused`` is JPEG-only.

The bias ``b`` adds ``b · constant_pattern`` (see :func:`jpegfx.ops.base.add_channel_constant`).
"""
from __future__ import annotations

from dataclasses import dataclass

import opt_einsum
import torch
import torch.nn.functional as F
from torch import nn

from jpegfx.errors import MapBudgetError
from jpegfx import transforms as T
from jpegfx.ops.base import (
    ANY_DOMAIN,
    JPEG_ONLY,
    PIXELS,
    SAME_DOMAIN,
    JpegModule,
    PaddingMask,
    add_channel_constant,
)
from jpegfx.ops.base import pair as _pair
from jpegfx.transforms import BLOCK, NCOEF, BlockGeometry

LOWERINGS = ("fused", "factored", "pointwise")
DEFAULT_MAP_BUDGET = 1 << 30
"""Default limit on the bytes of one fused map (1 GiB)."""


@dataclass(frozen=True)
class BlockConvPlan:
    """How a spatial convolution along one axis becomes a block-grid convolution."""

    kernel: int
    stride: int
    padding: int
    lo: int  # first input block read by output block 0 (≤ 0)
    blocks: int  # kb: block-grid kernel size
    pad_before: int  # block-grid padding before / after
    pad_after: int
    out_blocks: int

    @staticmethod
    def make(size_in: int, kernel: int, stride: int, padding: int) -> BlockConvPlan:
        out = T.conv_output_size(size_in, kernel, stride, padding)
        lo = (-padding) // BLOCK
        hi = (BLOCK * stride - stride + kernel - 1 - padding) // BLOCK
        blocks_in, blocks_out = -(-size_in // BLOCK), -(-out // BLOCK)
        pad_after = max(0, stride * (blocks_out - 1) + hi - (blocks_in - 1))
        return BlockConvPlan(kernel, stride, padding, lo, hi - lo + 1, -lo, pad_after, blocks_out)

    def tap_operator(self) -> torch.Tensor:
        """``T[a, t, u', u]`` (kernel, blocks, 8, 8) float64: tap ``a`` from input block offset ``t``."""
        sel = torch.zeros(self.kernel, self.blocks, BLOCK, BLOCK, dtype=torch.float64)
        for a in range(self.kernel):
            for t in range(self.blocks):
                for m_out in range(BLOCK):
                    m_in = self.stride * m_out + a - self.padding - BLOCK * (self.lo + t)
                    if 0 <= m_in < BLOCK:
                        sel[a, t, m_out, m_in] = 1.0
        c = T.dct_matrix()
        return torch.einsum("pm,atmn,un->atpu", c, sel, c)


def fused_map_bytes(conv: nn.Conv2d, geometry: BlockGeometry, itemsize: int = 4) -> int:
    """Bytes of the fused map Ξ of ``conv`` at the given input geometry."""
    (kh, kw), (sh, sw), (ph, pw) = _pair(conv.kernel_size), _pair(conv.stride), _pair(conv.padding)
    rows = BlockConvPlan.make(geometry.h, kh, sh, ph)
    cols = BlockConvPlan.make(geometry.w, kw, sw, pw)
    n = conv.out_channels * conv.in_channels // conv.groups * NCOEF * NCOEF * rows.blocks * cols.blocks
    return n * itemsize


def conv_macs(conv: nn.Conv2d, geometry: BlockGeometry, lowering: str) -> int:
    """Multiply-accumulates per image of ``conv`` under a lowering (the cost model of ``auto``)."""
    (kh, kw), (sh, sw), (ph, pw) = _pair(conv.kernel_size), _pair(conv.stride), _pair(conv.padding)
    cin, cout = conv.in_channels // conv.groups, conv.out_channels
    ho, wo = T.conv_output_size(geometry.h, kh, sh, ph), T.conv_output_size(geometry.w, kw, sw, pw)
    out_g = BlockGeometry(ho, wo)
    if lowering == "fused":
        rows = BlockConvPlan.make(geometry.h, kh, sh, ph)
        cols = BlockConvPlan.make(geometry.w, kw, sw, pw)
        return out_g.hb * out_g.wb * cout * NCOEF * cin * NCOEF * rows.blocks * cols.blocks
    if lowering == "pointwise":
        return out_g.hb * out_g.wb * NCOEF * cout * cin
    transforms = (conv.in_channels * geometry.hb * geometry.wb + cout * out_g.hb * out_g.wb) * NCOEF * NCOEF
    return ho * wo * cout * cin * kh * kw + transforms


def supported_lowerings(conv: nn.Conv2d) -> dict[str, str | None]:
    """Each lowering → ``None`` when it applies to ``conv``, else the reason it does not."""
    reasons: dict[str, str | None] = {name: None for name in LOWERINGS}
    if conv.padding_mode != "zeros" or isinstance(conv.padding, str) and conv.padding != "valid":
        why = f"padding={conv.padding!r}, padding_mode={conv.padding_mode!r} (only zero padding)"
        return {name: why for name in LOWERINGS}
    if _pair(conv.dilation) != (1, 1):
        reasons["fused"] = "dilation > 1"
    if _pair(conv.kernel_size) != (1, 1) or _pair(conv.stride) != (1, 1) or _pair(conv.padding) != (0, 0):
        reasons["pointwise"] = "only 1x1 kernels with stride 1 and no padding"
    return reasons


def choose_lowering(conv: nn.Conv2d, geometry: BlockGeometry, budget: int = DEFAULT_MAP_BUDGET) -> str:
    """The ``auto`` choice: the cheapest applicable lowering in MACs whose map fits the budget."""
    reasons = supported_lowerings(conv)
    candidates = [name for name, why in reasons.items() if why is None]
    if "fused" in candidates and fused_map_bytes(conv, geometry) > budget:
        candidates.remove("fused")
    if not candidates:
        raise ValueError(f"no lowering applies to {conv}: {reasons}")
    return min(candidates, key=lambda name: conv_macs(conv, geometry, name))


class JpegConv2d(JpegModule):
    """``nn.Conv2d`` on JPEG-domain tensors; see the module docstring for the three lowerings."""

    def __init__(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        stride: tuple[int, int],
        padding: tuple[int, int],
        groups: int,
        in_geometry: BlockGeometry,
        lowering: str = "factored",
        dilation: tuple[int, int] = (1, 1),
    ) -> None:
        kh, kw = weight.shape[-2:]
        out = BlockGeometry(
            T.conv_output_size(in_geometry.h, kh, stride[0], padding[0], dilation[0]),
            T.conv_output_size(in_geometry.w, kw, stride[1], padding[1], dilation[1]),
        )
        super().__init__(in_geometry, out)
        if lowering not in LOWERINGS:
            raise ValueError(f"unknown conv lowering {lowering!r}; expected one of {LOWERINGS}")
        self.lowering = lowering
        self.stride, self.padding, self.groups, self.dilation = stride, padding, groups, dilation
        self.weight = nn.Parameter(weight.detach().clone())
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone())
        self.register_map("pattern", out.constant_pattern(), weight.dtype)
        if lowering == "fused":
            self.rows = BlockConvPlan.make(in_geometry.h, kh, stride[0], padding[0])
            self.cols = BlockConvPlan.make(in_geometry.w, kw, stride[1], padding[1])
            # the taps stay float64 whatever the module's dtype: Ξ is contracted in float64
            self.register_map("tap_rows", self.rows.tap_operator(), torch.float64, fixed=True)
            self.register_map("tap_cols", self.cols.tap_operator(), torch.float64, fixed=True)
            self.register_buffer("xi", self.build_map().detach(), persistent=False)
            self._xi_version = self.weight._version
            self.mask = PaddingMask(out, weight.dtype)

    @classmethod
    def from_spatial(
        cls,
        conv: nn.Conv2d,
        in_geometry: BlockGeometry,
        lowering: str = "auto",
        map_budget: int = DEFAULT_MAP_BUDGET,
        name: str = "conv",
    ) -> JpegConv2d:
        reasons = supported_lowerings(conv)
        if lowering == "auto":
            lowering = choose_lowering(conv, in_geometry, map_budget)
        elif lowering not in reasons:
            raise ValueError(f"{name}: unknown conv lowering {lowering!r}; expected auto or one of {LOWERINGS}")
        elif reasons[lowering] is not None:
            raise ValueError(f"{name}: lowering {lowering!r} does not apply: {reasons[lowering]}")
        if lowering == "fused":
            need = fused_map_bytes(conv, in_geometry, conv.weight.element_size())
            if need > map_budget:
                raise MapBudgetError(
                    f"{name}: fused map needs {need / 2**20:.1f} MiB > budget {map_budget / 2**20:.1f} MiB; "
                    "use lowering='factored' or raise the budget"
                )
        padding = (0, 0) if conv.padding == "valid" else _pair(conv.padding)
        return cls(
            conv.weight, conv.bias, _pair(conv.stride), padding, conv.groups, in_geometry,
            lowering, _pair(conv.dilation),
        )

    # -- fused map ---------------------------------------------------------------------------
    def build_map(self) -> torch.Tensor:
        """Ξ as a block-grid conv weight ``(Cout·64, Cin/g·64, kb_h, kb_w)`` (eq. 12–13), from the
        current spatial weight; differentiable, computed in float64 and cast to the weight's dtype.

        Legend: o/i out/in channel, a/b kernel row/col tap, x/y block offset, p/q out frequency
        u'/v', u/v in frequency.
        """
        k = self.weight.to(torch.float64)
        xi = opt_einsum.contract("oiab,axpu,byqv->opqiuvxy", k, self.tap_rows, self.tap_cols)
        cout, cin = k.shape[:2]
        return xi.reshape(cout * NCOEF, cin * NCOEF, self.rows.blocks, self.cols.blocks).to(self.weight.dtype)

    def fused_weight(self) -> torch.Tensor:
        if self.training and self.weight.requires_grad and torch.is_grad_enabled():
            return self.build_map()
        if self._xi_version != self.weight._version or self.xi.dtype != self.weight.dtype:
            self._rebuild_map()
        return self.xi

    @torch.no_grad()
    def _rebuild_map(self) -> None:
        """Recompute the cached Ξ from the current weight (float64 contraction, weight's dtype)."""
        self.xi = self.build_map()
        self._xi_version = self.weight._version

    def _apply(self, fn, recurse: bool = True):
        """Convert as ``nn.Module`` does (maps re-rounded from their masters, see
        :class:`~jpegfx.ops.base.DerivedMaps`), then rebuild the cached Ξ from the converted weight
        when its dtype changed: casting Ξ itself would keep the old dtype's rounding."""
        dtype = self.weight.dtype
        super()._apply(fn, recurse)
        if self.lowering == "fused" and (self.weight.dtype != dtype or self.xi.dtype != self.weight.dtype):
            self._rebuild_map()
        return self

    # -- forward -----------------------------------------------------------------------------
    def supported_domains(self) -> frozenset[tuple[str, str]]:
        return {"factored": ANY_DOMAIN, "pointwise": SAME_DOMAIN}.get(self.lowering, JPEG_ONLY)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.lowering == "factored" or self.in_domain == PIXELS:  # pixels in: factored, or pointwise
            y = F.conv2d(self.pixels_in(x), self.weight, self.bias,
                         self.stride, self.padding, self.dilation, self.groups)
            return self.emit(y)
        if self.lowering == "pointwise":
            n, _, hb, wb = x.shape
            w = self.weight.reshape(self.groups, -1, self.weight.shape[1])  # (g, Cout/g, Cin/g)
            y = torch.matmul(w, x.reshape(n, self.groups, -1, NCOEF * hb * wb))
            y = y.reshape(n, -1, hb, wb)
        else:
            r, c = self.rows, self.cols
            x = F.pad(x, (c.pad_before, c.pad_after, r.pad_before, r.pad_after))
            y = F.conv2d(x, self.fused_weight(), None, (r.stride, c.stride), 0, 1, self.groups)
            y = self.mask(y[:, :, : r.out_blocks, : c.out_blocks])
        if self.bias is not None:
            y = add_channel_constant(y, self.bias, self.pattern)
        return y

    def extra_repr(self) -> str:
        o, i = self.weight.shape[:2]
        return (f"{i * self.groups}->{o}, kernel={tuple(self.weight.shape[-2:])}, stride={self.stride}, "
                f"padding={self.padding}, lowering={self.lowering}, {super().extra_repr()}")
