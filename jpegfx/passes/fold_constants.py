"""Evaluate, once, what does not depend on the input (eval mode only).

Code that computes a weight on every call — weight standardisation (BiT's ``StdConv2d``, NFNet's
``ScaledStdConv2d``), a re-parametrisation, a blur kernel — is a subgraph whose inputs are all
parameters, buffers or constants. In eval mode its value is fixed, so the pass computes it and
replaces it by a (non-persistent) buffer: the functional op that consumes it, ``F.conv2d(x, w)``,
then has a constant weight, and ``normalize_functions`` can make it an ``nn.Conv2d`` with a lowering.
In train mode nothing is folded (the parameters must keep their gradients). Random ops are never
folded.
"""
from __future__ import annotations

import logging

import torch
import torch.fx as fx

from jpegfx.passes.context import PassContext, PassResult, fresh_name

log = logging.getLogger(__name__)

IMPURE_NAMES = ("rand", "dropout", "bernoulli", "multinomial", "normal", "uniform", "empty", "manual_seed")


def _impure(node: fx.Node) -> bool:
    name = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", "")
    return node.op == "call_module" or any(word in name for word in IMPURE_NAMES) or node.is_impure()


def fold_constants(gm: fx.GraphModule, context: PassContext) -> PassResult:
    if any(m.training for m in gm.modules()):
        return PassResult(gm, False)
    interpreter = fx.Interpreter(gm)
    values: dict[fx.Node, object] = {}
    with torch.no_grad():
        for node in gm.graph.nodes:
            if node.op == "get_attr":
                values[node] = interpreter.fetch_attr(node.target)
            elif (node.op in ("call_function", "call_method") and node.all_input_nodes and not _impure(node)
                  and all(a in values for a in node.all_input_nodes)):
                args, kwargs = fx.node.map_arg((node.args, node.kwargs), lambda a: values[a])
                values[node] = getattr(interpreter, node.op)(node.target, args, kwargs)
    folded = 0
    for node, value in values.items():
        if node.op == "get_attr" or not isinstance(value, torch.Tensor) or all(u in values for u in node.users):
            continue
        name = fresh_name(gm, f"_folded_{node.name}")
        gm.register_buffer(name, value.detach().clone(), persistent=False)
        with gm.graph.inserting_before(node):
            constant = gm.graph.get_attr(name)
        node.replace_all_uses_with(constant)
        folded += 1
    if folded:
        gm.graph.eliminate_dead_code()
        gm.recompile()
    log.info("fold_constants: %d input-independent value(s) computed once", folded)
    return PassResult(gm, folded > 0)
