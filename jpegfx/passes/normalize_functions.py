"""Rewrite functional forms into the module / operator forms the lowering registry knows.

``F.relu``, ``torch.relu``, ``Tensor.relu`` (and in-place variants) → ``nn.ReLU``;
``torch.add``, ``Tensor.add``, ``+=`` → ``operator.add``; ``F.max_pool2d`` → ``nn.MaxPool2d``;
``F.avg_pool2d`` → ``nn.AvgPool2d``; ``F.adaptive_avg_pool2d`` → ``nn.AdaptiveAvgPool2d``.
Spatial and JPEG-domain uses are rewritten alike; the modules compute exactly what the functions did.
"""
from __future__ import annotations

import logging
import operator

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from jpegfx.passes.context import PassContext

log = logging.getLogger(__name__)

RELU_FUNCTIONS = {F.relu, torch.relu, torch.relu_, F.relu_}
RELU_METHODS = {"relu", "relu_"}
ADD_FUNCTIONS = {operator.add, operator.iadd, torch.add}
ADD_METHODS = {"add", "add_", "__iadd__", "__add__"}

# functional pooling → (module class, the module's constructor argument names in call order)
POOL_FUNCTIONS = {
    F.max_pool2d: (nn.MaxPool2d, ["kernel_size", "stride", "padding", "dilation", "ceil_mode"]),
    F.avg_pool2d: (nn.AvgPool2d, ["kernel_size", "stride", "padding", "ceil_mode", "count_include_pad",
                                  "divisor_override"]),
    F.adaptive_avg_pool2d: (nn.AdaptiveAvgPool2d, ["output_size"]),
}


def _as_module(gm: fx.GraphModule, node: fx.Node, module: nn.Module, x: fx.Node) -> None:
    name = f"_{node.name}"
    gm.add_submodule(name, module)
    node.op, node.target, node.args, node.kwargs = "call_module", name, (x,), {}


def _pool_module(node: fx.Node) -> nn.Module | None:
    cls, names = POOL_FUNCTIONS[node.target]
    values = dict(zip(names, node.args[1:]))
    values.update({k: v for k, v in node.kwargs.items() if k in names})
    extra = {k: v for k, v in node.kwargs.items() if k not in names and k != "input"}
    if extra.get("return_indices") is False:
        del extra["return_indices"]
    if any(isinstance(v, fx.Node) for v in values.values()) or extra:
        return None  # dynamic arguments or return_indices: leave it for check_support to report
    try:
        return cls(**values)
    except TypeError:
        return None


def normalize_functions(gm: fx.GraphModule, context: PassContext) -> fx.GraphModule:
    changed = 0
    for node in list(gm.graph.nodes):
        if node.op == "call_function" and node.target in RELU_FUNCTIONS or (
                node.op == "call_method" and node.target in RELU_METHODS):
            _as_module(gm, node, nn.ReLU(), node.args[0])
            changed += 1
        elif (node.op == "call_function" and node.target in ADD_FUNCTIONS
              or node.op == "call_method" and node.target in ADD_METHODS):
            if node.kwargs.get("alpha", 1) == 1 and len(node.args) == 2 and not node.kwargs.keys() - {"alpha"}:
                if node.target is not operator.add:
                    node.op, node.target, node.kwargs = "call_function", operator.add, {}
                    changed += 1
        elif node.op == "call_function" and node.target in POOL_FUNCTIONS:
            module = _pool_module(node)
            if module is not None:
                _as_module(gm, node, module, node.args[0] if node.args else node.kwargs["input"])
                changed += 1
    gm.recompile()
    log.info("normalize_functions: %d node(s) rewritten", changed)
    return gm


