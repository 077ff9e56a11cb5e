"""Trace a spatial model with torch.fx, keeping every lowerable module type as a leaf."""
from __future__ import annotations

import logging

import torch.fx as fx
from torch import nn

from jpegfx import registry
from jpegfx.errors import ConversionError
from jpegfx.passes.context import PassContext

log = logging.getLogger(__name__)


class JpegTracer(fx.Tracer):
    """Leaf modules are those with a registered lowering (plus torch's own leaves)."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return registry.lookup(m) is not None or super().is_leaf_module(m, qualname)


def trace_model(model: nn.Module, context: PassContext) -> fx.GraphModule:
    """Symbolically trace ``model``; data-dependent control flow gets a ConversionError saying why."""
    try:
        graph = JpegTracer().trace(model)
    except Exception as e:  # fx raises TraceError, TypeError, RuntimeError… on untraceable code
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConversionError(
            f"the model is not symbolically traceable ({type(e).__name__}: {first}); jpegfx needs a forward "
            "without data-dependent Python control flow (if/for on tensor values)",
            "trace_model",
        ) from e
    gm = fx.GraphModule(model, graph, type(model).__name__)
    log.info("trace_model: %d nodes", len(gm.graph.nodes))
    return gm
