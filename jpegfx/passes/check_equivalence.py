"""Self-check: the converted graph against the spatial graph it came from, on one random input.

Two checks, so that a conversion that does not compute the model raises instead of returning:

* **shapes** — every node's value has the shape its spatial twin (same node name) had when
  ``propagate_shapes`` ran the spatial graph: ``(N, C, h, w)`` spatial values equal, JPEG-domain values
  ``(N, C·64, ⌈h/8⌉, ⌈w/8⌉)`` with the same logical size ``(h, w)`` recorded for them;
* **numbers** (exact modes only: exact ReLU and max-pool) — the outputs agree to float64 rounding
  (:data:`TOLERANCE`, widened for ill-conditioned models by :func:`_tolerance`); if not, both graphs are run again node by node and the error names the first
  node whose value (decoded to pixels) diverges.

Both graphs run in eval mode and float64 (the same weights in both; the converted graph's maps
re-rounded from their float64 masters, on a copy unless the model is float64) on a seeded normal
input of batch 1; approximate modes check shapes only, in the model's dtype. Float64 makes the check
a test of the conversion alone: a deep network with random weights can amplify float32 rounding past
any fixed float32 tolerance in the spatial model itself (measured: 2e-5 to 0.2 between the float32
and float64 runs of timm's deepest ResNets), while a wrong conversion is off by far more than float64
rounding. ``convert(self_check=False)`` skips the pass. :func:`first_divergence` is shared with
:func:`jpegfx.verify`.
"""
from __future__ import annotations

import copy
import logging
from dataclasses import dataclass

import torch
import torch.fx as fx

from jpegfx.errors import ConversionError
from jpegfx.passes.context import DOMAIN, GEOMETRY, PassContext, PassResult
from jpegfx.transforms import NCOEF, from_dct, to_dct

log = logging.getLogger(__name__)

TOLERANCE = {torch.float32: 1e-4, torch.float64: 1e-10}
"""Relative output error (max |Δ| / max |reference|) accepted as float rounding, by dtype."""


@dataclass(frozen=True)
class Divergence:
    node: str
    target: str
    rel_error: float


def rel_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30)) if b.numel() else 0.0


def expected_shape(node: fx.Node, batch: int) -> tuple[int, ...] | None:
    """The shape ``node``'s value must have in the converted graph, from its spatial ``tensor_meta``."""
    meta = node.meta.get("tensor_meta")
    shape = getattr(meta, "shape", None)
    if shape is None:
        return None
    shape = (batch, *shape[1:]) if len(shape) == 4 else tuple(shape)
    if node.meta.get(DOMAIN) == "jpeg" and GEOMETRY in node.meta:
        g = node.meta[GEOMETRY]
        return (batch, shape[1] * NCOEF, g.hb, g.wb) if (shape[2], shape[3]) == (g.h, g.w) else None
    return shape


class _Recorder(fx.Interpreter):
    """Runs a graph node by node, keeping each tensor value when ``keep`` (JPEG-domain values decoded
    to pixels when ``decode``) and checking each value's shape against the spatial twin when ``shapes``."""

    def __init__(self, gm: fx.GraphModule, keep: bool, shapes: bool = False, decode: bool = True) -> None:
        super().__init__(gm)
        self.extra_traceback = False  # errors stay one line
        self.keep, self.shapes, self.decode = keep, shapes, decode
        self.values: dict[str, torch.Tensor] = {}

    def run_node(self, n: fx.Node):
        out = super().run_node(n)
        if not isinstance(out, torch.Tensor):
            return out
        if self.shapes and n.op not in ("placeholder", "output"):
            want = expected_shape(n, out.shape[0]) if out.dim() == 4 else None
            if n.meta.get(DOMAIN) == "jpeg" and GEOMETRY in n.meta and want is None:
                raise ConversionError(f"node {n.name}: JPEG-domain value of logical size "
                                      f"{n.meta[GEOMETRY].h}x{n.meta[GEOMETRY].w} where the spatial model has "
                                      f"shape {tuple(n.meta['tensor_meta'].shape)}", "check_equivalence")
            if want is not None and tuple(out.shape) != want:
                raise ConversionError(f"node {n.name} ({n.target}): shape {tuple(out.shape)} where the spatial "
                                      f"model implies {want}", "check_equivalence")
        if self.keep:
            value = out.detach()
            if self.decode and n.meta.get(DOMAIN) == "jpeg" and GEOMETRY in n.meta and value.dim() == 4:
                g = n.meta[GEOMETRY]
                value = from_dct(value, (g.h, g.w))
            self.values[n.name] = value.clone()  # later in-place ops must not alter it
        return out


def first_divergence(reference: fx.GraphModule, network: fx.GraphModule, x: torch.Tensor,
                     tolerance: float) -> Divergence | None:
    """The first node of ``network`` (in graph order) whose value, decoded to pixels, differs from its
    spatial twin in ``reference`` (same name) by more than ``tolerance``; ``x`` is the spatial input."""
    spatial, jpeg = _Recorder(reference, keep=True, decode=False), _Recorder(network, keep=True)
    with torch.no_grad():
        spatial.run(x)
        jpeg.run(to_dct(x))
    for node in network.graph.nodes:
        value, twin = jpeg.values.get(node.name), spatial.values.get(node.name)
        if value is None or twin is None or value.shape != twin.shape:
            continue
        error = rel_error(value, twin)
        if error > tolerance:
            target = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", str(node.target))
            return Divergence(node.name, target, error)
    return None


AMPLIFICATION_MARGIN = 1000.0
"""How much more rounding the converted graph may carry than one exact block-DCT round trip of its input."""


class _Precision(fx.Interpreter):
    """Runs a graph and keeps the lowest floating-point precision of any value it computes (a model
    that casts to float32 inside, e.g. ``x.float()``, computes in float32 there even in a float64 run)."""

    def __init__(self, gm: fx.GraphModule) -> None:
        super().__init__(gm)
        self.extra_traceback = False
        self.lowest = torch.float64

    def run_node(self, n: fx.Node):
        out = super().run_node(n)
        if isinstance(out, torch.Tensor) and out.is_floating_point() and torch.finfo(out.dtype).eps > torch.finfo(
                self.lowest).eps:
            self.lowest = out.dtype
        return out


def _tolerance(reference: fx.GraphModule, x: torch.Tensor, expected: torch.Tensor, lowest: torch.dtype) -> float:
    """The float64 tolerance for this model: :data:`TOLERANCE`, or more for an ill-conditioned model.

    The spatial model itself is run on its input after an exact block-DCT round trip (a change of
    ~1e-16 relative, the size of what the conversion does to every value); its output moves by ``d``.
    Well-conditioned models give ``d`` ≈ 1e-15 and keep the 1e-10 tolerance; deep networks with
    random weights amplify such changes to 1e-9 and more (float32 casts inside a model, e.g. timm's
    FilterResponseNorm, more still), and get ``AMPLIFICATION_MARGIN · d``. A wrong conversion is off
    by orders of magnitude more than either. A model that casts to float32 inside (``lowest``) is held
    to the float32 tolerance.
    """
    with torch.no_grad():
        moved = reference(from_dct(to_dct(x), tuple(x.shape[-2:])))
    floor = TOLERANCE.get(lowest, TOLERANCE[torch.float32])  # the precision the model really computes in
    return max(floor, AMPLIFICATION_MARGIN * rel_error(moved, expected))


def check_equivalence(gm: fx.GraphModule, context: PassContext) -> PassResult:
    if not context.options.self_check:
        return PassResult(gm, False)
    options = context.options
    exact = options.relu == "exact" and options.maxpool == "exact"
    # float64: the private reference in place; the converted graph in place when already float64,
    # else as a copy (its maps re-rounded from their float64 masters). Approximate modes compare
    # shapes only, in the model's own dtype.
    dtype = torch.float64 if exact else options.dtype
    reference = context.reference.to(dtype).eval()
    network = copy.deepcopy(gm).double() if exact and options.dtype != torch.float64 else gm
    modes = {m: m.training for m in network.modules()}
    network.eval()
    x = context.example_input(1, torch.Generator().manual_seed(0)).to(dtype)
    try:
        with torch.no_grad():
            precision = _Precision(reference)
            expected = precision.run(x) if exact else None
            got = _Recorder(network, keep=False, shapes=True).run(to_dct(x))
    finally:
        for module, training in modes.items():
            module.training = training
    if not exact:
        log.info("check_equivalence: shapes agree (approximate mode: values not compared)")
        return PassResult(gm, False)
    if not isinstance(got, torch.Tensor) or not isinstance(expected, torch.Tensor):
        return PassResult(gm, False)  # several outputs: their shapes were checked node by node
    if context.keep_jpeg_output and got.dim() == 4 and expected.dim() == 4 and got.shape != expected.shape:
        got = from_dct(got, tuple(expected.shape[-2:]))  # the kept JPEG-domain output, as pixels
    if got.shape != expected.shape:
        raise ConversionError(f"output shape {tuple(got.shape)} differs from the spatial model's "
                              f"{tuple(expected.shape)}", "check_equivalence")
    tolerance = _tolerance(reference, x, expected, precision.lowest)
    error = rel_error(got, expected)
    if not error <= tolerance:  # also catches NaN
        d = first_divergence(reference, network.eval(), x, tolerance)
        where = f"; first divergence at node {d.node} ({d.target}): rel {d.rel_error:.2e}" if d else ""
        raise ConversionError(f"the converted model does not compute the spatial model: max rel error "
                              f"{error:.2e} > {tolerance:.0e} in float64 on a random input{where}", "check_equivalence")
    log.info("check_equivalence: shapes agree, max rel output error %.2e in float64 (tolerance %.0e)",
             error, tolerance)
    return PassResult(gm, False)
