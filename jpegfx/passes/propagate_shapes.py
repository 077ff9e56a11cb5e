"""Record every node's spatial shape (fx ``ShapeProp`` on an example input) and, for image-like
values, their logical size, in ``node.meta``.

A value is *image-like* (``node.meta[IMAGE]``) when it is computed from the model's input and is a
4-D tensor ``(N, C, h, w)`` — with ``h · w > 1``, or 1×1 made from an image by an op that does not
pool over the plane (:func:`reduces_plane`): such a value can live in the JPEG domain as
``(N, C·64, ⌈h/8⌉, ⌈w/8⌉)``, and its :class:`~jpegfx.transforms.BlockGeometry` is recorded
(``node.meta[GEOMETRY]``). Global-pooled vectors ``(N, C, 1, 1)``, flattened features and shape
arithmetic are not image-like: they stay as they are.
"""
from __future__ import annotations

import logging

import torch
import torch.fx as fx
from torch import nn
from torch.fx.node import map_aggregate
from torch.fx.passes.shape_prop import _extract_tensor_metadata

from jpegfx.errors import ConversionError
from jpegfx.passes.context import GEOMETRY, IMAGE, PassContext, PassResult
from jpegfx.transforms import BlockGeometry

log = logging.getLogger(__name__)


class _ShapeProp(fx.Interpreter):
    """fx's ShapeProp (``tensor_meta`` per node), naming the node whose op fails in one line instead
    of printing a traceback and the node's meta."""

    def __init__(self, gm: fx.GraphModule) -> None:
        super().__init__(gm)
        self.extra_traceback = False

    def run_node(self, n: fx.Node):
        try:
            result = super().run_node(n)
        except Exception as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise ConversionError(f"at node {n.name} ({n.op} {n.target}): {first}") from e
        found = []

        def extract(v):
            if isinstance(v, torch.Tensor):
                found.append(v)
                return _extract_tensor_metadata(v)
            return v

        meta = map_aggregate(result, extract)
        if found:
            n.meta["tensor_meta"] = meta
        n.meta["type"] = type(result)
        return result


PLANE_REDUCTIONS = {"mean", "sum", "amax", "amin", "max", "min", "std", "var", "logsumexp"}
PLANE_POOLS = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


def reduces_plane(gm: fx.GraphModule, node: fx.Node) -> bool:
    """Whether ``node`` pools an image over its plane (global pooling, ``x.mean((2, 3))``, …): its
    1×1 result is a per-channel vector, not a 1×1 image."""
    if node.op == "call_module":
        return isinstance(gm.get_submodule(node.target), PLANE_POOLS)
    name = node.target if node.op == "call_method" else getattr(node.target, "__name__", "")
    if node.op == "call_function" and name in ("adaptive_avg_pool2d", "adaptive_max_pool2d"):
        return True
    if name not in PLANE_REDUCTIONS or node.op not in ("call_method", "call_function"):
        return False
    dims = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else None)
    return isinstance(dims, (tuple, list)) and {d % 4 for d in dims if isinstance(d, int)} >= {2, 3}


def image_geometry(gm: fx.GraphModule, node: fx.Node, from_image: bool) -> BlockGeometry | None:
    """The logical size of an image-like value (see the module docstring), else ``None``. A 1×1 value
    is an image when an op that does not pool over the plane makes it from an image (a 3×3 stride-2
    conv of a 2×2 image); global pooling makes a per-channel vector."""
    meta = node.meta.get("tensor_meta")
    shape = getattr(meta, "shape", None)
    if shape is None or len(shape) != 4 or not meta.dtype.is_floating_point:
        return None
    if tuple(shape[-2:]) == (1, 1) and (not from_image or reduces_plane(gm, node)):
        return None
    return BlockGeometry(int(shape[-2]), int(shape[-1]))


def propagate_shapes(gm: fx.GraphModule, context: PassContext) -> PassResult:
    modes = {m: m.training for m in gm.modules()}
    gm.eval()  # the example run must not touch BatchNorm running statistics
    shape = "x".join(str(s) for s in (context.in_channels, *context.input_size))
    try:
        with torch.no_grad():
            _ShapeProp(gm).run(context.example_input())
    except ConversionError as e:
        raise ConversionError(f"the model does not run on a {shape} input: {e}") from e.__cause__
    finally:
        for module, training in modes.items():
            module.training = training
    derived: set[fx.Node] = set()
    images = 0
    for node in gm.graph.nodes:
        if node.op == "placeholder" and not derived or any(a in derived for a in node.all_input_nodes):
            derived.add(node)
        from_image = any(a.meta.get(IMAGE, False) for a in node.all_input_nodes)
        geometry = image_geometry(gm, node, from_image) if node in derived else None
        node.meta[IMAGE] = geometry is not None
        if geometry is not None:
            node.meta[GEOMETRY] = geometry
            images += 1
    log.info("propagate_shapes: %d image-like value(s) among %d nodes", images, len(gm.graph.nodes))
    return PassResult(gm, False)
