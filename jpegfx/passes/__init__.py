"""The conversion pipeline: an explicit, ordered list of named passes.

``trace_model`` turns the spatial model into an fx graph; every later pass is a function
``(graph_module, context) -> graph_module`` in a file of its own, named verb_object, and logs what
it changed. :func:`run_pipeline` runs them in order, names the failing pass in errors and, with
``context.debug``, logs the graph after every pass.
"""
from __future__ import annotations

import logging
from typing import Callable

import torch.fx as fx
from torch import nn

from jpegfx.errors import ConversionError
from jpegfx.passes.check_support import check_support
from jpegfx.passes.context import LayerRecord, PassContext
from jpegfx.passes.decode_outputs import decode_outputs
from jpegfx.passes.elide_transforms import elide_transforms
from jpegfx.passes.eliminate_dead_code import eliminate_dead_code
from jpegfx.passes.lower_modules import lower_modules
from jpegfx.passes.normalize_functions import normalize_functions
from jpegfx.passes.propagate_shapes import propagate_shapes
from jpegfx.passes.trace_model import trace_model

log = logging.getLogger(__name__)

Pass = Callable[[fx.GraphModule, PassContext], fx.GraphModule]

FRONTEND: list[Pass] = [
    normalize_functions,  # F.relu, torch.add, F.max_pool2d, … → the module / operator forms the registry knows
    propagate_shapes,  # logical sizes and domains (JPEG or spatial) into node.meta
    check_support,  # every unsupported node, reported at once
]
"""Passes shared by conversion and by the spatial reference graph of :func:`jpegfx.verify`."""

BACKEND: list[Pass] = [
    lower_modules,  # each JPEG-domain module → its JPEG-domain lowering (registry)
    elide_transforms,  # DCT of one op ∘ IDCT of the next = identity: keep such values in pixels
    decode_outputs,  # JPEG-domain outputs → pixels, unless the JPEG-domain output is kept
    eliminate_dead_code,  # drop dead nodes and unused submodules, recompile, lint
]

PIPELINE: list[Pass] = FRONTEND + BACKEND


def run_pipeline(model: nn.Module, context: PassContext, passes: list[Pass] = PIPELINE) -> fx.GraphModule:
    """Trace ``model`` and run ``passes`` in order."""
    gm = trace_model(model, context)
    _dump(gm, "trace_model", context)
    for p in passes:
        try:
            gm = p(gm, context)
        except ConversionError as e:
            if e.pass_name is None:
                raise type(e)(*_rename(e, p.__name__)) from e
            raise
        _dump(gm, p.__name__, context)
    return gm


def _rename(e: ConversionError, name: str) -> tuple:
    from jpegfx.errors import UnsupportedModelError

    if isinstance(e, UnsupportedModelError):
        return (e.problems, name, e.hint)
    return (str(e), name)


def _dump(gm: fx.GraphModule, name: str, context: PassContext) -> None:
    if context.debug:
        log.info("graph after %s:\n%s", name, gm.graph)


__all__ = ["BACKEND", "FRONTEND", "LayerRecord", "PIPELINE", "Pass", "PassContext", "run_pipeline", "trace_model"]
