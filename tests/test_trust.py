"""Never a silent wrong answer: what the converter must see, refuse or check.

Regression tests for conversions that used to return a wrong model without an error, and for the
guarantees that now prevent it: modules that change what their base class computes are traced into,
in-place ops are functionalised, fresh names never overwrite modules, ops without a lowering run on
pixels (exactly) or are refused all at once under ``strict``, and every conversion is checked against
the spatial model before it is returned.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import jpegfx
from conftest import RTOL, assert_close_rel
from jpegfx import models, ops, registry
from jpegfx.errors import ConversionError, UnsupportedModelError
from jpegfx.transforms import to_dct


def _seeded(model: nn.Module, dtype=torch.float32, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    for m in model.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
    models.randomize_batchnorm(model, torch.Generator().manual_seed(seed))
    return model.to(dtype).eval()


def _assert_exact(model: nn.Module, jpeg_model: jpegfx.JpegModel, size, channels: int = 3, batch: int = 2):
    dtype = next(model.parameters()).dtype
    x = torch.randn(batch, channels, *size, generator=torch.Generator().manual_seed(1), dtype=torch.float64).to(dtype)
    report = jpegfx.verify(model, jpeg_model, x)
    assert report.max_rel_error <= RTOL[dtype], report.summary()
    assert report.top1_agreement == 1.0


def _lowered(jpeg_model: jpegfx.JpegModel, kind: type) -> list[str]:
    return [name for name, m in jpeg_model.network.named_modules() if isinstance(m, kind)]


# ------------------------------------------------------------------------------------------------
# subclasses that override forward are traced into, never taken for their base class
# ------------------------------------------------------------------------------------------------
class StdConv2d(nn.Conv2d):
    """Weight-standardised convolution (as in BiT / timm's StdConv2d)."""

    def forward(self, x):
        w = self.weight
        w = (w - w.mean(dim=(1, 2, 3), keepdim=True)) / (w.var(dim=(1, 2, 3), keepdim=True, unbiased=False) + 1e-6).sqrt()
        return F.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation, self.groups)


class BatchNormAct2d(nn.BatchNorm2d):
    """BN followed by an activation in one module (as timm's BatchNormAct2d)."""

    def forward(self, x):
        x = F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        return F.silu(x)


class AvgPool2dSame(nn.AvgPool2d):
    """'Same'-padded average pooling (as timm's AvgPool2dSame)."""

    def forward(self, x):
        return F.avg_pool2d(F.pad(x, (0, 1, 0, 1)), self.kernel_size, self.stride, 0, self.ceil_mode,
                            self.count_include_pad)


class PaddedConv(nn.Conv2d):
    """Overrides only ``_conv_forward``: still a change of what Conv2d computes."""

    def _conv_forward(self, x, weight, bias):
        return F.conv2d(F.pad(x, (1, 0, 1, 0)), weight, bias, self.stride, 0, self.dilation, self.groups)


class KeepsForward(nn.Conv2d):
    """A subclass that only adds an attribute keeps Conv2d's behaviour: it is lowered."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.tag = "mine"


class Subclasses(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = KeepsForward(3, 8, 3, padding=1)
        self.conv = StdConv2d(8, 8, 3, padding=1)
        self.bn = BatchNormAct2d(8)
        self.pool = AvgPool2dSame(2, 2)
        self.pad_conv = PaddedConv(8, 8, 2, stride=1)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        x = self.pad_conv(self.pool(self.bn(self.conv(self.stem(x)))))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


@pytest.mark.parametrize("size", [(16, 16), (21, 13)], ids=["16x16", "21x13"])
def test_forward_overriding_subclasses_are_traced_into(size, dtype):
    model = _seeded(Subclasses(), dtype)
    for module in (model.conv, model.bn, model.pool, model.pad_conv):
        assert registry.lookup(module) is None, type(module).__name__
    assert registry.lookup(model.stem) is registry.LOWERINGS[nn.Conv2d]
    jpeg_model = jpegfx.convert(model, size)
    # eval: the standardised weight is computed once, and F.conv2d / F.batch_norm with constant
    # parameters become modules with lowerings; the padding and the SiLU are pixel ops
    convs = _lowered(jpeg_model, ops.JpegConv2d)
    assert convs[0] == "stem" and len(convs) == 3
    assert len(_lowered(jpeg_model, ops.JpegBatchNorm2d)) == 1
    on_pixels = [r.spatial for r in jpeg_model.records if r.jpeg == "(on pixels)"]
    assert sorted(on_pixels) == ["torch.nn.functional.pad"] * 2 + ["torch.nn.functional.silu"]
    _assert_exact(model, jpeg_model, size)


def test_forward_overriding_subclasses_in_train_mode_keep_their_parameters():
    """Train mode: nothing is folded; the weight standardisation runs every step, the convolution with
    the computed weight runs on pixels, and one training step equals the spatial one."""
    model = _seeded(Subclasses(), torch.float64).train()
    model.bn.eval()  # its F.batch_norm reads running statistics
    jpeg_model = jpegfx.convert(model, (16, 16))
    assert "torch.conv2d" in {r.spatial for r in jpeg_model.records if r.jpeg == "(on pixels)"}
    x = torch.randn(4, 3, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    for net, inputs in ((model, x), (jpeg_model, to_dct(x))):
        torch.optim.SGD(net.parameters(), lr=0.1).zero_grad()
        net(inputs).square().sum().backward()
    lowered = dict(jpeg_model.network.named_parameters())
    for name, p in model.named_parameters():
        assert_close_rel(lowered[name].grad, p.grad)


# ------------------------------------------------------------------------------------------------
# fresh names, shared modules, in-place ops
# ------------------------------------------------------------------------------------------------
class NameClash(nn.Module):
    """``act`` is called twice, and a module is already called ``act_1``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.act = nn.ReLU()
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1, stride=2)
        self.act_1 = nn.MaxPool2d(3, 1, 1)

    def forward(self, x):
        x = self.act(self.conv1(x))
        x = self.act(self.conv2(x) - 0.1)
        return self.act_1(x)


def test_second_use_of_a_module_never_overwrites_another(dtype):
    model = _seeded(NameClash(), dtype)
    jpeg_model = jpegfx.convert(model, (19, 19))
    assert isinstance(jpeg_model.network.get_submodule("act_1"), ops.JpegMaxPool2d)
    assert len(_lowered(jpeg_model, ops.JpegReLU)) == 2
    _assert_exact(model, jpeg_model, (19, 19))


class InPlace(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        y = self.conv1(x)
        y.relu_()  # result discarded: y itself is rectified
        z = self.conv2(y)
        z.mul_(2.0)
        z += y
        w = self.act(z)  # inplace=True: z is rectified too
        return w + z


def test_discarded_in_place_ops_are_kept(dtype):
    model = _seeded(InPlace(), dtype)
    jpeg_model = jpegfx.convert(model, (12, 12))
    assert len(_lowered(jpeg_model, ops.JpegReLU)) == 2
    _assert_exact(model, jpeg_model, (12, 12))


class InPlaceOnView(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        y = self.conv(x)
        y[:, :2].relu_()  # writes through a view into y
        return y


def test_in_place_write_into_a_view_is_refused():
    with pytest.raises(UnsupportedModelError, match="shares memory with a view") as info:
        jpegfx.convert(InPlaceOnView().eval(), 8)
    assert info.value.pass_name == "functionalize_inplace"


# ------------------------------------------------------------------------------------------------
# ops without a lowering: exact on pixels, listed; refused all at once under strict
# ------------------------------------------------------------------------------------------------
class Mixed(nn.Module):
    """GroupNorm, GELU, upsampling, a squeeze-excitation gate, concatenation, a channel split and a
    sigmoid-weighted product."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.gn = nn.GroupNorm(2, 8)
        self.act = nn.GELU()
        self.up = nn.Upsample(scale_factor=2)
        self.fc1 = nn.Conv2d(8, 2, 1)
        self.fc2 = nn.Conv2d(2, 8, 1)
        self.conv2 = nn.Conv2d(16, 8, 3, padding=1, stride=2)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        x = self.act(self.gn(self.conv1(x)))
        gate = torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean((2, 3), keepdim=True)))))
        x = x * gate  # channel attention: a per-channel scale of every coefficient
        a, b = torch.split(x, 4, dim=1)
        x = torch.cat([a * torch.sigmoid(b), F.avg_pool2d(self.up(x), 2), b], dim=1)
        x = self.conv2(x)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


@pytest.mark.parametrize("size", [(16, 16), (19, 27)], ids=["16x16", "19x27"])
def test_ops_without_lowering_run_exactly_on_pixels(size, dtype):
    model = _seeded(Mixed(), dtype)
    jpeg_model = jpegfx.convert(model, size)
    assert _lowered(jpeg_model, ops.JpegConv2d) == ["conv1", "conv2"]
    assert len(_lowered(jpeg_model, ops.JpegScale)) == 1  # x * gate
    assert _lowered(jpeg_model, ops.JpegGroupNorm) == ["gn"]
    assert len(_lowered(jpeg_model, ops.JpegSpatialMean)) == 1  # the gate's squeeze, a DC read
    on_pixels = {r.spatial for r in jpeg_model.records if r.jpeg == "(on pixels)"}
    assert {"GELU (module)", "Upsample (module)", "torch.split", "torch.cat", "operator.mul"} <= on_pixels
    assert not any("fc1" in r.node or "fc2" in r.node for r in jpeg_model.records)  # the gate's MLP is not an image
    _assert_exact(model, jpeg_model, size)


class Unsupported(nn.Module):
    """Ops with no JPEG-domain lowering (upsampling, pixel shuffle, a flip), amid supported ones and
    shape arithmetic."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.up1 = nn.Upsample(scale_factor=2)
        self.up2 = nn.Upsample(scale_factor=2)
        self.conv2 = nn.Conv2d(8, 8, 3, stride=2, padding=1)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        b, c, h, w = x.shape
        x = F.gelu(self.conv1(x))
        x = self.up1(x)
        x = F.pixel_shuffle(F.pixel_unshuffle(x, 2), 2) * torch.sigmoid(x)
        x = self.conv2(torch.flip(x, dims=(3,)))
        x = self.up2(x)[:, :, : h // 2 * 2, : w // 2 * 2]
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def test_strict_lists_every_unsupported_op_once():
    model = _seeded(Unsupported())
    with pytest.raises(UnsupportedModelError) as info:
        jpegfx.convert(model, 16, strict=True)
    problems = info.value.problems
    assert info.value.pass_name == "check_support"
    assert problems == [
        "Upsample (module) ×2 [up1, up2]: no JPEG-domain lowering",
        "torch.pixel_unshuffle ×1 [pixel_unshuffle]: no JPEG-domain lowering",
        "torch.pixel_shuffle ×1 [pixel_shuffle]: no JPEG-domain lowering",
        "torch.flip ×1 [flip]: no JPEG-domain lowering",
        "operator.getitem ×1 [getitem_4]: no JPEG-domain lowering",
    ], problems  # not gelu, sigmoid or the product (pixel ops), no shape arithmetic, nothing downstream
    jpeg_model = jpegfx.convert(model, 16)  # without strict: the same ops run on pixels, exactly
    _assert_exact(model, jpeg_model, (16, 16))


def test_strict_reports_map_budget_with_the_op():
    model = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.ReLU()).eval()
    with pytest.raises(UnsupportedModelError, match=r"Conv2d \(module\) ×1 \[_0\]: the fused map needs .* > map_budget"):
        jpegfx.convert(model, 16, lowering="fused", map_budget=1 << 20, strict=True)


# ------------------------------------------------------------------------------------------------
# input channels, run failures, the self-check
# ------------------------------------------------------------------------------------------------
class SpaceToDepth(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(12, 4, 3, padding=1)

    def forward(self, x):
        return self.conv(F.pixel_unshuffle(x, 2))


def test_input_channels_are_read_off_the_graph_not_guessed():
    """A space-to-depth stem hides the channel count from the graph: it is the one JPEG channel count
    (1 or 3) the model runs with, here 3 (pixel_unshuffle(x, 2) feeds a 12-channel conv)."""
    model = _seeded(SpaceToDepth(), torch.float64)
    jpeg_model = jpegfx.convert(model, 16)
    assert jpeg_model.spec.channels == 3
    _assert_exact(model, jpeg_model, (16, 16))
    assert jpegfx.convert(model, 16, in_channels=3).spec.channels == 3


class ChannelAgnostic(nn.Module):
    """Runs with any channel count: the input's mean over channels feeds the conv."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)

    def forward(self, x):
        return self.conv(x.mean(1, keepdim=True))


def test_input_channels_are_not_guessed_when_ambiguous_or_impossible():
    with pytest.raises(ConversionError, match="cannot infer the input channels.*runs with both 1 and 3.*in_channels="):
        jpegfx.convert(ChannelAgnostic().eval(), 16)
    assert jpegfx.convert(ChannelAgnostic().eval(), 16, in_channels=1).spec.channels == 1
    odd = nn.Sequential(nn.PixelUnshuffle(2), nn.Conv2d(8, 4, 3, padding=1)).eval()  # needs 2 channels
    with pytest.raises(ConversionError, match="runs with neither 1 nor 3 channels.*in_channels="):
        jpegfx.convert(odd, 16)


def test_model_that_cannot_run_at_the_size_gets_one_line(capfd):
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 14 * 14, 2)).eval()
    with pytest.raises(ConversionError) as info:
        jpegfx.convert(model, 20)
    message = str(info.value)
    assert message.startswith("[propagate_shapes] the model does not run on a 3x20x20 input: at node")
    assert "\n" not in message and "mat1 and mat2" in message
    assert capfd.readouterr().err == ""  # no traceback printed


def test_self_check_refuses_a_wrong_lowering(monkeypatch):
    """A lowering that drops what its op computes (here: tanh lowered to nothing) never comes back."""
    wrong = registry.Lowering("nn.Tanh", "(removed)", "wrong on purpose", registry._always,
                              lambda m, g, o, n: nn.Identity())
    monkeypatch.setitem(registry.LOWERINGS, nn.Tanh, wrong)
    model = _seeded(nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Tanh(), nn.Conv2d(4, 4, 1)))
    with pytest.raises(ConversionError, match=r"\[check_equivalence\] .*max rel error .* first divergence at node _2"):
        jpegfx.convert(model, 16)
    jpegfx.convert(model, 16, self_check=False)  # the check is what catches it


def test_self_check_refuses_a_lowering_of_the_wrong_size(monkeypatch):
    """A lowered op whose logical output size is not the spatial op's (13×13 for 14×14 fits the same
    block grid) is refused, naming the node."""
    wrong = registry.Lowering("nn.Upsample", "JpegAvgPool2d", "wrong on purpose", registry._always,
                              lambda m, g, o, n: ops.JpegAvgPool2d.from_spatial(nn.AvgPool2d(2, 1), g))
    monkeypatch.setitem(registry.LOWERINGS, nn.Upsample, wrong)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Upsample(size=(14, 14))).eval()
    with pytest.raises(ConversionError, match=r"\[lower_modules\] node _1: JpegAvgPool2d has output size 13x13 "
                                              r"where the spatial model has 14x14"):
        jpegfx.convert(model, 14)


def test_any_exception_in_a_pass_names_the_pass(monkeypatch):
    def broken_build(module, geometry, options, name):
        raise ValueError("cannot build this on purpose")

    monkeypatch.setitem(registry.LOWERINGS, nn.Tanh, registry.Lowering("nn.Tanh", "-", "-", registry._always,
                                                                        broken_build))
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Tanh()).eval()
    with pytest.raises(ConversionError, match=r"^\[lower_modules\] ValueError: cannot build this on purpose$"):
        jpegfx.convert(model, 16)


def test_double_after_a_fused_conversion_is_float64_exact():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.Conv2d(4, 4, 3, padding=1, stride=2)).eval()
    models.randomize_batchnorm(model, torch.Generator().manual_seed(0))
    jpeg_model = jpegfx.convert(model, (21, 19), lowering="fused").double()
    model = model.double()
    x = torch.randn(2, 3, 21, 19, dtype=torch.float64)
    assert_close_rel(jpeg_model(to_dct(x)), model(x), RTOL[torch.float64])


@pytest.mark.parametrize("net", [Subclasses, Mixed, Unsupported], ids=["subclasses", "mixed", "unsupported"])
def test_models_with_pixel_ops_export_to_onnx_and_match(net, tmp_path):
    """Pixel ops, fallbacks, gates, group norm, folded constants and shape queries export to one ONNX
    file whose onnxruntime logits equal the torch model's."""
    import numpy as np
    import onnxruntime as ort

    from jpegfx.jpeg import encode
    from jpegfx.ops.input import batch_tensors

    model = _seeded(net())
    jpeg_model = jpegfx.convert(model, (24, 24)).eval()
    path = jpegfx.export_onnx(jpeg_model, tmp_path / "model.onnx")
    images = torch.rand(3, 3, 24, 24, generator=torch.Generator().manual_seed(3)) * 255
    batch = encode(images, quality=80, subsampling="4:2:0")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = dict(zip([i.name for i in session.get_inputs()], (t.numpy() for t in batch_tensors(batch))))
    got = session.run(None, feed)[0]
    with torch.no_grad():
        want = jpeg_model(batch).numpy()
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= RTOL[torch.float32] * np.abs(want).max()


class PiecewiseActs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.act1 = nn.LeakyReLU(0.2)
        self.conv2 = nn.Conv2d(6, 6, 3, padding=1)
        self.act2 = nn.ReLU6()
        self.fc = nn.Linear(6, 4)

    def forward(self, x):
        x = self.act2(self.conv2(self.act1(self.conv1(x))))
        x = F.hardtanh(x, -0.5, 2.0) + F.leaky_relu(x, 0.3)
        return self.fc(x.mean((2, 3)))


@pytest.mark.parametrize("relu", ["exact", "asm", "apx"])
def test_piecewise_linear_activations_follow_the_relu_mode(relu, dtype):
    model = _seeded(PiecewiseActs(), dtype)
    jpeg_model = jpegfx.convert(model, (15, 17), relu=relu, frequencies=6)
    acts = [m for m in jpeg_model.network.modules() if isinstance(m, ops.JpegPiecewiseLinear)]
    assert len(acts) == 4 and all(a.mode == relu for a in acts)
    if relu == "exact":
        _assert_exact(model, jpeg_model, (15, 17))
    else:  # approximate: measured, not hidden
        x = torch.randn(2, 3, 15, 17, dtype=dtype, generator=torch.Generator().manual_seed(4))
        report = jpegfx.verify(model, jpeg_model, x)
        assert 0 < report.max_rel_error < 1 and report.first_divergence is not None


def test_a_one_by_one_feature_map_stays_an_image():
    """ResNet-18 at 32×32: layer4 works on 1×1 feature maps (its convolutions, BN and ReLU are
    lowered like any other); only the global pool makes a per-channel vector."""
    model = _seeded(models.create_model("resnet18", num_classes=10), torch.float64)
    jpeg_model = jpegfx.convert(model, 32)
    layer4 = [r for r in jpeg_model.records if r.node.startswith("layer4")]
    assert layer4 and all(r.jpeg != "(on pixels)" for r in layer4)
    assert {(r.out_geometry.h, r.out_geometry.w) for r in layer4} == {(1, 1)}
    _assert_exact(model, jpeg_model, (32, 32))


class CastsToFloat32(nn.Module):
    """Filter-response-norm style: the statistics are computed in float32 whatever the input dtype."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)

    def forward(self, x):
        x = self.conv1(x)
        nu2 = x.square().float().mean(dim=(2, 3), keepdim=True)
        x = x * torch.rsqrt(nu2 + 1e-6).to(x.dtype)
        return self.conv2(x)


def test_self_check_holds_a_model_that_computes_in_float32_to_float32():
    """The float64 self-check cannot ask for float64 rounding of a model that casts to float32 inside:
    such a conversion is accepted at the float32 tolerance, and it is exact to float32 rounding."""
    model = _seeded(CastsToFloat32())
    jpeg_model = jpegfx.convert(model, (13, 11))
    x = torch.randn(2, 3, 13, 11, generator=torch.Generator().manual_seed(5))
    assert_close_rel(jpeg_model(to_dct(x)), model(x))


# --------------------------------------------------------------------------------------------
# Functional forms: every one the registry lists becomes its module and converts exactly
# --------------------------------------------------------------------------------------------
class _Functional(nn.Module):
    """A conv stem, then one functional call ``fn(self, x)``, then a conv."""

    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.weight = nn.Parameter(torch.randn(4, 4, 3, 3) * 0.3)
        self.register_buffer("rm", torch.randn(4) * 0.1)
        self.register_buffer("rv", torch.rand(4) + 0.5)
        self.gamma, self.beta = nn.Parameter(torch.rand(4) + 0.5), nn.Parameter(torch.randn(4) * 0.1)

    def forward(self, x):
        return self.conv2(self.fn(self, self.conv1(x)))


FUNCTIONAL_FORMS = {
    "F.relu": (lambda m, x: F.relu(x), "nn.ReLU"),
    "torch.relu": (lambda m, x: torch.relu(x), "nn.ReLU"),
    "Tensor.relu": (lambda m, x: x.relu(), "nn.ReLU"),
    "F.leaky_relu": (lambda m, x: F.leaky_relu(x, 0.2), "nn.LeakyReLU"),
    "F.relu6": (lambda m, x: F.relu6(x), "nn.Hardtanh"),
    "F.hardtanh": (lambda m, x: F.hardtanh(x, -0.5, 0.5), "nn.Hardtanh"),
    "F.max_pool2d": (lambda m, x: F.max_pool2d(x, 3, 2, 1), "nn.MaxPool2d"),
    "F.avg_pool2d": (lambda m, x: F.avg_pool2d(x, 2, ceil_mode=True, count_include_pad=False), "nn.AvgPool2d"),
    "F.adaptive_avg_pool2d": (lambda m, x: F.adaptive_avg_pool2d(x, 3), "nn.AdaptiveAvgPool2d"),
    "F.conv2d": (lambda m, x: F.conv2d(x, m.weight, padding=1), "nn.Conv2d"),
    "F.batch_norm": (lambda m, x: F.batch_norm(x, m.rm, m.rv, m.gamma, m.beta, False), "nn.BatchNorm2d"),
    "F.group_norm": (lambda m, x: F.group_norm(x, 2, m.gamma, m.beta), "nn.GroupNorm"),
}


def test_registry_lists_every_functional_form_tested():
    assert {name for lw in registry.LOWERINGS.values() for name in lw.call_names()} == set(FUNCTIONAL_FORMS)


@pytest.mark.parametrize("name", list(FUNCTIONAL_FORMS))
def test_functional_forms_lower_like_their_modules(name, dtype):
    fn, module = FUNCTIONAL_FORMS[name]
    torch.manual_seed(0)
    model = _Functional(fn).to(dtype).eval()
    jpeg_model = jpegfx.convert(model, (21, 30))  # not a multiple of 8: partial blocks
    lowered = [r for r in jpeg_model.records if r.jpeg != "(on pixels)" and r.node not in ("conv1", "conv2")]
    record = next(lw for lw in registry.LOWERINGS.values() if lw.names().startswith(module))
    assert [r.jpeg for r in lowered] == [record.jpeg], jpeg_model.records
    x = torch.randn(2, 3, 21, 30, dtype=dtype, generator=torch.Generator().manual_seed(1))
    report = jpegfx.verify(model, jpeg_model, x)
    assert report.max_rel_error <= RTOL[dtype], report.summary()


def test_max_pool_returning_indices_is_not_taken_for_a_plain_pool():
    """return_indices=True, positional or by keyword, has no module form: the call runs on pixels."""
    for fn in (lambda m, x: F.max_pool2d(x, 2, 2, 0, 1, False, True)[0],
               lambda m, x: F.max_pool2d(x, 2, return_indices=True)[0]):
        model = _Functional(fn).eval()
        jpeg_model = jpegfx.convert(model, 16)
        assert not any(r.jpeg == "JpegMaxPool2d" for r in jpeg_model.records)
        assert any("max_pool2d" in r.spatial for r in jpeg_model.records if r.jpeg == "(on pixels)"), jpeg_model.records
        x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
        assert jpegfx.verify(model, jpeg_model, x).max_rel_error <= RTOL[torch.float32]
