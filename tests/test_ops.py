"""Each JPEG-domain op equals its spatial twin: ``unblock(op_jpeg(block(x))) == op(x)``.

Sizes include 8, 16, 32 and the non-multiples 7, 13 and 1 (padding must never leak); strides 1 and 2;
batch 1 and 4; float32 and float64 (tolerances in conftest.RTOL).
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import RTOL, assert_close_rel
from jpegfx import transforms as T
from jpegfx.ops import (
    JpegAdaptiveAvgPool2d,
    JpegAvgPool2d,
    JpegBatchNorm2d,
    JpegConv2d,
    JpegMaxPool2d,
    JpegReLU,
    MapBudgetError,
    PaddingMask,
    choose_lowering,
    fused_map_bytes,
    relu_block_error,
    to_spatial,
)
from jpegfx.transforms import BlockGeometry

SIZES = [8, 16, 32, 7, 13, 1]


def jpeg(x: torch.Tensor) -> torch.Tensor:
    return T.to_dct(x)


def assert_padding_zero(y: torch.Tensor, g: BlockGeometry) -> None:
    """The padding invariant: pixels past the logical size are zero."""
    pixels = T.unblockify(T.block_idct(y))
    scale = pixels.abs().max().clamp_min(1e-30)
    outside = torch.cat([pixels[..., g.h:, :].flatten(), pixels[..., :, g.w:].flatten(), pixels.new_zeros(1)])
    assert outside.abs().max() <= 1e-5 * scale


def valid_part(grad: torch.Tensor, g: BlockGeometry) -> torch.Tensor:
    """Project a JPEG-domain gradient onto inputs that respect the padding invariant.

    Coefficient space also has directions that only move padding pixels; inputs never move along
    them, so only the projection onto the logical pixels is comparable with the spatial gradient.
    """
    return jpeg(T.from_dct(grad, (g.h, g.w)))


# ------------------------------------------------------------------------------------------------
# Conv2d
# ------------------------------------------------------------------------------------------------
def _conv_cases():
    for lowering in ("fused", "factored", "pointwise"):
        for kernel, padding in ((1, 0), (3, 1), (7, 3)):
            for stride in (1, 2):
                if lowering == "pointwise" and (kernel, stride) != (1, 1):
                    continue
                for size in SIZES:
                    yield pytest.param(lowering, kernel, stride, padding, size,
                                       id=f"{lowering}-k{kernel}-s{stride}-{size}x{size}")


@pytest.mark.parametrize("bias,batch", [(True, 4), (False, 1)], ids=["bias-b4", "nobias-b1"])
@pytest.mark.parametrize("lowering,kernel,stride,padding,size", list(_conv_cases()))
def test_conv_matches_spatial(lowering, kernel, stride, padding, size, bias, batch, dtype):
    torch.manual_seed(size * 31 + kernel)
    conv = nn.Conv2d(3, 5, kernel, stride, padding, bias=bias).to(dtype)
    x = torch.randn(batch, 3, size, size + 3, dtype=dtype)  # rectangular on purpose
    op = JpegConv2d.from_spatial(conv, BlockGeometry(size, size + 3), lowering)
    assert op.lowering == lowering
    y = op(jpeg(x))
    expected = conv(x)
    assert (op.out_geometry.h, op.out_geometry.w) == tuple(expected.shape[-2:])
    assert_close_rel(to_spatial(y, op.out_geometry), expected)
    assert_padding_zero(y, op.out_geometry)


@pytest.mark.parametrize("lowering", ["fused", "factored", "pointwise"])
def test_conv_grouped_depthwise(lowering, dtype):
    conv = nn.Conv2d(4, 4, 1 if lowering == "pointwise" else 3, 1, 0 if lowering == "pointwise" else 1,
                     groups=4).to(dtype)
    x = torch.randn(2, 4, 13, 9, dtype=dtype)
    op = JpegConv2d.from_spatial(conv, BlockGeometry(13, 9), lowering)
    assert_close_rel(to_spatial(op(jpeg(x)), op.out_geometry), conv(x))


def test_conv_rectangular_kernel_and_stride():
    conv = nn.Conv2d(2, 3, (3, 5), (2, 1), (1, 2)).double()
    x = torch.randn(2, 2, 19, 11, dtype=torch.float64)
    for lowering in ("fused", "factored"):
        op = JpegConv2d.from_spatial(conv, BlockGeometry(19, 11), lowering)
        assert_close_rel(to_spatial(op(jpeg(x)), op.out_geometry), conv(x))


@pytest.mark.parametrize("lowering", ["fused", "factored", "pointwise"])
def test_conv_gradients_match_spatial(lowering):
    torch.manual_seed(0)
    k, p = (1, 0) if lowering == "pointwise" else (3, 1)
    conv = nn.Conv2d(3, 4, k, 1 if lowering == "pointwise" else 2, p).double()
    x = torch.randn(2, 3, 13, 13, dtype=torch.float64, requires_grad=True)
    g = BlockGeometry(13, 13)
    op = JpegConv2d.from_spatial(conv, g, lowering).train()
    target = torch.randn_like(conv(x))
    (conv(x) * target).sum().backward()
    xj = jpeg(x.detach()).requires_grad_()
    (to_spatial(op(xj), op.out_geometry) * target).sum().backward()
    assert_close_rel(op.weight.grad, conv.weight.grad)
    assert_close_rel(op.bias.grad, conv.bias.grad)
    # the input gradient in the JPEG domain is the DCT of the spatial one (orthonormal transform)
    assert_close_rel(valid_part(xj.grad, g), jpeg(x.grad))


def test_fused_map_is_cached_in_eval_and_rebuilt_after_weight_change():
    conv = nn.Conv2d(2, 2, 3, 1, 1).double()
    op = JpegConv2d.from_spatial(conv, BlockGeometry(16, 16), "fused").eval()
    first = op.fused_weight()
    assert op.fused_weight() is first
    with torch.no_grad():
        op.weight.mul_(2.0)
        conv.weight.mul_(2.0)
    assert op.fused_weight() is not first
    x = torch.randn(1, 2, 16, 16, dtype=torch.float64)
    assert_close_rel(to_spatial(op(jpeg(x)), op.out_geometry), conv(x))


def test_fused_map_size_estimate_and_budget_error():
    conv = nn.Conv2d(64, 64, 3, 1, 1, bias=False)
    g = BlockGeometry(56, 56)
    assert fused_map_bytes(conv, g) == 64 * 64 * 64 * 64 * 9 * 4  # 604 MB, DESIGN §3
    with pytest.raises(MapBudgetError, match=r"layer1\.0\.conv1: fused map needs 576\.0 MiB > budget 100\.0 MiB"):
        JpegConv2d.from_spatial(conv, g, "fused", map_budget=100 * 2**20, name="layer1.0.conv1")


def test_lowering_choice_and_refusals():
    g = BlockGeometry(56, 56)
    assert choose_lowering(nn.Conv2d(64, 64, 1), g) == "pointwise"
    assert choose_lowering(nn.Conv2d(64, 64, 3, padding=1), g) == "factored"
    with pytest.raises(ValueError, match="pointwise.*does not apply"):
        JpegConv2d.from_spatial(nn.Conv2d(4, 4, 3), g, "pointwise")
    with pytest.raises(ValueError, match="only zero padding"):
        JpegConv2d.from_spatial(nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect"), g, "factored")
    with pytest.raises(ValueError, match="unknown conv lowering"):
        JpegConv2d.from_spatial(nn.Conv2d(4, 4, 3), g, "magic")


@pytest.mark.parametrize("channels,size", [(512, 7), (64, 56)], ids=["512x512-at-7x7", "64x64-at-56x56"])
def test_memory_light_lowering_on_resnet_sized_layers(channels, size):
    torch.manual_seed(1)
    conv = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
    op = JpegConv2d.from_spatial(conv, BlockGeometry(size, size), "auto")
    assert op.lowering == "factored"
    held = sum(t.numel() * t.element_size() for t in list(op.parameters()) + list(op.buffers()))
    spatial = conv.weight.numel() * conv.weight.element_size()
    assert held <= spatial + 64 * 1024  # of the order of the spatial weights (+ a tiny bias pattern)
    x = torch.randn(1, channels, size, size)
    with torch.no_grad():
        assert_close_rel(to_spatial(op(jpeg(x)), op.out_geometry), conv(x))


# ------------------------------------------------------------------------------------------------
# BatchNorm2d
# ------------------------------------------------------------------------------------------------
def _random_bn(channels: int, dtype) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(channels).to(dtype)
    with torch.no_grad():
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.normal_()
    return bn


@pytest.mark.parametrize("batch", [1, 4], ids=["b1", "b4"])
@pytest.mark.parametrize("size", SIZES, ids=[f"{s}x{s}" for s in SIZES])
def test_batchnorm_eval_matches_spatial(size, batch, dtype):
    bn = _random_bn(5, dtype).eval()
    x = torch.randn(batch, 5, size, size, dtype=dtype)
    g = BlockGeometry(size, size)
    op = JpegBatchNorm2d.from_spatial(bn, g).eval()
    y = op(jpeg(x))
    assert_close_rel(to_spatial(y, g), bn(x))
    assert_padding_zero(y, g)


@pytest.mark.parametrize("momentum", [0.1, None], ids=["momentum0.1", "cumulative"])
@pytest.mark.parametrize("size", [16, 13, 1], ids=["16x16", "13x13", "1x1"])
def test_batchnorm_train_matches_spatial_including_running_stats(size, momentum, dtype):
    torch.manual_seed(size)
    bn = nn.BatchNorm2d(3, momentum=momentum).to(dtype).train()
    g = BlockGeometry(size, size)
    op = JpegBatchNorm2d.from_spatial(bn, g).train()
    for step in range(3):
        x = torch.randn(4, 3, size, size, dtype=dtype) * (step + 1) + step
        assert_close_rel(to_spatial(op(jpeg(x)), g), bn(x))
    assert_close_rel(op.running_mean, bn.running_mean)
    assert_close_rel(op.running_var, bn.running_var)
    assert int(op.num_batches_tracked) == int(bn.num_batches_tracked) == 3


def test_batchnorm_train_gradients_match_spatial():
    torch.manual_seed(3)
    bn = _random_bn(3, torch.float64).train()
    g = BlockGeometry(13, 11)
    op = JpegBatchNorm2d.from_spatial(bn, g).train()
    x = torch.randn(4, 3, 13, 11, dtype=torch.float64, requires_grad=True)
    target = torch.randn(4, 3, 13, 11, dtype=torch.float64)
    (bn(x) * target).sum().backward()
    xj = jpeg(x.detach()).requires_grad_()
    (to_spatial(op(xj), g) * target).sum().backward()
    assert_close_rel(op.weight.grad, bn.weight.grad)
    assert_close_rel(op.bias.grad, bn.bias.grad)
    assert_close_rel(valid_part(xj.grad, g), jpeg(x.grad))


# ------------------------------------------------------------------------------------------------
# ReLU
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["exact", "asm", "apx"])
@pytest.mark.parametrize("size", SIZES, ids=[f"{s}x{s}" for s in SIZES])
def test_relu_exact_modes_match_spatial(mode, size, dtype):
    """exact, ASM(15) and APX(15) are all the true ReLU."""
    x = torch.randn(4, 3, size, size + 1, dtype=dtype)
    g = BlockGeometry(size, size + 1)
    op = JpegReLU(g, mode, 15, dtype=dtype)
    y = op(jpeg(x))
    assert_close_rel(to_spatial(y, g), torch.relu(x))
    assert_padding_zero(y, g)


def paper_test_blocks(n: int, generator: torch.Generator) -> torch.Tensor:
    """Paper §5.3: random 4×4 blocks in [-1, 1], box-upscaled to 8×8."""
    small = torch.rand(n, 4, 4, generator=generator, dtype=torch.float64) * 2 - 1
    return small.repeat_interleave(2, dim=1).repeat_interleave(2, dim=2)


def test_asm_is_more_accurate_than_apx_for_every_k():
    blocks = paper_test_blocks(20000, torch.Generator().manual_seed(0))
    for k in range(1, 15):
        asm = relu_block_error(blocks, "asm", k).mean()
        apx = relu_block_error(blocks, "apx", k).mean()
        assert asm < apx, f"k={k}: ASM {asm:.4f} >= APX {apx:.4f}"
    for mode in ("asm", "apx"):
        assert relu_block_error(blocks, mode, 15).max() < 1e-12


@pytest.mark.parametrize("k", range(1, 16))
def test_asm_harmonic_tensor_agrees_with_half_spatial_masking(k):
    x = torch.randn(2, 3 * 64, 2, 3, dtype=torch.float64)
    g = BlockGeometry(16, 24)
    spatial = JpegReLU(g, "asm", k, "spatial", dtype=torch.float64)(x)
    harmonic = JpegReLU(g, "asm", k, "harmonic", dtype=torch.float64)(x)
    assert (spatial - harmonic).abs().max() < 1e-6


@pytest.mark.parametrize("mode", ["asm", "apx"])
def test_approximate_relu_keeps_padding_zero(mode):
    g = BlockGeometry(13, 13)
    y = JpegReLU(g, mode, 3, dtype=torch.float64)(jpeg(torch.randn(2, 2, 13, 13, dtype=torch.float64)))
    assert_padding_zero(y, g)


def test_asm_preserves_positive_values_where_mask_is_right():
    """ASM output pixels are either 0 or the exact input pixel (paper Fig. 1)."""
    x = torch.randn(1, 1, 16, 16, dtype=torch.float64)
    g = BlockGeometry(16, 16)
    out = to_spatial(JpegReLU(g, "asm", 4, dtype=torch.float64)(jpeg(x)), g)
    assert torch.all((out.abs() < 1e-12) | ((out - x).abs() < 1e-12))


def test_relu_exact_gradient_matches_spatial():
    x = torch.randn(2, 3, 13, 13, dtype=torch.float64, requires_grad=True)
    g = BlockGeometry(13, 13)
    target = torch.randn_like(x)
    (torch.relu(x) * target).sum().backward()
    xj = jpeg(x.detach()).requires_grad_()
    (to_spatial(JpegReLU(g, dtype=torch.float64)(xj), g) * target).sum().backward()
    assert_close_rel(valid_part(xj.grad, g), jpeg(x.grad))


def test_relu_rejects_bad_configuration():
    g = BlockGeometry(8, 8)
    with pytest.raises(ValueError, match="unknown ReLU mode"):
        JpegReLU(g, "gelu")
    with pytest.raises(ValueError, match="spatial frequencies must be in 1..15"):
        JpegReLU(g, "asm", 16)


# ------------------------------------------------------------------------------------------------
# Pooling
# ------------------------------------------------------------------------------------------------
def _maxpool_cases():
    for kernel, stride, padding in ((3, 2, 1), (2, 2, 0), (3, 1, 1)):
        for size in SIZES:
            if size + 2 * padding >= kernel:  # PyTorch rejects windows larger than the padded input
                yield pytest.param(kernel, stride, padding, size, id=f"{kernel}s{stride}p{padding}-{size}x{size}")


@pytest.mark.parametrize("kernel,stride,padding,size", list(_maxpool_cases()))
def test_maxpool_exact_and_asm15_match_spatial(kernel, stride, padding, size, dtype):
    pool = nn.MaxPool2d(kernel, stride, padding)
    x = torch.randn(4, 3, size, size, dtype=dtype)
    g = BlockGeometry(size, size)
    for mode in ("exact", "asm"):
        op = JpegMaxPool2d.from_spatial(pool, g, mode, 15, dtype=dtype)
        y = op(jpeg(x))
        assert_close_rel(to_spatial(y, op.out_geometry), pool(x))
        assert_padding_zero(y, op.out_geometry)


def test_maxpool_asm_picks_true_window_values_and_improves_with_k():
    torch.manual_seed(0)
    pool = nn.MaxPool2d(3, 2, 1)
    g = BlockGeometry(32, 32)
    x = torch.nn.functional.interpolate(torch.randn(8, 4, 8, 8, dtype=torch.float64), scale_factor=4,
                                        mode="bilinear")  # smooth, image-like
    errors = []
    for k in (2, 6, 10, 15):
        op = JpegMaxPool2d.from_spatial(pool, g, "asm", k, dtype=torch.float64)
        y = to_spatial(op(jpeg(x)), op.out_geometry)
        assert torch.all(y <= pool(x) + 1e-12)  # a window value, never above the true max
        errors.append(float((y - pool(x)).abs().mean()))
    assert errors[-1] < 1e-12 and errors[0] > errors[1] > 0


@pytest.mark.parametrize("size", SIZES, ids=[f"{s}x{s}" for s in SIZES])
def test_global_average_pool_from_dc(size, dtype):
    x = torch.randn(4, 3, size, size + 2, dtype=dtype)
    g = BlockGeometry(size, size + 2)
    op = JpegAdaptiveAvgPool2d.from_spatial(nn.AdaptiveAvgPool2d((1, 1)), g)
    assert_close_rel(op(jpeg(x)), nn.AdaptiveAvgPool2d((1, 1))(x))


def test_adaptive_average_pool_other_sizes():
    x = torch.randn(2, 3, 13, 13, dtype=torch.float64)
    op = JpegAdaptiveAvgPool2d.from_spatial(nn.AdaptiveAvgPool2d((2, 3)), BlockGeometry(13, 13))
    assert_close_rel(op(jpeg(x)), nn.AdaptiveAvgPool2d((2, 3))(x))


@pytest.mark.parametrize("pool", [nn.AvgPool2d(2), nn.AvgPool2d(3, 2, 1), nn.AvgPool2d(3, 2, 1, count_include_pad=False)],
                         ids=["2", "3s2p1", "3s2p1-nopadcount"])
@pytest.mark.parametrize("size", [16, 13, 7], ids=["16x16", "13x13", "7x7"])
def test_avgpool_matches_spatial(pool, size, dtype):
    x = torch.randn(4, 3, size, size, dtype=dtype)
    g = BlockGeometry(size, size)
    op = JpegAvgPool2d.from_spatial(pool, g)
    y = op(jpeg(x))
    assert_close_rel(to_spatial(y, op.out_geometry), pool(x))
    assert_padding_zero(y, op.out_geometry)


def test_padding_mask_zeroes_only_padding():
    g = BlockGeometry(13, 7)
    junk = torch.randn(2, 3 * 64, g.hb, g.wb, dtype=torch.float64)
    got = PaddingMask(g, torch.float64)(junk)
    assert_close_rel(got, jpeg(T.from_dct(junk, (13, 7))))


def test_tolerance_table_is_strict():
    assert RTOL[torch.float32] <= 1e-5 and RTOL[torch.float64] <= 1e-10


# ------------------------------------------------------------------------------------------------
# Domains: every supported (in, out) pair computes the same function as JPEG -> JPEG
# ------------------------------------------------------------------------------------------------
def _domain_ops(g: BlockGeometry, dtype: torch.dtype):
    torch.manual_seed(3)
    conv = nn.Conv2d(3, 5, 3, 2, 1).to(dtype)
    point = nn.Conv2d(3, 5, 1).to(dtype)
    bn = nn.BatchNorm2d(3).to(dtype)
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.uniform_(0.5, 2)
        bn.bias.uniform_(-1, 1)
    yield "conv-factored", JpegConv2d.from_spatial(conv, g, "factored")
    yield "conv-pointwise", JpegConv2d.from_spatial(point, g, "pointwise")
    yield "bn-eval", JpegBatchNorm2d.from_spatial(bn.eval(), g)
    for mode in ("exact", "asm", "apx"):
        yield f"relu-{mode}", JpegReLU(g, mode, 4, dtype=dtype)
    yield "maxpool-exact", JpegMaxPool2d(3, 2, 1, 1, False, g, dtype=dtype)
    yield "maxpool-asm", JpegMaxPool2d(3, 2, 1, 1, False, g, "asm", 4, dtype=dtype)
    yield "avgpool", JpegAvgPool2d(nn.AvgPool2d(3, 2, 1), g)


@pytest.mark.parametrize("size", [16, 13, 7, 1], ids=["16x16", "13x13", "7x7", "1x1"])
def test_every_supported_domain_pair_computes_the_same_function(size, dtype):
    g = BlockGeometry(size, size + 3)
    x = torch.randn(2, 3, g.h, g.w, dtype=dtype, generator=torch.Generator().manual_seed(size))
    cases = list(_domain_ops(g, dtype))
    assert {name for name, _ in cases} >= {"conv-factored", "relu-exact", "bn-eval"}
    for name, op in cases:
        og = op.out_geometry
        reference = to_spatial(op(jpeg(x)), og)  # JPEG -> JPEG, already checked against the spatial op
        for pair in sorted(op.supported_domains()):
            op.set_domains(*pair)
            out = op(jpeg(x) if pair[0] == "jpeg" else x.clone())
            if pair[1] == "jpeg":
                assert out.shape[-2:] == (og.hb, og.wb), name
                assert_padding_zero(out, og)
                out = to_spatial(out, og)
            assert out.shape == reference.shape, (name, pair)
            assert_close_rel(out, reference)
        op.set_domains("jpeg", "jpeg")


def test_domain_capabilities_and_refusals():
    g = BlockGeometry(16, 16)
    conv = nn.Conv2d(2, 2, 3, padding=1)
    assert len(JpegConv2d.from_spatial(conv, g, "factored").supported_domains()) == 4
    assert JpegConv2d.from_spatial(conv, g, "fused").supported_domains() == {("jpeg", "jpeg")}
    pointwise = JpegConv2d.from_spatial(nn.Conv2d(2, 2, 1), g, "pointwise")
    assert pointwise.supported_domains() == {("jpeg", "jpeg"), ("pixels", "pixels")}
    with pytest.raises(ValueError, match="cannot run pixels -> jpeg"):
        pointwise.set_domains("pixels", "jpeg")
    with pytest.raises(ValueError, match="cannot run"):
        JpegReLU(g, "asm", 4, method="harmonic").set_domains("pixels", "pixels")
    with pytest.raises(ValueError, match="cannot run"):
        JpegAdaptiveAvgPool2d(1, g).set_domains("jpeg", "pixels")


@pytest.mark.parametrize("momentum", [0.1, None], ids=["momentum0.1", "cumulative"])
def test_batchnorm_train_on_pixels_matches_spatial_including_running_stats(momentum):
    torch.manual_seed(0)
    g = BlockGeometry(13, 13)
    bn = nn.BatchNorm2d(4, momentum=momentum).double().train()
    op = JpegBatchNorm2d.from_spatial(bn, g)
    op.set_domains("pixels", "pixels")
    for _ in range(2):
        x = torch.randn(3, 4, 13, 13, dtype=torch.float64) * 2 + 1
        assert_close_rel(op(x), bn(x))
    assert_close_rel(op.running_mean, bn.running_mean)
    assert_close_rel(op.running_var, bn.running_var)
    assert int(op.num_batches_tracked) == int(bn.num_batches_tracked) == 2


# ------------------------------------------------------------------------------------------------
# Numerical robustness: BN statistics when the mean dominates, derived maps under dtype conversion
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("h,w", [(13, 21), (16, 24)], ids=["13x21", "16x24"])
def test_batchnorm_train_is_stable_when_mean_dominates_std(h, w):
    """float32, every channel mean 300 and std 0.5: the one-pass ``Σ F²/n − μ²`` is percents off in σ².

    The reference is ``nn.BatchNorm2d`` in float64 on the pixels the float32 coefficients represent.
    Statistics must match at RTOL. The output is ill-conditioned (κ = max|x| / σ ≈ 600: rounding
    an input of 300 to float32 moves ``(x − μ)/σ`` by ~κ·ε; ``nn.BatchNorm2d`` in float32 is itself
    ~1e-5 off), so it is checked as a backward error: RTOL of the input's scale, divided by σ.
    """
    g = BlockGeometry(h, w)
    generator = torch.Generator().manual_seed(h * 100 + w)
    reference = nn.BatchNorm2d(4, momentum=None).double().train()  # momentum None: running_var = batch var
    ops = {domain: JpegBatchNorm2d.from_spatial(nn.BatchNorm2d(4, momentum=None).train(), g)
           for domain in ("jpeg", "pixels")}
    ops["pixels"].set_domains("pixels", "pixels")
    for _ in range(2):
        x = torch.randn(4, 4, h, w, generator=generator, dtype=torch.float64) * 0.5 + 300.0
        coefficients = jpeg(x).float()
        pixels = T.from_dct(coefficients.double(), (h, w))  # exactly what the coefficients hold
        with torch.no_grad():
            expected = reference(pixels)
            got = {"jpeg": to_spatial(ops["jpeg"](coefficients), g), "pixels": ops["pixels"](pixels.float())}
        out_rtol = RTOL[torch.float32] * float(pixels.abs().max() / pixels.std(dim=(0, 2, 3)).min()
                                               / expected.abs().max())
        for domain, out in got.items():
            assert out.dtype == torch.float32, domain
            assert_close_rel(out, expected.float(), rtol=out_rtol)
    for domain, op in ops.items():
        assert_close_rel(op.running_mean, reference.running_mean.float())
        assert_close_rel(op.running_var, reference.running_var.float())
        assert int(op.num_batches_tracked) == int(reference.num_batches_tracked) == 2, domain


def _frequency_reconstruction(x: torch.Tensor, k: int) -> torch.Tensor:
    """Spatial reference of ``Dᵀ_k D x``: the k-frequency reconstruction of the logical pixels."""
    keep = T.frequency_mask(k).to(x.dtype).repeat(x.shape[1]).reshape(1, -1, 1, 1)
    return T.from_dct(jpeg(x) * keep, tuple(x.shape[-2:]))


def _map_case_conv(lowering: str):
    def build(g: BlockGeometry, dtype: torch.dtype):
        torch.manual_seed(5)
        k = 1 if lowering == "pointwise" else 3
        conv = nn.Conv2d(3, 4, k, 1, k // 2)  # float32 weights: exactly representable in both dtypes
        with torch.no_grad():
            conv.bias.uniform_(1.0, 2.0)  # a bias, so the constant pattern matters
        conv = conv.to(dtype)
        return JpegConv2d.from_spatial(conv, g, lowering), conv
    return build


def _map_case_relu(mode: str, method: str = "spatial", k: int = 4):
    def build(g: BlockGeometry, dtype: torch.dtype):
        op = JpegReLU(g, mode, 15 if mode == "exact" else k, method, dtype=dtype)
        if mode == "exact":
            return op, torch.relu
        if mode == "apx":
            return op, lambda x: torch.relu(_frequency_reconstruction(x, k))
        return op, lambda x: torch.where(_frequency_reconstruction(x, k) > 0, x, torch.zeros_like(x))
    return build


def _map_case_maxpool(g: BlockGeometry, dtype: torch.dtype):
    def reference(x: torch.Tensor) -> torch.Tensor:  # winner on the 4-frequency image, value exact
        _, winners = nn.functional.max_pool2d(_frequency_reconstruction(x, 4), 3, 2, 1, return_indices=True)
        return x.flatten(2).gather(2, winners.flatten(2)).reshape(winners.shape)
    return JpegMaxPool2d(3, 2, 1, 1, False, g, "asm", 4, dtype=dtype), reference


def _map_case_batchnorm(training: bool):
    def build(g: BlockGeometry, dtype: torch.dtype):
        torch.manual_seed(6)
        bn = _random_bn(3, torch.float32).to(dtype).train(training)
        return JpegBatchNorm2d.from_spatial(bn, g), bn
    return build


def _map_case_padding_mask(g: BlockGeometry, dtype: torch.dtype):
    return PaddingMask(g, dtype), lambda x: x  # the input respects the padding invariant: identity


MAP_CASES = {
    "conv-fused": _map_case_conv("fused"),
    "conv-factored": _map_case_conv("factored"),
    "conv-pointwise": _map_case_conv("pointwise"),
    "relu-exact": _map_case_relu("exact"),
    "relu-asm": _map_case_relu("asm"),
    "relu-asm-harmonic": _map_case_relu("asm", "harmonic"),
    "relu-apx": _map_case_relu("apx"),
    "maxpool-asm": _map_case_maxpool,
    "padding-mask": _map_case_padding_mask,
    "bn-eval": _map_case_batchnorm(False),
    "bn-train": _map_case_batchnorm(True),
}


def _maps(module: nn.Module) -> dict[str, torch.Tensor]:
    return {name: t for name, t in module.named_buffers() if t.is_floating_point()}


@pytest.mark.parametrize("built,converted", [(torch.float32, torch.float64), (torch.float64, torch.float32)],
                         ids=["f32-then-double", "f64-then-float"])
@pytest.mark.parametrize("build", MAP_CASES.values(), ids=MAP_CASES.keys())
def test_derived_maps_are_rebuilt_on_dtype_conversion(build, built, converted):
    """An op built in one dtype and converted (``.double()`` / ``.float()``) holds exactly the maps of
    the op built in the target dtype (re-rounded from float64, never a rounding of a rounding), and
    matches the spatial reference at the target dtype's RTOL."""
    g = BlockGeometry(13, 21)
    x = torch.randn(2, 3, g.h, g.w, generator=torch.Generator().manual_seed(7), dtype=converted)
    op, _ = build(g, built)
    direct, reference = build(g, converted)
    op = op.double() if converted == torch.float64 else op.float()
    got, want = _maps(op), _maps(direct)
    assert got.keys() == want.keys()
    for name, tensor in got.items():
        assert tensor.dtype == want[name].dtype and torch.equal(tensor, want[name]), name
    with torch.no_grad():
        out = op(jpeg(x))
        assert_close_rel(to_spatial(out, getattr(op, "out_geometry", g)), reference(x))


def test_fused_conv_taps_stay_float64_and_train_after_float():
    """The fused map is contracted in float64 whatever the module dtype; training rebuilds Ξ from the
    converted weight."""
    torch.manual_seed(8)
    conv = nn.Conv2d(2, 3, 3, 2, 1).double()
    op = JpegConv2d.from_spatial(conv, BlockGeometry(13, 21), "fused").float().train()
    assert op.tap_rows.dtype == op.tap_cols.dtype == torch.float64
    assert op.xi.dtype == op.weight.dtype == torch.float32
    x = torch.randn(2, 2, 13, 21, generator=torch.Generator().manual_seed(8))
    assert_close_rel(to_spatial(op(jpeg(x)), op.out_geometry), conv.float()(x))


def test_assigned_map_is_kept_through_conversion():
    """A map replaced by assignment is an ordinary buffer: conversion casts it, never restores the
    derived original."""
    g = BlockGeometry(13, 21)
    mask = PaddingMask(g)
    mask.row_map = torch.eye(64)
    mask.double()
    assert torch.equal(mask.row_map, torch.eye(64, dtype=torch.float64))
    assert torch.equal(mask.col_map, PaddingMask(g, torch.float64).col_map)  # still derived
