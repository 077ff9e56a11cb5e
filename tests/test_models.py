"""The model zoo: shapes, fx-traceability, torchvision naming, parameter counts, helpers."""
from __future__ import annotations

import pytest
import torch
import torch.fx

from jpegfx import models as M
from jpegfx.models import MODELS, ShortcutA, create_model, randomize_batchnorm

NAMES = list(MODELS)
SIZE = {"resnet18": 64, "resnet34": 64, "resnet50": 64}  # others: 32
DEFAULT_CLASSES = {"resnet18": 1000, "resnet34": 1000, "resnet50": 1000}  # others: 10
DEFAULT_IN = {"paper": 1}  # others: 3
IMAGENET = {"resnet18": ([2, 2, 2, 2], False), "resnet34": ([3, 4, 6, 3], False),
            "resnet50": ([3, 4, 6, 3], True)}  # blocks per stage, bottleneck?


def _input(name: str, in_channels: int) -> torch.Tensor:
    s = SIZE.get(name, 32)
    return torch.randn(2, in_channels, s, s, generator=torch.Generator().manual_seed(0))


def _nparams(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", NAMES, ids=NAMES)
def test_default_output_shape(name: str) -> None:
    model = create_model(name).eval()
    with torch.no_grad():
        y = model(_input(name, DEFAULT_IN.get(name, 3)))
    assert y.shape == (2, DEFAULT_CLASSES.get(name, 10))


@pytest.mark.parametrize("name", NAMES, ids=NAMES)
def test_options_output_shape(name: str) -> None:
    model = create_model(name, num_classes=7, in_channels=1).eval()
    with torch.no_grad():
        assert model(_input(name, 1)).shape == (2, 7)


@pytest.mark.parametrize("name", NAMES, ids=NAMES)
def test_symbolic_trace_matches(name: str) -> None:
    torch.manual_seed(0)
    model = randomize_batchnorm(create_model(name), torch.Generator().manual_seed(1)).eval()
    traced = torch.fx.symbolic_trace(model)
    x = _input(name, DEFAULT_IN.get(name, 3))
    with torch.no_grad():
        assert torch.allclose(traced(x), model(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["resnet20", "resnet56"], ids=["resnet20", "resnet56"])
def test_cifar_shortcut_b_traces(name: str) -> None:
    model = create_model(name, shortcut="B").eval()
    traced = torch.fx.symbolic_trace(model)
    x = _input(name, 3)
    with torch.no_grad():
        assert torch.allclose(traced(x), model(x), rtol=1e-5, atol=1e-6)


def _torchvision_keys(blocks: list[int], bottleneck: bool) -> list[str]:
    """State-dict keys written out from torchvision's ResNet naming scheme."""
    bn = ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    keys = ["conv1.weight"] + [f"bn1.{k}" for k in bn]
    nconv = 3 if bottleneck else 2
    for i, n in enumerate(blocks, start=1):
        for j in range(n):
            p = f"layer{i}.{j}"
            for c in range(1, nconv + 1):
                keys.append(f"{p}.conv{c}.weight")
                keys += [f"{p}.bn{c}.{k}" for k in bn]
            # torchvision has a downsample in block 0 of every stage except layer1 of the
            # BasicBlock nets (64 -> 64, stride 1); Bottleneck layer1 expands 64 -> 256.
            if j == 0 and (i > 1 or bottleneck):
                keys.append(f"{p}.downsample.0.weight")
                keys += [f"{p}.downsample.1.{k}" for k in bn]
    return keys + ["fc.weight", "fc.bias"]


@pytest.mark.parametrize("name", list(IMAGENET), ids=list(IMAGENET))
def test_torchvision_state_dict_loads_strict(name: str) -> None:
    blocks, bottleneck = IMAGENET[name]
    model = create_model(name)
    expected = _torchvision_keys(blocks, bottleneck)
    own = model.state_dict()
    assert set(expected) == set(own)
    assert len(expected) == len(own)
    sd = {k: torch.randn(own[k].shape) if own[k].is_floating_point() else torch.tensor(7)
          for k in expected}
    model.load_state_dict(sd, strict=True)
    assert torch.equal(model.state_dict()["fc.bias"], sd["fc.bias"])
    # structure: block counts and block type
    block_type = M.Bottleneck if bottleneck else M.BasicBlock
    assert [len(getattr(model, f"layer{i}")) for i in range(1, 5)] == blocks
    assert all(isinstance(b, block_type) for i in range(1, 5) for b in getattr(model, f"layer{i}"))
    assert model.fc.in_features == (2048 if bottleneck else 512)
    if bottleneck:
        assert M.Bottleneck.expansion == 4
        assert model.layer2[0].conv2.stride == (2, 2) and model.layer2[0].conv1.stride == (1, 1)


@pytest.mark.parametrize(("name", "count"), [
    ("resnet18", 11_689_512), ("resnet34", 21_797_672), ("resnet50", 25_557_032)],
    ids=["resnet18", "resnet34", "resnet50"])
def test_imagenet_param_counts(name: str, count: int) -> None:
    assert _nparams(create_model(name)) == count


@pytest.mark.parametrize(("name", "shortcut", "count"), [
    ("resnet20", "A", 269_722), ("resnet20", "B", 272_474),
    ("resnet56", "A", 853_018), ("resnet56", "B", 855_770)],
    ids=["resnet20-A", "resnet20-B", "resnet56-A", "resnet56-B"])
def test_cifar_param_counts(name: str, shortcut: str, count: int) -> None:
    # Option A is parameter-free: 0.27M / 0.85M as in He et al. Table 6; option B adds the two
    # 1x1 conv + BN projections (16*32 + 64 + 32*64 + 128 = 2,752 parameters).
    model = create_model(name, shortcut=shortcut)
    assert _nparams(model) == count
    has_a = any(isinstance(m, ShortcutA) for m in model.modules())
    assert has_a == (shortcut == "A")


def test_shortcut_a_hand_computation() -> None:
    x = torch.arange(2 * 3 * 5 * 4, dtype=torch.float32).reshape(2, 3, 5, 4)
    sc = ShortcutA(stride=2, pad_channels=2)
    assert (sc.stride, sc.pad_channels) == (2, 2)
    y = sc(x)
    expected = torch.zeros(2, 7, 3, 2)
    for n in range(2):
        for c in range(3):
            for i in range(3):
                for j in range(2):
                    expected[n, c + 2, i, j] = x[n, c, 2 * i, 2 * j]
    assert torch.equal(y, expected)


def test_resnet20_option_a_pad_widths() -> None:
    model = create_model("resnet20")
    sc2, sc3 = model.layer2[0].downsample, model.layer3[0].downsample
    assert isinstance(sc2, ShortcutA) and (sc2.stride, sc2.pad_channels) == (2, 8)
    assert isinstance(sc3, ShortcutA) and (sc3.stride, sc3.pad_channels) == (2, 16)
    assert model.layer1[0].downsample is None


def test_paper_ends_on_one_jpeg_block() -> None:
    model = create_model("paper").eval()
    feats = model.layer3(model.layer2(model.layer1(model.relu(model.bn1(model.conv1(
        torch.randn(1, 1, 32, 32)))))))
    assert feats.shape == (1, 64, 8, 8)


def test_unknown_model_name() -> None:
    with pytest.raises(ValueError, match="unknown model 'resnet1000'.*resnet18"):
        create_model("resnet1000")


def test_unknown_option() -> None:
    with pytest.raises(TypeError, match="unknown option.*depth.*valid options"):
        create_model("resnet18", depth=18)
    with pytest.raises(TypeError, match="shortcut"):
        create_model("resnet18", shortcut="A")
    with pytest.raises(ValueError, match="shortcut"):
        create_model("resnet20", shortcut="C")


def test_randomize_batchnorm() -> None:
    model = create_model("resnet20")
    out = randomize_batchnorm(model, torch.Generator().manual_seed(0))
    assert out is model
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns
    for bn in bns:
        assert not torch.allclose(bn.running_mean, torch.zeros_like(bn.running_mean))
        assert not torch.allclose(bn.running_var, torch.ones_like(bn.running_var))
        assert not torch.allclose(bn.weight, torch.ones_like(bn.weight))
        assert not torch.allclose(bn.bias, torch.zeros_like(bn.bias))
        assert bn.running_var.min() >= 0.5 and bn.running_var.max() <= 1.5
        assert bn.weight.min() >= 0.5 and bn.weight.max() <= 1.5
    # reproducible with the same generator seed
    other = randomize_batchnorm(create_model("resnet20"), torch.Generator().manual_seed(0))
    assert torch.equal(other.bn1.running_mean, model.bn1.running_mean)
