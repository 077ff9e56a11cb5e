"""Find the model's input channels from the traced graph, unless ``convert(in_channels=…)`` gave them.

The input's first consumer decides: a ``Conv2d`` (possibly behind ops that keep the channel count —
padding, Identity, Dropout, BatchNorm, pooling) reads ``in_channels`` channels. Any other first
consumer (a space-to-depth stem, a reshape) cannot be read off: the pass asks for ``in_channels``.
"""
from __future__ import annotations

import logging

import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from jpegfx.errors import ConversionError
from jpegfx.passes.context import PassContext, PassResult, describe

log = logging.getLogger(__name__)

SAME_CHANNELS = (nn.Identity, nn.Dropout, nn.ZeroPad2d, nn.ConstantPad2d, nn.ReflectionPad2d, nn.ReplicationPad2d,
                 nn.MaxPool2d, nn.AvgPool2d)


def _reads_shape(node: fx.Node) -> bool:
    return (node.op == "call_function" and node.target is getattr
            or node.op == "call_method" and node.target in ("size", "dim"))


def infer_input_channels(gm: fx.GraphModule, context: PassContext) -> PassResult:
    if context.in_channels is not None:
        return PassResult(gm, False)
    node = next((n for n in gm.graph.nodes if n.op == "placeholder"), None)
    seen = []
    while node is not None and len(users := [u for u in node.users if not _reads_shape(u)]) == 1:
        node = users[0]
        if node.op == "call_module":
            module = gm.get_submodule(node.target)
            if type(module) is nn.Conv2d or isinstance(module, nn.Conv2d) and module.in_channels > 0:
                context.in_channels = module.in_channels
                break
            if isinstance(module, nn.BatchNorm2d):
                context.in_channels = module.num_features
                break
            if isinstance(module, SAME_CHANNELS):
                seen.append(describe(gm, node))
                continue
        if node.op == "call_function" and node.target is F.pad:
            seen.append(describe(gm, node))
            continue
        seen.append(describe(gm, node))
        break
    if context.in_channels is None:
        path = " → ".join(seen) or "several ops"
        raise ConversionError(f"cannot infer the input channels: the input first goes through {path}; "
                              "pass in_channels= (--channels on the command line)")
    log.info("infer_input_channels: %d", context.in_channels)
    return PassResult(gm, False)
