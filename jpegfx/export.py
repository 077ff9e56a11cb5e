"""``jpegfx.export``: a converted :class:`~jpegfx.convert.JpegModel` → one self-contained ONNX file.

The file holds the *whole* JPEG model for the spec's default layout (``spec.samplings()``): the input
stage (dequantise with the per-image tables, upsample chroma, colour-convert, normalise) followed by
the JPEG-domain network. Its inputs are what :func:`jpegfx.jpeg.read_jpeg` gives, by name:

* colour (``subsampling`` "4:4:4", "4:2:2", "4:2:0" or "4:4:0"): ``y``, ``cb``, ``cr`` — quantised
  coefficients ``int16 (N, Hb_c, Wb_c, 8, 8)`` — then ``y_qtable``, ``cb_qtable``, ``cr_qtable`` —
  ``int32 (N, 64)`` natural order, one table per image;
* gray (``subsampling="gray"``): ``y`` and ``y_qtable``.

The output is ``logits`` (further outputs, if the network returns a tuple, are ``output_1`` …); the
batch axis of every input and output is dynamic. The layout is fixed at export time: a model exported
for 4:2:0 cannot take 4:4:4 files (re-export with ``subsampling='4:4:4'``).

What the model expects is stored as ONNX metadata (``metadata_props``, all strings, JSON where
structured) and read back with :func:`read_spec`. Export uses the TorchScript-based exporter
(``torch.onnx.export(..., dynamo=False)``); :mod:`jpegfx.transforms` keeps every reshape static for it.
One ``.onnx`` file, no external data: protobuf caps a file at 2 GiB, so a model whose weights and
maps do not fit is refused before tracing (fused conv maps are the usual cause: convert with
``lowering='factored'``). The file is written next to ``path`` and renamed into place once
``onnx.checker`` accepts it.

Inputs the graph never reads are dropped by the exporter: a 1-channel model on a colour layout uses
luma only, and its file takes just ``y`` and ``y_qtable``; the metadata's ``input_names`` lists the
file's actual inputs.

Metadata keys: ``jpegfx_version``, ``input_size`` ("HxW"), ``channels``, ``subsampling``,
``color_space`` ("gray" | "ycbcr"), ``samplings`` (JSON ``[[v, h], …]``), ``normalize`` (JSON
``{"mean": […], "std": […]}`` or "none"), ``upsampling``, ``relu``, ``frequencies``, ``input_names``
and ``output_names`` (JSON lists), ``dtype``, and ``class_names`` (JSON list) when given.

Any-photo files (``export_onnx(..., preprocess=policy)``) take one input, ``x`` (float, ``(N, C·64,
Hb, Wb)``: the JPEG-domain input of the network, computed by :mod:`jpegfx.preprocess`), store the
policy as ``preprocess`` (JSON ``{"resize": S | null, "crop": [h, w] | null, "flip": bool}``) and
write ``subsampling`` and ``color_space`` as "any" and ``samplings`` as ``[]``. A network that starts
on pixels with no op tied to a block grid (``convert(domains="pixels")``, exact ReLU) takes
``pixels`` instead (float ``(N, C, H, W)``, the normalised pixels of the same map, without its block
DCT); with a policy that does not crop, its height and width are dynamic — one file serves photos at
whatever size the policy scales them to. Such a file is checked in onnxruntime at a second size
against the spatial model before it is written, so the model must be converted for any size.
"""
from __future__ import annotations

import copy
import io
import json
import logging
import os
import time
import uuid
import warnings
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from jpegfx import jpeg as jpeg_io
from jpegfx.errors import UsageError
from jpegfx.ops.input import batch_tensors
from jpegfx.preprocess import Policy
from jpegfx.spec import ANY_LAYOUT, DCT_INPUT, PIXEL_INPUT, OnnxSpec, _one_line, input_names, sampling_ratios, spec_from_metadata
from jpegfx.transforms import NCOEF, BlockGeometry

# OnnxSpec, input_names, sampling_ratios and spec_from_metadata live in jpegfx.spec (torch-free, for
# serving); they are re-exported here, where export_onnx writes what they read.

log = logging.getLogger(__name__)

__all__ = ["OnnxSpec", "PROTOBUF_LIMIT", "check_output_path", "export_onnx", "input_names", "read_spec",
           "sampling_ratios", "spec_from_metadata", "tensor_bytes"]

PROTOBUF_LIMIT = 2**31
"""Bytes a single protobuf message (one ``.onnx`` file without external data) can hold."""
_GRAPH_MARGIN = 32 * 2**20  # room left for the graph itself (nodes, small constants, metadata)
_TRACE_BATCH = 2


def tensor_bytes(module: nn.Module) -> int:
    """Bytes of the distinct parameters and buffers of ``module`` (shared storage counted once).

    An upper bound on what the exported file stores as initializers (tensors the graph does not
    use are counted too)."""
    seen: set[tuple[int, int, int]] = set()
    total = 0
    for t in list(module.parameters()) + list(module.buffers()):
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), t.numel())
        if key in seen:
            continue
        seen.add(key)
        total += t.numel() * t.element_size()
    return total


class _OnnxWrapper(nn.Module):
    """Input stage + network with one positional argument per named input."""

    def __init__(self, stage: nn.Module, network: nn.Module) -> None:
        super().__init__()
        self.stage, self.network = stage, network

    def forward(self, *inputs: torch.Tensor):
        return self.network(self.stage(*inputs))


class _PixelStage(nn.Module):
    """An input stage that hands over normalised pixels (for a network that starts on pixels)."""

    def __init__(self, stage: nn.Module) -> None:
        super().__init__()
        self.stage = stage

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.stage.pixels(*inputs)


def _trace_batch(spec, batch_size: int) -> jpeg_io.JpegBatch:
    color_space, _ = spec.samplings()
    h, w = spec.input_size
    channels = 1 if color_space == "gray" else 3
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(batch_size, channels, h, w, generator=generator, dtype=torch.float64) * 255.0
    sub = "4:2:0" if color_space == "gray" else spec.subsampling
    return jpeg_io.encode(images, quality=75, subsampling=sub)


def _output_names(network: nn.Module, wrapper: nn.Module, args) -> list[str]:
    """``logits`` (+ ``output_1`` …): read off the fx graph's output node, so the (slow) JPEG-domain
    network does not run once more than the trace needs; other modules are run once."""
    graph = getattr(network, "graph", None)
    if isinstance(graph, torch.fx.Graph):
        node = next(n for n in reversed(graph.nodes) if n.op == "output")
        result = node.args[0]
        if isinstance(result, torch.fx.Node):
            return ["logits"]
        if isinstance(result, (tuple, list)) and result and all(isinstance(r, torch.fx.Node) for r in result):
            return ["logits"] + [f"output_{i}" for i in range(1, len(result))]
        raise UsageError("export needs a network that returns a tensor or a flat tuple of tensors")
    with torch.no_grad():
        result = wrapper(*args)
    if isinstance(result, torch.Tensor):
        return ["logits"]
    if isinstance(result, (tuple, list)) and result and all(isinstance(o, torch.Tensor) for o in result):
        return ["logits"] + [f"output_{i}" for i in range(1, len(result))]
    raise UsageError(f"export needs a network that returns a tensor or a tuple of tensors, got {type(result).__name__}")


def _check_class_names(model, class_names: list[str]) -> None:
    dims = model.graph.output[0].type.tensor_type.shape.dim
    shape = tuple(d.dim_value if d.HasField("dim_value") else d.dim_param for d in dims)
    if len(shape) != 2:
        raise UsageError(f"class names need (batch, classes) logits, the model's output has shape {shape}")
    if shape[1] != len(class_names):
        raise UsageError(f"{len(class_names)} class names for a model with {shape[1]} classes")


def _normalize_json(normalize) -> str:
    if normalize is None:
        return "none"
    mean, std = normalize
    return json.dumps({"mean": [float(v) for v in mean], "std": [float(v) for v in std]})


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _check_size(wrapper: nn.Module, network: nn.Module) -> int:
    need = tensor_bytes(wrapper)
    if need + _GRAPH_MARGIN <= PROTOBUF_LIMIT:
        return need
    fused = [name for name, m in network.named_modules() if getattr(m, "lowering", None) == "fused"]
    hint = (f"{len(fused)} conv(s) use the fused lowering (e.g. {fused[0]}): convert with lowering='factored' "
            "(or a smaller map_budget) to make it fit" if fused else "no conv uses the fused lowering: the weights "
            "themselves are too large")
    raise UsageError(f"the model's parameters and buffers take {need / 2**30:.2f} GiB, more than one "
                     f"self-contained .onnx file can hold (protobuf limit 2 GiB); {hint}")


def check_output_path(path: str | os.PathLike) -> Path:
    """``path`` as a :class:`~pathlib.Path` if a file can be written there (it is not a directory, and its
    nearest existing ancestor is a writable directory); :class:`~jpegfx.errors.UsageError` otherwise.
    Cheap: callers check before converting or exporting."""
    path = Path(path)
    try:
        if path.is_dir():
            raise UsageError(f"{path}: is a directory; give a file name, e.g. {path / 'model.onnx'}")
        parent = path.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if not parent.is_dir():
            raise UsageError(f"{path}: cannot create it: {parent} is not a directory")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise UsageError(f"{path}: cannot write there: no write permission in {parent}")
    except OSError as exc:
        raise UsageError(f"{path}: cannot write there: {exc.strerror or _one_line(exc)}") from None
    return path


def export_onnx(jpeg_model, path: str | os.PathLike, *, opset: int = 17,
                class_names: Sequence[str] | None = None, preprocess: Policy | None = None) -> Path:
    """Export ``jpeg_model`` (a :class:`~jpegfx.convert.JpegModel` in eval mode) to one self-contained
    ONNX file at ``path``; returns the path.

    Without ``preprocess`` the file holds the input stage for the spec's default JPEG layout and takes
    that layout's coefficients and tables at the model's size. With a ``preprocess``
    :class:`~jpegfx.preprocess.Policy` (its crop must be the model's size) the file holds the network
    alone and takes ``x``, its JPEG-domain input ``(N, C·64, Hb, Wb)``; the policy is stored in the
    metadata, and :class:`jpegfx.runtime.Session` computes ``x`` from JPEGs of any size and layout
    (:func:`jpegfx.preprocess.model_input`): one file serves every photo. A network that starts on
    pixels (``domains="pixels"``, exact) takes their normalised pixels instead, and with a policy
    without a crop runs at any size (dynamic height and width; the model must be converted for any
    size, and the file is checked at a second size against the spatial model before it is written).

    ``class_names`` (one per output class) are stored in the metadata for
    :class:`jpegfx.runtime.Session`. Raises :class:`~jpegfx.errors.UsageError` (a ``ValueError``) for
    a model in train mode, for class names that are not strings or not one per class, for a policy
    whose crop is not the model's size, for a model too large for one file (see the module docstring)
    and for a ``path`` that cannot be written.
    """
    if any(m.training for m in jpeg_model.modules()):
        raise UsageError("export needs eval mode: call jpeg_model.eval()")
    if class_names is not None:
        class_names = list(class_names)
        if not all(isinstance(c, str) for c in class_names):
            raise UsageError("class_names must be strings")
    spec = jpeg_model.spec
    if preprocess is not None:
        if not isinstance(preprocess, Policy):
            raise UsageError(f"preprocess must be a jpegfx.preprocess.Policy, got {type(preprocess).__name__}")
        if preprocess.crop is not None and tuple(preprocess.crop) != tuple(spec.input_size):
            raise UsageError(f"the policy's crop {preprocess.crop[0]}x{preprocess.crop[1]} is not the model's input "
                             f"size {spec.input_size[0]}x{spec.input_size[1]}")
    path = check_output_path(path)
    if preprocess is None:
        color_space, samplings = spec.samplings()
        batch = _trace_batch(spec, _TRACE_BATCH)
        stage = jpeg_model.input_stage(batch)  # the stage for the spec's layout
        args = batch_tensors(batch)
        names = list(input_names(color_space))
    network = jpeg_model.network
    folded = jpeg_model.pixel_network() if hasattr(jpeg_model, "pixel_network") else None
    dynamic = False
    if preprocess is not None:
        color_space, samplings = ANY_LAYOUT, ()
        generator = torch.Generator().manual_seed(0)
        stage = nn.Identity()
        if folded is not None and _size_free(folded):  # the network starts on pixels: hand it pixels
            network, names = folded, [PIXEL_INPUT]
            args = (torch.randn(_TRACE_BATCH, spec.channels, *spec.input_size, generator=generator,
                                dtype=jpeg_model.dtype),)
            dynamic = preprocess.crop is None
            if dynamic and jpeg_model.__dict__.get("_source") is None:
                raise UsageError("a file for photos at their own size (a policy without a crop) needs a model converted "
                                 "for any size: convert without input_size, or with any_size=True")
        else:
            if preprocess.crop is None and jpeg_model.__dict__.get("_source") is not None:
                log.info("the network computes on coefficients with size-dependent maps: the file takes photos that "
                         "the policy brings to %dx%d only", *spec.input_size)
            geometry = BlockGeometry(*spec.input_size)
            args = (torch.randn(_TRACE_BATCH, spec.channels * NCOEF, geometry.hb, geometry.wb, generator=generator,
                                dtype=jpeg_model.dtype),)
            names = [DCT_INPUT]
    elif folded is not None:  # the stage's pixels go straight into the network (no DCT/IDCT pair)
        stage, network = _PixelStage(stage), folded
    wrapper = _OnnxWrapper(stage, network).eval()
    need = _check_size(wrapper, network)
    assert len(names) == len(args)
    outputs = _output_names(network, wrapper, args)

    start = time.perf_counter()
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapper, args, buffer, input_names=names, output_names=outputs, opset_version=opset,
                dynamic_axes={n: {0: "batch", 2: "height", 3: "width"} if dynamic else {0: "batch"} for n in names}
                | {n: {0: "batch"} for n in outputs},
                do_constant_folding=True, dynamo=False,
            )
    except (RuntimeError, ValueError) as exc:  # constants folded at export time can still overflow protobuf
        if "2GB" in str(exc) or "2GiB" in str(exc) or "protobuf" in str(exc).lower():
            raise UsageError("the exported graph exceeds protobuf's 2 GiB limit for one self-contained .onnx file; "
                             "convert with lowering='factored' or a smaller input size") from exc
        raise
    traced = time.perf_counter() - start

    import onnx

    model = onnx.load_from_string(buffer.getvalue())
    if class_names is not None:
        _check_class_names(model, class_names)
    graph_inputs = [i.name for i in model.graph.input]
    if graph_inputs != names:  # the exporter drops inputs the graph never reads (chroma of a 1-channel model)
        log.info("the model does not read input(s) %s: the ONNX file takes only %s",
                 [n for n in names if n not in graph_inputs], graph_inputs)
    from jpegfx import __version__

    props = {
        "jpegfx_version": __version__,
        "input_size": f"{spec.input_size[0]}x{spec.input_size[1]}",
        "channels": str(spec.channels),
        "subsampling": spec.subsampling if preprocess is None else ANY_LAYOUT,
        "color_space": color_space,
        "samplings": json.dumps([list(s) for s in samplings]),
        "normalize": _normalize_json(spec.normalize),
        "upsampling": spec.upsampling,
        "relu": spec.relu,
        "frequencies": str(spec.frequencies),
        "input_names": json.dumps(graph_inputs),
        "output_names": json.dumps(outputs),
        "dtype": _dtype_name(getattr(jpeg_model, "dtype", torch.float32)),
    }
    if class_names is not None:
        props["class_names"] = json.dumps(class_names)
    if preprocess is not None:
        props["preprocess"] = json.dumps(preprocess.to_json())
    onnx.helper.set_model_props(model, props)
    model.producer_name, model.producer_version = "jpegfx", __version__

    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")  # replaced atomically below
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        onnx.save_model(model, os.fspath(tmp))
        onnx.checker.check_model(os.fspath(tmp))
        if dynamic:
            _check_other_size(tmp, jpeg_model)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UsageError(f"{path}: cannot write the ONNX file: {exc.strerror or _one_line(exc)}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    log.info("exported %s (%s %dx%d, %.1f MiB of tensors) to %s: %.1f MiB in %.2f s",
             type(jpeg_model.network).__name__, props["subsampling"] if preprocess is None else preprocess.describe(),
             *spec.input_size, need / 2**20, path,
             path.stat().st_size / 2**20, time.perf_counter() - start)
    log.debug("tracing took %.2f s", traced)
    return path


def _size_free(network: nn.Module) -> bool:
    """No op of ``network`` holds maps for one block grid (every module is the spatial model's own, or a
    JPEG-domain module that works on pixels of any size): it can run as one graph at any size."""
    from jpegfx.ops.base import JpegModule

    return not any(isinstance(m, JpegModule) for m in network.modules())


def _check_other_size(path: Path, jpeg_model) -> None:
    """A file with dynamic height and width must compute the spatial model at sizes other than the one it
    was traced at: run it in onnxruntime at an odd size and compare with the spatial model there
    (:class:`~jpegfx.errors.UsageError` when it cannot run or does not match)."""
    import numpy as np
    import onnxruntime as ort

    source = jpeg_model.__dict__["_source"]
    h, w = jpeg_model.spec.input_size
    size = (h + 19, max(w - 13, 17))
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(1, jpeg_model.spec.channels, *size, generator=generator, dtype=jpeg_model.dtype)
    try:
        with torch.no_grad():
            expected = source.eval()(x).double().numpy()
            exact = copy.deepcopy(source).double()(x.double()).numpy()  # the spatial model's own rounding
    except Exception as exc:  # noqa: BLE001 - the user's model
        raise UsageError(f"the spatial model itself does not run at {size[0]}x{size[1]} ({_one_line(exc)[:200]}): "
                         "export with a crop in the policy") from None
    try:
        session = ort.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
        got = session.run(None, {PIXEL_INPUT: x.numpy()})[0].astype(np.float64)
        error = float(np.abs(got - expected).max() / max(np.abs(expected).max(), 1e-30))
    except Exception as exc:  # noqa: BLE001 - whatever onnxruntime or the shapes say: the file cannot be dynamic
        raise UsageError(f"the exported graph cannot run at {size[0]}x{size[1]} ({_one_line(exc)[:200]}): export "
                         "with a crop in the policy") from None
    own = float(np.abs(expected - exact).max() / max(np.abs(exact).max(), 1e-30))
    # the usual bound, or ten times the spatial model's own rounding error when it amplifies rounding more
    bound = max(1e-4 if jpeg_model.dtype == torch.float32 else 1e-9, 10 * own)
    if error > bound:
        raise UsageError(f"the exported graph does not compute the spatial model at {size[0]}x{size[1]} (max relative "
                         f"error {error:.1e} > {bound:.0e}): export with a crop in the policy")
    log.info("checked the size-free file at %dx%d: max relative error %.1e", *size, error)


def read_spec(path: str | os.PathLike) -> OnnxSpec:
    """The :class:`OnnxSpec` stored in an exported file (:class:`~jpegfx.errors.UsageError`, a
    ``ValueError``, if it is missing, not ONNX, or has no valid jpegfx metadata)."""
    import onnx

    if os.path.isdir(path):
        raise UsageError(f"{path}: is a directory, not an ONNX file")
    try:
        model = onnx.load(os.fspath(path), load_external_data=False)
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except Exception as exc:  # onnx raises DecodeError and friends for non-ONNX files
        raise UsageError(f"{path}: not an ONNX file ({type(exc).__name__})") from None
    return spec_from_metadata({p.key: p.value for p in model.metadata_props}, str(path))
