"""Decode JPEG-domain graph outputs to pixels (``JpegToSpatial``) unless they are to be kept."""
from __future__ import annotations

import logging

import torch.fx as fx

from jpegfx import ops
from jpegfx.passes.context import DOMAIN, GEOMETRY, PassContext

log = logging.getLogger(__name__)


def decode_outputs(gm: fx.GraphModule, context: PassContext) -> fx.GraphModule:
    if context.keep_jpeg_output:
        return gm
    output = next(n for n in gm.graph.nodes if n.op == "output")
    decoded = 0
    for value in list(output.all_input_nodes):
        if value.meta.get(DOMAIN) != "jpeg":
            continue
        name = f"decode_{value.name}"
        gm.add_submodule(name, ops.JpegToSpatial(value.meta[GEOMETRY]))
        with gm.graph.inserting_after(value):
            node = gm.graph.call_module(name, (value,))
        node.meta[DOMAIN] = "spatial"
        output.replace_input_with(value, node)
        decoded += 1
    gm.recompile()
    log.info("decode_outputs: %d output(s) decoded to pixels", decoded)
    return gm
