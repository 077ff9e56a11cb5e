"""``jpegfx.verify``: run a spatial model and its JPEG-domain conversion side by side.

The report gives the max abs and max relative output error, the top-1 agreement and, when the
relative error exceeds the tolerance, the first diverging layer: both graphs run node by node
(fx ``Interpreter``), and each JPEG-domain value, decoded to pixels, is compared with its spatial
twin (the lowering keeps node names, so twins share a name) in topological order.
"""
from __future__ import annotations

import copy
import logging
from dataclasses import dataclass

import torch
import torch.fx as fx
from torch import nn

from jpegfx import passes
from jpegfx.convert import JpegModel
from jpegfx.jpeg import JpegBatch

from jpegfx.passes.check_equivalence import TOLERANCE, Divergence, rel_error as _rel
from jpegfx.passes.check_equivalence import first_divergence as graph_divergence
from jpegfx.passes.context import PassContext
from jpegfx.registry import ConvertOptions
from jpegfx.transforms import to_dct

log = logging.getLogger(__name__)

DEFAULT_TOLERANCE = TOLERANCE


@dataclass(frozen=True)
class VerifyReport:
    max_abs_error: float
    max_rel_error: float
    top1_agreement: float
    tolerance: float
    first_divergence: Divergence | None

    @property
    def ok(self) -> bool:
        return self.max_rel_error <= self.tolerance

    def summary(self) -> str:
        s = (f"max abs {self.max_abs_error:.3e}, max rel {self.max_rel_error:.3e} (tol {self.tolerance:.0e}), "
             f"top-1 agreement {100 * self.top1_agreement:.2f}%")
        if self.first_divergence is not None:
            d = self.first_divergence
            s += f"; first divergence at {d.node} ({d.target}): rel {d.rel_error:.3e}"
        return s


def spatial_graph(model: nn.Module, in_channels: int) -> fx.GraphModule:
    """The spatial graph as the converter sees it before lowering: traced and put through the
    spatial rewrites (:data:`jpegfx.passes.FRONTEND`), so that node names match the conversion's."""
    context = PassContext(ConvertOptions(), in_channels=in_channels)
    gm = passes.trace_model(copy.deepcopy(model), context)
    for p in passes.FRONTEND:
        gm = p(gm, context).module
    return gm


def first_divergence(model: nn.Module, jpeg_model: JpegModel, x: torch.Tensor, tolerance: float) -> Divergence | None:
    """The first JPEG-domain node whose decoded value differs from its spatial twin beyond tolerance."""
    return graph_divergence(spatial_graph(model, jpeg_model.spec.channels), jpeg_model.network, x, tolerance)


def verify(model: nn.Module, jpeg_model: JpegModel, batch: JpegBatch | torch.Tensor, *,
           tolerance: float | None = None) -> VerifyReport:
    """Compare the spatial ``model`` with ``jpeg_model`` on the same input.

    ``batch``: a :class:`~jpegfx.jpeg.JpegBatch` — the JPEG-domain model reads its coefficients, the
    spatial model gets the float reference decode of the same coefficients, normalised
    (:meth:`JpegModel.spatial_input`) — or a tensor ``(N, C, h, w)`` of normalised spatial inputs, whose
    exact DCT the JPEG-domain network gets. Both models should be in eval mode.
    """
    with torch.no_grad():
        if isinstance(batch, JpegBatch):
            x = jpeg_model.spatial_input(batch)
            output = jpeg_model(batch)
        else:
            x = batch
            output = jpeg_model(to_dct(x))
        reference = model(x)
    tolerance = DEFAULT_TOLERANCE.get(x.dtype, 1e-4) if tolerance is None else tolerance
    abs_error = float((output - reference).abs().max())
    rel_error = _rel(output, reference)
    top1 = float((output.flatten(1).argmax(1) == reference.flatten(1).argmax(1)).float().mean())
    divergence = first_divergence(model, jpeg_model, x, tolerance) if rel_error > tolerance else None
    report = VerifyReport(abs_error, rel_error, top1, tolerance, divergence)
    log.info("verify: %s", report.summary())
    return report


