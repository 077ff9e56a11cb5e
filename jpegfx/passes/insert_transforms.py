"""Insert the exact block transforms where a value changes domain.

* Before an op that runs on pixels (role ``pixels``): each JPEG-domain operand gets a
  :class:`~jpegfx.ops.JpegToSpatial` (inverse block DCT, cropped to the logical size).
* Before a lowered op: each image operand that is spatial (made by a pixel fallback) gets a
  :class:`~jpegfx.ops.JpegFromPixels` (forward block DCT, zero padding).

One transform per value, shared by all its consumers of the other domain. ``elide_transforms``
then cancels those that meet a pixel-computing op (``Dᵀ D = I``).
"""
from __future__ import annotations

import logging

import torch.fx as fx

from jpegfx import ops
from jpegfx.passes.context import (
    DOMAIN,
    GEOMETRY,
    IMAGE,
    LOWER,
    PIXEL_FALLBACK,
    ROLE,
    PassContext,
    PassResult,
    add_module,
)

log = logging.getLogger(__name__)


def _transform(gm: fx.GraphModule, value: fx.Node, to_pixels: bool, cache: dict) -> fx.Node:
    key = (value, to_pixels)
    if key not in cache:
        geometry = value.meta[GEOMETRY]
        module = ops.JpegToSpatial(geometry) if to_pixels else ops.JpegFromPixels(geometry)
        name = add_module(gm, f"{value.name}_{'pixels' if to_pixels else 'dct'}", module)
        with gm.graph.inserting_after(value):
            node = gm.graph.call_module(name, (value,))
        node.meta.update({k: value.meta[k] for k in ("tensor_meta", IMAGE, GEOMETRY) if k in value.meta})
        node.meta[DOMAIN] = "spatial" if to_pixels else "jpeg"
        node.meta[ROLE] = LOWER
        cache[key] = node
    return cache[key]


def insert_transforms(gm: fx.GraphModule, context: PassContext) -> PassResult:
    cache: dict = {}
    for node in list(gm.graph.nodes):
        role = node.meta.get(ROLE)
        for value in node.all_input_nodes:
            if role == PIXEL_FALLBACK and value.meta.get(DOMAIN) == "jpeg":
                node.replace_input_with(value, _transform(gm, value, True, cache))
            elif role == LOWER and value.meta.get(IMAGE) and value.meta.get(DOMAIN) == "spatial":
                node.replace_input_with(value, _transform(gm, value, False, cache))
    gm.recompile()
    log.info("insert_transforms: %d block transform(s) inserted", len(cache))
    return PassResult(gm, bool(cache))
