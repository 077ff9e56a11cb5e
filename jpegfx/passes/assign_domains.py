"""Decide how every node runs (``node.meta[ROLE]``) and where its value lives (``node.meta[DOMAIN]``).

* ``input``: the image placeholder, in the JPEG domain.
* ``lower``: an op with a JPEG-domain lowering whose image operands can be JPEG-domain values —
  registered modules (:data:`jpegfx.registry.LOWERINGS`, exact types or subclasses that keep their
  behaviour), the addition of two images of one shape, the scaling of an image by a number or a
  per-channel gate (``x * g``, ``x / g``), the mean over the image plane, and shape queries. Its value is JPEG-domain, except for
  lowerings that end the domain (global pooling).
* ``pixels``: an op computed exactly on pixels — one of the supported pixel ops
  (:data:`jpegfx.registry.PIXEL_OPS`: activations, products of images, …; ``node.meta[PIXEL_OP]``) or,
  as a fallback, any other op with an image-like operand (:mod:`jpegfx.passes.propagate_shapes`). It
  runs unchanged on pixels: its JPEG-domain operands get an exact inverse block DCT first
  (:mod:`jpegfx.passes.insert_transforms`), and its value is spatial. A later op that has a lowering
  takes that value back into the JPEG domain with an exact forward DCT. For a fallback the reason is
  kept in ``node.meta[FALLBACK]``; ``convert(strict=True)`` refuses those.
* ``spatial``: everything that never reads an image — shape arithmetic, the head after global pooling —
  and reads of metadata that are the same in both domains (``x.size(0)``, ``x.dim()``, ``x.dtype``).

With ``domains="pixels"`` every op that would be lowered runs as itself on pixels instead (role
``pixels``, chosen rather than a fallback), except those whose lowering approximates on coefficients
(ASM/APX activations, ASM max pooling): exact modes then cost one inverse DCT of the input plus the
spatial network, and the values the residual stream, additions and pooling see are pixels too.

Why "pixels" is the cheapest assignment, not only a rule: every lowering here costs at least its op
on pixels. A factored convolution is an inverse DCT, the spatial convolution and a DCT; a pointwise
one is the same GEMM on coefficients; the fused map multiplies the MACs by up to 64
(:func:`jpegfx.ops.conv.conv_macs`); BN, additions and scalings are the same elementwise work; exact
ReLU and pooling compute on pixels inside their lowerings; ASM on pixels needs one 64×64 projection
per block where on coefficients it needs two inverse maps and a DCT. The one op cheaper on
coefficients, the mean over the plane (a DC read, 1/64 of the values), takes a value that a
pixel-computing op produced, and the DCT that would hand it over costs 64 MACs per pixel against
the one the read saves. Leaving pixels therefore only adds work, so with the input stage folded
(one inverse DCT, :meth:`jpegfx.convert.JpegModel.pixel_network`) the all-pixels assignment — with
coefficients only where an approximation needs them — is the minimum of any cost model that counts
operations or memory traffic: the answer a graph-wide min-cut over the two domains would return.
"""
from __future__ import annotations

import logging
import operator

import torch
import torch.fx as fx

from jpegfx import registry
from jpegfx.passes.context import (
    DOMAIN,
    FALLBACK,
    GEOMETRY,
    IMAGE,
    INPUT,
    LOWER,
    PIXEL_FALLBACK,
    PIXEL_OP,
    ROLE,
    SPATIAL,
    PassContext,
    PassResult,
    describe,
)

log = logging.getLogger(__name__)

MUL_FUNCTIONS = {operator.mul, torch.mul}
DIV_FUNCTIONS = {operator.truediv, torch.div, torch.true_divide}
SAME_METADATA = {"dim", "ndim", "dtype", "device", "is_cuda", "ndimension"}


def _image(a) -> bool:
    return isinstance(a, fx.Node) and a.meta.get(IMAGE, False)


def _channel_constant(a) -> bool:
    """A number, or a non-image tensor constant over the image plane (shape ``(…, 1, 1)``, ≤ 4 dims)."""
    if isinstance(a, (int, float)) and not isinstance(a, bool):
        return True
    meta = a.meta.get("tensor_meta") if isinstance(a, fx.Node) and not _image(a) else None
    shape = getattr(meta, "shape", None)
    return shape is not None and meta.dtype.is_floating_point and (
        len(shape) == 0 or len(shape) <= 4 and tuple(shape[-2:]) == (1, 1))


def scale_op(node: fx.Node) -> str | None:
    """``"mul"`` / ``"div"`` when ``node`` scales an image by a channel constant, else ``None``."""
    if node.kwargs.keys() - {"rounding_mode"} or node.kwargs.get("rounding_mode") is not None or len(node.args) != 2:
        return None
    a, b = node.args
    if node.op == "call_function" and node.target in MUL_FUNCTIONS or node.op == "call_method" and node.target == "mul":
        if _image(a) and _channel_constant(b) or _image(b) and _channel_constant(a):
            return "mul"
    if node.op == "call_function" and node.target in DIV_FUNCTIONS or node.op == "call_method" and node.target == "div":
        if _image(a) and _channel_constant(b):
            return "div"
    return None


def mean_over_plane(node: fx.Node) -> bool | None:
    """``keepdim`` when ``node`` is ``x.mean((2, 3), keepdim)`` / ``torch.mean`` of an image over its
    plane (dims given in any order or sign), else ``None``."""
    if not (node.op == "call_method" and node.target == "mean" or node.op == "call_function" and node.target is torch.mean):
        return None
    args = dict(zip(("input", "dim", "keepdim"), node.args)) | node.kwargs
    dims = args.get("dim")
    if not _image(args.get("input")) or args.keys() - {"input", "dim", "keepdim"} or not isinstance(dims, (tuple, list)):
        return None
    if sorted(d % 4 for d in dims) != [2, 3] or not isinstance(args.get("keepdim", False), bool):
        return None
    return args.get("keepdim", False)


def shape_query(node: fx.Node) -> bool:
    """``x.shape``, ``x.size()`` or ``x.size(d)`` with ``d ≠ 0`` of an image (answered by JpegShape)."""
    if node.op == "call_function" and node.target is getattr and node.args[1:] == ("shape",):
        return True
    return (node.op == "call_method" and node.target == "size" and not node.kwargs
            and (len(node.args) == 1 or len(node.args) == 2 and node.args[1] not in (0, -4)))


def same_metadata(node: fx.Node) -> bool:
    """Reads that give the same answer for the JPEG-domain value (``x.size(0)``, ``x.dim()``, dtype…)."""
    if node.op == "call_function" and node.target is getattr:
        return node.args[1] in SAME_METADATA
    if node.op == "call_method" and node.target == "size":
        return node.args[1:] in ((0,), (-4,))
    return node.op == "call_method" and node.target in SAME_METADATA


def _classify(gm: fx.GraphModule, node: fx.Node, context: PassContext) -> tuple[str, str, str | None]:
    """(role, domain of the value, reason for a pixel fallback)."""
    if node.op == "placeholder":
        return (INPUT, "jpeg", None) if node.meta.get(IMAGE) else (SPATIAL, "spatial", None)
    inputs = node.all_input_nodes
    if node.op == "output" or not any(_image(a) or a.meta.get(DOMAIN) == "jpeg" for a in inputs):
        return SPATIAL, "spatial", None
    module = gm.get_submodule(node.target) if node.op == "call_module" else None
    if (module is None or registry.lookup(module) is None) and (op := registry.pixel_op(node, module)) is not None:
        node.meta[PIXEL_OP] = op.name
        return PIXEL_FALLBACK, "spatial", None
    if node.op == "call_module":
        lowering = registry.lookup(module)
        if lowering is None:
            base = next((c.__name__ for c in type(module).__mro__[1:] if c in registry.LOWERINGS), None)
            why = (f"a subclass of {base} that changes what {base} computes" if base else "no JPEG-domain lowering")
            return PIXEL_FALLBACK, "spatial", why
        if len(inputs) != 1 or node.kwargs:
            return PIXEL_FALLBACK, "spatial", "called with more than one operand"
        reason = lowering.check(module, inputs[0].meta[GEOMETRY], context.options)
        if reason is not None:
            return PIXEL_FALLBACK, "spatial", reason
        return LOWER, ("spatial" if lowering.ends_jpeg_domain else "jpeg"), None
    if node.op == "call_function" and node.target is operator.add:
        a, b = node.args if len(node.args) == 2 else (None, None)
        if _image(a) and _image(b) and a.meta["tensor_meta"].shape == b.meta["tensor_meta"].shape and not node.kwargs:
            return LOWER, "jpeg", None
        return PIXEL_FALLBACK, "spatial", "adds a value that is not an image of the same shape"
    if scale_op(node) is not None:
        return LOWER, "jpeg", None
    if mean_over_plane(node) is not None:
        return LOWER, "spatial", None
    if same_metadata(node):
        return SPATIAL, "spatial", None
    if shape_query(node):
        return (LOWER if node.args[0].meta.get(DOMAIN) == "jpeg" else SPATIAL), "spatial", None
    return PIXEL_FALLBACK, "spatial", "no JPEG-domain lowering"


def _needs_coefficients(gm: fx.GraphModule, node: fx.Node, context: PassContext) -> bool:
    return node.op == "call_module" and registry.needs_coefficients(gm.get_submodule(node.target), context.options)


def assign_domains(gm: fx.GraphModule, context: PassContext) -> PassResult:
    counts = dict.fromkeys((INPUT, LOWER, PIXEL_FALLBACK, SPATIAL), 0)
    pixels = context.options.domains == "pixels"
    for node in gm.graph.nodes:
        role, domain, reason = _classify(gm, node, context)
        if pixels and role == LOWER and not _needs_coefficients(gm, node, context):
            # Chosen, not a fallback: the spatial op itself on pixels (exact; one inverse DCT of the input,
            # a forward DCT only around ops that approximate on coefficients).
            role, domain = (SPATIAL, "spatial") if shape_query(node) else (PIXEL_FALLBACK, "spatial")
            if role == PIXEL_FALLBACK:
                node.meta[PIXEL_OP] = "domains='pixels'"
        node.meta[ROLE], node.meta[DOMAIN] = role, domain
        if reason is not None:
            node.meta[FALLBACK] = (describe(gm, node), reason)
        counts[role] += 1
    log.info("assign_domains: %d lowered, %d on pixels (fallback), %d spatial", counts[LOWER],
             counts[PIXEL_FALLBACK], counts[SPATIAL])
    return PassResult(gm, False)
