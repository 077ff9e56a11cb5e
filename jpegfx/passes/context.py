"""What the passes share: the options, the example input, the record of what was lowered, the
``node.meta`` keys, the result type of a pass and the one helper that makes fresh module names."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.fx as fx

from jpegfx.meta import (  # the node.meta keys, declared once; re-exported for the passes
    DOMAIN,
    FALLBACK,
    GEOMETRY,
    IMAGE,
    INPUT,
    LOWER,
    PIXEL_FALLBACK,
    PIXEL_OP,
    ROLE,
    ROLES,
    SPATIAL,
)
from jpegfx.registry import ConvertOptions
from jpegfx.transforms import BlockGeometry

__all__ = ["DOMAIN", "FALLBACK", "GEOMETRY", "IMAGE", "INPUT", "LOWER", "PIXEL_FALLBACK", "PIXEL_OP", "ROLE", "ROLES",
           "SPATIAL", "LayerRecord", "PassContext", "PassResult", "add_module", "describe", "fresh_name"]

@dataclass(frozen=True)
class LayerRecord:
    """One lowered (or pixel-fallback) node, for conversion summaries."""

    node: str
    target: str
    spatial: str
    jpeg: str
    detail: str
    in_geometry: BlockGeometry
    out_geometry: BlockGeometry
    map_bytes: int = 0
    domains: tuple[str, str] = ("jpeg", "jpeg")  # (in, out); "pixels" where elide_transforms cancelled a pair


@dataclass(frozen=True)
class PassResult:
    """What a pass returns: the (possibly new) graph module and whether it changed anything."""

    module: fx.GraphModule
    modified: bool


@dataclass
class PassContext:
    options: ConvertOptions
    input_size: tuple[int, int] = (32, 32)
    in_channels: int | None = None  # None: inferred from the traced graph (infer_input_channels)
    keep_jpeg_output: bool = False
    debug: bool = False
    records: list[LayerRecord] = field(default_factory=list)
    reference: fx.GraphModule | None = None  # the spatial graph before lowering, for check_equivalence

    def example_input(self, batch: int = 1, generator: torch.Generator | None = None) -> torch.Tensor:
        """A spatial input ``(batch, C, h, w)`` in the model's dtype: zeros, or normal samples from ``generator``."""
        shape = (batch, self.in_channels, *self.input_size)
        if generator is None:
            return torch.zeros(shape, dtype=self.options.dtype)
        return torch.randn(shape, generator=generator, dtype=torch.float64).to(self.options.dtype)


def fresh_name(gm: fx.GraphModule, base: str) -> str:
    """``base`` (a qualified name, ``a.b.c``) if its parent has no attribute, parameter, buffer or
    submodule of that name, else the first free ``c_1``, ``c_2``, … beside it. Every pass that adds
    a submodule names it through this helper, so no pass overwrites another's module."""
    parent_name, _, leaf = base.rpartition(".")
    try:
        parent = gm.get_submodule(parent_name) if parent_name else gm
    except AttributeError:  # the parent does not exist yet: add_submodule creates it
        return base
    taken = set(parent._modules) | set(parent._parameters) | set(parent._buffers) | set(dir(parent))
    if leaf not in taken:
        return base
    i = 1
    while f"{leaf}_{i}" in taken:
        i += 1
    return f"{parent_name}.{leaf}_{i}" if parent_name else f"{leaf}_{i}"


def add_module(gm: fx.GraphModule, base: str, module: torch.nn.Module) -> str:
    """Add ``module`` to ``gm`` under a fresh name derived from ``base``; returns the name."""
    name = fresh_name(gm, base)
    gm.add_submodule(name, module)
    return name


def describe(gm: fx.GraphModule, node: fx.Node) -> str:
    """A node's op for people: ``GELU (module)``, ``torch.sigmoid``, ``Tensor.mul (method)``."""
    if node.op == "call_module":
        return f"{type(gm.get_submodule(node.target)).__name__} (module)"
    if node.op == "call_function":
        module = getattr(node.target, "__module__", "") or ""
        module = {"_operator": "operator", "torch._C._nn": "torch.nn.functional",
                  "torch.functional": "torch", "torch._C._VariableFunctions": "torch"}.get(module, module)
        return f"{module}.{getattr(node.target, '__name__', node.target)}".lstrip(".")
    if node.op == "call_method":
        return f"Tensor.{node.target} (method)"
    return f"{node.op} {node.target}"
