"""Record every node's shape, its domain (JPEG or spatial) and, for JPEG-domain values, the
logical size, in ``node.meta``.

Shapes come from running the spatial graph once on an example input (fx ``ShapeProp``). Domains
propagate forward from the image input: a value is JPEG-domain while it is produced from JPEG-domain
values by lowerable ops; a lowering that ends the domain (global pooling) produces a spatial value,
and so do ops whose inputs are all spatial. Ops with a JPEG-domain input and no lowering are marked
``unsupported`` in ``node.meta`` for :func:`check_support`.
"""
from __future__ import annotations

import logging
import operator

import torch
import torch.fx as fx
from torch.fx.passes.shape_prop import ShapeProp

from jpegfx import registry
from jpegfx.errors import ConversionError
from jpegfx.passes.context import DOMAIN, GEOMETRY, PassContext
from jpegfx.transforms import BlockGeometry

log = logging.getLogger(__name__)
UNSUPPORTED = "jpegfx_unsupported"  # node.meta key: the reason a JPEG-domain node cannot be lowered


def _inputs(node: fx.Node) -> list[fx.Node]:
    return [a for a in node.all_input_nodes]


def _describe(gm: fx.GraphModule, node: fx.Node) -> str:
    if node.op == "call_module":
        return f"{type(gm.get_submodule(node.target)).__name__} (module)"
    if node.op == "call_function":
        return f"{getattr(node.target, '__module__', '') or ''}.{getattr(node.target, '__name__', node.target)}".lstrip(".")
    return f"Tensor.{node.target} (method)"


def _classify(gm: fx.GraphModule, node: fx.Node, context: PassContext) -> tuple[str, str | None]:
    """(domain of the node's value, reason it is unsupported or None)."""
    jpeg_in = [a for a in _inputs(node) if a.meta.get(DOMAIN) == "jpeg"]
    if node.op == "placeholder":
        return "jpeg", None
    if node.op == "output" or not jpeg_in:
        return "spatial", None
    if node.op == "call_module":
        module = gm.get_submodule(node.target)
        lowering = registry.lookup(module)
        if lowering is None:
            return "jpeg", "no JPEG-domain lowering"
        reason = lowering.check(module, context.options)
        if reason is not None:
            return "jpeg", reason
        return ("spatial" if lowering.ends_jpeg_domain else "jpeg"), None
    if node.op == "call_function" and node.target is operator.add:
        tensors = [a for a in node.args if isinstance(a, fx.Node)]
        if len(tensors) == 2 and all(a.meta.get(DOMAIN) == "jpeg" for a in tensors):
            return "jpeg", None
        return "jpeg", "adding a non-image operand (a scalar or a spatial tensor) to a JPEG-domain value"
    if node.op == "call_method" and node.target == "size" and node.args[1:2] == (0,) and not node.kwargs:
        return "spatial", None
    return "jpeg", "no JPEG-domain lowering"


def propagate_shapes(gm: fx.GraphModule, context: PassContext) -> fx.GraphModule:
    modes = {m: m.training for m in gm.modules()}
    gm.eval()  # the example run must not touch BatchNorm running statistics
    try:
        with torch.no_grad():
            ShapeProp(gm).propagate(context.example_input())
    except Exception as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ConversionError(
            f"the model does not run on a {context.in_channels}x{context.input_size[0]}x{context.input_size[1]} "
            f"input: {first}", "propagate_shapes") from e
    finally:
        for module, training in modes.items():
            module.training = training
    counts = {"jpeg": 0, "spatial": 0}
    for node in gm.graph.nodes:
        domain, reason = _classify(gm, node, context)
        node.meta[DOMAIN] = domain
        if reason is not None:
            node.meta[UNSUPPORTED] = (_describe(gm, node), reason)
        meta = node.meta.get("tensor_meta")
        if domain == "jpeg" and meta is not None and hasattr(meta, "shape"):
            if len(meta.shape) != 4:
                node.meta[UNSUPPORTED] = (_describe(gm, node), f"produces a {len(meta.shape)}-D value in the JPEG domain")
            else:
                node.meta[GEOMETRY] = BlockGeometry(int(meta.shape[-2]), int(meta.shape[-1]))
        counts[domain] += 1
    log.info("propagate_shapes: %d JPEG-domain node(s), %d spatial", counts["jpeg"], counts["spatial"])
    return gm
