"""The conversion pipeline: an explicit, ordered list of named passes, run by a small pass manager.

``trace_model`` turns the spatial model into an fx graph; every later pass is a function
``(graph_module, context) -> PassResult`` in a file of its own, named verb_object, that logs what it
changed. :func:`run_pipeline` runs them in order; any exception a pass lets through comes out as a
:class:`~jpegfx.errors.ConversionError` naming the pass, and the graph's invariants are checked after
every pass (:func:`check_invariants`). With ``context.debug`` it logs the graph after every pass.
"""
from __future__ import annotations

import copy
import logging
from typing import Callable

import torch.fx as fx
from torch import nn

from jpegfx.errors import ConversionError, UnsupportedModelError
from jpegfx.ops.base import JpegModule
from jpegfx.passes.assign_domains import assign_domains
from jpegfx.passes.check_equivalence import check_equivalence
from jpegfx.passes.check_support import check_support
from jpegfx.passes.context import DOMAIN, GEOMETRY, ROLE, LayerRecord, PassContext, PassResult
from jpegfx.passes.decode_outputs import decode_outputs
from jpegfx.passes.elide_transforms import elide_transforms
from jpegfx.passes.eliminate_dead_code import eliminate_dead_code
from jpegfx.passes.fold_constants import fold_constants
from jpegfx.passes.functionalize_inplace import functionalize_inplace
from jpegfx.passes.infer_input_channels import infer_input_channels
from jpegfx.passes.insert_transforms import insert_transforms
from jpegfx.passes.lower_modules import lower_modules
from jpegfx.passes.normalize_functions import normalize_functions
from jpegfx.passes.propagate_shapes import propagate_shapes
from jpegfx.passes.reuse_buffers import reuse_buffers
from jpegfx.passes.trace_model import trace_model

log = logging.getLogger(__name__)

Pass = Callable[[fx.GraphModule, PassContext], PassResult]


def keep_reference(gm: fx.GraphModule, context: PassContext) -> PassResult:
    """Keep a copy of the spatial graph (node names and meta included) for ``check_equivalence``."""
    if context.options.self_check:
        context.reference = copy.deepcopy(gm)
    return PassResult(gm, False)


FRONTEND: list[Pass] = [
    functionalize_inplace,  # x.relu_(), x += y, inplace=True → out of place, later readers rewired
    fold_constants,  # eval: what does not depend on the input (standardised weights, …) computed once
    normalize_functions,  # F.relu, torch.add, F.max_pool2d, … → the module / operator forms the registry knows
]
"""Spatial rewrites, shared by conversion and by the spatial reference graph of :func:`jpegfx.verify`."""

ANALYSIS: list[Pass] = [
    infer_input_channels,  # from the input's first consumer, unless given
    propagate_shapes,  # spatial shapes, image-like values and their logical sizes into node.meta
    assign_domains,  # each node: lowered, on pixels (fallback) or spatial; each value: JPEG or spatial
    check_support,  # list the ops that run on pixels; refuse them all at once under strict
    keep_reference,  # the spatial graph, for the self-check
]

BACKEND: list[Pass] = [
    lower_modules,  # each lowered node → its JPEG-domain op (registry)
    insert_transforms,  # inverse DCT before pixel fallbacks, forward DCT back into lowered ops
    decode_outputs,  # JPEG-domain outputs → pixels, unless the JPEG-domain output is kept
    elide_transforms,  # DCT of one op ∘ IDCT of the next = identity: keep such values in pixels
    eliminate_dead_code,  # drop dead nodes and unused submodules, recompile, lint
    check_equivalence,  # shapes node by node and outputs against the spatial graph on a random input
]

PIPELINE: list[Pass] = FRONTEND + ANALYSIS + BACKEND


def check_invariants(gm: fx.GraphModule, after: Pass) -> None:
    """What holds between passes: a well-formed graph whose modules exist; once domains are assigned,
    every node has a role and a domain; every JPEG-domain module's logical sizes are its node's."""
    gm.graph.lint()
    modules = dict(gm.named_modules())
    assigned = PIPELINE.index(after) >= PIPELINE.index(assign_domains) if after in PIPELINE else False
    for node in gm.graph.nodes:
        if node.op == "call_module" and node.target not in modules:
            raise ConversionError(f"node {node.name} calls the missing module {node.target}")
        if assigned and (ROLE not in node.meta or DOMAIN not in node.meta):
            raise ConversionError(f"node {node.name} has no role or domain")
        module = modules.get(node.target) if node.op == "call_module" else None
        if isinstance(module, JpegModule):
            source = node.all_input_nodes[0]
            checks = [(module.in_geometry, source.meta.get(GEOMETRY), "input"),
                      (module.out_geometry, node.meta.get(GEOMETRY), "output")]
            for have, want, side in checks:
                if want is not None and have != want:
                    raise ConversionError(f"node {node.name}: {type(module).__name__} has {side} size "
                                          f"{have.h}x{have.w} where the spatial model has {want.h}x{want.w}")


def run_pipeline(model: nn.Module, context: PassContext, passes: list[Pass] = PIPELINE) -> fx.GraphModule:
    """Trace ``model`` and run ``passes`` in order."""
    gm = _run(trace_model, lambda: trace_model(model, context))
    _dump(gm, "trace_model", context)
    for p in passes:
        result = _run(p, lambda: p(gm, context))
        gm = result.module
        _run(p, lambda: check_invariants(gm, p))
        _dump(gm, p.__name__, context)
    return gm


def _run(p: Callable, call: Callable):
    """``call()``, with every exception it raises re-raised as a ConversionError naming pass ``p``."""
    name = p.__name__
    try:
        return call()
    except UnsupportedModelError as e:
        if e.pass_name is None:
            raise UnsupportedModelError(e.problems, name, e.hint) from e
        raise
    except ConversionError as e:
        if e.pass_name is None:
            raise ConversionError(str(e), name) from e
        raise
    except Exception as e:
        first = (str(e).strip().splitlines() or [""])[0]
        raise ConversionError(f"{type(e).__name__}: {first}", name) from e


def _dump(gm: fx.GraphModule, name: str, context: PassContext) -> None:
    if context.debug:
        log.info("graph after %s:\n%s", name, gm.graph)


__all__ = ["ANALYSIS", "BACKEND", "FRONTEND", "LayerRecord", "PIPELINE", "Pass", "PassContext", "PassResult",
           "check_invariants", "reuse_buffers", "run_pipeline", "trace_model"]
