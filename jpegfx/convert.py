"""``jpegfx.convert``: a spatial ResNet in, a JPEG-domain model out.

The returned :class:`JpegModel` holds ``network``, an fx GraphModule produced by the pass pipeline
(:mod:`jpegfx.passes`) whose input is the model's input image in the JPEG domain
``(N, C·64, Hb, Wb)`` (q = 1; already colour-converted and normalised), and ``records``, what each
node was lowered to. The original model is never mutated (it is deep-copied before tracing).
"""
from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass

import torch
import torch.fx as fx
from torch import nn

from jpegfx import passes
from jpegfx.errors import ConversionError
from jpegfx.ops import DEFAULT_MAP_BUDGET, LOWERINGS
from jpegfx.ops.relu import MODES as RELU_MODES
from jpegfx.passes.context import LayerRecord, PassContext
from jpegfx.registry import ConvertOptions
from jpegfx.transforms import MAX_FREQUENCIES, NCOEF, BlockGeometry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSpec:
    """What a converted model expects as input."""

    input_size: tuple[int, int]
    channels: int
    normalize: tuple[tuple[float, ...], tuple[float, ...]] | None
    subsampling: str
    relu: str
    frequencies: int


class JpegModel(nn.Module):
    """A converted model: ``network`` (fx GraphModule on JPEG-domain tensors), its input ``spec``,
    what each node was lowered to (``records``) and the conversion time in ``seconds``."""

    def __init__(self, network: fx.GraphModule, spec: ModelSpec, records: list[LayerRecord],
                 seconds: float) -> None:
        super().__init__()
        self.network, self.spec, self.records, self.seconds = network, spec, records, seconds

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: the normalised model input in the JPEG domain, ``(N, C·64, Hb, Wb)``."""
        g = BlockGeometry(*self.spec.input_size)
        expected = (self.spec.channels * NCOEF, g.hb, g.wb)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"JPEG-domain input of shape {tuple(x.shape)} does not match the model's "
                             f"(N, {expected[0]}, {expected[1]}, {expected[2]}) for {self.spec.channels} channel(s) "
                             f"at {g.h}x{g.w}")
        return self.network(x)


def _infer_channels(model: nn.Module) -> int:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            return m.in_channels
    raise ConversionError("cannot infer the input channels (no Conv2d); pass in_channels=")


def _model_dtype(model: nn.Module) -> torch.dtype:
    for p in model.parameters():
        return p.dtype
    return torch.get_default_dtype()


def convert(
    model: nn.Module,
    input_size: tuple[int, int] | int,
    *,
    relu: str = "exact",
    frequencies: int = MAX_FREQUENCIES,
    normalize: tuple[tuple[float, ...], tuple[float, ...]] | None = None,
    subsampling: str = "4:2:0",
    lowering: str = "auto",
    maxpool: str = "exact",
    map_budget: int = DEFAULT_MAP_BUDGET,
    in_channels: int | None = None,
    keep_jpeg_output: bool = False,
    debug: bool = False,
) -> JpegModel:
    """Convert a spatial model to the JPEG domain for inputs of logical size ``input_size``.

    ``relu``: "exact", "asm" or "apx" with ``frequencies`` (1..15) spatial frequencies; ``maxpool``:
    "exact" or "asm" (same k); ``lowering``: "auto" (cost model) or a conv lowering for every conv;
    ``normalize=(mean, std)`` in torchvision units (the spatial model sees ``(pixels/255 − mean)/std``;
    ``None``: ``pixels/255``); the model's train/eval mode is kept (train mode gives train-mode BN).
    """
    if relu not in RELU_MODES:
        raise ValueError(f"relu must be one of {RELU_MODES}, got {relu!r}")
    if not 1 <= frequencies <= MAX_FREQUENCIES:
        raise ValueError(f"frequencies must be in 1..{MAX_FREQUENCIES}, got {frequencies}")
    if lowering != "auto" and lowering not in LOWERINGS:
        raise ValueError(f"lowering must be 'auto' or one of {LOWERINGS}, got {lowering!r}")
    if maxpool not in ("exact", "asm"):
        raise ValueError(f"maxpool must be 'exact' or 'asm', got {maxpool!r}")
    size = (input_size, input_size) if isinstance(input_size, int) else tuple(int(s) for s in input_size)
    start = time.perf_counter()
    options = ConvertOptions(relu, frequencies, maxpool, lowering, map_budget, _model_dtype(model))
    context = PassContext(options, size, in_channels or _infer_channels(model), keep_jpeg_output, debug)
    network = passes.run_pipeline(copy.deepcopy(model), context)
    spec = ModelSpec(size, context.in_channels, normalize, subsampling, relu, frequencies)
    seconds = time.perf_counter() - start
    log.info("converted %s in %.2f s: %d node(s) lowered", type(model).__name__, seconds, len(context.records))
    jpeg_model = JpegModel(network, spec, context.records, seconds)
    jpeg_model.train(model.training)
    return jpeg_model
