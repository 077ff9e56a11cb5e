"""Replace every JPEG-domain module node by its lowering from the registry.

A module called from several nodes (torchvision reuses one ``relu`` per block) gets one lowered
module per call, since each call may see a different logical size: the first keeps the original
qualified name, later ones get ``_1``, ``_2``, … appended. Identity-like lowerings are removed.
"""
from __future__ import annotations

import logging

import torch.fx as fx
from torch import nn

from jpegfx import ops, registry
from jpegfx.passes.context import DOMAIN, GEOMETRY, LayerRecord, PassContext

log = logging.getLogger(__name__)


def _detail(module: nn.Module) -> tuple[str, int]:
    if isinstance(module, ops.JpegConv2d):
        n_bytes = module.xi.numel() * module.xi.element_size() if module.lowering == "fused" else 0
        return module.lowering, n_bytes
    if isinstance(module, ops.JpegReLU):
        return (module.mode if module.mode == "exact" else f"{module.mode}(k={module.frequencies})"), 0
    if isinstance(module, ops.JpegMaxPool2d):
        return (module.mode if module.mode == "exact" else f"{module.mode}(k={module.frequencies})"), 0
    return "exact", 0


def lower_modules(gm: fx.GraphModule, context: PassContext) -> fx.GraphModule:
    uses: dict[str, int] = {}
    lowered = removed = 0
    spatial_modules = dict(gm.named_modules())  # before any replacement: shared modules are looked up again
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or node.all_input_nodes[0].meta.get(DOMAIN) != "jpeg":
            continue
        spatial = spatial_modules[node.target]
        lowering = registry.lookup(spatial)
        geometry = node.all_input_nodes[0].meta[GEOMETRY]
        new = lowering.build(spatial, geometry, context.options, node.target)
        if isinstance(new, nn.Identity):
            node.replace_all_uses_with(node.args[0])
            gm.graph.erase_node(node)
            removed += 1
            continue
        count = uses.get(node.target, 0)
        uses[node.target] = count + 1
        target = node.target if count == 0 else f"{node.target}_{count}"
        gm.add_submodule(target, new)
        original = node.target
        node.target = target
        detail, n_bytes = _detail(new)
        out_geometry = node.meta.get(GEOMETRY, getattr(new, "out_geometry", geometry))
        context.records.append(LayerRecord(node.name, original, type(spatial).__name__, type(new).__name__,
                                           detail, geometry, out_geometry, n_bytes))
        lowered += 1
    gm.recompile()
    log.info("lower_modules: %d module node(s) lowered, %d removed", lowered, removed)
    return gm
