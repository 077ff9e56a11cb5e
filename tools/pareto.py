"""Latency against top-1 on Fashion-MNIST JPEG files: where reading less of each image pays.

The paper network is fine-tuned at R × R for each R = 4N of ``--sizes`` (32: the files' own size)
with :func:`jpegfx.train.fit`, on the training folder, from the shipped weights, with the same recipe for
every R. Below 32 its input is libjpeg's N/8 scaled image (N = 8R/32) computed from each file's
coefficients (:class:`jpegfx.preprocess.Policy` ``(resize=R, crop=R)``), so the network sees
(R/32)² of the pixels. Every R's weights are then served, in onnxruntime, by three
pipelines that read the same files from memory:

* ``jpegfx``: :meth:`jpegfx.runtime.Session.predict` on the exported file — at 32 the exact
  pixel-domain network (``convert(domains="pixels")``: coefficients → the folded input stage →
  the spatial network), below 32 a policy file (the N/8 image from the coefficients, files of one
  size computed together);
* ``simplejpeg``: libjpeg-turbo's decode (below 32 its scaled decode, ``min_height``/``min_width``) +
  ``/255`` + the spatial network exported by ``torch.onnx``;
* ``pillow-draft``: Pillow's decode with ``draft()`` (libjpeg's scaled decode, which Pillow offers at
  1/2, 1/4 and 1/8 only; other sizes are brought to R × R by Pillow's bilinear resize from the next
  larger one) + the same network.

Accuracy is each pipeline's top-1 on the test folder, with the share of test images on which it
predicts the class that ``simplejpeg`` at the same size predicts (the same weights on libjpeg-turbo's
own scaled decode; jpegfx's input from the coefficients is the float form of that decode). Time is
the whole pipeline — bytes in memory to logits, ``--batch`` files per call, ``--timing-files`` files
per round — in interleaved rounds (each round runs every pipeline once, in rotated order); the ratio
is each round's time over the same round's ``simplejpeg`` at 32 (decode + the spatial network at full
size: the baseline of the issue), given as median (min–max). ``jpegfx``'s time includes
``predict``'s softmax and top-k, which the others skip.

    python tools/fashion_jpegs.py DATA          # once: the JPEG folders
    python tools/pareto.py DATA --out docs/results [--sizes 32 28 24 20 16 12 8] [--epochs 2] [--rounds 7]

``--model resnet20`` (or another zoo name) trains that network from a seeded initialisation at each
size instead (give it more ``--epochs``). Trained weights go to ``--work``/MODEL (default
``DATA/pareto``; a rerun reuses them), the table to ``OUT/pareto_MODEL.csv`` and the plot to
``OUT/pareto_MODEL.png``.
"""
from __future__ import annotations

import argparse
import copy
import csv
import io
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch

import jpegfx
from jpegfx import datasets, models
from jpegfx import train as jt
from jpegfx.bench import _export_spatial, _ort_options
from jpegfx.data import JpegFolder, RandomFlip
from jpegfx.preprocess import Policy
from jpegfx.runtime import Session

log = logging.getLogger("pareto")
FULL = 32
FIELDS = ["pipeline", "size", "top1", "agree_simplejpeg", "ms_per_image", "ratio_median", "ratio_min", "ratio_max", "train_top1",
          "train_seconds", "command"]


def policy_for(size: int) -> Policy | None:
    return None if size == FULL else Policy(resize=size, crop=size)


def initial_model(name: str, seed: int) -> torch.nn.Module:
    """``paper``: the shipped network (trained on Fashion-MNIST at 32×32); any other zoo name: freshly
    initialised (seeded) for one channel and ten classes."""
    if name == "paper":
        return copy.deepcopy(datasets.default_model())
    torch.manual_seed(seed)
    return models.create_model(name, num_classes=len(datasets.FASHION_MNIST_CLASSES), in_channels=1)


def finetune(data: Path, work: Path, size: int, args: argparse.Namespace) -> tuple[float, float]:
    """Train ``--model`` at ``size`` (or reuse ``work/r{size}/model.pt``): (val top-1, seconds)."""
    out = work / f"r{size}"
    record = out / "record.csv"
    if (out / "model.pt").exists() and record.exists():
        row = next(csv.DictReader(record.open()))
        return float(row["top1"]), float(row["seconds"])
    folder = JpegFolder(data / "train")
    samples = folder.samples
    if args.train_images:  # a seeded subset of every class
        keep = np.random.default_rng(args.seed).permutation(len(samples))[: args.train_images]
        samples = [samples[i] for i in sorted(keep)]
    train = JpegFolder(samples=samples, classes=folder.classes, augment=[RandomFlip()], seed=args.seed)
    test = JpegFolder(data / "test")
    options = jt.TrainOptions(epochs=args.epochs, batch_size=128, lr=args.lr, weight_decay=5e-4, schedule="cosine",
                              seed=args.seed)
    began = time.perf_counter()
    result = jt.fit(initial_model(args.model, args.seed), train, input_size=size, policy=policy_for(size),
                    val_data=test, options=options, out_dir=out)
    seconds = time.perf_counter() - began
    top1 = result.history[-1]["val_top1"]
    with record.open("w", newline="") as f:
        csv.writer(f).writerows([["top1", "seconds"], [top1, seconds]])
    log.info("fine-tuned at %dx%d: top-1 %.4f in %.0f s", size, size, top1, seconds)
    return top1, seconds


def spatial_network(work: Path, size: int, name: str) -> torch.nn.Module:
    model = initial_model(name, 0)
    model.load_state_dict(torch.load(work / f"r{size}" / "model.pt", map_location="cpu", weights_only=True))
    return model.eval()


def pipelines(work: Path, size: int, threads: int, name: str = "paper") -> dict[str, callable]:
    """name → function(list of JPEG bytes) → logits (N, 10), for the weights fine-tuned at ``size``."""
    import onnxruntime as ort
    import simplejpeg
    from PIL import Image

    model = spatial_network(work, size, name)
    spatial_path = work / f"r{size}" / "spatial.onnx"
    _export_spatial(model, torch.zeros(1, 1, size, size), spatial_path)
    spatial = ort.InferenceSession(str(spatial_path), sess_options=_ort_options(threads),
                                   providers=["CPUExecutionProvider"])
    jpeg_path = work / f"r{size}" / "jpegfx.onnx"
    converted = jpegfx.convert(model, size, subsampling="gray", domains="pixels")
    jpegfx.export_onnx(converted, jpeg_path, preprocess=policy_for(size))
    session = Session(jpeg_path, session_options=_ort_options(threads))

    def network(pixels: list[np.ndarray]) -> np.ndarray:
        x = np.stack(pixels).reshape(len(pixels), 1, size, size).astype(np.float32) / np.float32(255.0)
        return spatial.run(None, {"x": x})[0]

    def simplejpeg_run(files: list[bytes]) -> np.ndarray:
        scale = {} if size == FULL else {"min_height": size, "min_width": size}
        return network([simplejpeg.decode_jpeg(f, colorspace="GRAY", **scale) for f in files])

    def pillow_run(files: list[bytes]) -> np.ndarray:
        pixels = []
        for f in files:
            with Image.open(io.BytesIO(f)) as image:
                if size != FULL:
                    image.draft("L", (size, size))  # libjpeg's scaled decode at 1/2, 1/4 or 1/8 only
                    if image.size != (size, size):
                        image = image.resize((size, size), Image.BILINEAR)
                pixels.append(np.asarray(image))
        return network(pixels)

    def jpegfx_run(files: list[bytes]) -> np.ndarray:
        return np.asarray([p.indices[0] for p in session.predict(files, batch_size=len(files), top_k=1)])

    return {"jpegfx": jpegfx_run, "simplejpeg": simplejpeg_run, "pillow-draft": pillow_run}


def predicted(run, files: list[bytes], batch: int) -> np.ndarray:
    out = []
    for start in range(0, len(files), batch):
        y = run(files[start:start + batch])
        out.append(y if y.ndim == 1 else y.argmax(axis=1))
    return np.concatenate(out)


def plot(rows: list[dict], path: Path, name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for pipeline, style in (("simplejpeg", "s--"), ("pillow-draft", "^:"), ("jpegfx", "o-")):
        mine = sorted((r for r in rows if r["pipeline"] == pipeline), key=lambda r: -int(r["size"]))
        xs = [float(r["ratio_median"]) for r in mine]
        ys = [100 * float(r["top1"]) for r in mine]
        ax.plot(xs, ys, style, label=pipeline)
        for r, x, y in zip(mine, xs, ys):
            ax.annotate(f"{r['size']}²", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    base = next(r for r in rows if r["pipeline"] == "simplejpeg" and int(r["size"]) == FULL)
    ax.axhline(100 * float(base["top1"]) - 1, color="gray", linewidth=0.8, linestyle="-.",
               label="baseline top-1 − 1 point")
    ax.axvline(1 / 1.5, color="gray", linewidth=0.8, linestyle=(0, (1, 3)), label="1.5× faster than the baseline")
    ax.set_xscale("log")
    ax.set_xlabel("time per image / simplejpeg decode + network at 32×32 (median of interleaved rounds)")
    ax.set_ylabel("Fashion-MNIST test top-1 (%)")
    ax.set_title(f"Latency against top-1: the {name} network, input R×R from 32×32 JPEGs")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def replot(csv_path: Path, name: str) -> None:
    """Draw ``csv_path``'s PNG again from its rows (``--replot``)."""
    plot(list(csv.DictReader(csv_path.open())), csv_path.with_suffix(".png"), name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path, help="folder with train/ and test/ (tools/fashion_jpegs.py)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--work", type=Path, help="fine-tuned weights and exported files (default DATA/pareto)")
    parser.add_argument("--sizes", nargs="+", type=int, default=[32, 24, 16, 8], choices=range(4, 33, 4),
                        metavar="R", help="input sizes R = 4N (N/8 scaling of the 32x32 files, N = 1 … 8)")
    parser.add_argument("--model", default="paper",
                        help="paper (default: the shipped network, fine-tuned at each size) or a zoo name such as "
                             "resnet20 (trained from a seeded initialisation at each size)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--lr", type=float, default=0.01, help="peak learning rate of SGD with a cosine schedule")
    parser.add_argument("--train-images", type=int, help="default: all 60 000")
    parser.add_argument("--batch", type=int, default=40, help="files per call (the paper's batch)")
    parser.add_argument("--timing-files", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime and torch threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--replot", action="store_true", help="only draw OUT/pareto_MODEL.png again from its CSV")
    args = parser.parse_args(argv)
    if args.replot:
        replot(args.out / f"pareto_{args.model}.csv", args.model)
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)
    torch.set_num_threads(args.threads)
    command = "python tools/pareto.py " + " ".join(argv if argv is not None else sys.argv[1:])
    work = (args.work or args.data / "pareto") / args.model
    sizes = sorted(set(args.sizes) | {FULL}, reverse=True)
    trained = {size: finetune(args.data, work, size, args) for size in sizes}

    test = JpegFolder(args.data / "test")
    files = [Path(p).read_bytes() for p, _ in test.samples]
    labels = np.asarray([label for _, label in test.samples])
    runs = {(name, size): fn for size in sizes for name, fn in pipelines(work, size, args.threads, args.model).items()}
    accuracy, predictions = {}, {}
    for key, run in runs.items():
        predictions[key] = predicted(run, files, 200)
        accuracy[key] = float((predictions[key] == labels).mean())
        log.info("%s at %d: top-1 %.4f", *key, accuracy[key])

    timing = files[: args.timing_files]
    baseline = ("simplejpeg", FULL)
    order = list(runs)
    seconds = {key: [] for key in runs}
    for r in range(args.rounds + 1):  # the first round warms up
        turn = order[r % len(order):] + order[: r % len(order)]
        for key in turn:
            began = time.perf_counter()
            predicted(runs[key], timing, args.batch)
            if r:
                seconds[key].append(time.perf_counter() - began)
    rows = []
    for key in order:
        ratios = np.asarray(seconds[key]) / np.asarray(seconds[baseline])
        name, size = key
        agree = float((predictions[key] == predictions["simplejpeg", size]).mean())
        rows.append({"pipeline": name, "size": size, "top1": f"{accuracy[key]:.4f}", "agree_simplejpeg": f"{agree:.4f}",
                     "ms_per_image": f"{1e3 * np.median(seconds[key]) / len(timing):.4f}",
                     "ratio_median": f"{np.median(ratios):.3f}", "ratio_min": f"{ratios.min():.3f}",
                     "ratio_max": f"{ratios.max():.3f}", "train_top1": f"{trained[size][0]:.4f}",
                     "train_seconds": f"{trained[size][1]:.0f}", "command": command})
    args.out.mkdir(parents=True, exist_ok=True)
    with (args.out / f"pareto_{args.model}.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    plot(rows, args.out / f"pareto_{args.model}.png", args.model)
    for r in rows:
        print(f"{r['pipeline']:13s} {r['size']:>3}²  top-1 {r['top1']}  same class as simplejpeg {r['agree_simplejpeg']}  "
              f"{r['ms_per_image']} ms/image  "
              f"ratio {r['ratio_median']} ({r['ratio_min']}–{r['ratio_max']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
