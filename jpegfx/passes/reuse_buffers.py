"""For inference only: let ReLUs and additions write into a value nobody else reads.

The converter rewrites a model's in-place ops out of place (:mod:`jpegfx.passes.functionalize_inplace`),
which is what training and the JPEG-domain rewrites need. On pixels, at inference, that costs one
fresh activation per ReLU and per residual addition — memory traffic that is most of the difference
between a pixel-domain network (``convert(domains="pixels")``) and the spatial one at large batches.

:func:`reuse_buffers` returns a copy of a network's graph (sharing its modules) in which

* ``nn.ReLU`` called on a value becomes ``torch.relu_`` of it, and
* ``a + b`` of two images of one shape becomes ``a.add_(b)`` (or ``b.add_(a)``),

wherever the overwritten value is read by that node alone and was produced by an op that returns a
fresh tensor (a convolution, batch norm, addition or ReLU — never the network's input, a parameter or
a view). The numbers are the same; only memory is reused. :class:`jpegfx.convert.JpegModel` runs it in
eval mode with gradients off (autograd would need the overwritten values).
"""
from __future__ import annotations

import copy
import logging
import operator

import torch
import torch.fx as fx
from torch import nn

log = logging.getLogger(__name__)

FRESH_MODULES = (nn.Conv2d, nn.BatchNorm2d, nn.ReLU)


def _fresh(gm: fx.GraphModule, node: fx.Node) -> bool:
    """``node`` returns a tensor of its own (no view, no input, no parameter)."""
    if node.op == "call_module":
        return type(gm.get_submodule(node.target)) in FRESH_MODULES
    if node.op == "call_function":
        return node.target in (operator.add, torch.relu_) or node.target is torch.Tensor.add_
    return node.op == "call_method" and node.target == "add_"


def _overwritable(gm: fx.GraphModule, node: fx.Node, value) -> bool:
    return isinstance(value, fx.Node) and len(value.users) == 1 and _fresh(gm, value)


def _same_shape(a: fx.Node, b: fx.Node) -> bool:
    ma, mb = a.meta.get("tensor_meta"), b.meta.get("tensor_meta")
    return ma is not None and mb is not None and tuple(ma.shape) == tuple(mb.shape) and ma.dtype == mb.dtype


def reuse_buffers(network: fx.GraphModule) -> tuple[fx.GraphModule, int]:
    """The inference variant of ``network`` and how many nodes now write in place."""
    graph = copy.deepcopy(network.graph)
    gm = fx.GraphModule(network, graph)
    changed = 0
    for node in list(graph.nodes):
        if node.op == "call_module" and type(gm.get_submodule(node.target)) is nn.ReLU and len(node.args) == 1:
            if not node.kwargs and _overwritable(gm, node, node.args[0]):
                with graph.inserting_before(node):
                    new = graph.call_function(torch.relu_, (node.args[0],))
                new.meta = dict(node.meta)
                node.replace_all_uses_with(new)
                graph.erase_node(node)
                changed += 1
        elif node.op == "call_function" and node.target is operator.add and len(node.args) == 2 and not node.kwargs:
            a, b = node.args
            if not (isinstance(a, fx.Node) and isinstance(b, fx.Node) and _same_shape(a, b)):
                continue
            target, other = (a, b) if _overwritable(gm, node, a) else (b, a) if _overwritable(gm, node, b) else (None, None)
            if target is None:
                continue
            with graph.inserting_before(node):
                new = graph.call_method("add_", (target, other))
            new.meta = dict(node.meta)
            node.replace_all_uses_with(new)
            graph.erase_node(node)
            changed += 1
    gm.recompile()
    log.info("reuse_buffers: %d ReLU(s) and addition(s) write in place at inference", changed)
    return gm, changed
