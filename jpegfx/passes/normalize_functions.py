"""Rewrite functional forms into the module / operator forms the lowering registry knows.

``F.relu``, ``torch.relu``, ``Tensor.relu`` → ``nn.ReLU`` (in-place forms were made out of place before);
``torch.add``, ``Tensor.add`` → ``operator.add``; ``F.max_pool2d`` → ``nn.MaxPool2d``;
``F.avg_pool2d`` → ``nn.AvgPool2d``; ``F.adaptive_avg_pool2d`` → ``nn.AdaptiveAvgPool2d``;
``F.leaky_relu``, ``F.relu6``, ``F.hardtanh`` → ``nn.LeakyReLU``, ``nn.ReLU6``, ``nn.Hardtanh``.

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
import torch.nn.functional as F
from torch import nn

from jpegfx.passes.context import PassContext, PassResult, add_module

log = logging.getLogger(__name__)

# Out-of-place forms only: functionalize_inplace has already rewritten every in-place op (relu_, +=, add_),
# so a mutation is never turned into a new value here.
RELU_FUNCTIONS = {F.relu, torch.relu}
RELU_METHODS = {"relu"}
ADD_FUNCTIONS = {operator.add, torch.add}
ADD_METHODS = {"add", "__add__"}

# functional pooling → (module class, the module's constructor argument names in call order)
POOL_FUNCTIONS = {
    F.max_pool2d: (nn.MaxPool2d, ["kernel_size", "stride", "padding", "dilation", "ceil_mode"]),
    F.avg_pool2d: (nn.AvgPool2d, ["kernel_size", "stride", "padding", "ceil_mode", "count_include_pad",
                                  "divisor_override"]),
    F.adaptive_avg_pool2d: (nn.AdaptiveAvgPool2d, ["output_size"]),
}


def _as_module(gm: fx.GraphModule, node: fx.Node, module: nn.Module, x: fx.Node) -> None:
    node.op, node.target, node.args, node.kwargs = "call_module", add_module(gm, f"_{node.name}", module), (x,), {}


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


PIECEWISE_FUNCTIONS = {  # function → (module class, argument names in call order, defaults)
    F.leaky_relu: (nn.LeakyReLU, ["input", "negative_slope", "inplace"], {"negative_slope": 0.01}),
    F.relu6: (nn.ReLU6, ["input", "inplace"], {}),
    F.hardtanh: (nn.Hardtanh, ["input", "min_val", "max_val", "inplace"], {"min_val": -1.0, "max_val": 1.0}),
}


def _piecewise_module(node: fx.Node) -> nn.Module | None:
    cls, names, defaults = PIECEWISE_FUNCTIONS[node.target]
    values = {**defaults, **dict(zip(names, node.args)), **node.kwargs}
    values.pop("inplace", None)  # functionalize_inplace made the call out of place
    arguments = {k: v for k, v in values.items() if k != "input"}
    if values.keys() - set(names) or any(isinstance(v, fx.Node) for v in arguments.values()):
        return None
    return cls(**arguments)


def _constants(gm: fx.GraphModule, node: fx.Node, names: list[str], defaults: dict) -> dict | None:
    """The call's arguments by name, with ``get_attr`` nodes replaced by their tensors; ``None`` when
    an argument (other than the input) is computed at run time."""
    values = {**defaults, **dict(zip(names, node.args)), **node.kwargs}
    if values.keys() - set(names):
        return None
    out = {}
    for key, v in values.items():
        if isinstance(v, fx.Node) and key != "input":
            if v.op != "get_attr":
                return None
            v = gm.get_parameter(v.target) if v.target in dict(gm.named_parameters()) else gm.get_buffer(v.target)
        out[key] = v
    return out


def _as_parameter(t: torch.Tensor | None) -> nn.Parameter | None:
    return None if t is None else nn.Parameter(t.detach().clone(), requires_grad=t.requires_grad)


def _functional_layer(gm: fx.GraphModule, node: fx.Node) -> nn.Module | None:
    """The module that computes what ``F.conv2d`` / ``F.batch_norm`` / ``F.group_norm`` with constant
    parameters computes, or ``None``."""
    if node.target in (F.conv2d, torch.conv2d):
        a = _constants(gm, node, ["input", "weight", "bias", "stride", "padding", "dilation", "groups"],
                       {"bias": None, "stride": 1, "padding": 0, "dilation": 1, "groups": 1})
        if a is None or not isinstance(a["weight"], torch.Tensor) or a["weight"].dim() != 4:
            return None
        w = a["weight"]
        conv = nn.Conv2d(w.shape[1] * a["groups"], w.shape[0], tuple(w.shape[-2:]), a["stride"], a["padding"],
                         a["dilation"], a["groups"], bias=a["bias"] is not None, device=w.device, dtype=w.dtype)
        conv.weight, conv.bias = _as_parameter(w), _as_parameter(a["bias"])
        return conv
    if node.target is F.batch_norm:
        a = _constants(gm, node, ["input", "running_mean", "running_var", "weight", "bias", "training", "momentum",
                                  "eps"], {"weight": None, "bias": None, "training": False, "momentum": 0.1, "eps": 1e-5})
        if a is None or a["training"] is not False or a["running_mean"] is None or a["running_var"] is None:
            return None
        bn = nn.BatchNorm2d(a["running_mean"].numel(), a["eps"], affine=a["weight"] is not None,
                            device=a["running_mean"].device, dtype=a["running_mean"].dtype).eval()
        bn.running_mean.copy_(a["running_mean"])
        bn.running_var.copy_(a["running_var"])
        if a["weight"] is not None:
            bn.weight, bn.bias = _as_parameter(a["weight"]), _as_parameter(a["bias"])
        return bn if a["bias"] is not None or a["weight"] is None else None
    if node.target is F.group_norm:
        a = _constants(gm, node, ["input", "num_groups", "weight", "bias", "eps"],
                       {"weight": None, "bias": None, "eps": 1e-5})
        if a is None or (a["weight"] is None) != (a["bias"] is None) or not isinstance(a["num_groups"], int):
            return None
        if a["weight"] is None:
            return None  # the channel count is not known before shapes are
        gn = nn.GroupNorm(a["num_groups"], a["weight"].numel(), a["eps"], device=a["weight"].device,
                          dtype=a["weight"].dtype)
        gn.weight, gn.bias = _as_parameter(a["weight"]), _as_parameter(a["bias"])
        return gn
    return None


def normalize_functions(gm: fx.GraphModule, context: PassContext) -> PassResult:
    training = any(m.training for m in gm.modules())  # functional layers keep their parameters' gradients
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
        elif node.op == "call_function" and node.target in PIECEWISE_FUNCTIONS:
            module = _piecewise_module(node)
            if module is not None:
                _as_module(gm, node, module, node.args[0] if node.args else node.kwargs["input"])
                changed += 1
        elif node.op == "call_function" and not training and (module := _functional_layer(gm, node)) is not None:
            _as_module(gm, node, module, node.args[0] if node.args else node.kwargs["input"])
            changed += 1
    gm.recompile()
    log.info("normalize_functions: %d node(s) rewritten", changed)
    return PassResult(gm, changed > 0)


