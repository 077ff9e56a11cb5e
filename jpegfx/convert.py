"""``jpegfx.convert``: a spatial ResNet in, a JPEG-domain model out.

The returned :class:`JpegModel` takes a :class:`~jpegfx.jpeg.JpegBatch` (quantised coefficients and
per-image tables, e.g. from :func:`jpegfx.jpeg.read_jpeg`). It holds

* ``input_stages``: :class:`~jpegfx.ops.input.JpegInputStage` per colour space and sampling layout
  (dequantise, upsample chroma, colour-convert, normalise: the model's input in the JPEG domain);
* ``network``: the fx GraphModule made by the pass pipeline (:mod:`jpegfx.passes`), on
  ``(N, C·64, Hb, Wb)`` tensors; calling the model on such a tensor (the DCT of the normalised
  input, :func:`jpegfx.transforms.to_dct`) skips the input stage;
* ``records``: what each node was lowered to.

The original model is never mutated (it is deep-copied before tracing).
"""
from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.fx as fx
from torch import nn

from jpegfx import jpeg as jpeg_io
from jpegfx import passes, preprocess, reader
from jpegfx.errors import UsageError
from jpegfx.ops import DEFAULT_MAP_BUDGET, LOWERINGS
from jpegfx.ops.input import UPSAMPLING, JpegInputStage, batch_tensors, input_stage_key, normalization, spatial_model_input
from jpegfx.ops.pool import JpegToSpatial
from jpegfx.ops.relu import MODES as RELU_MODES
from jpegfx.passes.context import LayerRecord, PassContext
from jpegfx.preprocess import Policy
from jpegfx.registry import ConvertOptions
from jpegfx.transforms import MAX_FREQUENCIES, NCOEF, BlockGeometry, channels_last, from_dct

log = logging.getLogger(__name__)


SUBSAMPLINGS = ("4:4:4", "4:2:2", "4:2:0", "4:4:0", "gray")
DOMAINS = ("jpeg", "pixels")
"""Where ``convert`` puts the values between ops (see its ``domains``)."""
REFERENCE_SIZE = (224, 224)
"""The size ``convert(model)`` without ``input_size`` converts at first (and self-checks)."""


@dataclass(frozen=True)
class ModelSpec:
    """What a converted model expects as input."""

    input_size: tuple[int, int]
    channels: int
    normalize: tuple[tuple[float, ...], tuple[float, ...]] | None
    subsampling: str
    relu: str
    frequencies: int
    upsampling: str = "fancy"

    def samplings(self) -> tuple[str, tuple[tuple[int, int], ...]]:
        """(colour space, per-component sampling factors) of the spec's default JPEG layout."""
        if self.subsampling == "gray":
            return "gray", ((1, 1),)
        luma = jpeg_io.SUBSAMPLINGS[self.subsampling]
        return "ycbcr", (luma, (1, 1), (1, 1))


class JpegModel(nn.Module):
    """A converted model: ``network`` (fx GraphModule on JPEG-domain tensors), its input ``spec``,
    what each node was lowered to (``records``) and the conversion time in ``seconds``."""

    def __init__(self, network: fx.GraphModule, spec: ModelSpec, records: list[LayerRecord],
                 seconds: float, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.network, self.spec, self.records, self.seconds = network, spec, records, seconds
        # One input stage per colour space, all built here: the spec's layout and the other colour space's
        # default. A stage takes every sampling layout of its colour space, so running the model never
        # adds a module (a module added in forward would be in train mode, unsaved and not thread-safe).
        self.input_stages = nn.ModuleDict()
        color_space, samplings = spec.samplings()
        self._default_key = input_stage_key(color_space, samplings)
        other = ("ycbcr", (jpeg_io.SUBSAMPLINGS["4:2:0"], (1, 1), (1, 1))) if color_space == "gray" else ("gray", ((1, 1),))
        self._stage_keys = {color_space: self._default_key, other[0]: input_stage_key(*other)}
        for space, layout in ((color_space, samplings), other):
            self.input_stages[input_stage_key(space, layout)] = JpegInputStage(
                spec.input_size, layout, space, spec.channels, spec.normalize, spec.upsampling, dtype)

    @property
    def dtype(self) -> torch.dtype:
        """The model's float type; follows ``.double()``, ``.float()``, ``.to(...)``."""
        return self.input_stages[self._default_key].pattern.dtype

    @property
    def any_size(self) -> bool:
        """Whether the model runs at any input size (:meth:`at_size`), not only ``spec.input_size``."""
        return self.__dict__.get("_source") is not None

    def at_size(self, size: tuple[int, int] | int) -> "JpegModel":
        """This model for inputs of logical size ``size``: itself at ``spec.input_size``; otherwise, for a
        model converted with ``any_size=True`` (or without ``input_size``), the same spatial model
        converted for ``size`` with the same options, once per size, dtype, device and mode (cached).
        Every size-dependent constant (padding masks, boundary blocks, block counts, pooling weights)
        is thereby derived from ``size``. The per-size models hold their own copies of the weights, so a
        model in train mode refuses other sizes: train at one size (or through a
        :class:`~jpegfx.preprocess.Policy`)."""
        size = (size, size) if isinstance(size, int) else tuple(int(v) for v in size)
        if size == tuple(self.spec.input_size):
            return self
        source = self.__dict__.get("_source")
        if source is not None and self.training:
            raise UsageError(f"image size {size[0]}x{size[1]}: a model in train mode runs at its own input size "
                             f"{self.spec.input_size[0]}x{self.spec.input_size[1]} only (a model converted for another "
                             "size would train a copy of the weights); bring the images to that size with a policy")
        if source is None:
            raise UsageError(f"image size {size[0]}x{size[1]} does not match the model's input size "
                             f"{self.spec.input_size[0]}x{self.spec.input_size[1]} (convert with any_size=True, or "
                             "without input_size, to run at any size)")
        device = self.input_stages[self._default_key].pattern.device
        key = (size, self.dtype, device, self.training)
        cache = self.__dict__.setdefault("_sizes", {})
        model = cache.get(key)
        if model is None:
            start = time.perf_counter()
            model = convert(source.to(self.dtype).train(self.training), size, **self.__dict__["_options"])
            model = model.to(device).train(self.training)
            cache[key] = model
            log.info("converted for %dx%d in %.2f s (first input of that size)", *size, time.perf_counter() - start)
        return model

    def _check_size(self, batch: jpeg_io.JpegBatch) -> None:
        if tuple(batch.size) != tuple(self.spec.input_size):
            self.at_size(batch.size)  # raises for a one-size model

    def input_stage(self, batch: jpeg_io.JpegBatch) -> JpegInputStage:
        """The input stage for ``batch``'s layout; a one-line :class:`~jpegfx.errors.UsageError` if its size
        does not fit. A layout other than the two registered ones gets a new stage in eval mode on the
        model's device and dtype, not registered in the model (``forward`` never needs one)."""
        self._check_size(batch)
        samplings = tuple(c.sampling for c in batch.components)
        key = input_stage_key(batch.color_space, samplings)
        if key in self.input_stages:
            return self.input_stages[key]
        base = self.input_stages[self._stage_keys[batch.color_space]]
        stage = JpegInputStage(self.spec.input_size, samplings, batch.color_space, self.spec.channels,
                               self.spec.normalize, self.spec.upsampling, self.dtype)
        return stage.to(base.pattern.device).eval()

    def network_input(self, batch: jpeg_io.JpegBatch) -> torch.Tensor:
        """What the network runs on for ``batch``: the input stage's normalised pixels in channels-last
        order for a network that starts on pixels (``domains="pixels"``), its JPEG-domain
        ``(N, C·64, Hb, Wb)`` otherwise. The part of ``model(batch)`` that stands where a spatial
        pipeline decodes and normalises. A batch of another size goes to the model for its size, as in
        ``forward`` (a one-line error for a one-size model)."""
        if tuple(batch.size) != tuple(self.spec.input_size):
            return self.at_size(batch.size).network_input(batch)
        stage = self.input_stages[self._stage_keys[batch.color_space]]
        inputs, samplings = batch_tensors(batch), tuple(c.sampling for c in batch.components)
        if self.pixel_network() is not None:
            return channels_last(stage.pixels(*inputs, samplings=samplings))
        return stage(*inputs, samplings=samplings)

    def spatial_input(self, batch: jpeg_io.JpegBatch) -> torch.Tensor:
        """What the spatial model sees for ``batch`` (float decode, channel policy, normalisation)."""
        return spatial_model_input(batch, self.spec.channels, self.spec.normalize, self.spec.upsampling, self.dtype)

    def prepare(self, items, policy: Policy | None = None, *, tolerant: bool = False) -> torch.Tensor:
        """The network's input ``(N, C·64, Hb, Wb)`` for JPEGs of any size and layout: ``items`` are paths,
        the files' bytes, binary file objects or :class:`~jpegfx.reader.Coefficients`; ``policy`` (default
        :meth:`Policy.imagenet` of the model's size) scales each by N/8 and centre-crops it to the
        model's size in the coefficients (:mod:`jpegfx.preprocess`). ``model(model.prepare(files))``
        gives what an ONNX file exported with the same ``preprocess`` policy gives."""
        policy = Policy.imagenet(self.spec.input_size) if policy is None else policy
        x = preprocess.model_inputs([_coefficients(i, tolerant) for i in items], policy, self.spec.input_size,
                                    self.spec.channels, self.spec.normalize, self.spec.upsampling, np.float64)
        return torch.from_numpy(x).to(self.dtype)

    def spatial_prepare(self, items, policy: Policy | None = None, *, tolerant: bool = False) -> torch.Tensor:
        """What the spatial model sees for the same items and policy as :meth:`prepare`: the normalised
        crops of the scaled float decode, ``(N, C, h, w)``."""
        policy = Policy.imagenet(self.spec.input_size) if policy is None else policy
        x = np.stack(preprocess.model_pixels_many([_coefficients(i, tolerant) for i in items], policy,
                                                  self.spec.input_size, self.spec.channels, self.spec.normalize,
                                                  self.spec.upsampling))
        return torch.from_numpy(x).to(self.dtype)

    def pixel_network(self) -> fx.GraphModule | None:
        """The network without its first op when that op is the inverse DCT of the input and nothing else
        reads the input (``convert(domains="pixels")``): it takes normalised pixels ``(N, C, h, w)``, so
        the input stage hands over pixels (:meth:`JpegInputStage.pixels`) instead of a block DCT that
        the network would invert at once. Shares every module with ``network``; ``None`` otherwise."""
        cached = self.__dict__.get("_pixel_network", False)
        if cached is not False:
            return cached
        folded = None
        placeholders = [n for n in self.network.graph.nodes if n.op == "placeholder"]
        users = list(placeholders[0].users) if len(placeholders) == 1 else []
        if (len(users) == 1 and users[0].op == "call_module"
                and type(self.network.get_submodule(users[0].target)) is JpegToSpatial):
            graph = copy.deepcopy(self.network.graph)
            first = next(n for n in graph.nodes if n.op == "placeholder")
            idct = next(iter(first.users))
            idct.replace_all_uses_with(first)
            graph.erase_node(idct)
            folded = fx.GraphModule(self.network, graph)
        self.__dict__["_pixel_network"] = folded
        return folded

    def _runnable(self, network: fx.GraphModule) -> fx.GraphModule:
        """``network``, or at inference (eval mode, gradients off) its variant whose ReLUs and additions
        write into values nobody else reads (:mod:`jpegfx.passes.reuse_buffers`; same modules, same
        numbers, less memory traffic)."""
        if self.training or torch.is_grad_enabled():
            return network
        cache = self.__dict__.setdefault("_inference", {})
        if id(network) not in cache:
            cache[id(network)] = (network, passes.reuse_buffers(network)[0])
        return cache[id(network)][1]

    def forward(self, x: jpeg_io.JpegBatch | torch.Tensor) -> torch.Tensor:
        """``x``: a :class:`~jpegfx.jpeg.JpegBatch`, or the normalised model input already in the
        JPEG domain, ``(N, C·64, Hb, Wb)``."""
        if isinstance(x, jpeg_io.JpegBatch):
            if tuple(x.size) != tuple(self.spec.input_size):
                return self.at_size(x.size)(x)
            folded = self.pixel_network()
            return self._runnable(self.network if folded is None else folded)(self.network_input(x))
        g = BlockGeometry(*self.spec.input_size)
        expected = (self.spec.channels * NCOEF, g.hb, g.wb)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise UsageError(f"JPEG-domain input of shape {tuple(x.shape)} does not match the model's "
                             f"(N, {expected[0]}, {expected[1]}, {expected[2]}) for {self.spec.channels} channel(s) "
                             f"at {g.h}x{g.w}")
        folded = self.pixel_network()
        if folded is not None:  # the network's own first op, the inverse DCT, in the layout its convs like
            return self._runnable(folded)(channels_last(from_dct(x, self.spec.input_size)))
        return self._runnable(self.network)(x)


def _coefficients(item, tolerant: bool) -> reader.Coefficients:
    return item if isinstance(item, reader.Coefficients) else reader.read_coefficients(item, tolerant=tolerant)


def infer_channels(model: nn.Module) -> int:
    """Input channels of ``model``, read off its traced graph (see :mod:`jpegfx.passes.infer_input_channels`)."""
    context = PassContext(ConvertOptions())
    gm = passes.trace_model(copy.deepcopy(model), context)
    passes.infer_input_channels(gm, context)
    return context.in_channels


def check_normalize(normalize, channels: int | None = None) -> None:
    """:class:`~jpegfx.errors.UsageError` unless ``normalize`` is "imagenet" or ``(mean, std)`` numbers with
    one value each or one per channel (``channels`` when known; else mean and std must agree)."""
    if channels is not None or isinstance(normalize, str):
        normalization(normalize, channels or 3)
        return
    try:
        mean, std = normalize
        counts = {torch.as_tensor(mean).numel(), torch.as_tensor(std).numel()}
    except (TypeError, ValueError, RuntimeError):
        raise UsageError(f"normalize must be None, 'imagenet' or (mean, std) of numbers, got {normalize!r}") from None
    normalization(normalize, max(counts))


def _model_dtype(model: nn.Module) -> torch.dtype:
    for p in model.parameters():
        return p.dtype
    return torch.get_default_dtype()


def convert(
    model: nn.Module,
    input_size: tuple[int, int] | int | None = None,
    *,
    relu: str = "exact",
    frequencies: int = MAX_FREQUENCIES,
    normalize: tuple[tuple[float, ...], tuple[float, ...]] | None = None,
    subsampling: str = "4:2:0",
    upsampling: str = "fancy",
    lowering: str = "auto",
    maxpool: str = "exact",
    map_budget: int = DEFAULT_MAP_BUDGET,
    in_channels: int | None = None,
    keep_jpeg_output: bool = False,
    elide_transforms: bool = True,
    strict: bool = False,
    self_check: bool = True,
    debug: bool = False,
    any_size: bool | None = None,
    domains: str = "jpeg",
) -> JpegModel:
    """Convert a spatial model to the JPEG domain for inputs of logical size ``input_size``.

    ``any_size=True`` (the default when ``input_size`` is not given; it is then 224×224) keeps a copy
    of the spatial model so that the converted one runs at any size the spatial model runs at: a
    :class:`~jpegfx.jpeg.JpegBatch` of another size is run by the model converted for that size
    (:meth:`JpegModel.at_size`, once per size). A model that needs one size (a flatten without global
    pooling) is converted for the size it is given.

    ``domains``: "jpeg" (default; the paper's design) lowers every op it can to coefficients, with
    ``elide_transforms`` handing values between pixel-computing ops over in pixels; "pixels" runs
    every op as itself on pixels after one inverse DCT of the input, except the approximations that
    need coefficients (ASM/APX activations, ASM max pooling), around which it transforms. Both are
    exact in exact modes; "pixels" does the least work there.

    ``relu``: "exact", "asm" or "apx" with ``frequencies`` (1..15) spatial frequencies; ``maxpool``:
    "exact" or "asm" (same k); ``lowering``: "auto" (cost model) or a conv lowering for every conv;
    ``normalize=(mean, std)`` in torchvision units or "imagenet" (the spatial model sees
    ``(pixels/255 − mean)/std``; ``None``: ``pixels/255``); ``subsampling`` is the JPEG layout the
    exported model expects ("4:4:4", "4:2:2", "4:2:0", "4:4:0" or "gray"; in torch every layout works)
    and ``upsampling`` the chroma filter ("fancy" as libjpeg, or "nearest"). The model's train/eval
    mode is kept (train mode gives train-mode BN). ``elide_transforms`` keeps values between two
    pixel-computing ops (conv → BN → ReLU → conv …) in pixels, cancelling DCT/IDCT pairs (exact,
    faster); ``False`` keeps every value in the JPEG domain, as in the paper.

    Ops with no JPEG-domain lowering run unchanged on pixels between an exact inverse and forward
    block DCT (listed in ``records`` with jpeg ``"(on pixels)"``); ``strict=True`` refuses them
    instead, all in one :class:`~jpegfx.errors.UnsupportedModelError`. ``in_channels`` defaults to the
    channels the input's first convolution reads. ``self_check`` (default) runs the spatial and the
    converted model on one random input and raises :class:`~jpegfx.errors.ConversionError` unless
    every value has its spatial shape and, in exact modes, the outputs agree to float rounding.
    Options out of range raise :class:`~jpegfx.errors.UsageError` (a ``ValueError``) before any work.
    """
    if not isinstance(model, nn.Module):
        raise UsageError(f"convert needs a torch.nn.Module, got {type(model).__name__}")
    if subsampling not in SUBSAMPLINGS:
        raise UsageError(f"subsampling must be one of {SUBSAMPLINGS}, got {subsampling!r}")
    if upsampling not in UPSAMPLING:
        raise UsageError(f"upsampling must be one of {UPSAMPLING}, got {upsampling!r}")
    if relu not in RELU_MODES:
        raise UsageError(f"relu must be one of {RELU_MODES}, got {relu!r}")
    if not 1 <= frequencies <= MAX_FREQUENCIES:
        raise UsageError(f"frequencies must be in 1..{MAX_FREQUENCIES}, got {frequencies}")
    if lowering != "auto" and lowering not in LOWERINGS:
        raise UsageError(f"lowering must be 'auto' or one of {LOWERINGS}, got {lowering!r}")
    if maxpool not in ("exact", "asm"):
        raise UsageError(f"maxpool must be 'exact' or 'asm', got {maxpool!r}")
    if domains not in DOMAINS:
        raise UsageError(f"domains must be one of {DOMAINS}, got {domains!r}")
    if in_channels is not None and in_channels not in (1, 3):
        raise UsageError(f"JPEG input feeds models with 1 or 3 input channels, not {in_channels}")
    if normalize is not None:  # its form now; its length again once the pipeline knows the channels
        check_normalize(normalize, in_channels)
    try:
        requested = REFERENCE_SIZE if input_size is None else input_size
        size = (requested, requested) if isinstance(requested, int) else tuple(int(s) for s in requested)
    except (TypeError, ValueError):
        raise UsageError(f"input_size must be an int or (h, w), got {input_size!r}") from None
    if len(size) != 2 or min(size) < 1:
        raise UsageError(f"input_size must be positive (h, w), got {input_size!r}")
    any_size = input_size is None if any_size is None else bool(any_size)
    source = copy.deepcopy(model) if any_size else None  # before anything can touch it
    start = time.perf_counter()
    options = ConvertOptions(relu, frequencies, maxpool, lowering, map_budget, _model_dtype(model),
                             elide_transforms, strict, self_check, domains)
    context = PassContext(options, size, in_channels, keep_jpeg_output, debug)
    network = passes.run_pipeline(copy.deepcopy(model), context)
    context.reference = None
    if isinstance(normalize, str) or normalize is not None:
        mean, std = normalization(normalize, context.in_channels)
        normalize = (tuple(mean.tolist()), tuple(std.tolist()))
    spec = ModelSpec(size, context.in_channels, normalize, subsampling, relu, frequencies, upsampling)
    jpeg_model = JpegModel(network, spec, context.records, 0.0, options.dtype)
    jpeg_model.seconds = time.perf_counter() - start
    if source is not None:  # plain attributes: not submodules, not in the state_dict
        jpeg_model.__dict__["_source"] = source
        jpeg_model.__dict__["_options"] = dict(
            relu=relu, frequencies=frequencies, normalize=normalize, subsampling=subsampling, upsampling=upsampling,
            lowering=lowering, maxpool=maxpool, map_budget=map_budget, in_channels=context.in_channels,
            keep_jpeg_output=keep_jpeg_output, elide_transforms=elide_transforms, strict=strict,
            self_check=self_check, any_size=False, domains=domains)
    log.info("converted %s in %.2f s: %d node(s) lowered", type(model).__name__, jpeg_model.seconds,
             len(context.records))
    jpeg_model.train(model.training)
    return jpeg_model
