"""Side-by-side speed measurements: JPEG-domain vs decode + spatial, in one process.

Every figure is a median over ``repeat`` timed runs after ``warmup`` untimed ones, and every ratio is
taken between numbers measured in the same run (the machines are noisy; never compare across runs).
The functions compared are timed round-robin (:func:`interleaved_medians`): run ``i`` of each one
happens between runs ``i`` of the others, so a machine that slows down or speeds up part-way through
biases all of them alike.

* **end to end** from JPEG bytes in memory: (a) :func:`jpegfx.jpeg.read_jpeg` + the JPEG-domain model,
  vs (b) a full libjpeg-turbo decode (simplejpeg when installed, and Pillow) + normalisation + the
  spatial model;
* **network only**: the JPEG-domain network on the DCT of the input vs the spatial model on the input,
  with the ``elide_transforms`` pass (the default) and without it (every value in the JPEG domain);
* **onnxruntime** (``onnx=True``): both models exported to ONNX and run on the CPU provider with the
  torch thread count, end to end from JPEG bytes (read coefficients vs full decode) and network only;
* **per layer**: each node of the JPEG-domain graph and of the spatial graph, timed through an fx
  Interpreter (node twins share names), to show which layers cost what.
"""
from __future__ import annotations

import io
import logging
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.fx as fx
from torch import nn

import jpegfx
from jpegfx import jpeg as jpeg_io
from jpegfx.convert import JpegModel, infer_channels
from jpegfx.ops.input import normalization
from jpegfx.transforms import to_dct

log = logging.getLogger(__name__)


def median_seconds(fn: Callable[[], object], warmup: int, repeat: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved_medians(fns: dict[str, Callable[[], object]], warmup: int, repeat: int) -> dict[str, float]:
    """Median seconds of each function, timed round-robin (one run of each per round)."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


@dataclass
class BenchResult:
    model: str
    input_size: tuple[int, int]
    batch: int
    relu: str
    frequencies: int
    threads: int
    domains: str = "jpeg"
    seconds: dict[str, float] = field(default_factory=dict)
    ratios: dict[str, float] = field(default_factory=dict)
    checks: dict[str, float] = field(default_factory=dict)  # max relative differences between what is timed
    layers: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _jpeg_files(batch: int, size: tuple[int, int], channels: int, seed: int) -> list[bytes]:
    """Real-photo crops (scikit-learn's sample images when installed, else smooth noise) as JPEG bytes."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    try:
        from sklearn.datasets import load_sample_image

        photos = [load_sample_image(n) for n in ("china.jpg", "flower.jpg")]
    except ImportError:
        photos = [np.clip(rng.normal(128, 40, (512, 512, 3)), 0, 255).astype(np.uint8)]
    files = []
    for i in range(batch):
        img = photos[i % len(photos)]
        if img.shape[0] < size[0] or img.shape[1] < size[1]:
            img = np.asarray(Image.fromarray(img).resize((max(size[1], img.shape[1]), max(size[0], img.shape[0]))))
        top = rng.integers(0, img.shape[0] - size[0] + 1)
        left = rng.integers(0, img.shape[1] - size[1] + 1)
        crop = Image.fromarray(img[top:top + size[0], left:left + size[1]])
        if channels == 1:
            crop = crop.convert("L")
        buf = io.BytesIO()
        crop.save(buf, "JPEG", quality=85)
        files.append(buf.getvalue())
    return files


class _NodeTimer(fx.Interpreter):
    def __init__(self, gm: fx.GraphModule) -> None:
        super().__init__(gm)
        self.times: dict[str, float] = {}

    def run_node(self, n: fx.Node):
        start = time.perf_counter()
        out = super().run_node(n)
        self.times[n.name] = self.times.get(n.name, 0.0) + time.perf_counter() - start
        return out


def _rel(a, b) -> float:
    a, b = torch.as_tensor(a).double(), torch.as_tensor(b).double()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def layer_times(model: nn.Module, jpeg_model: JpegModel, x: torch.Tensor, repeat: int) -> list[dict]:
    """Per-node median-free totals over ``repeat`` runs (seconds per run), JPEG-domain vs spatial twin."""
    from jpegfx.verify import spatial_graph

    spatial, jpeg = _NodeTimer(spatial_graph(model, jpeg_model.spec.channels)), _NodeTimer(jpeg_model.network)
    xd = to_dct(x)
    with torch.no_grad():
        for _ in range(repeat):
            spatial.run(x)
            jpeg.run(xd)
    rows = []
    for node in jpeg_model.network.graph.nodes:
        if node.op in ("placeholder", "output") or node.name not in jpeg.times:
            continue
        target = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", str(node.target))
        op = type(jpeg_model.network.get_submodule(node.target)).__name__ if node.op == "call_module" else target
        rows.append({"node": node.name, "op": op, "jpeg_ms": 1e3 * jpeg.times[node.name] / repeat,
                     "spatial_ms": 1e3 * spatial.times.get(node.name, 0.0) / repeat})
    return rows


def _ort_options(threads: int):
    """Session options for interleaved timing: ``threads`` intra-op threads that do not spin when idle
    (two sessions' spinning pools would otherwise fight over the cores between their runs)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return options


def _ort_session(path: Path, threads: int):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), sess_options=_ort_options(threads), providers=["CPUExecutionProvider"])


def _export_spatial(model: nn.Module, x: torch.Tensor, path: Path) -> None:
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(path), input_names=["x"], output_names=["y"], opset_version=17,
                          dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, dynamo=False)


def run_bench(model_name: str = "resnet18", size: tuple[int, int] = (224, 224), batch: int = 1,
              relu: str = "exact", frequencies: int = 15, threads: int | None = None, warmup: int = 2,
              repeat: int = 5, layers: bool = True, seed: int = 0, onnx: bool = True,
              domains: str = "jpeg") -> BenchResult:
    """Measure one configuration (``domains``: that of the converted model; see :func:`jpegfx.convert`);
    see the module docstring."""
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    model = jpegfx.models.create_model(model_name)
    jpegfx.models.randomize_batchnorm(model, torch.Generator().manual_seed(seed))
    model.eval()
    channels = infer_channels(model)
    normalize = "imagenet" if channels == 3 else None
    result = BenchResult(model_name, tuple(size), batch, relu, frequencies, torch.get_num_threads(), domains=domains)
    start = time.perf_counter()
    jpeg_model = jpegfx.convert(model, size, relu=relu, frequencies=frequencies, normalize=normalize,
                                subsampling="4:2:0" if channels == 3 else "gray", maxpool="exact", domains=domains)
    result.seconds["convert"] = time.perf_counter() - start
    all_jpeg = jpegfx.convert(model, size, relu=relu, frequencies=frequencies, normalize=normalize,
                              subsampling="4:2:0" if channels == 3 else "gray", elide_transforms=False)
    files = _jpeg_files(batch, size, channels, seed)
    mean, std = (t.float().reshape(1, -1, 1, 1) for t in normalization(normalize, channels))

    def read_coefficients():
        return jpeg_io.stack([jpeg_io.read_jpeg(f) for f in files])

    def pillow_decode():
        from PIL import Image

        arrays = [np.asarray(Image.open(io.BytesIO(f)).convert("RGB" if channels == 3 else "L")) for f in files]
        x = torch.from_numpy(np.stack(arrays)).float()
        x = x.permute(0, 3, 1, 2) if channels == 3 else x.unsqueeze(1)
        return (x / 255 - mean) / std

    decoders = {"pillow": pillow_decode}
    try:
        import simplejpeg

        def simplejpeg_decode():
            fmt = "RGB" if channels == 3 else "Gray"
            x = torch.from_numpy(np.stack([simplejpeg.decode_jpeg(f, colorspace=fmt) for f in files])).float()
            return (x.permute(0, 3, 1, 2) / 255 - mean) / std

        decoders["simplejpeg"] = simplejpeg_decode
    except ImportError:
        log.info("simplejpeg is not installed: end-to-end compares with Pillow only")

    coeffs = read_coefficients()
    x = pillow_decode()
    t = result.seconds
    with torch.inference_mode():
        xd = to_dct(x)
        result.checks["elided_vs_all_jpeg"] = _rel(jpeg_model.network(xd), all_jpeg.network(xd))
        result.checks["jpeg_network_vs_spatial"] = _rel(jpeg_model.network(xd), model(x))
        timed = {"read_coefficients": read_coefficients,
                 **{f"decode_{name}": dec for name, dec in decoders.items()},
                 "jpeg_model_from_coefficients": lambda: jpeg_model(coeffs),
                 "jpeg_network_only": lambda: jpeg_model(xd),  # the model's own inference path
                 "jpeg_network_only_all_jpeg": lambda: all_jpeg(xd),
                 "spatial_network_only": lambda: model(x),
                 "end_to_end_jpeg": lambda: jpeg_model(read_coefficients()),
                 **{f"end_to_end_{name}_spatial": (lambda dec=dec: model(dec())) for name, dec in decoders.items()}}
        t.update(interleaved_medians(timed, warmup, repeat))
    for name in decoders:
        result.ratios[f"end_to_end_jpeg_over_{name}_spatial"] = t["end_to_end_jpeg"] / t[f"end_to_end_{name}_spatial"]
    result.ratios["network_jpeg_over_spatial"] = t["jpeg_network_only"] / t["spatial_network_only"]
    result.ratios["network_all_jpeg_over_spatial"] = t["jpeg_network_only_all_jpeg"] / t["spatial_network_only"]
    result.ratios["images_per_second_jpeg"] = batch / t["end_to_end_jpeg"]
    if onnx:
        _bench_onnxruntime(result, jpeg_model, model, x, read_coefficients, decoders, warmup, repeat)
    if layers:
        result.layers = layer_times(model, jpeg_model, x, max(1, repeat // 2))
    return result


def _bench_onnxruntime(result: BenchResult, jpeg_model: JpegModel, model: nn.Module, x: torch.Tensor,
                       read_coefficients: Callable[[], jpeg_io.JpegBatch], decoders: dict[str, Callable],
                       warmup: int, repeat: int) -> None:
    """Both models in onnxruntime (CPU provider, ``result.threads`` intra-op threads)."""
    from jpegfx.export import export_onnx
    from jpegfx.runtime import Session

    with tempfile.TemporaryDirectory() as tmp:
        jpeg_path, spatial_path = Path(tmp) / "jpeg.onnx", Path(tmp) / "spatial.onnx"
        export_onnx(jpeg_model, jpeg_path)
        _export_spatial(model, x, spatial_path)
        jpeg_session = Session(jpeg_path, providers=["CPUExecutionProvider"], intra_op_threads=result.threads,
                               session_options=_ort_options(result.threads))
        spatial_session = _ort_session(spatial_path, result.threads)
    t, coeffs, pixels = result.seconds, read_coefficients(), x.numpy()
    with torch.inference_mode():
        result.checks["ort_jpeg_vs_torch"] = _rel(jpeg_session.run(coeffs), jpeg_model(coeffs))
        result.checks["ort_spatial_vs_torch"] = _rel(spatial_session.run(None, {"x": pixels})[0], model(x))
    timed = {"ort_jpeg_model_from_coefficients": lambda: jpeg_session.run(coeffs),
             "ort_spatial_network_only": lambda: spatial_session.run(None, {"x": pixels}),
             "ort_end_to_end_jpeg": lambda: jpeg_session.run(read_coefficients()),
             **{f"ort_end_to_end_{name}_spatial": (lambda dec=dec: spatial_session.run(None, {"x": dec().numpy()}))
                for name, dec in decoders.items()}}
    t.update(interleaved_medians(timed, warmup, repeat))
    for name in decoders:
        result.ratios[f"ort_end_to_end_jpeg_over_{name}_spatial"] = (t["ort_end_to_end_jpeg"]
                                                                    / t[f"ort_end_to_end_{name}_spatial"])
    result.ratios["ort_images_per_second_jpeg"] = result.batch / t["ort_end_to_end_jpeg"]


def format_result(r: BenchResult, top_layers: int = 10) -> str:
    lines = [f"{r.model} {r.input_size[0]}x{r.input_size[1]} batch {r.batch}, relu={r.relu}"
             + ("" if r.relu == "exact" else f"(k={r.frequencies})") + f", domains={r.domains}, {r.threads} thread(s), "
             "torch on CPU"]
    for key, value in r.seconds.items():
        lines.append(f"  {key:<40} {1e3 * value:10.2f} ms")
    for key, value in r.ratios.items():
        lines.append(f"  {key:<40} {value:10.3f}")
    for key, value in r.checks.items():
        lines.append(f"  max rel difference {key:<21} {value:10.1e}")
    if r.layers:
        lines.append(f"  hottest JPEG-domain layers (of {len(r.layers)}):")
        lines.append(f"    {'node':<26} {'op':<22} {'jpeg ms':>9} {'spatial ms':>10} {'ratio':>7}")
        for row in sorted(r.layers, key=lambda row: -row["jpeg_ms"])[:top_layers]:
            ratio = row["jpeg_ms"] / row["spatial_ms"] if row["spatial_ms"] > 0 else float("nan")
            lines.append(f"    {row['node']:<26} {row['op']:<22} {row['jpeg_ms']:9.2f} {row['spatial_ms']:10.2f} "
                         f"{ratio:7.2f}")
    return "\n".join(lines)
