"""Drop dead nodes and the submodules nothing calls any more, then recompile and lint."""
from __future__ import annotations

import logging

import torch.fx as fx

from jpegfx.passes.context import PassContext, PassResult

log = logging.getLogger(__name__)


def eliminate_dead_code(gm: fx.GraphModule, context: PassContext) -> PassResult:
    before = len(gm.graph.nodes)
    gm.graph.eliminate_dead_code()
    gm.delete_all_unused_submodules()
    used = {n.target for n in gm.graph.nodes if n.op == "get_attr"}
    for name in [b for b in gm._buffers if b.startswith("_folded_") and b not in used]:
        del gm._buffers[name]  # values fold_constants computed for ops that were lowered since
    gm.graph.lint()
    gm.recompile()
    log.info("eliminate_dead_code: %d node(s) removed", before - len(gm.graph.nodes))
    return PassResult(gm, before != len(gm.graph.nodes))
