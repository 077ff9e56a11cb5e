"""The ``jpegfx`` command line. Prints for people, ``--json`` for programs; errors are one line on
stderr with exit status 2 (verification failures exit 1)."""
from __future__ import annotations

import argparse
import importlib
import json
import logging
import pickle
import sys
import warnings
from collections import Counter
from pathlib import Path

import torch
from torch import nn

import jpegfx
from jpegfx import jpeg as jpeg_io
from jpegfx import models
from jpegfx.convert import infer_channels
from jpegfx.errors import JpegfxError, UnsupportedModelError
from jpegfx.passes.lower_modules import ON_PIXELS

NATIVE_SIZE = {"paper": 32, "resnet20": 32, "resnet56": 32, "preact_resnet18": 32,
               "resnet18": 224, "resnet34": 224, "resnet50": 224}


class CliError(Exception):
    """A one-line error for the user."""


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x")) if "x" in text.lower() else (int(text),) * 2
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW (e.g. 224x224), got {text!r}") from None
    if h < 1 or w < 1:
        raise argparse.ArgumentTypeError(f"sizes must be positive, got {text!r}")
    return h, w


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
    return values


def load_model(spec: str, channels: int | None, weights: Path | None) -> nn.Module:
    """A zoo name or ``module:factory``; weights are a state_dict read with ``weights_only=True``."""
    if ":" in spec:
        module_name, _, attr = spec.partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as e:
            raise CliError(f"cannot load model factory {spec!r}: {e}") from None
        model = factory()
    else:
        options = {} if channels is None else {"in_channels": channels}
        model = models.create_model(spec, **options)
    if weights is not None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                state = torch.load(weights, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise CliError(f"weights file not found: {weights}") from None
        except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as e:
            raise CliError(f"{weights}: not a safe state_dict file: it holds objects other than tensors, or is "
                           f"not a torch.save file ({type(e).__name__}); jpegfx never unpickles code") from None
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise CliError(f"{weights}: expected a state_dict (a dict of tensors)")
        expected = model.state_dict()
        wrong = [k for k, v in state.items() if k in expected and v.shape != expected[k].shape]
        if wrong:
            k = wrong[0]
            raise CliError(f"{weights}: weights do not match the model: {len(wrong)} tensor(s) of the wrong shape "
                           f"(e.g. {k}: {tuple(state[k].shape)} vs {tuple(expected[k].shape)})")
        result = model.load_state_dict(state, strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise CliError(f"{weights}: weights do not match the model: {len(result.missing_keys)} missing "
                           f"(e.g. {result.missing_keys[:2]}), {len(result.unexpected_keys)} unexpected "
                           f"(e.g. {result.unexpected_keys[:2]})")
    return model


def cmd_convert(args: argparse.Namespace) -> int:
    model = load_model(args.model, args.channels, args.weights)
    dtype = torch.float64 if args.dtype == "float64" else torch.float32
    model = model.to(dtype).eval()
    size = args.input_size or (NATIVE_SIZE.get(args.model, 224),) * 2
    jpeg_model = jpegfx.convert(model, size, relu=args.relu, frequencies=args.frequencies,
                                lowering=args.lowering, maxpool=args.maxpool, normalize=args.normalize,
                                subsampling=args.subsampling or ("gray" if (args.channels or infer_channels(model)) == 1 else "4:2:0"),
                                upsampling=args.upsampling, elide_transforms=not args.no_elide,
                                strict=args.strict, in_channels=args.channels if ":" in args.model else None)
    channels = jpeg_model.spec.channels
    x = torch.randn(args.check, channels, *size, dtype=dtype, generator=torch.Generator().manual_seed(0))
    report = jpegfx.verify(model, jpeg_model, x) if args.check > 0 else None
    real = _verify_on_samples(model, jpeg_model) if args.check > 0 else None
    exact = args.relu == "exact" and args.maxpool == "exact"
    failed = exact and any(r is not None and not r.ok for r in (report, real))
    exported = None
    if args.output is not None and not failed:
        class_names = None
        if args.class_names is not None:
            class_names = [line.strip() for line in args.class_names.read_text().splitlines() if line.strip()]
        exported = str(jpegfx.export_onnx(jpeg_model, args.output, class_names=class_names))
    summary = {
        "model": args.model, "input_size": list(size), "channels": channels, "relu": args.relu,
        "frequencies": args.frequencies, "conversion_seconds": round(jpeg_model.seconds, 3),
        "lowered": dict(Counter(r.spatial for r in jpeg_model.records if r.jpeg != ON_PIXELS)),
        "on_pixels": dict(Counter(r.spatial for r in jpeg_model.records if r.jpeg == ON_PIXELS)),
        "layers": [{"node": r.node, "op": r.spatial, "jpeg_op": r.jpeg, "lowering": r.detail,
                    "map_bytes": r.map_bytes, "domains": list(r.domains),
                    "in": _hw(r.in_geometry), "out": _hw(r.out_geometry)}
                   for r in jpeg_model.records],
        "verification": None if report is None else {
            "images": args.check, "max_abs_error": report.max_abs_error, "max_rel_error": report.max_rel_error,
            "top1_agreement": report.top1_agreement, "tolerance": report.tolerance, "ok": report.ok,
            "first_divergence": None if report.first_divergence is None else report.first_divergence.node},
        "verification_real": None if real is None else {
            "images": real.images, "max_rel_error": real.max_rel_error, "top1_agreement": real.top1_agreement,
            "ok": real.ok},
        "onnx": exported,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        _print_summary(summary, report)
    return 1 if failed else 0


def _hw(geometry) -> list[int] | None:
    return None if geometry is None else [geometry.h, geometry.w]


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
        if layer["op"] in ("Conv2d", "MaxPool2d") or layer["lowering"] != "exact" and layer["jpeg_op"] != ON_PIXELS:
            size_in, size_out = ("x".join(map(str, layer[k])) if layer[k] else "-" for k in ("in", "out"))
            print(f"{layer['node']:<28} {layer['op']:<18} {layer['lowering']:<12} {size_in:>9} {size_out:>9} "
                  f"{' -> '.join(layer['domains']):<16} {layer['map_bytes'] / 2**20:>8.1f}")
    if report is not None:
        verdict = "OK" if report.ok else ("FAILED" if summary["relu"] == "exact" else "approximate")
        print(f"verification on {summary['verification']['images']} random input(s): {report.summary()} -> {verdict}")
    real = summary["verification_real"]
    if real is not None:
        print(f"verification on {real['images']} bundled sample JPEG(s): max rel {real['max_rel_error']:.3e}, "
              f"top-1 agreement {100 * real['top1_agreement']:.2f}% -> {'OK' if real['ok'] else 'FAILED'}")
    if summary["onnx"]:
        print(f"wrote {summary['onnx']}")


def _list_files(paths: list[Path]) -> list[Path]:
    """Files as given, directories expanded to their *.jpg / *.jpeg files (sorted)."""
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files += sorted(f for f in p.iterdir() if f.suffix.lower() in (".jpg", ".jpeg"))
        elif p.exists():
            files.append(p)
        else:
            raise CliError(f"no such file or directory: {p}")
    if not files:
        raise CliError("no JPEG files given")
    return files


def _read_files(paths: list[Path]) -> list[tuple[Path, "jpeg_io.JpegBatch"]]:
    return [(f, jpeg_io.read_jpeg(f)) for f in _list_files(paths)]


def cmd_info(args: argparse.Namespace) -> int:
    rows = []
    for path, batch in _read_files(args.files):
        comps = []
        for name, c in zip(("Y", "Cb", "Cr") if batch.num_components == 3 else ("Y",), batch.components):
            coeffs = c.coefficients
            comps.append({"component": name, "size": list(c.size), "sampling": list(c.sampling),
                          "blocks": list(coeffs.shape[1:3]),
                          "zero_fraction": float((coeffs == 0).float().mean()),
                          "qtable": c.qtable[0].tolist()})
        rows.append({"file": str(path), "size": list(batch.size), "color_space": batch.color_space,
                     "subsampling": batch.subsampling, "components": comps})
    if args.json:
        print(json.dumps(rows if len(rows) > 1 else rows[0], indent=2))
        return 0
    for r in rows:
        print(f"{r['file']}: {r['size'][0]}x{r['size'][1]} {r['color_space']} {r['subsampling']}")
        for c in r["components"]:
            q = c["qtable"]
            print(f"  {c['component']:<2} {c['size'][0]}x{c['size'][1]} sampling {c['sampling'][0]}x{c['sampling'][1]}"
                  f" blocks {c['blocks'][0]}x{c['blocks'][1]}  zero coefficients {100 * c['zero_fraction']:.1f}%"
                  f"  qtable DC {q[0]}, min {min(q)}, max {max(q)}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    model = load_model(args.model, args.channels, args.weights).eval()
    batches = _read_files(args.files)
    size = batches[0][1].size
    jpeg_model = jpegfx.convert(model, size, relu=args.relu, frequencies=args.frequencies, normalize=args.normalize,
                                upsampling=args.upsampling)
    reports = []
    for path, batch in batches:
        if batch.size != size:
            raise CliError(f"{path}: image size {batch.size[0]}x{batch.size[1]} differs from the first file's "
                           f"{size[0]}x{size[1]}")
        report = jpegfx.verify(model, jpeg_model, batch)
        reports.append({"file": str(path), "max_abs_error": report.max_abs_error,
                        "max_rel_error": report.max_rel_error, "top1_agree": report.top1_agreement == 1.0,
                        "ok": report.ok, "first_divergence": None if report.first_divergence is None
                        else report.first_divergence.node})
    exact = args.relu == "exact"
    failed = exact and not all(r["ok"] for r in reports)
    if args.json:
        print(json.dumps({"model": args.model, "input_size": list(size), "relu": args.relu, "files": reports}, indent=2))
    else:
        for r in reports:
            print(f"{r['file']}: max rel {r['max_rel_error']:.3e}, top-1 {'agrees' if r['top1_agree'] else 'differs'}"
                  + (f", first divergence at {r['first_divergence']}" if r["first_divergence"] else ""))
        agree = sum(r["top1_agree"] for r in reports)
        print(f"{agree}/{len(reports)} file(s) with the same top-1; "
              + ("all within tolerance" if not failed else "VERIFICATION FAILED"))
    return 1 if failed else 0


class _RealCheck:
    def __init__(self, report, images: int) -> None:
        self.max_rel_error, self.top1_agreement, self.ok, self.images = (
            report.max_rel_error, report.top1_agreement, report.ok, images)


def _verify_on_samples(model: nn.Module, jpeg_model) -> _RealCheck | None:
    """Verify on the bundled sample JPEGs (32×32 gray) when the model takes 32×32 inputs."""
    from jpegfx import datasets

    if tuple(jpeg_model.spec.input_size) != (32, 32):
        return None
    samples = datasets.sample_jpegs()
    batch = jpeg_io.stack([jpeg_io.read_jpeg(p) for p in samples])
    return _RealCheck(jpegfx.verify(model, jpeg_model, batch), len(samples))


def _progress(done: int, total: int) -> None:
    if total >= 20 and sys.stderr.isatty():
        width = 30
        filled = width * done // total
        print(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total}", end="" if done < total else "\n",
              file=sys.stderr, flush=True)


def cmd_predict(args: argparse.Namespace) -> int:
    files = _list_files(args.files)
    session = jpegfx.Session(args.model, intra_op_threads=args.threads)
    predictions = []
    for start in range(0, len(files), args.batch_size):
        chunk = files[start:start + args.batch_size]
        predictions += session.predict(chunk, batch_size=args.batch_size, top_k=args.top_k, on_error=args.on_error)
        _progress(min(start + args.batch_size, len(files)), len(files))
    if args.json:
        print(json.dumps([{"file": str(p.path), "top": [int(i) for i in p.indices],
                           "scores": [float(s) for s in p.scores], "labels": list(p.labels) if p.labels else None,
                           "error": p.error} for p in predictions], indent=2))
    else:
        for p in predictions:
            if not p.ok:
                print(f"{p.path}: error: {p.error}")
                continue
            names = p.labels or [str(int(i)) for i in p.indices]
            print(f"{p.path}: " + ", ".join(f"{n} {100 * float(s):.1f}%" for n, s in zip(names, p.scores)))
    return 0 if all(p.ok for p in predictions) else 1


def cmd_demo(args: argparse.Namespace) -> int:
    """The built-in default: the shipped paper network (Fashion-MNIST) on the shipped sample JPEGs."""
    from jpegfx import datasets

    model, meta, samples = datasets.default_model().eval(), datasets.default_meta(), datasets.sample_jpegs()
    classes = list(meta["classes"])
    out = args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    print(f"1. convert: the paper network trained on Fashion-MNIST (spatial test accuracy "
          f"{100 * meta['accuracy_spatial']:.2f}%) to the JPEG domain, 32x32 gray, exact ReLU")
    jpeg_model = jpegfx.convert(model, 32, subsampling="gray")
    print(f"   {len(jpeg_model.records)} nodes lowered in {jpeg_model.seconds:.2f} s")
    batch = jpeg_io.stack([jpeg_io.read_jpeg(p) for p in samples])
    report = jpegfx.verify(model, jpeg_model, batch)
    print(f"2. verify on {len(samples)} sample JPEGs against the spatial model on their float decode: {report.summary()}")
    path = jpegfx.export_onnx(jpeg_model, out / "paper_fashion_mnist.onnx", class_names=classes)
    print(f"3. export: {path} ({path.stat().st_size / 1024:.0f} KiB)")
    session = jpegfx.Session(path)
    predictions = session.predict(samples, top_k=1)
    print(f"4. predict with onnxruntime ({', '.join(session.providers)}):")
    correct = 0
    for p in predictions:
        truth = classes[datasets.sample_label(p.path)]
        correct += p.labels[0] == truth
        print(f"   {Path(p.path).name:<22} {p.labels[0]:<12} {100 * float(p.scores[0]):5.1f}%   (true: {truth})")
    print(f"   {correct}/{len(predictions)} correct; JPEG-domain model matches the spatial model: "
          f"{'yes' if report.ok else 'NO'}")
    if args.json:
        print(json.dumps({"verification": {"max_rel_error": report.max_rel_error, "ok": report.ok},
                          "onnx": str(path), "correct": correct, "total": len(predictions)}))
    return 0 if report.ok else 1


def cmd_bench(args: argparse.Namespace) -> int:
    from jpegfx.bench import format_result, run_bench

    results = []
    for name in args.models:
        size = args.input_size or (NATIVE_SIZE.get(name, 224),) * 2
        for batch in args.batch:
            r = run_bench(name, size, batch, args.relu, args.frequencies, args.threads, args.warmup, args.repeat,
                          layers=not args.no_layers, onnx=not args.no_onnx)
            results.append(r)
            if not args.json:
                print(format_result(r), flush=True)
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jpegfx", description="Run ResNets on JPEG DCT coefficients.")
    parser.add_argument("--version", action="version", version=f"jpegfx {jpegfx.__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what each pass does")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("convert", help="convert a spatial model to the JPEG domain and verify it",
                       description="Convert a spatial model to the JPEG domain, print what each layer became, "
                                   "and verify it against the spatial model on random inputs. Exits 1 when "
                                   "exact-mode verification fails.")
    p.add_argument("--model", default="resnet18",
                   help=f"a zoo name ({', '.join(models.MODELS)}) or module:factory (default resnet18)")
    p.add_argument("--weights", type=Path, help="a state_dict file (loaded with weights_only=True)")
    p.add_argument("--input-size", type=_size, help="HxW (default: the model's native size)")
    p.add_argument("--channels", type=int, help="input channels (a zoo model is built with them; a factory's model "
                                                 "is told them where its graph does not show them)")
    p.add_argument("--relu", choices=["exact", "asm", "apx"], default="exact")
    p.add_argument("--frequencies", type=int, default=15, help="spatial frequencies k for asm/apx (1..15)")
    p.add_argument("--maxpool", choices=["exact", "asm"], default="exact")
    p.add_argument("--lowering", choices=["auto", "fused", "factored", "pointwise"], default="auto")
    p.add_argument("--no-elide", action="store_true",
                   help="keep every value in the JPEG domain (the paper's model) instead of handing values between "
                        "pixel-computing ops over in pixels (exact either way; eliding is faster)")
    p.add_argument("--strict", action="store_true",
                   help="refuse ops without a JPEG-domain lowering (listing them all) instead of running them on pixels")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--normalize", type=_normalize, default="none", metavar="none|imagenet|MEAN,STD",
                   help="the spatial model's input normalisation (default none: pixels/255); MEAN,STD per channel "
                        "separated by ':', e.g. 0.5:0.5:0.5,0.25:0.25:0.25")
    p.add_argument("--subsampling", choices=["4:4:4", "4:2:2", "4:2:0", "4:4:0", "gray"],
                   help="the JPEG layout the exported model takes (default 4:2:0, gray for 1-channel models)")
    p.add_argument("--upsampling", choices=["fancy", "nearest"], default="fancy")
    p.add_argument("--check", type=int, default=4, metavar="N", help="verify on N random inputs (0: skip)")
    p.add_argument("-o", "--output", type=Path, help="write the converted model as ONNX (after verification)")
    p.add_argument("--class-names", type=Path, help="a text file with one class name per line (ONNX metadata)")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("predict", help="classify JPEG files with an exported model (onnxruntime)",
                       description="Read JPEG files, check each against the model's spec, batch them and run "
                                   "onnxruntime (CUDA when available, else CPU). Exits 1 if any file failed.")
    p.add_argument("model", type=Path, help="a .onnx file written by jpegfx convert -o")
    p.add_argument("files", nargs="+", type=Path, help="JPEG files or directories")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--on-error", choices=["raise", "skip"], default="raise",
                   help="stop at the first bad file (default) or report it and go on")
    p.add_argument("--threads", type=int, help="onnxruntime intra-op threads")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("check", help="verify a converted model against its spatial model on JPEG files",
                       description="Convert the model for the files' size and compare the JPEG-domain model on each "
                                   "file with the spatial model on the float decode of the same file. Exits 1 when "
                                   "exact-mode verification fails.")
    p.add_argument("files", nargs="+", type=Path, help="JPEG files or directories (all of one size)")
    p.add_argument("--model", default="resnet18", help="a zoo name or module:factory")
    p.add_argument("--weights", type=Path, help="a state_dict file (loaded with weights_only=True)")
    p.add_argument("--channels", type=int, help="input channels of a zoo model")
    p.add_argument("--normalize", type=_normalize, default="none", metavar="none|imagenet|MEAN,STD")
    p.add_argument("--upsampling", choices=["fancy", "nearest"], default="fancy")
    p.add_argument("--relu", choices=["exact", "asm", "apx"], default="exact")
    p.add_argument("--frequencies", type=int, default=15)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("bench", help="JPEG-domain vs decode + spatial, measured side by side",
                       description="End to end from JPEG bytes (read coefficients + JPEG-domain model vs libjpeg-turbo "
                                   "decode + spatial model), network only, and per layer; medians of --repeat runs "
                                   "after --warmup, ratios taken within one run.")
    p.add_argument("--models", nargs="+", default=["paper", "resnet18"], help="zoo names")
    p.add_argument("--input-size", type=_size, help="HxW (default: each model's native size)")
    p.add_argument("--batch", type=int, nargs="+", default=[1], help="batch sizes")
    p.add_argument("--relu", choices=["exact", "asm", "apx"], default="exact")
    p.add_argument("--frequencies", type=int, default=15)
    p.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--no-layers", action="store_true", help="skip the per-layer table")
    p.add_argument("--no-onnx", action="store_true", help="skip the onnxruntime comparison")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("demo", help="the built-in default: convert, verify, export and predict on shipped JPEGs",
                       description="Convert the shipped paper network (trained on Fashion-MNIST), verify it on the "
                                   "shipped sample JPEGs, export it to ONNX and classify the samples with onnxruntime.")
    p.add_argument("--out-dir", type=Path, default=Path("out"), help="where the ONNX file goes (default out/)")
    p.add_argument("--json", action="store_true", help="also print a JSON summary line")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("info", help="geometry, sampling, tables and coefficient sparsity of JPEG files")
    p.add_argument("files", nargs="+", type=Path, help="JPEG files or directories")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(name)s: %(message)s")
    if getattr(args, "normalize", None) == "none":
        args.normalize = None
    try:
        return args.func(args)
    except UnsupportedModelError as e:
        print(f"jpegfx: error: {e}", file=sys.stderr)
        return 2
    except (CliError, JpegfxError, ValueError, TypeError, MemoryError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        print(f"jpegfx: error: {first}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
