#!/usr/bin/env python3
"""Train the paper's network on Fashion-MNIST and check it in the JPEG domain (the paper's Table 1).

Training: the spatial ``paper`` network (:func:`jpegfx.models.paper`, 1 channel, 10 classes) on the
60 000 Fashion-MNIST training images zero-padded to 32×32 (2 px border, as the paper pads MNIST),
input ``pixels / 255`` (no normalisation); SGD with Nesterov momentum 0.9, weight decay 5e-4, a
one-cycle learning-rate schedule, batch 128, random horizontal flips. Seeded with ``--seed`` (shuffling,
flips and initialisation come from it; results are bit-reproducible for a fixed ``--threads``).

Evaluation on the 10 000 test images (padded to 32×32):

* **spatial**: the spatial model on ``pixels / 255`` of the original images;
* **JPEG domain**: every test image compressed by Pillow at quality 100 (gray), read back with
  :func:`jpegfx.jpeg.read_jpeg`, stacked, and classified by ``jpegfx.convert(model, 32,
  subsampling="gray")``; the deviation from the spatial accuracy is the paper's Table 1 column;
* **spatial on decode**: the spatial model on the float decode of the same JPEGs
  (:func:`jpegfx.jpeg.decode` / 255) — the JPEG-domain model must reproduce its logits to float32
  round-off (max |Δlogit| / max |logit| is reported).

Outputs: the state_dict (float32; re-read with ``torch.load(..., weights_only=True)`` as a check) at
``--out`` (default ``jpegfx/data/paper_fashion_mnist.pt``), its record ``<out>.json`` (classes,
input size, normalisation, accuracies, command, seed, epochs, torch version) and eight sample JPEGs
(the first eight test images with distinct labels, Pillow quality 90, gray, named
``<test index>_<class>.jpg``) in ``--samples`` (default ``samples/`` beside ``--out``). Progress goes
to stderr, the summary to stdout.

    python tools/train_paper.py                    # ~3 epochs, a few minutes on 2 CPU cores
    python tools/train_paper.py --epochs 5 --seed 1 --out paper_seed1.pt
"""
from __future__ import annotations

import argparse
import io
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import jpegfx
from jpegfx import experiments
from jpegfx import jpeg as jpeg_io
from jpegfx.datasets import (
    FASHION_MNIST_CLASSES,
    class_slug,
    fashion_mnist_root,
    load_fashion_mnist,
    pad_to_32,
)
from jpegfx.models import create_model

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "jpegfx" / "data" / "paper_fashion_mnist.pt"
DEFAULT_EPOCHS = 3
DEFAULT_BATCH = 128
DEFAULT_LR = 0.1
DEFAULT_WEIGHT_DECAY = 5e-4
EVAL_QUALITY = 100
SAMPLE_QUALITY = 90
NUM_SAMPLES = 8
INPUT_SIZE = 32


def log(message: str, end: str = "\n") -> None:
    print(message, end=end, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------
def build_model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model("paper", num_classes=len(FASHION_MNIST_CLASSES), in_channels=1)


def to_input(images_u8: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 32, 32) → float32 (N, 1, 32, 32) = pixels / 255."""
    return images_u8.unsqueeze(1).float().div_(255.0)


def train(model: torch.nn.Module, images: np.ndarray, labels: np.ndarray, *, epochs: int, batch_size: int,
          lr: float, weight_decay: float, seed: int, quiet: bool = False) -> float:
    """Train ``model`` in place on padded uint8 images (N, 32, 32) with the recipe of
    :func:`jpegfx.experiments.train_spatial`; returns the wall time in seconds."""
    progress = None if quiet else (lambda text: log("\r" + text, end=""))
    result = experiments.train_spatial(model, images[:, None], labels, epochs=epochs, batch_size=batch_size,
                                       lr=lr, weight_decay=weight_decay, seed=seed, progress=progress)
    if not quiet:
        log("")
    return result["seconds"]


@torch.no_grad()
def predict(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Logits of ``model`` (eval mode) on float inputs (N, 1, 32, 32)."""
    model.eval()
    return torch.cat([model(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


# ---------------------------------------------------------------------------------------------
# JPEG
# ---------------------------------------------------------------------------------------------
def encode_gray(image: np.ndarray, quality: int) -> bytes:
    """Pillow's gray (one-component) baseline JPEG of a uint8 (H, W) image."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image), mode="L").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


@torch.no_grad()
def jpeg_evaluation(model: torch.nn.Module, images: np.ndarray, labels: np.ndarray, *, quality: int = EVAL_QUALITY,
                    batch_size: int = 500, quiet: bool = False) -> dict:
    """Compress ``images`` (uint8 (N, 32, 32)) with Pillow at ``quality``, read them back with jpegfx and
    classify them with the converted model and with the spatial model on their float decode."""
    model.eval()
    start = time.perf_counter()
    jpeg_model = jpegfx.convert(model, INPUT_SIZE, subsampling="gray").eval()
    convert_seconds = time.perf_counter() - start
    y = torch.from_numpy(labels)
    n = len(labels)
    jpeg_logits, decode_logits, sizes = [], [], []
    for i in range(0, len(images), batch_size):
        blobs = [encode_gray(im, quality) for im in images[i:i + batch_size]]
        sizes += [len(b) for b in blobs]
        batch = jpeg_io.stack([jpeg_io.read_jpeg(b) for b in blobs])
        jpeg_logits.append(jpeg_model(batch))
        decode_logits.append(model((jpeg_io.decode(batch) / 255.0).to(torch.float32)))
        if not quiet:
            done = min(i + batch_size, len(images))
            log(f"\rJPEG-domain evaluation: {done:5d}/{len(images)} {time.perf_counter() - start:6.1f} s",
                end="\n" if done == len(images) else "")
    lj, ld = torch.cat(jpeg_logits), torch.cat(decode_logits)
    max_abs = float((lj - ld).abs().max())
    scale = float(ld.abs().max())
    return {
        "quality": quality,
        "mean_file_bytes": float(np.mean(sizes)),
        "accuracy_jpeg_domain": int((lj.argmax(1) == y).sum()) / n,
        "accuracy_spatial_on_decode": int((ld.argmax(1) == y).sum()) / n,
        "top1_agreement_jpeg_vs_decode": int((lj.argmax(1) == ld.argmax(1)).sum()) / n,
        "max_abs_logit_diff": max_abs,
        "max_abs_logit": scale,
        "max_rel_logit_diff": max_abs / max(scale, 1e-30),
        "convert_seconds": convert_seconds,
        "seconds": time.perf_counter() - start,
    }


def sample_indices(labels: np.ndarray, count: int = NUM_SAMPLES) -> list[int]:
    """The first ``count`` test indices with pairwise distinct labels (independent of any model)."""
    chosen, seen = [], set()
    for i, label in enumerate(labels.tolist()):
        if label not in seen:
            chosen.append(i)
            seen.add(label)
            if len(chosen) == count:
                break
    return chosen


def write_samples(directory: Path, images: np.ndarray, labels: np.ndarray,
                  model: torch.nn.Module) -> list[dict]:
    """Write the sample JPEGs (replacing ``*.jpg`` already in ``directory``); each entry records the
    spatial model's prediction on the Pillow decode / 255."""
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("*.jpg"):
        old.unlink()
    entries = []
    for index in sample_indices(labels):
        label = int(labels[index])
        name = f"{index:04d}_{class_slug(FASHION_MNIST_CLASSES[label])}.jpg"
        data = encode_gray(images[index], SAMPLE_QUALITY)
        (directory / name).write_bytes(data)
        decoded = np.asarray(Image.open(io.BytesIO(data)).convert("L"))
        x = torch.from_numpy(decoded.copy()).reshape(1, 1, INPUT_SIZE, INPUT_SIZE).float() / 255.0
        predicted = int(predict(model, x).argmax(1))
        entries.append({"file": name, "test_index": index, "label": label, "class": FASHION_MNIST_CLASSES[label],
                        "bytes": len(data), "spatial_prediction": predicted})
    return entries


# ---------------------------------------------------------------------------------------------
# Saving
# ---------------------------------------------------------------------------------------------
def save_checkpoint(model: torch.nn.Module, path: Path) -> None:
    """Save a float32, contiguous state_dict and check that it loads with ``weights_only=True`` and gives
    the same logits."""
    state = {k: v.detach().to(torch.float32 if v.is_floating_point() else v.dtype).contiguous().clone()
             for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    loaded = torch.load(path, map_location="cpu", weights_only=True)
    fresh = create_model("paper", num_classes=len(FASHION_MNIST_CLASSES), in_channels=1)
    fresh.load_state_dict(loaded)
    probe = torch.rand(4, 1, INPUT_SIZE, INPUT_SIZE, generator=torch.Generator().manual_seed(0))
    if not torch.equal(predict(fresh, probe), predict(model, probe)):
        raise RuntimeError(f"{path}: the reloaded state_dict does not reproduce the model's logits")


def command_line(args: argparse.Namespace) -> str:
    """The training command (hyperparameters only: no paths, no thread count)."""
    parts = ["python", "tools/train_paper.py", "--epochs", str(args.epochs), "--seed", str(args.seed)]
    for flag, value, default in (("--batch-size", args.batch_size, DEFAULT_BATCH), ("--lr", args.lr, DEFAULT_LR),
                                 ("--weight-decay", args.weight_decay, DEFAULT_WEIGHT_DECAY)):
        if value != default:
            parts += [flag, str(value)]
    if args.limit_train is not None:
        parts += ["--limit-train", str(args.limit_train)]
    if args.limit_test is not None:
        parts += ["--limit-test", str(args.limit_test)]
    return shlex.join(parts)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS, help=f"training epochs (default {DEFAULT_EPOCHS})")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    p.add_argument("--data", type=Path, default=None,
                   help="Fashion-MNIST IDX directory (default: $JPEGFX_FASHION_MNIST, else "
                        "/usr/share/datasets/fashion-mnist)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT,
                   help="state_dict path; the JSON record is written beside it "
                        "(default jpegfx/data/paper_fashion_mnist.pt)")
    p.add_argument("--samples", type=Path, default=None, help="sample JPEG directory (default: samples/ beside --out)")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH)
    p.add_argument("--lr", type=float, default=DEFAULT_LR, help="peak learning rate of the one-cycle schedule")
    p.add_argument("--weight-decay", type=float, default=DEFAULT_WEIGHT_DECAY)
    p.add_argument("--jpeg-batch", type=int, default=500, help="JPEG-domain evaluation batch size")
    p.add_argument("--limit-train", type=int, default=None, help="train on the first N images only (smoke tests)")
    p.add_argument("--limit-test", type=int, default=None,
                   help="evaluate on the first N test images only (smoke tests)")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    args = p.parse_args(argv)
    for name in ("epochs", "threads", "batch_size", "jpeg_batch"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be positive")
    for name in ("limit_train", "limit_test"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be positive")
    if args.lr <= 0:
        p.error("--lr must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    samples_dir = args.samples if args.samples is not None else args.out.parent / "samples"
    meta_path = args.out.with_suffix(".json")
    try:
        train_x, train_y = load_fashion_mnist(args.data, "train")
        test_x, test_y = load_fashion_mnist(args.data, "test")
    except (FileNotFoundError, ValueError) as exc:
        print(f"train_paper: {exc}", file=sys.stderr)
        return 2
    if not args.quiet:
        log(f"Fashion-MNIST from {fashion_mnist_root(args.data)}: {len(train_y)} train, {len(test_y)} test; "
            f"{args.threads} thread(s), torch {torch.__version__}")
    train_x, test_x = pad_to_32(train_x), pad_to_32(test_x)
    all_test_x, all_test_y = test_x, test_y
    if args.limit_train is not None:
        train_x, train_y = train_x[:args.limit_train], train_y[:args.limit_train]
    if args.limit_test is not None:
        test_x, test_y = test_x[:args.limit_test], test_y[:args.limit_test]

    model = build_model(args.seed)
    train_seconds = train(model, train_x, train_y, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                          weight_decay=args.weight_decay, seed=args.seed, quiet=args.quiet)
    model.eval()
    spatial_logits = predict(model, to_input(torch.from_numpy(test_x)))
    spatial_acc = int((spatial_logits.argmax(1) == torch.from_numpy(test_y)).sum()) / len(test_y)
    if not args.quiet:
        log(f"trained in {train_seconds:.1f} s; spatial test accuracy {100 * spatial_acc:.2f}%")

    save_checkpoint(model, args.out)
    jpeg = jpeg_evaluation(model, test_x, test_y, batch_size=args.jpeg_batch, quiet=args.quiet)
    samples = write_samples(samples_dir, all_test_x, all_test_y, model)
    deviation = jpeg["accuracy_jpeg_domain"] - spatial_acc

    meta = {
        "model": "paper",
        "dataset": "Fashion-MNIST",
        "classes": list(FASHION_MNIST_CLASSES),
        "num_classes": len(FASHION_MNIST_CLASSES),
        "in_channels": 1,
        "input_size": [INPUT_SIZE, INPUT_SIZE],
        "padding": "28x28 zero-padded by 2 px to 32x32",
        "normalize": None,
        "input": "pixels / 255",
        "test_images": int(len(test_y)),
        "accuracy_spatial": spatial_acc,
        "accuracy_jpeg_domain": jpeg["accuracy_jpeg_domain"],
        "deviation": deviation,
        "jpeg_evaluation": jpeg,
        "training": {
            "command": command_line(args),
            "seed": args.seed,
            "epochs": args.epochs,
            "train_images": int(len(train_y)),
            "batch_size": args.batch_size,
            "optimizer": "SGD(momentum=0.9, nesterov=True)",
            "lr_schedule": f"OneCycleLR(max_lr={args.lr})",
            "weight_decay": args.weight_decay,
            "augmentation": "random horizontal flip",
            "threads": args.threads,
            "seconds": train_seconds,
        },
        "torch_version": torch.__version__,
        "jpegfx_version": jpegfx.__version__,
        "checkpoint": args.out.name,
        "samples": samples,
    }
    meta_path.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")

    correct_samples = sum(s["spatial_prediction"] == s["label"] for s in samples)
    print(f"spatial accuracy (original pixels / 255):       {100 * spatial_acc:6.2f}%")
    print(f"JPEG-domain accuracy (quality {jpeg['quality']} JPEGs):       {100 * jpeg['accuracy_jpeg_domain']:6.2f}%")
    print(f"deviation (JPEG domain - spatial):              {100 * deviation:+6.2f} points")
    print(f"spatial accuracy on the float decode:           {100 * jpeg['accuracy_spatial_on_decode']:6.2f}%")
    print(f"max |logit(JPEG) - logit(decode)|:              {jpeg['max_abs_logit_diff']:.3e} "
          f"({jpeg['max_rel_logit_diff']:.2e} of max |logit| {jpeg['max_abs_logit']:.2f})")
    print(f"training: {args.epochs} epoch(s) in {train_seconds:.1f} s; JPEG evaluation {jpeg['seconds']:.1f} s")
    print(f"samples: {correct_samples}/{len(samples)} classified correctly (Pillow decode of the quality-"
          f"{SAMPLE_QUALITY} files)")
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes), {meta_path}, {len(samples)} samples in {samples_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
