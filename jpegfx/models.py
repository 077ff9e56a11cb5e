"""A small model zoo of spatial ResNets for the JPEG-domain compiler.

Every model here is a plain :class:`torch.nn.Module` with random initialisation (nothing is
downloaded) whose ``forward`` is free of data-dependent control flow, so that
:func:`torch.fx.symbolic_trace` captures it completely. The zoo covers

* ``paper`` — the small network of Ehrlich & Davis, ICCV 2019 (Figure 3), reconstructed;
* ``resnet20`` / ``resnet56`` — the CIFAR ResNets of He et al., CVPR 2016, §4.2;
* ``preact_resnet18`` — pre-activation ResNet-18 (He et al., ECCV 2016) for 32×32 inputs;
* ``resnet18`` / ``resnet34`` / ``resnet50`` — ImageNet ResNets with torchvision's exact module
  names, so a torchvision ``state_dict`` loads with ``strict=True``.

All post-activation models use the same :class:`BasicBlock` (and :class:`Bottleneck`), whose
shortcut is the optional ``downsample`` module: ``None`` (identity), ``nn.Sequential(conv1x1,
BatchNorm2d)`` (projection, option B) or :class:`ShortcutA` (parameter-free, option A).
Build models by name with :func:`create_model`; :func:`randomize_batchnorm` gives every
BatchNorm non-trivial statistics so that tests of BN folding are meaningful.
"""
from __future__ import annotations

import inspect
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from jpegfx.errors import UnknownOptionError, UsageError

__all__ = [
    "MODELS", "BasicBlock", "Bottleneck", "CifarResNet", "PreActBlock", "PreActResNet", "ResNet",
    "ShortcutA", "create_model", "preact_resnet18", "paper", "randomize_batchnorm", "resnet18",
    "resnet20", "resnet34", "resnet50", "resnet56",
]


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """3×3 convolution, padding 1, no bias."""
    return nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """1×1 convolution, no bias."""
    return nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)


def _projection(in_planes: int, out_planes: int, stride: int) -> nn.Sequential:
    """Option-B / torchvision shortcut: 1×1 conv (strided) followed by BatchNorm."""
    return nn.Sequential(conv1x1(in_planes, out_planes, stride), nn.BatchNorm2d(out_planes))


class ShortcutA(nn.Module):
    """Parameter-free shortcut (He et al. 2016, §4.2, option A).

    Subsamples space by ``stride`` and zero-pads ``pad_channels`` channels on each side, so
    ``C`` channels become ``C + 2 * pad_channels``. The compiler lowers this module as a unit.
    """

    def __init__(self, stride: int, pad_channels: int) -> None:
        super().__init__()
        self.stride = stride
        self.pad_channels = pad_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[:, :, ::self.stride, ::self.stride],
                     (0, 0, 0, 0, self.pad_channels, self.pad_channels))

    def extra_repr(self) -> str:
        return f"stride={self.stride}, pad_channels={self.pad_channels}"


class BasicBlock(nn.Module):
    """conv3×3-BN-ReLU-conv3×3-BN, plus shortcut, then ReLU (torchvision layout and names)."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1×1-3×3-1×1 bottleneck, stride on the 3×3 conv (torchvision ResNet v1.5), expansion 4."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class PreActBlock(nn.Module):
    """Pre-activation block: BN-ReLU-conv3×3-BN-ReLU-conv3×3, plus shortcut (no final ReLU).

    As in the standard implementation the projection shortcut (a bare 1×1 conv, present only
    when the shape changes) is applied to the pre-activated input ``relu(bn1(x))``.
    """

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.shortcut = conv1x1(inplanes, planes, stride) if stride != 1 or inplanes != planes else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(x))
        identity = x if self.shortcut is None else self.shortcut(out)
        out = self.conv1(out)
        out = self.conv2(self.relu(self.bn2(out)))
        return out + identity


def _init_weights(model: nn.Module) -> None:
    """torchvision's init: Kaiming-normal (fan_out, ReLU) convs, BN weight 1 and bias 0."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class CifarResNet(nn.Module):
    """CIFAR-style ResNet (He et al., CVPR 2016, §4.2): conv3×3 16 stem, three stages of
    BasicBlocks with 16/32/64 planes and strides 1/2/2, global average pool, linear.

    ``shortcut`` is ``"A"`` (:class:`ShortcutA`) or ``"B"`` (1×1 conv + BN projection) and is
    only used where the shape changes.
    """

    def __init__(self, blocks: list[int], num_classes: int = 10, in_channels: int = 3,
                 shortcut: str = "A") -> None:
        super().__init__()
        if shortcut not in ("A", "B"):
            raise UsageError(f"shortcut must be 'A' or 'B', got {shortcut!r}")
        self.conv1 = conv3x3(in_channels, 16)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        inplanes = 16
        for i, (planes, stride, n) in enumerate(zip((16, 32, 64), (1, 2, 2), blocks), start=1):
            layers = []
            for j in range(n):
                s = stride if j == 0 else 1
                downsample: nn.Module | None = None
                if s != 1 or inplanes != planes:
                    downsample = (ShortcutA(s, (planes - inplanes) // 2) if shortcut == "A"
                                  else _projection(inplanes, planes, s))
                layers.append(BasicBlock(inplanes, planes, s, downsample))
                inplanes = planes
            self.add_module(f"layer{i}", nn.Sequential(*layers))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(64, num_classes)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


class PreActResNet(nn.Module):
    """Pre-activation ResNet (He et al., "Identity Mappings in Deep Residual Networks", ECCV
    2016) for 32×32 inputs: conv3×3 64 stem, four stages of :class:`PreActBlock` (64/128/256/512
    planes, strides 1/2/2/2), final BN-ReLU, global average pool, linear."""

    def __init__(self, blocks: list[int], num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_channels, 64)
        inplanes = 64
        for i, (planes, stride, n) in enumerate(zip((64, 128, 256, 512), (1, 2, 2, 2), blocks), 1):
            layers = [PreActBlock(inplanes if j == 0 else planes, planes, stride if j == 0 else 1)
                      for j in range(n)]
            self.add_module(f"layer{i}", nn.Sequential(*layers))
            inplanes = planes
        self.bn = nn.BatchNorm2d(512)
        self.relu = nn.ReLU(inplace=True)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512, num_classes)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.relu(self.bn(x))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


class ResNet(nn.Module):
    """ImageNet ResNet (He et al., CVPR 2016) with torchvision's structure and module names
    (torchvision.models.resnet, v1.5: stride on the Bottleneck's 3×3 conv)."""

    def __init__(self, block: type[BasicBlock] | type[Bottleneck], layers: list[int],
                 num_classes: int = 1000, in_channels: int = 3) -> None:
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        _init_weights(self)

    def _make_layer(self, block: type[BasicBlock] | type[Bottleneck], planes: int, blocks: int,
                    stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = _projection(self.inplanes, planes * block.expansion, stride)
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


def paper(*, num_classes: int = 10, in_channels: int = 1) -> CifarResNet:
    """The network of Ehrlich & Davis, "Deep Residual Learning in the JPEG Transform Domain",
    ICCV 2019, Figure 3 — a *reconstruction* from the text, not the authors' code.

    The text fixes: 32×32 input, three residual blocks, the last two downsampling by 2 so the
    final feature map is 8×8 (one JPEG block), then global average pooling and a linear layer.
    Assumed here: a conv3×3 16-channel stem with BN-ReLU, BasicBlocks with 16/32/64 channels
    and 1×1 strided conv + BN projection shortcuts where the shape changes (i.e. a CIFAR
    ResNet with one block per stage, option B), and bias-free convolutions.
    """
    return CifarResNet([1, 1, 1], num_classes=num_classes, in_channels=in_channels, shortcut="B")


def resnet20(*, num_classes: int = 10, in_channels: int = 3, shortcut: str = "A") -> CifarResNet:
    """ResNet-20 for CIFAR (He et al. 2016, §4.2): 3 BasicBlocks per stage."""
    return CifarResNet([3, 3, 3], num_classes, in_channels, shortcut)


def resnet56(*, num_classes: int = 10, in_channels: int = 3, shortcut: str = "A") -> CifarResNet:
    """ResNet-56 for CIFAR (He et al. 2016, §4.2): 9 BasicBlocks per stage."""
    return CifarResNet([9, 9, 9], num_classes, in_channels, shortcut)


def preact_resnet18(*, num_classes: int = 10, in_channels: int = 3) -> PreActResNet:
    """Pre-activation ResNet-18 (He et al., ECCV 2016) for 32×32 inputs: 2 blocks per stage."""
    return PreActResNet([2, 2, 2, 2], num_classes, in_channels)


def resnet18(*, num_classes: int = 1000, in_channels: int = 3) -> ResNet:
    """ResNet-18 (He et al., CVPR 2016), torchvision layout: BasicBlock [2, 2, 2, 2]."""
    return ResNet(BasicBlock, [2, 2, 2, 2], num_classes, in_channels)


def resnet34(*, num_classes: int = 1000, in_channels: int = 3) -> ResNet:
    """ResNet-34 (He et al., CVPR 2016), torchvision layout: BasicBlock [3, 4, 6, 3]."""
    return ResNet(BasicBlock, [3, 4, 6, 3], num_classes, in_channels)


def resnet50(*, num_classes: int = 1000, in_channels: int = 3) -> ResNet:
    """ResNet-50 (He et al., CVPR 2016), torchvision v1.5 layout: Bottleneck [3, 4, 6, 3]."""
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes, in_channels)


MODELS: dict[str, Callable[..., nn.Module]] = {
    "paper": paper,
    "resnet20": resnet20,
    "resnet56": resnet56,
    "preact_resnet18": preact_resnet18,
    "resnet18": resnet18,
    "resnet34": resnet34,
    "resnet50": resnet50,
}


def create_model(name: str, **options: object) -> nn.Module:
    """Build the registered model ``name`` with keyword ``options``.

    Raises :class:`~jpegfx.errors.UsageError` (a ``ValueError``) for an unknown name and
    :class:`~jpegfx.errors.UnknownOptionError` (a ``TypeError``) for an unknown option.
    """
    if name not in MODELS:
        raise UsageError(f"unknown model {name!r}; valid names: {', '.join(MODELS)}")
    factory = MODELS[name]
    valid = list(inspect.signature(factory).parameters)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise UnknownOptionError(f"unknown option(s) {', '.join(unknown)} for model {name!r}; "
                                 f"valid options: {', '.join(valid)}")
    return factory(**options)


@torch.no_grad()
def randomize_batchnorm(model: nn.Module, generator: torch.Generator | None = None) -> nn.Module:
    """Give every BatchNorm2d non-trivial statistics and affine parameters, in place.

    running_mean ~ N(0, 0.1²), running_var ~ U(0.5, 1.5), weight ~ U(0.5, 1.5), bias ~ N(0, 0.1²),
    so that BatchNorm folding is actually exercised. Returns ``model``.
    """
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            if m.running_mean is not None and m.running_var is not None:
                m.running_mean.copy_(0.1 * torch.randn(n, generator=generator))
                m.running_var.copy_(0.5 + torch.rand(n, generator=generator))
            if m.affine:
                m.weight.copy_(0.5 + torch.rand(n, generator=generator))
                m.bias.copy_(0.1 * torch.randn(n, generator=generator))
    return model
