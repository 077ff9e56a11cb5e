"""The lowering registry: spatial op → JPEG-domain module, with capability checks that give reasons.

A :class:`Lowering` has ``check(module, options) -> reason | None`` (``None`` = applicable) and
``build(module, geometry, options, name) -> nn.Module``. The converter looks every JPEG-domain
``call_module`` node up here by the type of its module; README's supported-operations table is
generated from :data:`LOWERINGS` by :func:`support_table`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from jpegfx import models, ops
from jpegfx.transforms import BlockGeometry, MAX_FREQUENCIES


@dataclass(frozen=True)
class ConvertOptions:
    """How a model is lowered (see :func:`jpegfx.convert`)."""

    relu: str = "exact"
    frequencies: int = MAX_FREQUENCIES
    maxpool: str = "exact"
    lowering: str = "auto"
    map_budget: int = ops.DEFAULT_MAP_BUDGET
    dtype: torch.dtype = torch.float32
    elide_transforms: bool = True


@dataclass(frozen=True)
class Lowering:
    spatial: str
    jpeg: str
    doc: str
    check: Callable[[nn.Module, ConvertOptions], str | None]
    build: Callable[[nn.Module, BlockGeometry, ConvertOptions, str], nn.Module]
    ends_jpeg_domain: bool = False


def _always(module: nn.Module, options: ConvertOptions) -> str | None:
    return None


def _check_conv(conv: nn.Conv2d, options: ConvertOptions) -> str | None:
    reasons = ops.conv.supported_lowerings(conv)
    if options.lowering == "auto":
        return None if any(r is None for r in reasons.values()) else "; ".join(dict.fromkeys(filter(None, reasons.values())))
    return reasons.get(options.lowering, f"unknown lowering {options.lowering!r}")


def _check_maxpool(pool: nn.MaxPool2d, options: ConvertOptions) -> str | None:
    return "return_indices=True is not supported" if pool.return_indices else None


def _check_dropout(module: nn.Module, options: ConvertOptions) -> str | None:
    if module.training and module.p > 0:
        return "dropout on JPEG coefficients is not dropout on pixels; convert in eval mode or move it after pooling"
    return None


def _build_conv(conv, geometry, options, name):
    return ops.JpegConv2d.from_spatial(conv, geometry, options.lowering, options.map_budget, name)


def _build_bn(bn, geometry, options, name):
    return ops.JpegBatchNorm2d.from_spatial(bn, geometry)


def _build_relu(relu, geometry, options, name):
    return ops.JpegReLU(geometry, options.relu, options.frequencies, dtype=options.dtype)


def _build_maxpool(pool, geometry, options, name):
    frequencies = options.frequencies if options.maxpool != "exact" else MAX_FREQUENCIES
    return ops.JpegMaxPool2d.from_spatial(pool, geometry, options.maxpool, frequencies, options.dtype)


def _build_avgpool(pool, geometry, options, name):
    return ops.JpegAvgPool2d.from_spatial(pool, geometry)


def _build_adaptive(pool, geometry, options, name):
    return ops.JpegAdaptiveAvgPool2d.from_spatial(pool, geometry)


def _build_identity(module, geometry, options, name):
    return nn.Identity()


def _build_shortcut_a(module, geometry, options, name):
    return ops.JpegShortcutA(module.stride, module.pad_channels, geometry)


LOWERINGS: dict[type, Lowering] = {
    nn.Conv2d: Lowering("nn.Conv2d", "JpegConv2d",
                        "exact: fused map Ξ (paper eq. 12–13), factored IDCT→conv→DCT, or pointwise (1×1)",
                        _check_conv, _build_conv),
    nn.BatchNorm2d: Lowering("nn.BatchNorm2d", "JpegBatchNorm2d",
                             "exact, eval and train (DC mean, DCT mean-variance theorem)", _always, _build_bn),
    nn.ReLU: Lowering("nn.ReLU / F.relu / torch.relu", "JpegReLU",
                      "exact, ASM(k) or APX(k) (paper §4.2)", _always, _build_relu),
    nn.MaxPool2d: Lowering("nn.MaxPool2d / F.max_pool2d", "JpegMaxPool2d",
                           "exact, or ASM-style winner selection on k frequencies", _check_maxpool, _build_maxpool),
    nn.AvgPool2d: Lowering("nn.AvgPool2d", "JpegAvgPool2d", "exact", _always, _build_avgpool),
    nn.AdaptiveAvgPool2d: Lowering("nn.AdaptiveAvgPool2d / F.adaptive_avg_pool2d", "JpegAdaptiveAvgPool2d",
                                   "exact; 1×1 reads DC only; ends the JPEG domain", _always,
                                   _build_adaptive, ends_jpeg_domain=True),
    nn.Identity: Lowering("nn.Identity", "(removed)", "passthrough", _always, _build_identity),
    nn.Dropout: Lowering("nn.Dropout (eval)", "(removed)", "passthrough in eval mode", _check_dropout,
                         _build_identity),
    models.ShortcutA: Lowering("ShortcutA (CIFAR option A)", "JpegShortcutA",
                               "exact: pixel subsampling + zero channels", _always, _build_shortcut_a),
}
"""Lowerable module types. Functional forms are normalised to these modules before lookup."""

ELEMENTWISE = {
    "add": "operator.add / torch.add / Tensor.add / += : coefficient-wise (paper §4.4)",
    "size(0)": "Tensor.size(0): the batch size is the same in both domains",
}


def lookup(module: nn.Module) -> Lowering | None:
    for cls in type(module).__mro__:
        if cls in LOWERINGS:
            return LOWERINGS[cls]
    return None


def support_table() -> str:
    """A markdown table of the supported operations, for README and ``jpegfx convert --help``."""
    rows = ["| spatial op | JPEG-domain op | notes |", "|---|---|---|"]
    rows += [f"| {lw.spatial} | {lw.jpeg} | {lw.doc} |" for lw in LOWERINGS.values()]
    rows += [f"| {name} | (same) | {doc} |" for name, doc in ELEMENTWISE.items()]
    rows.append("| anything after global pooling | (unchanged) | the head (flatten, Linear, …) is spatial-free |")
    return "\n".join(rows)
