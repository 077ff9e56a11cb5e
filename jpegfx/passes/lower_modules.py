"""Replace every node with role ``lower`` by its JPEG-domain op.

* Registered modules become their lowering from the registry. A module called from several nodes
  (torchvision reuses one ``relu`` per block) gets one lowered module per call, since each call may
  see a different logical size: the first lowered call keeps the original qualified name (so state
  dicts and parameter names match the spatial model) unless a call that is not lowered still needs
  the original module; the others get fresh names (:func:`~jpegfx.passes.context.fresh_name`).
  Identity-like lowerings are removed.
* Image scaling (``x * g``, ``x / g``) becomes :class:`~jpegfx.ops.JpegScale`, the mean over the
  plane :class:`~jpegfx.ops.JpegSpatialMean`, shape queries :class:`~jpegfx.ops.JpegShape`; additions of two JPEG-domain images stay as they are.

Nodes that run on pixels (role ``pixels``) are recorded too, for the conversion report.
"""
from __future__ import annotations

import logging

import torch.fx as fx
from torch import nn

from jpegfx import ops, registry
from jpegfx.passes.assign_domains import mean_over_plane, scale_op, shape_query
from jpegfx.passes.context import (
    FALLBACK,
    GEOMETRY,
    IMAGE,
    LOWER,
    PIXEL_FALLBACK,
    PIXEL_OP,
    ROLE,
    LayerRecord,
    PassContext,
    PassResult,
    add_module,
    describe,
)
from jpegfx.transforms import BlockGeometry

log = logging.getLogger(__name__)

ON_PIXELS = "(on pixels)"
"""``LayerRecord.jpeg`` of a node computed on pixels (a pixel op or the fallback)."""


def _detail(module: nn.Module) -> tuple[str, int]:
    if isinstance(module, ops.JpegConv2d):
        n_bytes = module.xi.numel() * module.xi.element_size() if module.lowering == "fused" else 0
        return module.lowering, n_bytes
    if isinstance(module, (ops.JpegReLU, ops.JpegMaxPool2d, ops.JpegPiecewiseLinear)):
        return (module.mode if module.mode == "exact" else f"{module.mode}(k={module.frequencies})"), 0
    return "exact", 0


def _geometry(node: fx.Node) -> BlockGeometry:
    return next(a.meta[GEOMETRY] for a in node.all_input_nodes if GEOMETRY in a.meta)


def _lower_module(gm: fx.GraphModule, node: fx.Node, spatial: nn.Module, keep_name: bool,
                  context: PassContext) -> nn.Module | None:
    geometry = _geometry(node)
    new = registry.lookup(spatial).build(spatial, geometry, context.options, node.target)
    if isinstance(new, nn.Identity):
        node.replace_all_uses_with(node.args[0])
        gm.graph.erase_node(node)
        return None
    original = node.target
    if keep_name:
        gm.add_submodule(original, new)
    else:
        node.target = add_module(gm, original, new)
    detail, n_bytes = _detail(new)
    out_geometry = node.meta.get(GEOMETRY, getattr(new, "out_geometry", geometry))
    context.records.append(LayerRecord(node.name, original, type(spatial).__name__, type(new).__name__,
                                       detail, geometry, out_geometry, n_bytes))
    return new


def _replace_with_module(gm: fx.GraphModule, node: fx.Node, base: str, module: nn.Module, args: tuple) -> None:
    node.op, node.target, node.args, node.kwargs = "call_module", add_module(gm, base, module), args, {}


def lower_modules(gm: fx.GraphModule, context: PassContext) -> PassResult:
    spatial_modules = dict(gm.named_modules())  # before any replacement: shared modules are looked up again
    callers: dict[str, list[fx.Node]] = {}
    for node in gm.graph.nodes:
        if node.op == "call_module":
            callers.setdefault(node.target, []).append(node)
    renamed: set[str] = set()
    lowered = removed = 0
    for node in list(gm.graph.nodes):
        role = node.meta.get(ROLE)
        if role == PIXEL_FALLBACK:
            op, reason = node.meta.get(FALLBACK) or (describe(gm, node), f"exact on pixels ({node.meta[PIXEL_OP]})")
            geometry = _geometry(node) if any(GEOMETRY in a.meta for a in node.all_input_nodes) else None
            out = node.meta.get(GEOMETRY, geometry)
            target = node.target if isinstance(node.target, str) else op
            context.records.append(LayerRecord(node.name, target, op, ON_PIXELS, reason,
                                               geometry, out, domains=("pixels", "pixels")))
            continue
        if role != LOWER:
            continue
        if node.op == "call_module":
            target = node.target
            keep = target not in renamed and all(n.meta.get(ROLE) == LOWER for n in callers[target])
            renamed.add(target)
            if _lower_module(gm, node, spatial_modules[target], keep, context) is None:
                removed += 1
                continue
        elif (op := scale_op(node)) is not None:
            first_is_image = isinstance(node.args[0], fx.Node) and node.args[0].meta.get(IMAGE, False)
            image, constant = node.args if first_is_image else node.args[::-1]
            _replace_with_module(gm, node, f"{node.name}_scale", ops.JpegScale(op), (image, constant))
        elif (keepdim := mean_over_plane(node)) is not None:
            x = node.args[0] if node.args else node.kwargs["input"]
            _replace_with_module(gm, node, f"{node.name}_mean", ops.JpegSpatialMean(x.meta[GEOMETRY], keepdim), (x,))
        elif shape_query(node):
            x = node.args[0]
            channels = int(x.meta["tensor_meta"].shape[1])
            dim = node.args[1:] if node.op == "call_method" else ()  # x.size(d) or x.shape
            _replace_with_module(gm, node, f"{node.name}_shape", ops.JpegShape(channels, x.meta[GEOMETRY]), (x, *dim))
        else:
            continue  # the addition of two JPEG-domain images is the same op
        lowered += 1
    gm.recompile()
    log.info("lower_modules: %d node(s) lowered, %d removed", lowered, removed)
    return PassResult(gm, lowered + removed > 0)
