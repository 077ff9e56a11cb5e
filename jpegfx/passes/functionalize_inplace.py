"""Rewrite in-place ops out of place, so that the graph's data flow says all that the model computes.

An in-place op ``y = x.op_(a)`` — a method ending in ``_`` (``relu_``, ``add_``), an in-place function
(``torch.relu_``, ``operator.iadd`` from ``x += a``), a function called with ``inplace=True`` or a
module with ``inplace = True`` — writes its result into ``x``: later readers of ``x`` see the new
value, and a call whose result is unused (``x.relu_()``) still matters, although fx's dead-code
elimination would drop it. The pass makes it ``y = x.op(a)`` and lets every later reader of ``x``
(in graph order) read ``y``. That is exact when nothing else aliases ``x``; an in-place write into
a view (``view``, ``reshape``, slicing, ``split``, …), into a value that has views, or into a
parameter or buffer is refused with one error listing every such op.
"""
from __future__ import annotations

import inspect
import logging
import operator

import torch
import torch.fx as fx
import torch.nn.functional as F

from jpegfx.errors import UnsupportedModelError
from jpegfx.passes.context import PassContext, PassResult, describe

log = logging.getLogger(__name__)

INPLACE_OPERATORS = {operator.iadd: operator.add, operator.isub: operator.sub, operator.imul: operator.mul,
                     operator.itruediv: operator.truediv, operator.ifloordiv: operator.floordiv,
                     operator.ipow: operator.pow, operator.iand: operator.and_, operator.ior: operator.or_}
VIEW_METHODS = {"view", "view_as", "reshape", "reshape_as", "flatten", "unflatten", "permute", "transpose", "t",
                "narrow", "expand", "expand_as", "squeeze", "unsqueeze", "split", "chunk", "unbind",
                "as_strided", "diagonal", "select", "unfold", "movedim", "swapaxes", "detach", "__getitem__"}
VIEW_FUNCTIONS = {operator.getitem, torch.flatten, torch.reshape, torch.split, torch.chunk, torch.narrow,
                  torch.permute, torch.transpose, torch.squeeze, torch.unsqueeze, torch.unbind, torch.select,
                  torch.movedim, torch.detach}


def _is_view(node: fx.Node) -> bool:
    return (node.op == "call_method" and node.target in VIEW_METHODS
            or node.op == "call_function" and node.target in VIEW_FUNCTIONS)


def _inplace_kwarg(fn) -> bool:
    try:
        return "inplace" in inspect.signature(fn).parameters
    except (TypeError, ValueError):  # builtins without a signature
        return False


def _out_of_place(gm: fx.GraphModule, node: fx.Node):
    """A function that rewrites ``node`` out of place, or ``None`` when ``node`` writes nothing in place."""
    if node.op == "call_method" and node.target.endswith("_") and not node.target.startswith("_"):
        functional = node.target[:-1]
        if not hasattr(torch.Tensor, functional):
            return False  # in place with no out-of-place twin (fill_, zero_, copy_): refused
        return lambda: setattr(node, "target", functional)
    if node.op == "call_function":
        if node.target in INPLACE_OPERATORS:
            return lambda: setattr(node, "target", INPLACE_OPERATORS[node.target])
        name = getattr(node.target, "__name__", "")
        if name.endswith("_") and not name.startswith("_"):
            for namespace in (torch, F, torch.special):
                if getattr(namespace, name, None) is node.target and callable(getattr(namespace, name[:-1], None)):
                    return lambda ns=namespace: setattr(node, "target", getattr(ns, name[:-1]))
        if _inplace_kwarg(node.target):
            bound = inspect.signature(node.target).bind_partial(*node.args, **node.kwargs)
            if bound.arguments.get("inplace") is True:
                def rewrite() -> None:
                    bound.arguments["inplace"] = False
                    node.args, node.kwargs = tuple(bound.args), dict(bound.kwargs)
                return rewrite
    if node.op == "call_module" and getattr(gm.get_submodule(node.target), "inplace", False) is True:
        return lambda: setattr(gm.get_submodule(node.target), "inplace", False)  # gm is the converter's own copy
    return None


def functionalize_inplace(gm: fx.GraphModule, context: PassContext) -> PassResult:
    order = {node: i for i, node in enumerate(gm.graph.nodes)}
    refused, changed = [], 0
    for node in list(gm.graph.nodes):
        rewrite = _out_of_place(gm, node)
        if rewrite is None:
            continue
        written = node.args[0] if node.args else next(iter(node.kwargs.values()), None)
        op = describe(gm, node)
        if rewrite is False:
            refused.append(f"{op} at {node.name}: an in-place write with no out-of-place form")
            continue
        if not isinstance(written, fx.Node):
            continue
        if written.op == "get_attr":
            refused.append(f"{op} at {node.name}: writes into the parameter or buffer {written.target}")
            continue
        if _is_view(written) or any(_is_view(u) for u in written.users if u is not node):
            refused.append(f"{op} at {node.name}: writes into {written.name}, which shares memory with a view")
            continue
        rewrite()
        for user in list(written.users):
            if user is not node and order[user] > order[node]:
                user.replace_input_with(written, node)
        changed += 1
    if refused:
        raise UnsupportedModelError(refused, "functionalize_inplace",
                                    "write the op out of place (y = f(x)), or into a value no view shares")
    gm.recompile()
    log.info("functionalize_inplace: %d in-place op(s) rewritten out of place", changed)
    return PassResult(gm, changed > 0)
