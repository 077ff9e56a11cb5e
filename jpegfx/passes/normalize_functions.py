"""Rewrite functional forms into the module / operator forms the lowering registry knows.

The functional forms of each op are listed in its registry record (:data:`jpegfx.registry.LOWERINGS`,
:func:`jpegfx.registry.module_form`): ``F.relu``, ``torch.relu``, ``Tensor.relu`` → ``nn.ReLU`` (in-place
forms were made out of place before); ``F.max_pool2d`` → ``nn.MaxPool2d``; ``F.avg_pool2d`` →
``nn.AvgPool2d``; ``F.adaptive_avg_pool2d`` → ``nn.AdaptiveAvgPool2d``; ``F.leaky_relu``, ``F.relu6``,
``F.hardtanh`` → ``nn.LeakyReLU``, ``nn.ReLU6``, ``nn.Hardtanh``. Here: ``torch.add``, ``Tensor.add``
→ ``operator.add``.

In eval mode, functional layers with constant parameters (``get_attr`` nodes: the model's own
parameters, or values ``fold_constants`` computed once) become modules holding those parameters: ``F.conv2d`` →
``nn.Conv2d``, ``F.batch_norm`` in eval form (running statistics, ``training=False``) →
``nn.BatchNorm2d``, ``F.group_norm`` → ``nn.GroupNorm``. Spatial and JPEG-domain uses are rewritten
alike; the modules compute exactly what the functions did.
"""
from __future__ import annotations

import logging
import operator

import torch
import torch.fx as fx
from torch import nn

from jpegfx import registry
from jpegfx.passes.context import PassContext, PassResult, add_module

log = logging.getLogger(__name__)

# Out-of-place forms only: functionalize_inplace has already rewritten every in-place op (relu_, +=, add_),
# so a mutation is never turned into a new value here.
ADD_FUNCTIONS = {operator.add, torch.add}
ADD_METHODS = {"add", "__add__"}


def _as_module(gm: fx.GraphModule, node: fx.Node, module: nn.Module, x: fx.Node) -> None:
    node.op, node.target, node.args, node.kwargs = "call_module", add_module(gm, f"_{node.name}", module), (x,), {}


def normalize_functions(gm: fx.GraphModule, context: PassContext) -> PassResult:
    training = any(m.training for m in gm.modules())  # functional layers keep their parameters' gradients
    changed = 0
    for node in list(gm.graph.nodes):
        if (node.op == "call_function" and node.target in ADD_FUNCTIONS
                or node.op == "call_method" and node.target in ADD_METHODS):
            if node.kwargs.get("alpha", 1) == 1 and len(node.args) == 2 and not node.kwargs.keys() - {"alpha"}:
                if node.target is not operator.add:
                    node.op, node.target, node.kwargs = "call_function", operator.add, {}
                    changed += 1
        elif (module := registry.module_form(gm, node, training)) is not None:
            _as_module(gm, node, module, node.args[0] if node.args else node.kwargs["input"])
            changed += 1
    gm.recompile()
    log.info("normalize_functions: %d node(s) rewritten", changed)
    return PassResult(gm, changed > 0)


