"""List every op that has no JPEG-domain lowering (it runs on pixels, see ``assign_domains``) and,
under ``strict``, refuse the model once, naming every such op with its count.

Only ops that read an image are listed: shape arithmetic and the head after global pooling are
never reported, and an op is never reported merely for being downstream of another.
"""
from __future__ import annotations

import logging

import torch.fx as fx

from jpegfx import registry
from jpegfx.errors import UnsupportedModelError
from jpegfx.passes.context import FALLBACK, PassContext, PassResult

log = logging.getLogger(__name__)


def hint() -> str:
    return ("JPEG-domain lowerings exist for: " + ", ".join(lw.names() for lw in registry.LOWERINGS.values())
            + ", " + ", ".join(registry.ELEMENTWISE) + "; convert without strict=True to run the others on pixels")


def fallback_groups(gm: fx.GraphModule) -> dict[tuple[str, str], list[str]]:
    """(op, reason) → the names of the nodes that run on pixels, in graph order."""
    groups: dict[tuple[str, str], list[str]] = {}
    for node in gm.graph.nodes:
        if FALLBACK in node.meta:
            groups.setdefault(node.meta[FALLBACK], []).append(node.name)
    return groups


def format_groups(groups: dict[tuple[str, str], list[str]]) -> list[str]:
    problems = []
    for (op, reason), names in groups.items():
        shown = ", ".join(names[:4]) + (f", … (+{len(names) - 4})" if len(names) > 4 else "")
        problems.append(f"{op} ×{len(names)} [{shown}]: {reason}")
    return problems


def check_support(gm: fx.GraphModule, context: PassContext) -> PassResult:
    groups = fallback_groups(gm)
    if groups and context.options.strict:
        raise UnsupportedModelError(format_groups(groups), "check_support", hint())
    for line in format_groups(groups):
        log.info("check_support: on pixels (exact): %s", line)
    if not groups:
        log.info("check_support: every image op has a JPEG-domain lowering")
    return PassResult(gm, False)
