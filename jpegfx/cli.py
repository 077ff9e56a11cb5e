"""The ``jpegfx`` command line. Prints for people, ``--json`` for programs (one JSON document per run, of
one shape per command).

Errors: anything wrong with the user's input — options, files, models, weights — is a
:class:`~jpegfx.errors.JpegfxError`, printed as one line ``jpegfx: error: …`` on stderr with exit status 2
(an unsupported model lists its ops, one line each). Any other exception is a bug in jpegfx and keeps
its traceback. Failed exact-mode verification and files that could not be used exit 1. Progress goes
to stderr, and only when stderr is a terminal.
"""
from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
import warnings
from collections import Counter
from pathlib import Path

import jpegfx
from jpegfx import preprocess as _preprocess
from jpegfx import reader
from jpegfx.errors import JpegError, JpegfxError, UnsupportedModelError, UsageError
from jpegfx.spec import MAX_FREQUENCIES


class _Lazy:
    """A module imported on first attribute access: ``predict`` and ``info`` serve with onnxruntime
    and numpy only, so the converter's modules (torch) load only for the commands that use them."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str):
        return getattr(importlib.import_module(self._name), attr)


torch = _Lazy("torch")
nn = _Lazy("torch.nn")
jpeg_io = _Lazy("jpegfx.jpeg")
models = _Lazy("jpegfx.models")
_convert = _Lazy("jpegfx.convert")
_export = _Lazy("jpegfx.export")
_lower = _Lazy("jpegfx.passes.lower_modules")
_verify = _Lazy("jpegfx.verify")

NATIVE_SIZE = {"paper": 32, "resnet20": 32, "resnet56": 32, "preact_resnet18": 32,
               "resnet18": 224, "resnet34": 224, "resnet50": 224}
ZOO = tuple(NATIVE_SIZE)  # jpegfx.models.MODELS, named here without importing torch (a test checks)
APPROXIMATE = float("inf")  # verify's tolerance in approximate modes: errors are measured, never judged

CliError = UsageError  # the command line's one-line user error (kept as a name for older callers)


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


# --------------------------------------------------------------------------------------------
# Argument types: bad values are refused while parsing, before any work
# --------------------------------------------------------------------------------------------
def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x")) if "x" in text.lower() else (int(text),) * 2
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW (e.g. 224x224), got {text!r}") from None
    if h < 1 or w < 1:
        raise argparse.ArgumentTypeError(f"sizes must be positive, got {text!r}")
    return h, w


def _int_in(low: int, high: int | None = None):
    """An argparse type: an integer in ``low..high``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be in {low}..{high}, got {value}" if high is not None
                                             else f"must be at least {low}, got {value}")
        return value

    return parse


_positive, _non_negative, _frequency = _int_in(1), _int_in(0), _int_in(1, MAX_FREQUENCIES)


def _device(text: str) -> str:
    """A torch device this machine can use (cpu, cuda, cuda:N)."""
    from jpegfx.bench import resolve_device

    try:
        resolve_device(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _normalize(text: str):
    """none | imagenet | MEAN,STD with per-channel values separated by ':' (e.g. 0.5,0.25 or
    0.485:0.456:0.406,0.229:0.224:0.225)."""
    if text in ("none", "imagenet"):
        return text
    try:
        mean, std = text.split(",")
        values = (tuple(float(v) for v in mean.split(":")), tuple(float(v) for v in std.split(":")))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected none, imagenet or MEAN,STD (values ':'-separated), got {text!r}") from None
    if any(v <= 0 for v in values[1]):
        raise argparse.ArgumentTypeError(f"std must be positive, got {text!r}")
    if len(values[0]) != len(values[1]) and 1 not in (len(values[0]), len(values[1])):
        raise argparse.ArgumentTypeError(f"{len(values[0])} mean value(s) but {len(values[1])} std value(s) in {text!r}")
    return values


def _resize(text: str) -> int | str:
    """auto | a positive integer."""
    return text if text == "auto" else _positive(text)


class _Parser(argparse.ArgumentParser):
    """argparse with jpegfx's error form: one line, raised as a UsageError (exit 2 in :func:`main`)."""

    def error(self, message: str):
        raise UsageError(f"{_one_line(message)} (see '{self.prog} --help')")


# --------------------------------------------------------------------------------------------
# Progress on a terminal
# --------------------------------------------------------------------------------------------
class _Status:
    """One line of progress on stderr, rewritten in place; silent unless stderr is a terminal, and
    erased on exit (also when an error ends the command, so the error line stands alone)."""

    def __init__(self) -> None:
        self.enabled = sys.stderr.isatty()
        self._width = 0

    def show(self, text: str) -> None:
        if self.enabled:
            print("\r" + text.ljust(self._width), end="", file=sys.stderr, flush=True)
            self._width = len(text)

    def __enter__(self) -> "_Status":
        return self

    def __exit__(self, *exc) -> None:
        if self.enabled and self._width:
            print("\r" + " " * self._width + "\r", end="", file=sys.stderr, flush=True)
            self._width = 0


# --------------------------------------------------------------------------------------------
# Models, weights and files
# --------------------------------------------------------------------------------------------
def _factory_model(spec: str) -> nn.Module:
    """``module:factory``: import ``module`` (the current directory first, as ``python -m`` does), call
    ``factory()``; anything the user's code raises, or returns that is not a module, is a UsageError."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise UsageError(f"--model {spec!r}: expected a zoo name ({', '.join(ZOO)}) or module:factory")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # the user's module: whatever fails in it is theirs to fix
        raise UsageError(f"cannot import {module_name!r} for --model {spec}: {type(e).__name__}: {_one_line(e)}") from None
    factory = getattr(module, attr, None)
    if factory is None:
        raise UsageError(f"cannot load model factory {spec!r}: module {module_name!r} has no attribute {attr!r}")
    if not callable(factory):
        raise UsageError(f"cannot load model factory {spec!r}: {attr!r} is not callable ({type(factory).__name__})")
    try:
        model = factory()
    except Exception as e:
        raise UsageError(f"model factory {spec} raised {type(e).__name__}: {_one_line(e)}") from None
    if not isinstance(model, nn.Module):
        raise UsageError(f"model factory {spec} returned {type(model).__name__!r}, not a torch.nn.Module")
    return model


def _load_weights(model: nn.Module, weights: Path) -> None:
    """Load a state_dict file with ``weights_only=True``; every problem is a one-line UsageError."""
    state = _read_state(weights)
    expected = model.state_dict()
    wrong = [k for k, v in state.items() if k in expected and v.shape != expected[k].shape]
    if wrong:
        k = wrong[0]
        raise UsageError(f"{weights}: weights do not match the model: {len(wrong)} tensor(s) of the wrong shape "
                         f"(e.g. {k}: {tuple(state[k].shape)} vs {tuple(expected[k].shape)})")
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise UsageError(f"{weights}: weights do not match the model: {len(result.missing_keys)} missing "
                         f"(e.g. {result.missing_keys[:2]}), {len(result.unexpected_keys)} unexpected "
                         f"(e.g. {result.unexpected_keys[:2]})")


def _read_state(weights: Path) -> dict:
    """A state_dict file read with ``weights_only=True``: a dict of tensors, or a one-line UsageError."""
    if weights.is_dir():
        raise UsageError(f"--weights {weights}: is a directory, not a state_dict file")
    if not weights.exists():
        raise UsageError(f"weights file not found: {weights}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            state = torch.load(weights, map_location="cpu", weights_only=True)
    except OSError as e:
        raise UsageError(f"{weights}: cannot read the weights file: {e.strerror or _one_line(e)}") from None
    except Exception as e:  # any failure to unpickle a file the user gave is a bad file
        raise UsageError(f"{weights}: not a safe state_dict file: it holds objects other than tensors, or is "
                         f"not a torch.save file ({type(e).__name__}); jpegfx never unpickles code") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UsageError(f"{weights}: expected a state_dict (a dict of tensors)")
    return state


def _load_weights_but_head(model: nn.Module, weights: Path) -> None:
    """Load a state_dict except the tensors of ``nn.Linear`` layers whose shapes differ (a classifier for
    another number of classes, which keeps its fresh initialisation); any other difference is refused."""
    fresh = {k: v.clone() for k, v in model.state_dict().items()}
    linear = {name for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    state = _read_state(weights)
    extra, missing = sorted(set(state) - set(fresh)), sorted(set(fresh) - set(state))
    if extra or missing:
        raise UsageError(f"{weights}: weights do not match the model: {len(missing)} missing (e.g. {missing[:2]}), "
                         f"{len(extra)} unexpected (e.g. {extra[:2]})")
    reset = sorted(k for k, v in state.items() if v.shape != fresh[k].shape and k.rpartition(".")[0] in linear)
    bad = [k for k, v in state.items() if v.shape != fresh[k].shape and k not in reset]
    if bad:
        raise UsageError(f"{weights}: weights do not match the model: {len(bad)} tensor(s) of the wrong shape outside "
                         f"its linear layers (e.g. {bad[0]}: {tuple(state[bad[0]].shape)} vs {tuple(fresh[bad[0]].shape)})")
    model.load_state_dict({**state, **{k: fresh[k] for k in reset}}, strict=True)
    if reset:
        print(f"reset {', '.join(reset)} for {model.state_dict()[reset[0]].shape[0]} classes (freshly initialised)",
              file=sys.stderr)


def load_model(spec: str, channels: int | None, weights: Path | None, num_classes: int | None = None) -> nn.Module:
    """A zoo name (built with ``channels`` and ``num_classes`` when given) or ``module:factory``; weights
    are a state_dict read with ``weights_only=True``."""
    if ":" in spec:
        model = _factory_model(spec)
    else:
        options = {} if channels is None else {"in_channels": channels}
        if num_classes is not None:
            options["num_classes"] = num_classes
        model = models.create_model(spec, **options)
    if weights is not None:
        _load_weights(model, weights)
    return model


def _read_class_names(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else _one_line(e)
        raise UsageError(f"--class-names {path}: cannot read it: {reason}") from None
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise UsageError(f"--class-names {path}: no class names in it (one per line)")
    return names


def _model_channels(args: argparse.Namespace, model: nn.Module) -> int:
    """The model's input channels: ``--channels``, else read off its graph."""
    return args.channels or _convert.infer_channels(model)


def _check_class_count(model: nn.Module, size: tuple[int, int], channels: int, dtype: torch.dtype,
                       class_names: list[str]) -> None:
    """Refuse a class-name file with the wrong number of names before converting: run the spatial
    model once on zeros (a model that cannot run is left for the conversion to report)."""
    try:
        with torch.no_grad():
            out = model(torch.zeros(1, channels, *size, dtype=dtype))
    except Exception:  # the user's model: whatever fails here, convert reports it as a ConversionError
        return
    if isinstance(out, torch.Tensor) and out.dim() == 2 and out.shape[1] != len(class_names):
        raise UsageError(f"{len(class_names)} class names for a model with {out.shape[1]} classes")


def _list_files(paths: list[Path]) -> list[Path]:
    """Files as given, directories expanded to the *.jpg / *.jpeg files anywhere below them (sorted by
    path; hidden files and folders are left out)."""
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.suffix.lower() in (".jpg", ".jpeg") and f.is_file()
                            and not any(part.startswith(".") for part in f.relative_to(p).parts))
        elif p.exists():
            files.append(p)
        else:
            raise UsageError(f"no such file or directory: {p}")
    if not files:
        raise UsageError("no JPEG files given (directories are searched for *.jpg and *.jpeg, subfolders included)")
    return files


def _without_path(message: str, path: str) -> str:
    """``message`` without a leading ``"<path>: "`` (for lines that print the path themselves)."""
    return message[len(path) + 2:] if message.startswith(path + ": ") else message


# --------------------------------------------------------------------------------------------
# convert
# --------------------------------------------------------------------------------------------
def cmd_convert(args: argparse.Namespace) -> int:
    output = _export.check_output_path(args.output) if args.output is not None else None  # before any work
    class_names = _read_class_names(args.class_names) if args.class_names is not None else None
    model = load_model(args.model, args.channels, args.weights)
    dtype = torch.float64 if args.dtype == "float64" else torch.float32
    model = model.to(dtype).eval()
    size = args.input_size or (NATIVE_SIZE.get(args.model, 224),) * 2
    channels = _model_channels(args, model)
    if args.normalize is not None:
        _convert.check_normalize(args.normalize, channels)
    if class_names is not None:
        _check_class_count(model, size, channels, dtype, class_names)
    exact = args.relu == "exact" and args.maxpool == "exact"
    tolerance = None if exact else APPROXIMATE
    policy = None
    if args.no_crop and args.crop:
        raise UsageError("--no-crop and --crop contradict each other")
    if args.no_crop and (args.domains != "pixels" or not exact):
        raise UsageError("--no-crop needs --domains pixels and exact ReLU and max pooling: only a network on pixels "
                         "runs at any size in one ONNX graph")
    if args.clamp and not (args.resize is not None or args.crop or args.no_crop):
        raise UsageError("--clamp goes with --resize, --crop or --no-crop: the 8-bit samples are computed by the "
                         "policy of a file that takes any photo")
    if args.resize is not None or args.crop or args.no_crop:
        if args.subsampling is not None:
            raise UsageError("--subsampling fixes one JPEG layout; --resize/--crop/--no-crop export for every layout: "
                             "give one")
        resize = round(max(size) * 8 / 7) if args.resize == "auto" else args.resize
        if resize is not None and resize < max(size) and not args.no_crop:
            raise UsageError(f"--resize {resize} is smaller than the input size {size[0]}x{size[1]}: the centre crop "
                             "would not fit")
        policy = _preprocess.Policy(resize=resize, crop=None if args.no_crop else size,
                                    resample=None if resize is None or args.resample == "none" else args.resample,
                                    clamp=args.clamp)
    with _Status() as status:
        status.show(f"converting {args.model} ({size[0]}x{size[1]}) ...")
        jpeg_model = _convert.convert(model, size, relu=args.relu, frequencies=args.frequencies,
                             lowering=args.lowering, maxpool=args.maxpool, normalize=args.normalize,
                             subsampling=args.subsampling or ("gray" if channels == 1 else "4:2:0"),
                             upsampling=args.upsampling, elide_transforms=not args.no_elide,
                             strict=args.strict, in_channels=args.channels if ":" in args.model else None,
                             domains=args.domains, any_size=True if args.no_crop else None)
        report = real = None
        if args.check > 0:
            status.show(f"verifying on {args.check} random input(s) ...")
            x = torch.randn(args.check, jpeg_model.spec.channels, *size, dtype=dtype,
                            generator=torch.Generator().manual_seed(0))
            report = _verify.verify(model, jpeg_model, x, tolerance=tolerance)
            status.show("verifying on the bundled sample JPEGs ...")
            real = _verify_on_samples(model, jpeg_model, tolerance)
        failed = exact and any(r is not None and not r.ok for r in (report, real))
        exported = None
        if output is not None and not failed:
            status.show(f"exporting {output} ...")
            exported = str(_export.export_onnx(jpeg_model, output, class_names=class_names, preprocess=policy))
    summary = {
        "model": args.model, "input_size": list(size), "channels": jpeg_model.spec.channels, "relu": args.relu, "domains": args.domains,
        "frequencies": args.frequencies, "exact": exact, "conversion_seconds": round(jpeg_model.seconds, 3),
        "lowered": dict(Counter(r.spatial for r in jpeg_model.records if r.jpeg != _lower.ON_PIXELS)),
        "on_pixels": dict(Counter(r.spatial for r in jpeg_model.records if r.jpeg == _lower.ON_PIXELS)),
        "layers": [{"node": r.node, "op": r.spatial, "jpeg_op": r.jpeg, "lowering": r.detail,
                    "map_bytes": r.map_bytes, "domains": list(r.domains),
                    "in": _hw(r.in_geometry), "out": _hw(r.out_geometry)}
                   for r in jpeg_model.records],
        "verification": None if report is None else {
            "images": args.check, "max_abs_error": report.max_abs_error, "max_rel_error": report.max_rel_error,
            "top1_agreement": report.top1_agreement, "tolerance": report.tolerance if exact else None,
            "ok": report.ok if exact else None,
            "first_divergence": None if report.first_divergence is None else report.first_divergence.node},
        "verification_real": None if real is None else {
            "images": real.images, "max_rel_error": real.max_rel_error, "top1_agreement": real.top1_agreement,
            "ok": real.ok if exact else None},
        "onnx": exported,
        "preprocess": None if policy is None else policy.to_json(),
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        _print_summary(summary, report)
    return 1 if failed else 0


def _hw(geometry) -> list[int] | None:
    return None if geometry is None else [geometry.h, geometry.w]


def _verdict(ok: bool | None) -> str:
    return "approximate (no tolerance applies)" if ok is None else ("OK" if ok else "FAILED")


def _print_summary(summary: dict, report) -> None:
    h, w = summary["input_size"]
    print(f"{summary['model']}: {summary['channels']}x{h}x{w}, relu={summary['relu']}"
          + ("" if summary["relu"] == "exact" else f"(k={summary['frequencies']})")
          + f", converted in {summary['conversion_seconds']:.2f} s")
    print("nodes lowered: " + ", ".join(f"{op} {n}" for op, n in summary["lowered"].items()))
    if summary["on_pixels"]:
        print("on pixels (exact, between an inverse and a forward block DCT): "
              + ", ".join(f"{op} {n}" for op, n in summary["on_pixels"].items()))
    print(f"{'node':<28} {'op':<18} {'lowering':<12} {'in':>9} {'out':>9} {'domains':<16} {'map MiB':>8}")
    for layer in summary["layers"]:
        if layer["op"] in ("Conv2d", "MaxPool2d") or layer["lowering"] != "exact" and layer["jpeg_op"] != _lower.ON_PIXELS:
            size_in, size_out = ("x".join(map(str, layer[k])) if layer[k] else "-" for k in ("in", "out"))
            print(f"{layer['node']:<28} {layer['op']:<18} {layer['lowering']:<12} {size_in:>9} {size_out:>9} "
                  f"{' -> '.join(layer['domains']):<16} {layer['map_bytes'] / 2**20:>8.1f}")
    checked = summary["verification"]
    if checked is not None:
        measured = (report.summary() if summary["exact"] else
                    f"max abs {report.max_abs_error:.3e}, max rel {report.max_rel_error:.3e}, "
                    f"top-1 agreement {100 * report.top1_agreement:.2f}%")
        print(f"verification on {checked['images']} random input(s): {measured} -> {_verdict(checked['ok'])}")
    real = summary["verification_real"]
    if real is not None:
        print(f"verification on {real['images']} bundled sample JPEG(s): max rel {real['max_rel_error']:.3e}, "
              f"top-1 agreement {100 * real['top1_agreement']:.2f}% -> {_verdict(real['ok'])}")
    if summary["onnx"]:
        policy = summary["preprocess"]
        takes = ("any photo: " + _preprocess.Policy.from_json(policy).describe() if policy
                 else "JPEGs of this size and layout")
        print(f"wrote {summary['onnx']} (takes {takes})")


class _RealCheck:
    def __init__(self, report, images: int) -> None:
        self.max_rel_error, self.top1_agreement, self.ok, self.images = (
            report.max_rel_error, report.top1_agreement, report.ok, images)


def _verify_on_samples(model: nn.Module, jpeg_model, tolerance: float | None) -> _RealCheck | None:
    """Verify on the bundled sample JPEGs (32×32 gray) when the model takes 32×32 inputs."""
    from jpegfx import datasets

    if tuple(jpeg_model.spec.input_size) != (32, 32):
        return None
    samples = datasets.sample_jpegs()
    batch = jpeg_io.stack([jpeg_io.read_jpeg(p) for p in samples])
    return _RealCheck(_verify.verify(model, jpeg_model, batch, tolerance=tolerance), len(samples))


# --------------------------------------------------------------------------------------------
# info, check, predict, demo, bench
# --------------------------------------------------------------------------------------------
def cmd_info(args: argparse.Namespace) -> int:
    rows = []
    for path in _list_files(args.files):
        coefs = reader.read_coefficients(path, tolerant=args.tolerant)
        head = coefs.header
        comps = []
        names = ("Y", "Cb", "Cr") if len(head.components) == 3 else ("Y",)
        for name, c, plane, table in zip(names, head.components, coefs.planes, coefs.qtables):
            comps.append({"component": name, "size": list(c.size), "sampling": list(c.sampling),
                          "blocks": list(c.blocks), "zero_fraction": float((plane == 0).mean()),
                          "qtable": table.tolist()})
        rows.append({"file": str(path), "size": list(head.size), "color_space": head.color_space,
                     "subsampling": head.subsampling, "progressive": head.progressive,
                     "arithmetic": head.arithmetic, "scans": coefs.scans, "warnings": list(coefs.warnings),
                     "components": comps})
    if args.json:
        print(json.dumps(rows, indent=2))  # a list, also for one file
        return 0
    for r in rows:
        print(f"{r['file']}: {r['size'][0]}x{r['size'][1]} {r['color_space']} {r['subsampling']}")
        for c in r["components"]:
            q = c["qtable"]
            print(f"  {c['component']:<2} {c['size'][0]}x{c['size'][1]} sampling {c['sampling'][0]}x{c['sampling'][1]}"
                  f" blocks {c['blocks'][0]}x{c['blocks'][1]}  zero coefficients {100 * c['zero_fraction']:.1f}%"
                  f"  qtable DC {q[0]}, min {min(q)}, max {max(q)}")
    return 0


def _read_for_check(files: list[Path], on_error: str) -> tuple[list[tuple[Path, object]], dict[Path, str]]:
    """Read every file before converting: ``(readable files, {file: error})``. With
    ``on_error="raise"`` the first unreadable file is a one-line error."""
    good: list[tuple[Path, object]] = []
    skipped: dict[Path, str] = {}
    for path in files:
        try:
            batch = jpeg_io.from_coefficients(_labelled(path, reader.read_coefficients, reader.read_bytes(path)))
        except JpegfxError as e:
            if on_error == "raise":
                raise
            skipped[path] = _without_path(_one_line(e), str(path))
            continue
        good.append((path, batch))
    if not good:
        raise UsageError(f"none of the {len(files)} file(s) could be used: " + "; ".join(
            f"{p}: {m}" for p, m in skipped.items()))
    return good, skipped


def _labelled(path: Path, read, data):
    """``read(data)``, its one-line JpegError prefixed with the file's path."""
    try:
        return read(data)
    except JpegError as e:
        raise JpegError(f"{path}: {e}") from None


def cmd_check(args: argparse.Namespace) -> int:
    files = _list_files(args.files)
    good, skipped = _read_for_check(files, args.on_error)  # all reading and size checks before converting
    model = load_model(args.model, args.channels, args.weights).eval()
    channels = _model_channels(args, model)
    if args.normalize is not None:
        _convert.check_normalize(args.normalize, channels)
    size = good[0][1].size
    exact = args.relu == "exact"
    results: dict[Path, dict] = {}
    tolerance = None  # the one verify applies in exact mode
    with _Status() as status:
        status.show(f"converting {args.model} ({size[0]}x{size[1]}) ...")
        jpeg_model = _convert.convert(model, size, relu=args.relu, frequencies=args.frequencies, normalize=args.normalize,
                             upsampling=args.upsampling, any_size=True)
        for i, (path, batch) in enumerate(good, start=1):
            status.show(f"checking {i}/{len(good)}: {path} ({batch.size[0]}x{batch.size[1]})")
            at_size = jpeg_model.at_size(batch.size)  # converted once per size
            report = _verify.verify(model, at_size, batch, tolerance=None if exact else APPROXIMATE)
            results[path] = {"file": str(path), "size": list(batch.size), "max_abs_error": report.max_abs_error,
                             "max_rel_error": report.max_rel_error, "top1_agree": report.top1_agreement == 1.0,
                             "ok": report.ok if exact else None, "first_divergence": None
                             if report.first_divergence is None else report.first_divergence.node, "error": None}
            tolerance = report.tolerance if exact else None
    entries = [results.get(p) or {"file": str(p), "size": None, "max_abs_error": None, "max_rel_error": None, "top1_agree": None,
                                  "ok": None, "first_divergence": None, "error": skipped[p]} for p in files]
    checked = [e for e in entries if e["error"] is None]
    failed = exact and not all(e["ok"] for e in checked)
    worst = max(e["max_rel_error"] for e in checked)
    if args.json:
        print(json.dumps({"model": args.model, "input_size": list(size), "relu": args.relu,
                          "frequencies": args.frequencies, "exact": exact,
                          "tolerance": tolerance, "max_rel_error": worst,
                          "ok": (not failed) if exact else None, "skipped": len(skipped), "files": entries}, indent=2))
    else:
        for e in entries:
            if e["error"] is not None:
                print(f"{e['file']}: skipped: {e['error']}")
                continue
            print(f"{e['file']}: max rel {e['max_rel_error']:.3e}, top-1 {'agrees' if e['top1_agree'] else 'differs'}"
                  + (f", first divergence at {e['first_divergence']}" if e["first_divergence"] else ""))
        agree = sum(e["top1_agree"] for e in checked)
        if exact:
            verdict = (f"all within tolerance ({tolerance:.0e})" if not failed else
                       f"VERIFICATION FAILED: {sum(not e['ok'] for e in checked)} file(s) beyond tolerance "
                       f"({tolerance:.0e})")
        else:
            verdict = (f"relu={args.relu} with k={args.frequencies}: max rel error {worst:.3e} "
                       "(approximate mode: measured, no tolerance applies)")
        print(f"{agree}/{len(checked)} file(s) with the same top-1; {verdict}"
              + (f"; {len(skipped)} file(s) skipped" if skipped else ""))
    return 1 if failed or skipped else 0


def cmd_predict(args: argparse.Namespace) -> int:
    from jpegfx.runtime import Session

    files = _list_files(args.files)
    session = Session(args.model, intra_op_threads=args.threads)
    predictions = []
    with _Status() as status:
        for start in range(0, len(files), args.batch_size):
            chunk = files[start:start + args.batch_size]
            predictions += session.predict(chunk, batch_size=args.batch_size, top_k=args.top_k,
                                           on_error=args.on_error, tolerant=args.tolerant)
            status.show(f"predict: {len(predictions)}/{len(files)} file(s)")
    if args.json:
        print(json.dumps([{"file": str(p.path), "top": [int(i) for i in p.indices],
                           "scores": [float(s) for s in p.scores], "labels": list(p.labels) if p.labels else None,
                           "error": p.error} for p in predictions], indent=2))
    else:
        for p in predictions:
            if not p.ok:
                print(f"{p.path}: error: {_without_path(p.error, str(p.path))}")
                continue
            names = p.labels or [str(int(i)) for i in p.indices]
            print(f"{p.path}: " + ", ".join(f"{n} {100 * float(s):.1f}%" for n, s in zip(names, p.scores)))
    return 0 if all(p.ok for p in predictions) else 1


def cmd_demo(args: argparse.Namespace) -> int:
    """The built-in default: the shipped paper network (Fashion-MNIST) on the shipped sample JPEGs."""
    from jpegfx import datasets
    from jpegfx.runtime import Session

    path = _export.check_output_path(args.out_dir / "paper_fashion_mnist.onnx")  # before any work
    try:
        args.out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"--out-dir {args.out_dir}: cannot create it: {e.strerror or _one_line(e)}") from None
    try:
        model, meta, samples = datasets.default_model().eval(), datasets.default_meta(), datasets.sample_jpegs()
    except FileNotFoundError as e:
        raise UsageError(f"the demo's shipped data is missing: {_one_line(e)}") from None
    say = (lambda *_: None) if args.json else print
    classes = list(meta["classes"])
    with _Status() as status:
        say(f"1. convert: the paper network trained on Fashion-MNIST (spatial test accuracy "
            f"{100 * meta['accuracy_spatial']:.2f}%) to the JPEG domain, 32x32 gray, exact ReLU")
        status.show("converting ...")
        jpeg_model = _convert.convert(model, 32, subsampling="gray")
        say(f"   {len(jpeg_model.records)} nodes lowered in {jpeg_model.seconds:.2f} s")
        status.show("verifying ...")
        batch = jpeg_io.stack([jpeg_io.read_jpeg(p) for p in samples])
        report = _verify.verify(model, jpeg_model, batch)
        say(f"2. verify on {len(samples)} sample JPEGs against the spatial model on their float decode: "
            f"{report.summary()}")
        status.show("exporting ...")
        path = _export.export_onnx(jpeg_model, path, class_names=classes)
        say(f"3. export: {path} ({path.stat().st_size / 1024:.0f} KiB)")
        status.show("predicting ...")
        session = Session(path)
        predictions = session.predict(samples, top_k=1)
    say(f"4. predict with onnxruntime ({', '.join(session.providers)}):")
    rows = []
    for p in predictions:
        truth = classes[datasets.sample_label(p.path)]
        rows.append({"file": str(p.path), "label": p.labels[0], "score": float(p.scores[0]), "truth": truth})
        say(f"   {Path(p.path).name:<22} {p.labels[0]:<12} {100 * float(p.scores[0]):5.1f}%   (true: {truth})")
    correct = sum(r["label"] == r["truth"] for r in rows)
    say(f"   {correct}/{len(rows)} correct; JPEG-domain model matches the spatial model: "
        f"{'yes' if report.ok else 'NO'}")
    if args.json:
        print(json.dumps({"verification": {"max_rel_error": report.max_rel_error, "ok": report.ok,
                                           "top1_agreement": report.top1_agreement},
                          "onnx": str(path), "providers": session.providers, "predictions": rows,
                          "correct": correct, "total": len(rows)}, indent=2))
    return 0 if report.ok else 1


def cmd_bench(args: argparse.Namespace) -> int:
    from jpegfx.bench import format_result, run_bench

    results = []
    with _Status() as status:
        for name in args.models:
            size = args.input_size or (NATIVE_SIZE.get(name, 224),) * 2
            for batch in args.batch:
                status.show(f"bench {name} {size[0]}x{size[1]} batch {batch} ...")
                r = run_bench(name, size, batch, args.relu, args.frequencies, args.threads, args.warmup, args.repeat,
                              layers=not args.no_layers, onnx=not args.no_onnx, domains=args.domains,
                              device=args.device)
                results.append(r)
                if not args.json:
                    print(format_result(r), flush=True)
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
    return 0


# --------------------------------------------------------------------------------------------
# train
# --------------------------------------------------------------------------------------------
def cmd_train(args: argparse.Namespace) -> int:
    from jpegfx import data
    from jpegfx import train as _train

    if args.reset_head and args.weights is None:
        raise UsageError("--reset-head goes with --weights (the pretrained weights whose classifier is replaced)")
    size = args.input_size or (NATIVE_SIZE.get(args.model, 224),) * 2
    policy = None
    if args.clamp and args.resize is None:
        raise UsageError("--clamp goes with --resize: the 8-bit samples are computed by the policy")
    if args.resize is not None:
        resize = round(max(size) * 8 / 7) if args.resize == "auto" else args.resize
        policy = _preprocess.Policy(resize=resize, crop=size, resample=None if args.resample == "none" else args.resample,
                                    clamp=args.clamp)
    augment_names = [] if args.augment == "none" else args.augment.split(",")
    unknown = sorted(set(augment_names) - {"crop", "flip"})
    if unknown:
        raise UsageError(f"--augment: unknown augmentation(s) {', '.join(unknown)} (crop, flip or none)")
    if "crop" in augment_names and policy is None:
        raise UsageError("--augment crop changes the image size: give --resize (the policy that brings each crop to "
                         "the input size)")
    # a crop's shorter side must stay within reach of the policy's largest scale, 16/8
    augment = [data.RandomCrop(min_side=-(-policy.resize // 2) if policy and policy.resize else max(size))
               if name == "crop" else data.RandomFlip() for name in augment_names]

    def dataset(path: Path, **options):
        if path.is_file():  # a CSV list of path,label
            return data.JpegFolder(samples=data.read_list(path), on_error=args.on_error, **options)
        return data.JpegFolder(path, on_error=args.on_error, **options)

    train_set = dataset(args.train, augment=augment, seed=args.seed)
    val_set = None
    if args.val:
        val_set = dataset(args.val)
        if val_set.root is not None and val_set.classes != train_set.classes:
            raise UsageError(f"{args.val}: class folders {val_set.classes} do not match the training classes "
                             f"{train_set.classes}")
        if max(label for _, label in val_set.samples) >= len(train_set.classes):
            raise UsageError(f"{args.val}: a label beyond the training data's {len(train_set.classes)} classes")
        val_set.classes = train_set.classes
    torch.manual_seed(args.seed)  # the same initial weights in every process and every run with this seed
    model = load_model(args.model, args.channels, None if args.reset_head else args.weights,
                       num_classes=len(train_set.classes))
    if args.reset_head:
        _load_weights_but_head(model, args.weights)
    options = _train.TrainOptions(
        epochs=args.epochs, batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr, momentum=args.momentum,
        weight_decay=args.weight_decay, schedule=args.schedule, warmup_epochs=args.warmup,
        label_smoothing=args.label_smoothing, freeze_bn=args.freeze_bn, workers=args.workers, seed=args.seed,
        max_steps=args.max_steps, amp=args.amp, check_files=not args.no_check)
    with _Status() as status:
        def progress(epoch: int, step: int, steps: int, loss: float) -> None:
            done = int(24 * step / steps)
            status.show(f"epoch {epoch + 1}/{args.epochs} [{'#' * done}{'.' * (24 - done)}] {step}/{steps} "
                        f"loss {loss:.4f}")

        result = _train.fit(model, train_set, input_size=size, relu=args.relu, frequencies=args.frequencies,
                            normalize=args.normalize, policy=policy, val_data=val_set, options=options,
                            out_dir=args.out_dir, resume=args.resume, onnx=args.onnx, device=args.device,
                            domains=args.domains, progress=progress)
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    if args.json:
        print(json.dumps({"classes": train_set.classes, "train_files": len(train_set),
                          "val_files": len(val_set) if val_set else 0, "input_size": list(size),
                          "policy": policy.to_json() if policy else None, "relu": args.relu,
                          "frequencies": args.frequencies, "history": result.history, "files": result.files}, indent=2))
        return 0
    print(f"trained {args.model} in the JPEG domain ({args.relu} ReLU"
          f"{'' if args.relu == 'exact' else f', k={args.frequencies}'}) on {len(train_set)} files of "
          f"{len(train_set.classes)} classes at {size[0]}x{size[1]}")
    for row in result.history:
        val = "" if row["val_top1"] is None else f", val loss {row['val_loss']:.4f} top-1 {100 * row['val_top1']:.2f}%"
        print(f"  epoch {row['epoch']}: loss {row['train_loss']:.4f} top-1 {100 * row['train_top1']:.2f}%{val}, "
              f"{row['images_per_s']:.0f} images/s")
    for kind, path in result.files.items():
        print(f"  {kind}: {path}")
    return 0


# --------------------------------------------------------------------------------------------
# The parser and main
# --------------------------------------------------------------------------------------------
DOMAINS_HELP = ("where values live between ops: jpeg (default, the paper's design: every op lowered to "
                "coefficients) or pixels (every op itself on pixels after one inverse DCT, except the approximations "
                "that need coefficients; exact and the least work in exact mode)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="jpegfx", description="Run ResNets on JPEG DCT coefficients.")
    parser.add_argument("--version", action="version", version=f"jpegfx {jpegfx.__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what each pass does")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("convert", help="convert a spatial model to the JPEG domain and verify it",
                       description="Convert a spatial model to the JPEG domain, print what each layer became, "
                                   "and verify it against the spatial model on random inputs. Exits 1 when "
                                   "exact-mode verification fails.")
    p.add_argument("--model", default="resnet18",
                   help=f"a zoo name ({', '.join(ZOO)}) or module:factory, imported from the current "
                        "directory or sys.path (default resnet18)")
    p.add_argument("--weights", type=Path, help="a state_dict file (loaded with weights_only=True)")
    p.add_argument("--input-size", type=_size, help="HxW (default: the model's native size)")
    p.add_argument("--channels", type=int, choices=[1, 3],
                   help="input channels (a zoo model is built with them; a factory's model is told them where its "
                        "graph does not show them)")
    p.add_argument("--relu", choices=["exact", "asm", "apx"], default="exact")
    p.add_argument("--frequencies", type=_frequency, default=MAX_FREQUENCIES,
                   help=f"spatial frequencies k for asm/apx (1..{MAX_FREQUENCIES})")
    p.add_argument("--maxpool", choices=["exact", "asm"], default="exact")
    p.add_argument("--lowering", choices=["auto", "fused", "factored", "pointwise"], default="auto")
    p.add_argument("--no-elide", action="store_true",
                   help="keep every value in the JPEG domain (the paper's model) instead of handing values between "
                        "pixel-computing ops over in pixels (exact either way; eliding is faster)")
    p.add_argument("--domains", choices=["jpeg", "pixels"], default="jpeg", help=DOMAINS_HELP)
    p.add_argument("--strict", action="store_true",
                   help="refuse ops without a JPEG-domain lowering (listing them all) instead of running them on pixels")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--normalize", type=_normalize, default="none", metavar="none|imagenet|MEAN,STD",
                   help="the spatial model's input normalisation (default none: pixels/255); MEAN,STD with one "
                        "value or one per channel, separated by ':', e.g. 0.5:0.5:0.5,0.25:0.25:0.25")
    p.add_argument("--subsampling", choices=["4:4:4", "4:2:2", "4:2:0", "4:4:0", "gray"],
                   help="the JPEG layout the exported model takes (default 4:2:0, gray for 1-channel models)")
    p.add_argument("--upsampling", choices=["fancy", "nearest"], default="fancy")
    p.add_argument("--resize", type=_resize, metavar="S|auto",
                   help="export for photos of any size and layout: each is scaled by the smallest N/8 that brings "
                        "its shorter side to at least S pixels (auto: 8/7 of the input size, 256 for 224), resampled "
                        "(--resample) and centre-cropped to the input size, from its coefficients (instead of "
                        "--subsampling)")
    p.add_argument("--resample", choices=["bilinear", "none"], default="bilinear",
                   help="with --resize: after the N/8 scaling, bring the shorter side to exactly S with Pillow's "
                        "bilinear filter as torchvision's Resize does (default), or keep the N/8 size (none)")
    p.add_argument("--crop", action="store_true",
                   help="export for photos of any layout at least the input size: centre-crop them to it, without "
                        "scaling (implied by --resize)")
    p.add_argument("--clamp", action="store_true",
                   help="with --resize/--crop: give the network 8-bit samples, rounded and range-limited where "
                        "libjpeg and Pillow round (for a network trained on ordinarily decoded images) instead of "
                        "the float decode")
    p.add_argument("--no-crop", action="store_true",
                   help="with --domains pixels: no centre crop; each photo runs at the size --resize scales it to (at "
                        "its own size without --resize), in one ONNX file with dynamic height and width")
    p.add_argument("--check", type=_non_negative, default=4, metavar="N", help="verify on N random inputs (0: skip)")
    p.add_argument("-o", "--output", type=Path, help="write the converted model as ONNX (after verification)")
    p.add_argument("--class-names", type=Path, help="a text file with one class name per line (ONNX metadata)")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("predict", help="classify JPEG files with an exported model (onnxruntime)",
                       description="Read JPEG files, check each against the model's spec, batch them and run "
                                   "onnxruntime (CUDA when available, else CPU). Exits 1 if any file failed.")
    p.add_argument("model", type=Path, help="a .onnx file written by jpegfx convert -o")
    p.add_argument("files", nargs="+", type=Path, help="JPEG files or directories")
    p.add_argument("--batch-size", type=_positive, default=32)
    p.add_argument("--top-k", type=_positive, default=5)
    p.add_argument("--on-error", choices=["raise", "skip"], default="raise",
                   help="stop at the first bad file (default) or report it (once, in the output) and go on")
    p.add_argument("--threads", type=_positive, help="onnxruntime intra-op threads")
    p.add_argument("--tolerant", action="store_true",
                   help="read files libjpeg decodes only with warnings (corrupt data becomes zeros; each warning "
                        "is logged); by default any libjpeg warning refuses the file")
    p.add_argument("--json", action="store_true", help="print a JSON list, one object per file")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("check", help="verify a converted model against its spatial model on JPEG files",
                       description="Read the files, convert the model for each of their sizes and compare the JPEG-domain "
                                   "model on each file with the spatial model on the float decode of the same file. "
                                   "Exits 1 when exact-mode verification fails or a file was skipped; approximate "
                                   "modes (asm, apx) report the measured error and never fail on it.")
    p.add_argument("files", nargs="+", type=Path, help="JPEG files or directories (any sizes and layouts)")
    p.add_argument("--model", default="resnet18", help="a zoo name or module:factory")
    p.add_argument("--weights", type=Path, help="a state_dict file (loaded with weights_only=True)")
    p.add_argument("--channels", type=int, choices=[1, 3], help="input channels of a zoo model")
    p.add_argument("--normalize", type=_normalize, default="none", metavar="none|imagenet|MEAN,STD")
    p.add_argument("--upsampling", choices=["fancy", "nearest"], default="fancy")
    p.add_argument("--relu", choices=["exact", "asm", "apx"], default="exact")
    p.add_argument("--frequencies", type=_frequency, default=MAX_FREQUENCIES)
    p.add_argument("--on-error", choices=["raise", "skip"], default="raise",
                   help="stop before converting at the first unreadable file or file of another size (default), "
                        "or skip such files with one line each")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("bench", help="JPEG-domain vs decode + spatial, measured side by side",
                       description="End to end from JPEG bytes (read coefficients + JPEG-domain model vs libjpeg-turbo "
                                   "decode + spatial model), network only, and per layer; medians of --repeat runs "
                                   "after --warmup, ratios taken within one run.")
    p.add_argument("--models", nargs="+", choices=list(ZOO), default=["paper", "resnet18"],
                   metavar="NAME", help=f"zoo names ({', '.join(ZOO)})")
    p.add_argument("--input-size", type=_size, help="HxW (default: each model's native size)")
    p.add_argument("--batch", type=_positive, nargs="+", default=[1], help="batch sizes")
    p.add_argument("--relu", choices=["exact", "asm", "apx"], default="exact")
    p.add_argument("--frequencies", type=_frequency, default=MAX_FREQUENCIES)
    p.add_argument("--threads", type=_positive, help="torch threads (default: torch's)")
    p.add_argument("--warmup", type=_non_negative, default=2)
    p.add_argument("--repeat", type=_positive, default=5)
    p.add_argument("--no-layers", action="store_true", help="skip the per-layer table")
    p.add_argument("--domains", choices=["jpeg", "pixels"], default="jpeg", help=DOMAINS_HELP)
    p.add_argument("--no-onnx", action="store_true", help="skip the onnxruntime comparison")
    p.add_argument("--device", type=_device, default="cpu",
                   help="where both models run: cpu (default) or cuda[:N]; on a GPU the baselines add "
                        "torchvision's GPU decode, and onnxruntime uses its CUDA provider when it has one")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("train", help="train or fine-tune a model in the JPEG domain on folders of JPEG files",
                       description="Convert a spatial model in train mode and train it on the coefficients of a "
                                   "class-per-folder set of JPEG files (never decoded); write the trained weights as "
                                   "the spatial model's state_dict, a checkpoint per epoch and a CSV/JSON log. Under "
                                   "torchrun it trains with DistributedDataParallel (gloo on CPU, NCCL on GPUs).")
    p.add_argument("train", type=Path, help="training folder (one subfolder of JPEG files per class) or a CSV file "
                                            "of path,label lines")
    p.add_argument("--val", type=Path, help="held-out folder with the same class subfolders, or a CSV file")
    p.add_argument("--model", default="paper", help="a zoo name or module:factory (default paper)")
    p.add_argument("--weights", type=Path, help="a state_dict file to start from (loaded with weights_only=True)")
    p.add_argument("--reset-head", action="store_true",
                   help="with --weights: keep the pretrained weights but a classifier (nn.Linear) of another class "
                        "count, which starts freshly initialised for the training folder's classes")
    p.add_argument("--channels", type=int, choices=[1, 3], help="input channels of a zoo model")
    p.add_argument("--input-size", type=_size, help="HxW (default: the model's native size)")
    p.add_argument("--resize", type=_resize, metavar="S|auto",
                   help="files of any size: scale each by N/8 and bilinear resampling to a shorter side of S (auto: "
                        "8/7 of the input size), then centre-crop to the input size, in the coefficients; without "
                        "it every file must have the input size")
    p.add_argument("--resample", choices=["bilinear", "none"], default="bilinear",
                   help="with --resize: after the N/8 scaling, bring the shorter side to exactly S with Pillow's "
                        "bilinear filter (default), or keep the N/8 size (none: e.g. --resize 16 --input-size 16 "
                        "trains on the 1/2-scale image of 32x32 files, what libjpeg's scaled decode gives)")
    p.add_argument("--clamp", action="store_true",
                   help="with --resize: give the network 8-bit samples, rounded and range-limited where "
                        "libjpeg and Pillow round (for a network trained on ordinarily decoded images) instead of "
                        "the float decode")
    p.add_argument("--augment", default="flip", metavar="crop,flip|none",
                   help="lossless coefficient-domain augmentations: crop (random MCU-aligned crop, needs --resize), "
                        "flip (random left-right mirror); default flip")
    p.add_argument("--normalize", type=_normalize, default="none", metavar="none|imagenet|MEAN,STD")
    p.add_argument("--relu", choices=["exact", "asm", "apx"], default="exact")
    p.add_argument("--frequencies", type=_frequency, default=MAX_FREQUENCIES)
    p.add_argument("--epochs", type=_positive, default=1)
    p.add_argument("--batch-size", type=_positive, default=64, help="the global batch (split over torchrun's processes)")
    p.add_argument("--optimizer", choices=["sgd", "adamw"], default="sgd")
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--schedule", choices=["cosine", "onecycle", "constant"], default="cosine")
    p.add_argument("--warmup", type=float, default=0.0, metavar="EPOCHS", help="linear warm-up (cosine schedule)")
    p.add_argument("--label-smoothing", type=float, default=0.0)
    p.add_argument("--freeze-bn", action="store_true", help="BN layers use their running statistics (fine-tuning)")
    p.add_argument("--amp", action="store_true",
                   help="mixed precision: forward and loss under bfloat16 autocast (normalisation statistics in float32)")
    p.add_argument("--workers", type=_non_negative, default=0, help="DataLoader worker processes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-steps", type=_positive, help="stop after this many optimiser steps")
    p.add_argument("--on-error", choices=["raise", "skip"], default="raise",
                   help="stop at the first unreadable file (default) or leave such files out")
    p.add_argument("--no-check", action="store_true",
                   help="skip reading every file's header before the first step (it costs one pass of I/O over "
                        "the files; without it a bad file is found when its batch is read)")
    p.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda when available")
    p.add_argument("--domains", choices=["jpeg", "pixels"], default="pixels",
                   help="where values live between ops: pixels (default: every op on pixels after one inverse DCT, "
                        "except the approximate ReLUs; the same function and gradients, several times faster) or "
                        "jpeg (the paper's all-coefficient graph)")
    p.add_argument("--out-dir", type=Path, default=Path("train-out"),
                   help="where model.pt, checkpoint.pt, log.csv and log.json go (default train-out/)")
    p.add_argument("--resume", action="store_true", help="continue from OUT_DIR/checkpoint.pt")
    p.add_argument("--onnx", action="store_true", help="also export the trained model to OUT_DIR/model.onnx")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("demo", help="the built-in default: convert, verify, export and predict on shipped JPEGs",
                       description="Convert the shipped paper network (trained on Fashion-MNIST), verify it on the "
                                   "shipped sample JPEGs, export it to ONNX and classify the samples with onnxruntime.")
    p.add_argument("--out-dir", type=Path, default=Path("out"), help="where the ONNX file goes (default out/)")
    p.add_argument("--json", action="store_true", help="print a JSON summary instead of the steps")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("info", help="geometry, sampling, tables and coefficient sparsity of JPEG files")
    p.add_argument("files", nargs="+", type=Path, help="JPEG files or directories")
    p.add_argument("--tolerant", action="store_true", help="show files libjpeg reads only with warnings "
                   "(listed under 'warnings')")
    p.add_argument("--json", action="store_true", help="print a JSON list, one object per file")
    p.set_defaults(func=cmd_info)
    return parser


def _print_error(error: JpegfxError) -> None:
    """One line; an unsupported model's report keeps its one line per op."""
    text = str(error).strip() if isinstance(error, UnsupportedModelError) else _one_line(error)
    print(f"jpegfx: error: {text}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except UsageError as e:
        _print_error(e)
        return 2
    except SystemExit as e:  # --help, --version
        return e.code if isinstance(e.code, int) else 0
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(name)s: %(message)s")
    if getattr(args, "normalize", None) == "none":
        args.normalize = None
    try:
        return args.func(args)
    except JpegfxError as e:  # only jpegfx's own errors: anything else is a bug and keeps its traceback
        _print_error(e)
        return 2
    except BrokenPipeError:  # the reader went away (`jpegfx predict … | head`): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush does not fail again
        return 0


if __name__ == "__main__":
    sys.exit(main())
