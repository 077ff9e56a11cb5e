"""Trace a spatial model with torch.fx, keeping every lowerable module type as a leaf.

Leaves are the modules with a registered lowering (exact types, or subclasses that keep their
behaviour: :func:`jpegfx.registry.keeps_behaviour`), torch's own ``torch.nn`` modules, and the modules
and functions that a model library declares untraceable: when timm is loaded, those of its
``timm.layers`` registry (``get_notrace_modules``, ``get_notrace_functions``), which its own fx tools
use too. A leaf with no lowering runs on pixels like any other op without one.
"""
from __future__ import annotations

import logging
import sys

import torch.fx as fx
from torch import nn

from jpegfx import registry
from jpegfx.errors import ConversionError
from jpegfx.passes.context import PassContext

log = logging.getLogger(__name__)


def library_leaves() -> tuple[tuple[type, ...], tuple]:
    """(leaf module types, functions to keep as calls) declared by loaded model libraries (timm)."""
    timm_fx = sys.modules.get("timm.layers._fx")
    if timm_fx is None:
        return (), ()
    modules = tuple(m for m in timm_fx.get_notrace_modules() if isinstance(m, type))
    functions = tuple(f for f in timm_fx.get_notrace_functions() if callable(f))
    return modules, functions


class JpegTracer(fx.Tracer):
    """Leaf modules are those with a registered lowering, torch's own and the libraries' (see module doc)."""

    def __init__(self) -> None:
        self.library_modules, functions = library_leaves()
        super().__init__(autowrap_functions=functions)

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return (registry.lookup(m) is not None or isinstance(m, self.library_modules)
                or super().is_leaf_module(m, qualname))


def trace_model(model: nn.Module, context: PassContext) -> fx.GraphModule:
    """Symbolically trace ``model``; data-dependent control flow gets a ConversionError saying why."""
    try:
        graph = JpegTracer().trace(model)
    except Exception as e:  # fx raises TraceError, TypeError, RuntimeError… on untraceable code
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConversionError(
            f"the model is not symbolically traceable ({type(e).__name__}: {first}); jpegfx needs a forward "
            "that torch.fx can trace: no data-dependent Python control flow (if/for on tensor values), no item "
            "assignment into tensors",
            "trace_model",
        ) from e
    gm = fx.GraphModule(model, graph, type(model).__name__)
    for name, module in gm.named_modules():  # fx's shells of traced-into modules start in train mode
        module.training = model.get_submodule(name).training
    log.info("trace_model: %d nodes", len(gm.graph.nodes))
    return gm
