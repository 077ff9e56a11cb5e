"""JPEG-domain ops of the wider ResNet families equal their spatial twins: GroupNorm, channel
scaling (squeeze-excitation gates), the mean over the plane and shape queries.

Sizes include non-multiples of 8 (padding must never leak); float32 and float64 (tolerances in
conftest.RTOL); each op also runs on pixels where it supports it.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import assert_close_rel
from jpegfx import transforms as T
from jpegfx.ops import JpegGroupNorm, JpegScale, JpegShape, JpegSpatialMean
from jpegfx.transforms import BlockGeometry

SIZES = [(16, 16), (13, 7), (9, 21), (2, 3)]


def _x(shape, dtype, seed=0, mean=0.0, std=1.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g, dtype=torch.float64) * std + mean).to(dtype)


def _padding_is_zero(y: torch.Tensor, g: BlockGeometry) -> bool:
    pixels = T.unblockify(T.block_idct(y))
    outside = torch.cat([pixels[..., g.h:, :].flatten(), pixels[..., :, g.w:].flatten(), pixels.new_zeros(1)])
    return bool(outside.abs().max() <= 1e-5 * pixels.abs().max().clamp_min(1e-30))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("groups,channels", [(1, 4), (2, 8), (8, 8)], ids=["g1c4", "g2c8", "g8c8"])
@pytest.mark.parametrize("domain", ["jpeg", "pixels"])
def test_groupnorm_matches_spatial(size, groups, channels, domain, dtype):
    torch.manual_seed(0)
    gn = nn.GroupNorm(groups, channels).to(dtype)
    nn.init.normal_(gn.weight)
    nn.init.normal_(gn.bias)
    x = _x((3, channels, *size), dtype, mean=2.0)
    g = BlockGeometry(*size)
    op = JpegGroupNorm.from_spatial(gn, g)
    if domain == "pixels":
        op.set_domains("pixels", "pixels")
        assert_close_rel(op(x), gn(x))
        return
    y = op(T.to_dct(x))
    assert _padding_is_zero(y, g)
    assert_close_rel(T.from_dct(y, size), gn(x))


def test_groupnorm_is_stable_when_mean_dominates():
    """Mean 300, std 0.5 in float32: the two-pass variance keeps full accuracy (a one-pass
    Σx²/n − μ² would lose it)."""
    gn = nn.GroupNorm(2, 4)
    x = _x((2, 4, 13, 11), torch.float32, mean=300.0, std=0.5)
    y = JpegGroupNorm.from_spatial(gn, BlockGeometry(13, 11))(T.to_dct(x))
    assert_close_rel(T.from_dct(y, (13, 11)), gn(x), 1e-4)  # float32 rounding of 300 already costs ~1e-5


def test_groupnorm_gradients_match_spatial():
    gn = nn.GroupNorm(2, 4).double()
    nn.init.normal_(gn.weight)
    op = JpegGroupNorm.from_spatial(gn, BlockGeometry(13, 9))
    x = _x((2, 4, 13, 9), torch.float64)
    target = _x((2, 4, 13, 9), torch.float64, seed=1)
    (gn(x) * target).sum().backward()
    (T.from_dct(op(T.to_dct(x)), (13, 9)) * target).sum().backward()
    assert_close_rel(op.weight.grad, gn.weight.grad)
    assert_close_rel(op.bias.grad, gn.bias.grad)


@pytest.mark.parametrize("gate_shape", [(3, 4, 1, 1), (1, 4, 1, 1), (3, 1, 1, 1), (4, 1, 1), ()],
                         ids=["N-C", "1-C", "N-1", "C11", "scalar"])
@pytest.mark.parametrize("op", ["mul", "div"])
def test_scale_by_channel_constant_matches_spatial(gate_shape, op, dtype):
    size = (13, 7)
    x = _x((3, 4, *size), dtype)
    gate = _x(gate_shape, dtype, seed=1).abs() + 0.5
    expected = x * gate if op == "mul" else x / gate
    y = JpegScale(op)(T.to_dct(x), gate)
    assert _padding_is_zero(y, BlockGeometry(*size))
    assert_close_rel(T.from_dct(y, size), expected)
    assert_close_rel(T.from_dct(JpegScale(op)(T.to_dct(x), 0.25), size), x * 0.25 if op == "mul" else x / 0.25)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("keepdim", [True, False])
def test_mean_over_the_plane_reads_dc(size, keepdim, dtype):
    x = _x((2, 5, *size), dtype)
    got = JpegSpatialMean(BlockGeometry(*size), keepdim)(T.to_dct(x))
    assert_close_rel(got, x.mean((2, 3), keepdim=keepdim))


def test_shape_queries_answer_for_the_spatial_value():
    shape = JpegShape(5, BlockGeometry(13, 7))
    x = T.to_dct(torch.zeros(2, 5, 13, 7))
    assert shape(x) == torch.Size((2, 5, 13, 7))
    assert [shape(x, d) for d in (0, 1, 2, 3, -1)] == [2, 5, 13, 7, 7]


PIECEWISE = [(nn.LeakyReLU(0.1), "leaky"), (nn.ReLU6(), "relu6"), (nn.Hardtanh(-0.5, 0.75), "hardtanh")]


@pytest.mark.parametrize("module,name", PIECEWISE, ids=[p[1] for p in PIECEWISE])
@pytest.mark.parametrize("mode", ["exact", "asm", "apx"])
@pytest.mark.parametrize("size", [(16, 16), (13, 7)], ids=["16x16", "13x7"])
@pytest.mark.parametrize("domains", [("jpeg", "jpeg"), ("pixels", "pixels"), ("jpeg", "pixels")],
                         ids=["jpeg", "pixels", "jpeg-to-pixels"])
def test_piecewise_linear_activations_exact_at_k15(module, name, mode, size, domains, dtype):
    """Exact in every mode at k = 15 (all frequencies), in every domain pair, padding kept zero."""
    from jpegfx.ops import JpegPiecewiseLinear

    x = _x((2, 3, *size), dtype) * 4
    op = JpegPiecewiseLinear.from_spatial(module, BlockGeometry(*size), mode, 15, dtype)
    op.set_domains(*domains)
    y = op(T.to_dct(x) if domains[0] == "jpeg" else x)
    if domains[1] == "jpeg":
        assert _padding_is_zero(y, BlockGeometry(*size))
        y = T.from_dct(y, size)
    assert_close_rel(y, module(x))


@pytest.mark.parametrize("module,name", PIECEWISE, ids=[p[1] for p in PIECEWISE])
def test_piecewise_linear_asm_beats_apx_and_takes_its_values_from_the_exact_pixels(module, name):
    """At k < 15, ASM's output is, pixel by pixel, one of the pieces applied to the exact value. For
    LeakyReLU and ReLU6 it is closer to f than APX (f of the approximation), as for ReLU (paper
    Fig. 4a); for a narrow clamp (hardtanh on [−0.5, 0.75] of values with std 4) it is not: a pixel
    whose approximation falls inside the range keeps its exact, possibly far-out, value."""
    from jpegfx.ops import JpegPiecewiseLinear

    x = _x((4, 3, 32, 32), torch.float64) * 4
    g = BlockGeometry(32, 32)
    errors = {}
    for mode in ("asm", "apx"):
        y = T.from_dct(JpegPiecewiseLinear.from_spatial(module, g, mode, 4, torch.float64)(T.to_dct(x)), (32, 32))
        errors[mode] = float((y - module(x)).pow(2).mean().sqrt())
        if mode == "asm":
            op = JpegPiecewiseLinear.from_spatial(module, g)
            candidates = torch.stack([x, x * op.slope, torch.full_like(x, op.low), torch.full_like(x, op.high)])
            assert ((candidates - y).abs().min(dim=0).values <= 1e-9 * x.abs().max()).all()
    assert errors["asm"] > 0 and errors["apx"] > 0
    if name != "hardtanh":
        assert errors["asm"] < errors["apx"], errors
