"""Drop dead nodes and the submodules nothing calls any more, then recompile and lint."""
from __future__ import annotations

import logging

import torch.fx as fx

from jpegfx.passes.context import PassContext

log = logging.getLogger(__name__)


def eliminate_dead_code(gm: fx.GraphModule, context: PassContext) -> fx.GraphModule:
    before = len(gm.graph.nodes)
    gm.graph.eliminate_dead_code()
    gm.delete_all_unused_submodules()
    gm.graph.lint()
    gm.recompile()
    log.info("eliminate_dead_code: %d node(s) removed", before - len(gm.graph.nodes))
    return gm
