"""Collect every node that cannot run in the JPEG domain and raise once, listing them all."""
from __future__ import annotations

import logging

import torch.fx as fx

from jpegfx.errors import UnsupportedModelError
from jpegfx.passes.context import PassContext
from jpegfx.passes.propagate_shapes import UNSUPPORTED

log = logging.getLogger(__name__)

HINT = ("supported in the JPEG domain: Conv2d, BatchNorm2d, ReLU, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, "
        "add, Identity, Dropout(eval); anything after global pooling is free")


def check_support(gm: fx.GraphModule, context: PassContext) -> fx.GraphModule:
    groups: dict[tuple[str, str], list[str]] = {}
    for node in gm.graph.nodes:
        if UNSUPPORTED in node.meta:
            groups.setdefault(node.meta[UNSUPPORTED], []).append(node.name)
    if groups:
        problems = []
        for (op, reason), names in groups.items():
            shown = ", ".join(names[:4]) + (f", … (+{len(names) - 4})" if len(names) > 4 else "")
            problems.append(f"{op} ×{len(names)} [{shown}]: {reason}")
        raise UnsupportedModelError(problems, "check_support", HINT)
    log.info("check_support: every JPEG-domain node has a lowering")
    return gm
