"""Survey: convert third-party ResNets (timm's ResNet family, torchvision's ResNets) and check each one.

For every model and input size: build it with ``pretrained=False`` and seeded random weights,
randomised BatchNorm statistics and ``num_classes`` outputs, eval mode, float32; check that the
spatial model runs at that size; ``jpegfx.convert(model, size, normalize="imagenet")``; verify it on
real photo crops (scikit-learn's china.jpg and flower.jpg, matplotlib's grace_hopper.jpg), written as
4:2:0 JPEGs by Pillow and read with :func:`jpegfx.jpeg.read_jpeg`; optionally export it to ONNX and
check that onnxruntime's logits equal the torch model's (max relative 1e-5; for an f32-limited row,
10× the spatial model's own float32 error, the bound its float32 result was held to).

Outcomes: ``exact`` (max relative logit error <= 1e-5 and 100% top-1 agreement), ``refused``
(:class:`jpegfx.ConversionError`; the table shows its first line), ``f32-limited`` (beyond the float32
tolerance, but exact in float64 and within a tenth of the spatial model's own float32-vs-float64
difference: float32 rounding of an ill-conditioned model), ``WRONG`` (converted without error
but beyond that tolerance or top-1 below 100%), ``internal error`` (a ConversionError that only wraps a
Python exception raised inside a pass, "[pass] KeyError: ...": a converter bug), ``crash`` (convert or
verify raised anything else),
``timeout``, ``spatial model fails`` (the model itself cannot run at that size; not converted) and
``too large`` (more than ``--max-params`` parameters; not converted).
WRONG rows, and refusals by the converter's own self-check, of models up to 100 M parameters (``--f64-max-params``) are
redone in float64 (``--no-f64-recheck``
to skip): the table then adds the float64 conversion's error and the spatial model's own float32 error
(its float32 vs float64 outputs). A float64 error near 1e-12 with a large spatial float32 error means
float32 rounding in an ill-conditioned model (deep nets with random weights), not a wrong conversion.
A row still WRONG is then measured for the spatial model's own float64 *sensitivity* (its output's
relative change when the input goes through an exact block-DCT round trip, ~1e-16). Above 1e-13 the
random instance amplifies rounding more than 1000-fold, so its float32 outputs cannot meet the 1e-5
bound (float32 rounds 5e8 times coarser); the deepest ones reach 0.1–0.5, where even float64 cannot
check them (``tools/error_growth.py`` shows such an error growing layer by layer exactly as the
sensitivity does). The same holds when the spatial model's own float32 output misses the bound
(measured for models too large for the float64 recheck too): rounding inside the network is
amplified even where the input probe is not. The conversion is then checked on a *tamed* instance of
the same architecture (every normalisation weight times 0.5, 0.25 or 0.125, the first whose
sensitivity is at most 1e-13 and whose own float32 output meets the bound), in float32 against the
usual bound: ``exact when tamed``. With ``--onnx``, that tamed conversion's export is the one checked
against onnxruntime (the random instance's export is no more checkable in float32).
The ``pixels`` column counts the nodes computed on pixels (between an inverse and a forward block DCT:
pixel ops such as padding, and ops with no JPEG-domain lowering); the JSON lists their kinds.

Needs torchvision and timm, so it runs in ``.venv-thirdparty`` (``make setup-thirdparty``):

    .venv-thirdparty/bin/python tools/thirdparty_zoo.py [--models NAME ...] [--limit N]
        [--sizes 224x224 257x193] [--onnx] [--json out.json [--resume]] [--timeout 900]
        [--min-params 0] [--max-params 250] [-v]

A long survey can run in parts: ``--json out.json --resume`` keeps the rows already in the file and
surveys only the missing model/size pairs; ``--min-params`` leaves out the models a previous run covered;
``--merge part.json`` folds in the rows of a part surveyed on its own (they replace the same model and
size), ``--redo WRONG`` surveys the rows of an outcome again.

Model names: ``torchvision/NAME`` or ``timm/NAME``; a bare name is timm's if timm has it, else
torchvision's. Progress goes to the log (stderr); stdout carries only the table and the totals.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import fnmatch
import gc
import io
import json
import logging
import math
import re
import signal
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from PIL import Image
from torch import nn

import jpegfx
from jpegfx import models
from jpegfx.jpeg import JpegBatch, read_jpeg, stack
from jpegfx.ops.input import spatial_model_input
from jpegfx.transforms import from_dct, to_dct

log = logging.getLogger("thirdparty_zoo")

TOLERANCE = 1e-5  # float32: max |jpeg - spatial| <= TOLERANCE * max |spatial| (tests/conftest.py RTOL)

TIMM_PATTERNS = ("resnet*", "resnext*", "wide_resnet*", "seresnet*", "ecaresnet*", "skresnet*", "resnest*",
                 "res2net*", "resnetv2*", "resnetrs*", "resnetblur*", "cspresnet*", "nf_resnet*", "tresnet*",
                 "resnet*ts")
TORCHVISION_MODELS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnext50_32x4d", "wide_resnet50_2")
# A ConversionError that only wraps a Python exception raised inside a pass ("[pass] KeyError: ..."):
# a converter bug, not a refusal.
INTERNAL_ERROR = re.compile(r"^\[\w+\] \w*(Error|Exception): ")
F64_MAX_PARAMS = 100  # millions (--f64-max-params): the float64 recheck of a larger model may not fit in 24 GiB

# The converter's own check (convert(self_check=True)) refuses with this when the outputs differ.
SELF_CHECK_MISMATCH = re.compile(r"does not (match|compute) the spatial model")
PHOTOS = ("china.jpg", "flower.jpg", "grace_hopper.jpg")


@dataclass
class Row:
    """One model at one size."""

    model: str
    size: str
    outcome: str
    max_rel_error: float | None = None
    top1_agreement: float | None = None
    convert_s: float | None = None
    pixel_nodes: int | None = None
    pixel_ops: list[str] | None = None
    onnx_mib: float | None = None
    onnx_error: str | None = None
    divergence: str | None = None
    f64_rel_error: float | None = None
    f64_error: str | None = None
    spatial_f32_error: float | None = None
    sensitivity: float | None = None
    tamed_rel_error: float | None = None
    tamed_scale: float | None = None
    tamed_onnx_error: float | None = None
    error: str | None = None

    def cells(self) -> list[str]:
        """The row's table cells, in :data:`HEADER` order."""
        if self.error is not None:
            detail = first_line(self.error, 110)
        else:
            detail = f"{self.max_rel_error:.2e}" if self.max_rel_error is not None else ""
            if self.divergence:
                detail += f"; first divergence at {self.divergence}"
        if self.spatial_f32_error is not None:
            f64 = (f"{self.f64_rel_error:.1e}" if self.f64_rel_error is not None
                   else first_line(self.f64_error, 60) if self.f64_error else "?")
            detail += f" [f64 conversion: {f64}; spatial model f32 vs f64: {self.spatial_f32_error:.1e}]"
        if self.sensitivity is not None:
            detail += f" [spatial model's own f64 sensitivity: {self.sensitivity:.1e}"
            if self.tamed_rel_error is not None:
                detail += f"; tamed (norm weights x{self.tamed_scale:g}): {self.tamed_rel_error:.2e}"
            if self.tamed_onnx_error is not None:
                detail += f", its ONNX {self.tamed_onnx_error:.1e}"
            detail += "]"
        top1 = f"{100 * self.top1_agreement:.0f}%" if self.top1_agreement is not None else ""
        secs = f"{self.convert_s:.1f}" if self.convert_s is not None else ""
        pixels = str(self.pixel_nodes) if self.pixel_nodes is not None else ""
        onnx = (f"{self.onnx_mib:.1f}" if self.onnx_mib is not None
                else f"error: {first_line(self.onnx_error, 40)}" if self.onnx_error else "")
        return [self.model, self.size, self.outcome, detail, top1, secs, pixels, onnx]


OUTCOMES = ("exact", "f32-limited", "exact when tamed", "refused", "WRONG", "internal error", "crash", "timeout", "spatial model fails", "too large")
HEADER = ["model", "size", "outcome", "max rel error (f32) / error", "top-1", "convert s", "pixels", "ONNX MiB"]
WIDTHS = [32, 8, 20, 0, 6, 9, 6, 8]  # 0: as wide as needed


def format_row(cells: list[str]) -> str:
    """One table line; the free-form error column goes last."""
    out = []
    for cell, width in zip(cells, WIDTHS):
        out.append(cell.ljust(width) if width else cell)
    # the wide, free-form column goes last so that the others stay aligned
    order = [0, 1, 2, 4, 5, 6, 7, 3]
    return "  ".join(out[i] for i in order).rstrip()


def first_line(text: str | None, width: int) -> str:
    """The first line of ``text``, cut to ``width`` characters."""
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return line if len(line) <= width else line[:width - 1] + "…"


def default_models() -> list[str]:
    """timm's ResNet family (every name matching :data:`TIMM_PATTERNS`) and torchvision's ResNets."""
    import timm

    names = sorted({n for n in timm.list_models() if any(fnmatch.fnmatch(n, p) for p in TIMM_PATTERNS)})
    return [f"timm/{n}" for n in names] + [f"torchvision/{n}" for n in TORCHVISION_MODELS]


def qualify(name: str) -> str:
    """``torchvision/NAME`` or ``timm/NAME`` for a possibly bare ``name``."""
    if "/" in name:
        source, _ = name.split("/", 1)
        if source not in ("timm", "torchvision"):
            raise SystemExit(f"unknown model source {source!r} in {name!r}: use timm/NAME or torchvision/NAME")
        return name
    import timm

    return f"timm/{name}" if name in timm.list_models() else f"torchvision/{name}"


def build(name: str, num_classes: int, seed: int) -> nn.Module:
    """``name`` (qualified) with seeded random weights and BatchNorm statistics, in eval mode."""
    source, model_name = name.split("/", 1)
    torch.manual_seed(seed)
    if source == "timm":
        import timm

        model = timm.create_model(model_name, pretrained=False, num_classes=num_classes)
    else:
        import torchvision

        model = getattr(torchvision.models, model_name)(weights=None, num_classes=num_classes)
    return models.randomize_batchnorm(model, torch.Generator().manual_seed(seed)).eval()


def photos() -> list[np.ndarray]:
    """The real photos: scikit-learn's china.jpg and flower.jpg, matplotlib's grace_hopper.jpg (RGB uint8)."""
    import matplotlib
    from sklearn.datasets import load_sample_image

    images = [load_sample_image(name) for name in PHOTOS[:2]]
    hopper = Path(matplotlib.get_data_path()) / "sample_data" / PHOTOS[2]
    if hopper.exists():
        images.append(np.asarray(Image.open(hopper).convert("RGB")))
    return images


def photo_batch(images: list[np.ndarray], size: tuple[int, int], seed: int) -> JpegBatch:
    """One seeded random ``size`` crop of each photo (scaled up first where it is too small),
    written by Pillow as a 4:2:0 JPEG (quality 90) and read back with :func:`read_jpeg`."""
    h, w = size
    rng = np.random.default_rng(seed)
    files = []
    for image in images:
        scale = max(h / image.shape[0], w / image.shape[1], 1.0)
        if scale > 1.0:
            pil = Image.fromarray(image).resize((math.ceil(image.shape[1] * scale), math.ceil(image.shape[0] * scale)),
                                                Image.BICUBIC)
            image = np.asarray(pil)
        top = int(rng.integers(0, image.shape[0] - h + 1))
        left = int(rng.integers(0, image.shape[1] - w + 1))
        buf = io.BytesIO()
        Image.fromarray(image[top:top + h, left:left + w]).save(buf, "JPEG", quality=90, subsampling="4:2:0")
        files.append(buf.getvalue())
    return stack([read_jpeg(f) for f in files])


class ModelTimeout(Exception):
    """One model at one size ran past ``--timeout``."""


@contextlib.contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    """Raise :class:`ModelTimeout` after ``seconds`` (SIGALRM; 0 or no SIGALRM: no limit)."""
    if seconds <= 0 or not hasattr(signal, "SIGALRM"):
        yield
        return

    def expire(signum, frame):  # noqa: ARG001
        raise ModelTimeout(f"ran past {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def onnx_size(jpeg_model: nn.Module, batch: JpegBatch) -> tuple[float, float]:
    """Size in MiB of ``jpeg_model`` exported with :func:`jpegfx.export_onnx` to a temporary file, and
    the max relative difference of onnxruntime's logits on ``batch`` from the torch model's."""
    import onnxruntime as ort

    from jpegfx.ops.input import batch_tensors

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        jpegfx.export_onnx(jpeg_model.eval(), path)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        feed = dict(zip([i.name for i in session.get_inputs()], (t.numpy() for t in batch_tensors(batch))))
        got = torch.from_numpy(session.run(None, feed)[0])
        with torch.no_grad():
            want = jpeg_model(batch)
        error = float((got - want).abs().max() / want.abs().max().clamp_min(1e-30))
        return path.stat().st_size / 2**20, error


def judge_row_onnx(row: Row, error: float | None) -> None:
    """The row's ONNX verdict once its outcome is final: ``error`` is the export of the instance that was
    converted and checked (None: not exported). An ``exact when tamed`` row is judged by its tamed
    instance's export; without one (the tamed export failed, or was not made), the random instance's
    export stands unjudged: it is not reported as checked."""
    if row.outcome == "exact when tamed":
        if row.tamed_onnx_error is not None:
            judge_onnx(row, row.tamed_onnx_error)
        elif row.onnx_error is None and error is not None:
            row.onnx_mib, row.onnx_error = None, "not checked: the tamed instance was not exported"
    elif error is not None:
        judge_onnx(row, error)


def judge_onnx(row: Row, error: float) -> None:
    """onnxruntime must give the torch model's logits: within :data:`TOLERANCE`, or for an
    ``f32-limited`` row within the bound that row's float32 result was held to (10× the spatial
    model's own float32 error): both are float32 runs of the same ill-conditioned network."""
    bound = TOLERANCE
    if row.outcome == "f32-limited" and row.spatial_f32_error is not None:
        bound = max(TOLERANCE, 10 * row.spatial_f32_error)
    if not error <= bound:
        row.onnx_error = f"ValueError: onnxruntime differs from torch by {error:.1e} (bound {bound:.1e})"
        row.onnx_mib = None


F64_EXACT = 1e-10
"""A float64 conversion error at most this is exact."""


def spatial_f32_error(model: nn.Module, model64: nn.Module, batch: JpegBatch) -> float:
    """The spatial model's own float32 error: its float32 output against its float64 output (``model64``)
    on the float decode of ``batch``, relative to the largest logit."""
    x = spatial_model_input(batch, 3, "imagenet", "fancy", torch.float64)
    with torch.no_grad():
        y64 = model64(x)
        y32 = model(x.float()).double()
    return float((y32 - y64).abs().max() / y64.abs().max().clamp_min(1e-30))


def recheck_f64(row: Row, model: nn.Module, size: tuple[int, int], batch: JpegBatch) -> None:
    """Fill ``row``'s float64 figures: the spatial model's own float32 error (float32 vs float64 forward
    on the float decode of ``batch``) and the conversion's error in float64. A float64 error near 1e-12
    with a spatial float32 error near the float32 figure means float32 rounding in an ill-conditioned
    model, not a wrong conversion."""
    model64 = copy.deepcopy(model).double()
    row.spatial_f32_error = spatial_f32_error(model, model64, batch)
    try:
        jpeg_model = jpegfx.convert(model64, size, normalize="imagenet")
        row.f64_rel_error = jpegfx.verify(model64, jpeg_model, batch).max_rel_error
    except jpegfx.ConversionError as exc:
        row.f64_error = f"{type(exc).__name__}: {exc}"
    if (row.outcome == "WRONG" and row.f64_rel_error is not None and row.f64_rel_error <= F64_EXACT
            and row.max_rel_error is not None and row.spatial_f32_error >= row.max_rel_error / 10):
        row.outcome = "f32-limited"  # exact in float64; in float32 the model itself is no better


ILL_CONDITIONED = 1e-13
"""A spatial model whose float64 output moves by more than this (relative) when its input changes by
~1e-16 amplifies rounding more than 1000-fold: in float32 (rounding ~6e-8) its own outputs move by more
than the 1e-5 bound, so float32 cannot check a conversion of it (very deep random instances reach
0.1–0.5, beyond float64 too)."""
TAME_SCALES = (0.5, 0.25, 0.125)


def sensitivity(model: nn.Module, size: tuple[int, int], batch: JpegBatch) -> float:
    """The spatial model's own relative output change, in float64, when its input goes through an exact
    block-DCT round trip (~1e-16 relative, what the conversion does to every value)."""
    model64 = copy.deepcopy(model).double()
    x = spatial_model_input(batch, 3, "imagenet", "fancy", torch.float64)
    with torch.no_grad():
        y = model64(x)
        moved = model64(from_dct(to_dct(x), size))
    return float((moved - y).abs().max() / y.abs().max().clamp_min(1e-30))


def tamed(model: nn.Module, scale: float) -> nn.Module:
    """A copy of ``model`` with every normalisation layer's weight times ``scale``: each residual branch
    is damped, so a deep random network stops amplifying rounding; the architecture and every code path
    of the conversion stay the same."""
    out = copy.deepcopy(model)
    with torch.no_grad():
        for m in out.modules():
            if isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.GroupNorm)) and getattr(m, "weight", None) is not None:
                m.weight.mul_(scale)
    return out


def recheck_tamed(row: Row, model: nn.Module, size: tuple[int, int], batch: JpegBatch, onnx: bool = False) -> None:
    """For a WRONG row: measure the spatial model's own :func:`sensitivity` and float32 error; where the
    sensitivity is above :data:`ILL_CONDITIONED` or the model's own float32 output misses the bound
    (rounding inside the network, which the input probe does not reach, can be amplified too), check
    the conversion on the first :func:`tamed` instance whose sensitivity is not, in float32 against the
    usual bound (and whose own float32 output meets it). Exact there: "exact when tamed"; with ``onnx``,
    that tamed conversion is exported too and its onnxruntime logits compared (``tamed_onnx_error``,
    judged by :func:`judge_row_onnx`): the random instance's export is no more checkable in float32
    than its torch conversion."""
    row.sensitivity = sensitivity(model, size, batch)
    if row.spatial_f32_error is None:  # no float64 recheck (a large model): the spatial model alone, once
        row.spatial_f32_error = spatial_f32_error(model, copy.deepcopy(model).double(), batch)
    if row.sensitivity <= ILL_CONDITIONED and row.spatial_f32_error <= TOLERANCE:
        return  # a well-conditioned model, which float32 can check: its error is the conversion's
    for scale in TAME_SCALES:
        candidate = tamed(model, scale)
        if (sensitivity(candidate, size, batch) > ILL_CONDITIONED
                or spatial_f32_error(candidate, copy.deepcopy(candidate).double(), batch) > TOLERANCE):
            continue
        jpeg_model = jpegfx.convert(candidate, size, normalize="imagenet")
        report = jpegfx.verify(candidate, jpeg_model, batch)
        row.tamed_scale, row.tamed_rel_error = scale, report.max_rel_error
        if report.max_rel_error <= TOLERANCE and report.top1_agreement == 1.0:
            row.outcome = "exact when tamed"
            if onnx:
                try:
                    row.onnx_mib, row.tamed_onnx_error = onnx_size(jpeg_model, batch)
                    row.onnx_error = None
                except Exception as exc:  # noqa: BLE001 - reported in the table
                    row.onnx_mib, row.onnx_error = None, f"{type(exc).__name__}: {exc}"
        return


def recheck(row: Row, model: nn.Module, size: tuple[int, int], batch: JpegBatch,
            max_params: float = F64_MAX_PARAMS) -> None:
    """:func:`recheck_f64` for models of at most ``max_params`` million parameters, logging (not
    raising) its own failures: the float32 figures stand."""
    params = sum(p.numel() for p in model.parameters())
    if params > max_params * 1e6:
        log.info("%s: no float64 recheck (%.0f M parameters)", row.model, params / 1e6)
        return
    try:
        recheck_f64(row, model, size, batch)
    except Exception as exc:  # noqa: BLE001
        log.warning("%s at %s: float64 recheck failed: %s: %s", row.model, row.size, type(exc).__name__, exc)


def survey_one(name: str, model: nn.Module, size: tuple[int, int], images: list[np.ndarray],
               args: argparse.Namespace) -> Row:
    """Convert and verify ``model`` at ``size``; every failure becomes the row's outcome."""
    label = f"{size[0]}x{size[1]}"
    try:
        with torch.no_grad():
            model(torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(args.seed)))
    except Exception as exc:  # noqa: BLE001 - any failure of the model itself
        return Row(name, label, "spatial model fails", error=f"{type(exc).__name__}: {exc}")
    batch = photo_batch(images, size, args.seed)
    start = time.perf_counter()
    try:
        jpeg_model = jpegfx.convert(model, size, normalize="imagenet")
    except jpegfx.ConversionError as exc:
        outcome = "internal error" if INTERNAL_ERROR.match(str(exc)) else "refused"
        row = Row(name, label, outcome, convert_s=time.perf_counter() - start, error=f"{type(exc).__name__}: {exc}")
        if args.f64_recheck and SELF_CHECK_MISMATCH.search(str(exc)):
            recheck(row, model, size, batch, args.f64_max_params)
        return row
    seconds = time.perf_counter() - start
    on_pixels = [r for r in getattr(jpeg_model, "records", ()) if getattr(r, "jpeg", "") == "(on pixels)"]
    pixel_ops = sorted({f"{getattr(r, 'spatial', '?')}: {getattr(r, 'detail', '')}" for r in on_pixels})
    report = jpegfx.verify(model, jpeg_model, batch)
    ok = report.max_rel_error <= TOLERANCE and report.top1_agreement == 1.0
    row = Row(name, label, "exact" if ok else "WRONG", report.max_rel_error, report.top1_agreement, seconds,
              len(on_pixels), pixel_ops)
    if not ok and report.first_divergence is not None:
        d = report.first_divergence
        row.divergence = f"{d.node} ({d.target}): rel {d.rel_error:.2e}"
    onnx_error = None
    if args.onnx:
        try:
            row.onnx_mib, onnx_error = onnx_size(jpeg_model, batch)
        except Exception as exc:  # noqa: BLE001 - reported in the table
            row.onnx_error = f"{type(exc).__name__}: {exc}"
    del jpeg_model  # before the float64 copies
    gc.collect()
    if not ok and args.f64_recheck:
        recheck(row, model, size, batch, args.f64_max_params)
    if row.outcome == "WRONG" and args.f64_recheck:
        try:
            recheck_tamed(row, model, size, batch, onnx=args.onnx)
        except Exception as exc:  # noqa: BLE001 - the float32 figures stand
            log.warning("%s at %s: tamed recheck failed: %s: %s", name, label, type(exc).__name__, exc)
    judge_row_onnx(row, onnx_error)  # after the rechecks: an f32-limited row has a wider float32 bound
    return row


def survey(names: list[str], sizes: list[tuple[int, int]], args: argparse.Namespace,
           done: frozenset[tuple[str, str]] = frozenset()) -> Iterator[Row]:
    """Rows for every model at every size, one model built at a time; ``done`` (model, "HxW") pairs are skipped."""
    images = photos()
    for i, name in enumerate(names, 1):
        if all((name, f"{h}x{w}") in done for h, w in sizes):
            continue
        log.info("[%d/%d] %s", i, len(names), name)
        try:
            with time_limit(args.timeout):
                model = build(name, args.num_classes, args.seed)
        except Exception as exc:  # noqa: BLE001 - a model that cannot be built
            for size in sizes:
                yield Row(name, f"{size[0]}x{size[1]}", "crash", error=f"building: {type(exc).__name__}: {exc}")
            continue
        params = sum(p.numel() for p in model.parameters())
        if params <= args.min_params * 1e6:
            log.info("  %.0f M parameters <= --min-params %g M: left out", params / 1e6, args.min_params)
            del model
            gc.collect()
            continue
        if params > args.max_params * 1e6:
            for size in sizes:
                yield Row(name, f"{size[0]}x{size[1]}", "too large",
                          error=f"{params / 1e6:.0f} M parameters > --max-params {args.max_params:g} M (not converted)")
            del model
            gc.collect()
            continue
        for size in sizes:
            if (name, f"{size[0]}x{size[1]}") in done:
                continue
            start = time.perf_counter()
            try:
                with time_limit(args.timeout):
                    row = survey_one(name, model, size, images, args)
            except ModelTimeout as exc:
                row = Row(name, f"{size[0]}x{size[1]}", "timeout", error=str(exc))
            except Exception as exc:  # noqa: BLE001 - convert or verify crashed: a converter bug
                log.debug("%s at %s", name, size, exc_info=True)
                row = Row(name, f"{size[0]}x{size[1]}", "crash", error=f"{type(exc).__name__}: {exc}")
            log.info("  %s: %s in %.1f s", row.size, row.outcome, time.perf_counter() - start)
            yield row
        del model
        gc.collect()


def parse_size(text: str) -> tuple[int, int]:
    """``HxW`` (or ``S``) → ``(H, W)``."""
    try:
        parts = [int(p) for p in text.lower().split("x")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be HxW, got {text!r}") from None
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"size must be HxW, got {text!r}")
    return parts[0], parts[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", help="default: timm's ResNet family and torchvision's ResNets")
    parser.add_argument("--limit", type=int, help="only the first N models")
    parser.add_argument("--sizes", nargs="+", type=parse_size, default=[(224, 224), (257, 193)],
                        metavar="HxW", help="input sizes (default: 224x224 257x193)")
    parser.add_argument("--onnx", action="store_true", help="also export each converted model to ONNX (size in MiB)")
    parser.add_argument("--json", metavar="PATH", help="write the rows as JSON")
    parser.add_argument("--f64-recheck", action=argparse.BooleanOptionalAction, default=True,
                        help="convert and verify WRONG rows again in float64, to tell rounding from a wrong result")
    parser.add_argument("--max-params", type=float, default=250,
                        help="skip models with more parameters, in millions (default 250: conversion peaks at ~4x "
                             "the model's memory)")
    parser.add_argument("--f64-max-params", type=float, default=F64_MAX_PARAMS,
                        help=f"float64 recheck only for models up to this many million parameters (default "
                             f"{F64_MAX_PARAMS}: it peaks at over 10 GiB for a 64 M model)")
    parser.add_argument("--min-params", type=float, default=0,
                        help="leave out models with at most this many parameters, in millions (default 0)")
    parser.add_argument("--resume", action="store_true",
                        help="keep the rows already in --json and survey only the missing model/size pairs")
    parser.add_argument("--merge", metavar="PATH", nargs="+",
                        help="with --resume: first replace the rows of --json by the rows of these JSON files for the "
                             "same model and size (a part surveyed on its own, e.g. a redo), then go on")
    parser.add_argument("--redo", nargs="+", metavar="OUTCOME", choices=OUTCOMES,
                        help="with --resume: survey the rows with these outcomes again (e.g. WRONG)")
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=int, default=900, help="seconds per model and size (0: none)")
    parser.add_argument("--threads", type=int, help="torch threads")
    parser.add_argument("-v", "--verbose", action="store_true", help="also jpegfx's own log and tracebacks")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("jpegfx").setLevel(logging.INFO if args.verbose else logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        names = [qualify(n) for n in args.models] if args.models else default_models()
    except (ImportError, RuntimeError) as exc:  # RuntimeError: a torchvision built for another torch
        print(f"error: {exc}: run in .venv-thirdparty (make setup-thirdparty)", file=sys.stderr)
        return 2
    if args.limit is not None:
        names = names[:args.limit]
    log.info("%d model(s) at %s", len(names), ", ".join(f"{h}x{w}" for h, w in args.sizes))

    rows = []
    if args.resume:
        if not args.json:
            parser.error("--resume needs --json")
        if Path(args.json).exists():
            rows = [Row(**r) for r in json.loads(Path(args.json).read_text())]
            for other in args.merge or ():
                merged = {(r["model"], r["size"]): Row(**r) for r in json.loads(Path(other).read_text())}
                rows = [merged.pop((r.model, r.size), r) for r in rows] + list(merged.values())
                log.info("merged %s", other)
            rows = [r for r in rows if r.outcome not in (args.redo or ())]
            Path(args.json).write_text(json.dumps([asdict(r) for r in rows], indent=2) + "\n")
            log.info("resuming: %d row(s) already in %s", len(rows), args.json)
    done = frozenset((r.model, r.size) for r in rows)
    print(format_row(HEADER), flush=True)
    for row in rows:
        print(format_row(row.cells()), flush=True)
    for row in survey(names, args.sizes, args, done):
        rows.append(row)
        print(format_row(row.cells()), flush=True)
        if args.json:  # after every row: a run killed for memory keeps what it had
            Path(args.json).write_text(json.dumps([asdict(r) for r in rows], indent=2) + "\n")
    counts = {k: sum(r.outcome == k for r in rows) for k in OUTCOMES}
    print(" / ".join(f"{v} {k}" for k, v in counts.items() if v or k in OUTCOMES[:3]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
