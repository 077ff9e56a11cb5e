"""Find the model's input channels from the traced graph, unless ``convert(in_channels=…)`` gave them.

The input's first consumer decides: a ``Conv2d`` (possibly behind ops that keep the channel count —
padding, Identity, Dropout, BatchNorm, pooling) reads ``in_channels`` channels. Any other first
consumer (a space-to-depth stem, a reshape) cannot be read off; then the model is run (eval mode, no
gradients, batch 1, zeros at the conversion size) with each channel count a JPEG can give, 1 (gray)
and 3 (colour): if exactly one runs, it is the answer; if both or neither do, the pass asks for
``in_channels`` and says what it saw.
"""
from __future__ import annotations

import logging

import torch
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
        runs = {c: _runs_with(gm, c, context) for c in JPEG_CHANNELS}
        working = [c for c, error in runs.items() if error is None]
        if len(working) == 1:
            context.in_channels = working[0]
            log.info("infer_input_channels: %d (the input first goes through %s; only %d channel(s) run)",
                     working[0], path, working[0])
            return PassResult(gm, False)
        detail = ("the model runs with both 1 and 3 channels" if working else
                  "the model runs with neither 1 nor 3 channels (" + "; ".join(
                      f"{c}: {runs[c]}" for c in JPEG_CHANNELS) + ")")
        raise ConversionError(f"cannot infer the input channels: the input first goes through {path}, and "
                              f"{detail}; pass in_channels= (--channels on the command line)")
    log.info("infer_input_channels: %d", context.in_channels)
    return PassResult(gm, False)


JPEG_CHANNELS = (1, 3)  # gray and colour: what a JPEG input stage can feed


def _runs_with(gm: fx.GraphModule, channels: int, context: PassContext) -> str | None:
    """None if the model runs on zeros ``(1, channels, h, w)``, else the first line of its error. Eval
    mode (BatchNorm statistics untouched) and no gradients; the modules' modes are restored."""
    modes = {m: m.training for m in gm.modules()}
    gm.eval()
    try:
        with torch.no_grad():
            gm(torch.zeros(1, channels, *context.input_size, dtype=context.options.dtype))
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means "not this channel count"
        return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    finally:
        for module, training in modes.items():
            module.training = training
