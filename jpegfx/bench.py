"""Side-by-side speed measurements: JPEG-domain vs decode + spatial, in one process.

Every figure is a median over ``repeat`` timed runs after ``warmup`` untimed ones, and every ratio is
taken between numbers measured in the same run (the machines are noisy; never compare across runs).
The functions compared are timed round-robin (:func:`interleaved_medians`): run ``i`` of each one
happens between runs ``i`` of the others, so a machine that slows down or speeds up part-way through
biases all of them alike.

* **end to end** from JPEG bytes in memory: (a) :func:`jpegfx.jpeg.read_jpegs` + the JPEG-domain model,
  vs (b) a full libjpeg-turbo decode (simplejpeg when installed, and Pillow) + normalisation + the
  spatial model;
* **input only**: what stands where the spatial pipeline decodes and normalises, read + the input
  stage (:meth:`~jpegfx.convert.JpegModel.network_input`) vs each decode + normalisation;
* **network only**: the JPEG-domain network on the DCT of the input vs the spatial model on the input,
  with the ``elide_transforms`` pass (the default) and without it (every value in the JPEG domain);
* **onnxruntime** (``onnx=True``): both models exported to ONNX and run on the CPU provider with the
  torch thread count, end to end from JPEG bytes (read coefficients vs full decode) and network only;
* **per layer**: each node of the JPEG-domain graph and of the spatial graph, timed through an fx
  Interpreter (node twins share names), to show which layers cost what.

On a GPU (``device="cuda"``) both models and every input move to the device and every timed call ends
with a synchronisation. The end-to-end baselines are then a CPU decode copied to the GPU and, with
torchvision installed, torchvision's batched GPU decode (``torchvision.io.decode_jpeg(..., device=)``);
the JPEG path reads coefficients on the CPU and copies them. onnxruntime is measured on its CUDA
provider when the installed onnxruntime has one, and skipped otherwise.
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
    device: str = "cpu"  # "cpu", or the GPU's name
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
    def __init__(self, gm: fx.GraphModule, sync: Callable[[], None]) -> None:
        super().__init__(gm)
        self.times: dict[str, float] = {}
        self.sync = sync

    def run_node(self, n: fx.Node):
        start = time.perf_counter()
        out = super().run_node(n)
        self.sync()
        self.times[n.name] = self.times.get(n.name, 0.0) + time.perf_counter() - start
        return out


def _rel(a, b) -> float:
    a, b = torch.as_tensor(a).double(), torch.as_tensor(b).double()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def layer_times(model: nn.Module, jpeg_model: JpegModel, x: torch.Tensor, repeat: int) -> list[dict]:
    """Per-node median-free totals over ``repeat`` runs (seconds per run), JPEG-domain vs spatial twin."""
    from jpegfx.verify import spatial_graph

    sync = _synchronizer(x.device)
    spatial = _NodeTimer(spatial_graph(model, jpeg_model.spec.channels), sync)
    jpeg = _NodeTimer(jpeg_model.network, sync)
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


def _ort_session(path: Path, threads: int, providers=("CPUExecutionProvider",)):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), sess_options=_ort_options(threads), providers=list(providers))


def _export_spatial(model: nn.Module, x: torch.Tensor, path: Path) -> None:
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(path), input_names=["x"], output_names=["y"], opset_version=17,
                          dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, dynamo=False)


def _synchronizer(device: torch.device) -> Callable[[], None]:
    """What to call after a timed run so that its time includes the device's queued work."""
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def _synchronized(fn: Callable[[], object], sync: Callable[[], None]) -> Callable[[], object]:
    def run():
        out = fn()
        sync()
        return out

    return run


def resolve_device(device: str | torch.device) -> torch.device:
    """``device`` as a :class:`torch.device`; a one-line :class:`~jpegfx.errors.UsageError` for a CUDA
    device that this torch cannot use."""
    from jpegfx.errors import UsageError

    try:
        device = torch.device(device)
    except RuntimeError:
        raise UsageError(f"device {device!r}: expected cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device {device} requested, but this torch has no usable CUDA device "
                         f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'})")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise UsageError(f"device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if device.type not in ("cpu", "cuda"):
        raise UsageError(f"device {device}: expected cpu, cuda or cuda:N")
    return device


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def _decoders(files: list[bytes], channels: int, normalize, device: torch.device | str
              ) -> dict[str, Callable[[], torch.Tensor]]:
    """The baselines' decode + normalise, each giving the spatial model's input ``(N, C, H, W)`` on
    ``device``: Pillow, simplejpeg and torchvision (those installed). Pillow and simplejpeg decode on the
    CPU and copy; torchvision decodes the batch on ``device`` (libjpeg-turbo on the CPU, nvJPEG on a GPU)."""
    mode = "RGB" if channels == 3 else "L"
    mean, std = (t.float().reshape(1, -1, 1, 1).to(device) for t in normalization(normalize, channels))

    def normalized(hwc: np.ndarray) -> torch.Tensor:  # (N, H, W, C) uint8 → (N, C, H, W), a view like a decoder's
        x = torch.from_numpy(hwc).to(device).float().permute(0, 3, 1, 2)
        return (x / 255 - mean) / std

    def pillow():
        from PIL import Image

        arrays = [np.asarray(Image.open(io.BytesIO(f)).convert(mode)) for f in files]
        return normalized(np.stack([a if a.ndim == 3 else a[..., None] for a in arrays]))

    decoders = {"pillow": pillow}
    try:
        import simplejpeg

        def simplejpeg_decode():
            return normalized(np.stack([simplejpeg.decode_jpeg(f, colorspace="RGB" if channels == 3 else "Gray")
                                        for f in files]))

        decoders["simplejpeg"] = simplejpeg_decode
    except ImportError:
        log.info("simplejpeg is not installed: end-to-end compares with Pillow only")
    try:
        from torchvision.io import ImageReadMode, decode_jpeg

        encoded = [torch.frombuffer(bytearray(f), dtype=torch.uint8) for f in files]
        read_mode = ImageReadMode.RGB if channels == 3 else ImageReadMode.GRAY

        def torchvision_decode():  # one call per batch
            return (torch.stack(decode_jpeg(encoded, mode=read_mode, device=device)).float() / 255 - mean) / std

        decoders["torchvision"] = torchvision_decode
    except ImportError:
        log.info("torchvision is not installed: no torchvision decode baseline")
    return decoders


def run_bench(model_name: str = "resnet18", size: tuple[int, int] = (224, 224), batch: int = 1,
              relu: str = "exact", frequencies: int = 15, threads: int | None = None, warmup: int = 2,
              repeat: int = 5, layers: bool = True, seed: int = 0, onnx: bool = True,
              domains: str = "jpeg", device: str | torch.device = "cpu") -> BenchResult:
    """Measure one configuration (``domains``: that of the converted model; see :func:`jpegfx.convert`;
    ``device``: where both models run); see the module docstring."""
    device = resolve_device(device)
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    model = jpegfx.models.create_model(model_name)
    jpegfx.models.randomize_batchnorm(model, torch.Generator().manual_seed(seed))
    model.eval()
    channels = infer_channels(model)
    normalize = "imagenet" if channels == 3 else None
    result = BenchResult(model_name, tuple(size), batch, relu, frequencies, torch.get_num_threads(), domains=domains,
                         device=device_name(device))
    start = time.perf_counter()
    jpeg_model = jpegfx.convert(model, size, relu=relu, frequencies=frequencies, normalize=normalize,
                                subsampling="4:2:0" if channels == 3 else "gray", maxpool="exact", domains=domains)
    result.seconds["convert"] = time.perf_counter() - start
    all_jpeg = jpegfx.convert(model, size, relu=relu, frequencies=frequencies, normalize=normalize,
                              subsampling="4:2:0" if channels == 3 else "gray", elide_transforms=False)
    model, jpeg_model, all_jpeg = model.to(device), jpeg_model.to(device), all_jpeg.to(device)
    files = _jpeg_files(batch, size, channels, seed)

    def read_on_cpu():  # the batch reader: one call for the batch, each file decoded into its slot
        return jpeg_io.read_jpegs(files)

    def read_coefficients():
        return read_on_cpu().to(device)

    decoders = _decoders(files, channels, normalize, device)
    pillow_decode = decoders["pillow"]
    coeffs = read_coefficients()
    x = pillow_decode()
    sync = _synchronizer(device)
    t = result.seconds
    with torch.inference_mode():
        xd = to_dct(x)
        result.checks["elided_vs_all_jpeg"] = _rel(jpeg_model.network(xd), all_jpeg.network(xd))
        result.checks["jpeg_network_vs_spatial"] = _rel(jpeg_model.network(xd), model(x))
        # the JPEG path's input is the float decode of the coefficients (no rounding, no clamping)
        xin, reference = jpeg_model.network_input(coeffs), jpeg_model.spatial_input(coeffs)
        result.checks["jpeg_input_vs_float_decode"] = _rel(xin, reference if xin.shape == reference.shape
                                                           else to_dct(reference))
        for name, dec in decoders.items():  # every baseline feeds the spatial model the same image, up to decoders
            if name != "pillow":
                result.checks[f"{name}_input_vs_pillow"] = _rel(dec(), x)
        timed = {"read_coefficients": read_coefficients,
                 **{f"decode_{name}": dec for name, dec in decoders.items()},
                 "jpeg_input_from_bytes": lambda: jpeg_model.network_input(read_coefficients()),
                 "jpeg_model_from_coefficients": lambda: jpeg_model(coeffs),
                 "jpeg_network_only": lambda: jpeg_model(xd),  # the model's own inference path
                 "jpeg_network_only_all_jpeg": lambda: all_jpeg(xd),
                 "spatial_network_only": lambda: model(x),
                 "end_to_end_jpeg": lambda: jpeg_model(read_coefficients()),
                 **{f"end_to_end_{name}_spatial": (lambda dec=dec: model(dec())) for name, dec in decoders.items()}}
        t.update(interleaved_medians({k: _synchronized(fn, sync) for k, fn in timed.items()}, warmup, repeat))
    for name in decoders:
        result.ratios[f"end_to_end_jpeg_over_{name}_spatial"] = t["end_to_end_jpeg"] / t[f"end_to_end_{name}_spatial"]
    for name in decoders:  # the networks' input alone: read + input stage vs decode + normalise
        result.ratios[f"input_jpeg_over_{name}_decode"] = t["jpeg_input_from_bytes"] / t[f"decode_{name}"]
    result.ratios["network_jpeg_over_spatial"] = t["jpeg_network_only"] / t["spatial_network_only"]
    result.ratios["network_all_jpeg_over_spatial"] = t["jpeg_network_only_all_jpeg"] / t["spatial_network_only"]
    result.ratios["images_per_second_jpeg"] = batch / t["end_to_end_jpeg"]
    for name in decoders:
        result.ratios[f"images_per_second_{name}_spatial"] = batch / t[f"end_to_end_{name}_spatial"]
    if onnx:
        _bench_onnxruntime(result, jpeg_model, model, x, read_on_cpu, _decoders(files, channels, normalize, "cpu"),
                           warmup, repeat, device)
    if layers:
        result.layers = layer_times(model, jpeg_model, x, max(1, repeat // 2))
    return result


def _bench_onnxruntime(result: BenchResult, jpeg_model: JpegModel, model: nn.Module, x: torch.Tensor,
                       read_on_cpu: Callable[[], jpeg_io.JpegBatch], cpu_decoders: dict[str, Callable],
                       warmup: int, repeat: int, device: torch.device) -> None:
    """Both models in onnxruntime, fed from the CPU (coefficients read, images decoded there): the CPU
    provider with ``result.threads`` intra-op threads, or for a CUDA ``device`` the CUDA provider
    (skipped, with a log line, when the installed onnxruntime has none)."""
    import onnxruntime as ort

    from jpegfx.export import export_onnx
    from jpegfx.runtime import Session

    providers = ["CPUExecutionProvider"]
    if device.type == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            log.info("onnxruntime %s has no CUDA provider: the onnxruntime comparison is skipped", ort.__version__)
            return
        providers = [("CUDAExecutionProvider", {"device_id": device.index or 0}), "CPUExecutionProvider"]
    with tempfile.TemporaryDirectory() as tmp:
        jpeg_path, spatial_path = Path(tmp) / "jpeg.onnx", Path(tmp) / "spatial.onnx"
        export_onnx(jpeg_model.cpu(), jpeg_path)  # the export traces on the CPU
        _export_spatial(model.cpu(), x.cpu(), spatial_path)
        jpeg_session = Session(jpeg_path, providers=providers, intra_op_threads=result.threads,
                               session_options=_ort_options(result.threads))
        spatial_session = _ort_session(spatial_path, result.threads, providers)
    t, coeffs, pixels = result.seconds, read_on_cpu(), x.cpu().numpy()
    with torch.inference_mode():
        result.checks["ort_jpeg_vs_torch"] = _rel(jpeg_session.run(coeffs), jpeg_model(coeffs))
        result.checks["ort_spatial_vs_torch"] = _rel(spatial_session.run(None, {"x": pixels})[0], model(x.cpu()))
    model.to(device)  # back where the torch timings and the per-layer table run them
    jpeg_model.to(device)
    timed = {"ort_jpeg_model_from_coefficients": lambda: jpeg_session.run(coeffs),
             "ort_spatial_network_only": lambda: spatial_session.run(None, {"x": pixels}),
             "ort_end_to_end_jpeg": lambda: jpeg_session.run(read_on_cpu()),
             **{f"ort_end_to_end_{name}_spatial": (lambda dec=dec: spatial_session.run(None, {"x": dec().numpy()}))
                for name, dec in cpu_decoders.items()}}
    t.update(interleaved_medians(timed, warmup, repeat))
    for name in cpu_decoders:
        result.ratios[f"ort_end_to_end_jpeg_over_{name}_spatial"] = (t["ort_end_to_end_jpeg"]
                                                                    / t[f"ort_end_to_end_{name}_spatial"])
    result.ratios["ort_images_per_second_jpeg"] = result.batch / t["ort_end_to_end_jpeg"]


def format_result(r: BenchResult, top_layers: int = 10) -> str:
    lines = [f"{r.model} {r.input_size[0]}x{r.input_size[1]} batch {r.batch}, relu={r.relu}"
             + ("" if r.relu == "exact" else f"(k={r.frequencies})") + f", domains={r.domains}, {r.threads} thread(s), "
             + ("torch on CPU" if r.device == "cpu" else f"torch on {r.device}")]
    for key, value in r.seconds.items():
        lines.append(f"  {key:<45} {1e3 * value:10.2f} ms")
    for key, value in r.ratios.items():
        lines.append(f"  {key:<45} {value:10.3f}")
    for key, value in r.checks.items():
        lines.append(f"  max rel difference {key:<26} {value:10.1e}")
    if r.layers:
        lines.append(f"  hottest JPEG-domain layers (of {len(r.layers)}):")
        lines.append(f"    {'node':<26} {'op':<22} {'jpeg ms':>9} {'spatial ms':>10} {'ratio':>7}")
        for row in sorted(r.layers, key=lambda row: -row["jpeg_ms"])[:top_layers]:
            ratio = row["jpeg_ms"] / row["spatial_ms"] if row["spatial_ms"] > 0 else float("nan")
            lines.append(f"    {row['node']:<26} {row['op']:<22} {row['jpeg_ms']:9.2f} {row['spatial_ms']:10.2f} "
                         f"{ratio:7.2f}")
    return "\n".join(lines)
