"""Cancel the block DCT of one op against the block IDCT of the next (``Dᵀ D = I``).

Exact ReLU, the factored convolution and pooling compute on pixels: each begins with a block IDCT and
ends with a block DCT. Between two such ops the DCT/IDCT pair is an exact identity, so the value can
be handed over in pixels. The pass carries a value in pixels along an edge producer → consumer when

* both are JPEG-domain modules, the producer can write pixels and the consumer can read them
  (:meth:`~jpegfx.ops.base.JpegModule.supported_domains`), and the value is the consumer's only input;
* every module still runs with a supported ``(in, out)`` pair. BN and pointwise convolutions commute
  with the DCT and run in either domain, but with the same domain in and out, so ``conv → BN → +``
  keeps its conv → BN value in the JPEG domain. Edges are dropped until this holds.

A value carried in pixels to some consumers and needed in the JPEG domain by others (the residual
stream of a ResNet feeds the next block's conv and the addition) gets one :class:`JpegFromPixels`
node: the DCT its producer did before, done once, while the pixel consumers skip their IDCT.
Additions, global pooling and the values between blocks stay in the JPEG domain.

The transforms that enter and leave the JPEG domain (:class:`JpegToSpatial` before ops that run on
pixels and before decoded outputs, :class:`JpegFromPixels` after them) take part like any other
module: handed pixels, or handing pixels on, they are identities, and the pass removes them.

In a ResNet basic block this leaves ``ReLU(+)``'s IDCT and DCT and the second conv's DCT: three
block transforms instead of eight. Exact modes stay exact; values handed over in pixels are marked
``spatial`` in ``node.meta``, which :func:`jpegfx.verify` compares with the spatial model directly.
``convert(..., elide_transforms=False)`` keeps every value in the JPEG domain, as in the paper.
"""
from __future__ import annotations

import logging
from dataclasses import replace

import torch.fx as fx

from jpegfx.ops import JpegFromPixels, JpegToSpatial
from jpegfx.ops.base import JPEG, PIXELS, JpegModule
from jpegfx.passes.context import DOMAIN, GEOMETRY, IMAGE, ROLE, LOWER, PassContext, PassResult, add_module

log = logging.getLogger(__name__)


def _jpeg_module(gm: fx.GraphModule, node: fx.Node) -> JpegModule | None:
    if node.op != "call_module":
        return None
    module = gm.get_submodule(node.target)
    return module if isinstance(module, JpegModule) else None


def _can(module: JpegModule, side: int) -> bool:
    """Whether ``module`` can skip its inverse DCT (side 0: read pixels where its input is JPEG) or its
    forward DCT (side 1: write pixels where its output is JPEG)."""
    return (module.natural_domains()[side] == JPEG
            and any(pair[side] == PIXELS for pair in module.supported_domains()))


def elide_transforms(gm: fx.GraphModule, context: PassContext) -> PassResult:
    if not context.options.elide_transforms:
        return PassResult(gm, False)
    modules = {node: m for node in gm.graph.nodes if (m := _jpeg_module(gm, node)) is not None}
    edges = {(producer, consumer) for consumer, module in modules.items()
             if _can(module, 0) and len(consumer.all_input_nodes) == 1
             and (producer := consumer.all_input_nodes[0]) in modules and _can(modules[producer], 1)}

    def domains(node: fx.Node) -> tuple[str, str]:
        into = any(consumer is node for _, consumer in edges)
        out = any(producer is node for producer, _ in edges)
        natural = modules[node].natural_domains()
        return (PIXELS if into else natural[0]), (PIXELS if out else natural[1])

    changed = True
    while changed:  # drop the pixel edges of modules that cannot run the resulting (in, out) pair
        changed = False
        for node, module in modules.items():
            if domains(node) not in module.supported_domains():
                dropped = {e for e in edges if node in e}
                edges -= dropped
                changed = changed or bool(dropped)

    entered = 0
    for node, module in modules.items():
        module.set_domains(*domains(node))
        if module.out_domain != PIXELS or module.natural_domains()[1] == PIXELS:
            continue
        node.meta[DOMAIN] = "spatial"
        jpeg_users = [user for user in node.users if (node, user) not in edges]
        if jpeg_users:
            name = add_module(gm, f"{node.name}_dct", JpegFromPixels(module.out_geometry))
            with gm.graph.inserting_after(node):
                dct = gm.graph.call_module(name, (node,))
            dct.meta.update({DOMAIN: "jpeg", GEOMETRY: module.out_geometry, IMAGE: True, ROLE: LOWER})
            if "tensor_meta" in node.meta:
                dct.meta["tensor_meta"] = node.meta["tensor_meta"]
            for user in jpeg_users:
                user.replace_input_with(node, dct)
            entered += 1
    removed = 0
    for node, module in modules.items():  # transforms between two pixel values are identities
        if isinstance(module, (JpegToSpatial, JpegFromPixels)) and domains(node) == (PIXELS, PIXELS):
            node.replace_all_uses_with(node.args[0])
            gm.graph.erase_node(node)
            removed += 1
    by_name = {node.name: domains(node) for node in modules}
    context.records[:] = [replace(r, domains=by_name.get(r.node, r.domains)) for r in context.records]
    gm.recompile()
    log.info("elide_transforms: %d value(s) handed over in pixels, %d re-entering the JPEG domain once, "
             "%d domain transform(s) cancelled", len({p for p, _ in edges}), entered, removed)
    return PassResult(gm, bool(edges))
