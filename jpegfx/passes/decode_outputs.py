"""Decode JPEG-domain graph outputs to pixels (``JpegToSpatial``) unless they are to be kept."""
from __future__ import annotations

import logging

import torch.fx as fx

from jpegfx import ops
from jpegfx.passes.context import DOMAIN, GEOMETRY, LOWER, ROLE, PassContext, PassResult, add_module

log = logging.getLogger(__name__)


def decode_outputs(gm: fx.GraphModule, context: PassContext) -> PassResult:
    if context.keep_jpeg_output:
        return PassResult(gm, False)
    output = next(n for n in gm.graph.nodes if n.op == "output")
    decoded = 0
    for value in list(output.all_input_nodes):
        if value.meta.get(DOMAIN) != "jpeg":
            continue
        name = add_module(gm, f"decode_{value.name}", ops.JpegToSpatial(value.meta[GEOMETRY]))
        with gm.graph.inserting_after(value):
            node = gm.graph.call_module(name, (value,))
        node.meta.update({k: value.meta[k] for k in ("tensor_meta", GEOMETRY) if k in value.meta})
        node.meta[DOMAIN], node.meta[ROLE] = "spatial", LOWER
        output.replace_input_with(value, node)
        decoded += 1
    gm.recompile()
    log.info("decode_outputs: %d output(s) decoded to pixels", decoded)
    return PassResult(gm, decoded > 0)
