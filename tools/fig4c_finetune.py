"""The paper's Figure 4c through the product: the shipped ``paper`` network (trained on Fashion-MNIST in
the spatial domain) fine-tuned in the JPEG domain with the approximate ReLUs, on folders of JPEG files.

For each mode (``--modes``: asm, apx) and each k of ``--k``:

* **converted**: the network converted with that ReLU and evaluated on the test folder, no training
  (the paper's Fig. 4b);
* **fine-tuned**: :func:`jpegfx.train.fit` — converted in train mode with that ReLU, fine-tuned on the
  training folder (``--train-images``, ``--epochs``, SGD with Nesterov momentum, cosine schedule,
  random lossless flips), evaluated on the test folder (Fig. 4c).

Baselines: the exact ReLU (k = 15 is exact for both modes: one "exact" row, fine-tuned the same way),
and the **spatial** network fine-tuned with the same recipe on the same files decoded by Pillow
(``spatial`` row; its images/s is the training-throughput baseline of the paper's Fig. 5). Every row
records accuracy, wall time and training images per second (data loading included, one process).

Rows are appended to ``OUT/fig4c_finetune.csv`` as they finish; a rerun skips the rows already there
(``--force`` redoes them). ``OUT/fig4c_finetune.png`` is drawn from the CSV at the end.

    python tools/fashion_jpegs.py DATA                      # once: the JPEG folders
    python tools/fig4c_finetune.py DATA --out docs/results  # full budget: 60 000 images, 3 epochs, k = 1…15
    python tools/fig4c_finetune.py DATA --train-images 2000 --epochs 1 --k 1 6 --out /tmp/r   # minutes
"""
from __future__ import annotations

import argparse
import copy
import csv
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

import jpegfx
from jpegfx import datasets
from jpegfx import train as jt
from jpegfx.data import Collate, JpegFolder, RandomFlip

FIELDS = ("mode", "k", "converted_top1", "finetuned_top1", "train_images", "epochs", "images_per_s", "seconds",
          "command")
log = logging.getLogger("fig4c_finetune")


def subset(folder: JpegFolder, count: int | None, seed: int) -> list[tuple[str, int]]:
    """``count`` samples drawn without replacement (seeded), all when ``None``."""
    if count is None or count >= len(folder):
        return folder.samples
    pick = np.random.default_rng(seed).choice(len(folder), size=count, replace=False)
    return [folder.samples[i] for i in sorted(pick)]


def converted_accuracy(mode: str, k: int, test: JpegFolder, batch: int) -> float:
    model = datasets.default_model()
    jm = jpegfx.convert(model, 32, relu=mode, frequencies=k, any_size=False)
    return jt.evaluate(jm, test, Collate.for_model(jm), batch_size=batch)[1]


class _Decoded(torch.utils.data.Dataset):
    """The same files decoded by Pillow (libjpeg-turbo), ``pixels / 255``, random flips by (seed, index)."""

    def __init__(self, samples, seed: int, flip: bool) -> None:
        self.samples, self.seed, self.flip, self.epoch = samples, seed, flip, 0

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        path, label = self.samples[i]
        with Image.open(path) as image:
            x = torch.from_numpy(np.asarray(image.convert("L"), dtype=np.float32) / 255.0)[None]
        if self.flip and np.random.default_rng((self.seed, self.epoch, i)).random() < 0.5:
            x = x.flip(-1)
        return x, label


def spatial_finetune(samples, test_samples, options: jt.TrainOptions) -> tuple[float, float]:
    """(test top-1, training images/s) of the spatial network fine-tuned with ``options``."""
    torch.manual_seed(options.seed)
    model = datasets.default_model().train()
    data = _Decoded(samples, options.seed, True)
    sampler = torch.utils.data.distributed.DistributedSampler(data, num_replicas=1, rank=0, seed=options.seed)
    loader = torch.utils.data.DataLoader(data, batch_size=options.batch_size, sampler=sampler, drop_last=True,
                                         num_workers=options.workers)
    optimizer = jt.make_optimizer(model, options)
    schedule = jt.make_schedule(optimizer, options, len(loader))
    seen, began = 0, time.perf_counter()
    for epoch in range(options.epochs):
        sampler.set_epoch(epoch)
        data.epoch = epoch
        for x, labels in loader:
            loss = F.cross_entropy(model(x), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            seen += len(labels)
    rate = seen / (time.perf_counter() - began)
    model.eval()
    test = torch.utils.data.DataLoader(_Decoded(test_samples, 0, False), batch_size=500)
    correct = total = 0
    with torch.no_grad():
        for x, labels in test:
            correct += int((model(x).argmax(1) == labels).sum())
            total += len(labels)
    return correct / total, rate


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for mode, colour in (("asm", "tab:blue"), ("apx", "tab:orange")):
        mine = sorted((r for r in rows if r["mode"] == mode), key=lambda r: int(r["k"]))
        if not mine:
            continue
        ks = [int(r["k"]) for r in mine]
        ax.plot(ks, [100 * float(r["finetuned_top1"]) for r in mine], "-o", color=colour,
                label=f"{mode.upper()}, fine-tuned in the JPEG domain")
        ax.plot(ks, [100 * float(r["converted_top1"]) for r in mine], "--x", color=colour, alpha=0.6,
                label=f"{mode.upper()}, converted only")
    for mode, style in (("exact", ":"), ("spatial", "-.")):
        for r in rows:
            if r["mode"] == mode:
                ax.axhline(100 * float(r["finetuned_top1"]), color="gray", linestyle=style,
                           label=f"{'exact ReLU, JPEG domain' if mode == 'exact' else 'spatial'}, fine-tuned")
    ax.set_xlim(0.5, 15.5)
    ax.set_xticks(range(1, 16))
    ax.set_xlabel("spatial frequencies k (15: exact)")
    ax.set_ylabel("Fashion-MNIST test top-1 (%)")
    ax.set_title("Fig. 4c: the paper network fine-tuned in the JPEG domain")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def markdown(rows: list[dict]) -> str:
    """The CSV as the Markdown table of docs/training.md: baselines first, then k ascending, ASM before APX."""
    order = {"spatial": 0, "exact": 1, "asm": 2, "apx": 3}
    lines = ["| mode | k | converted, no training | fine-tuned in the JPEG domain | wall time | images/s |",
             "|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["mode"] not in ("spatial", "exact"), int(r["k"]), order[r["mode"]])):
        converted = "—" if r["converted_top1"] == "nan" else f"{100 * float(r['converted_top1']):.2f}%"
        lines.append(f"| {r['mode']} | {r['k']} | {converted} | {100 * float(r['finetuned_top1']):.2f}% "
                     f"| {int(r['seconds']) / 60:.1f} min | {float(r['images_per_s']):.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path, nargs="?",
                        help="a folder with train/ and test/ (tools/fashion_jpegs.py); not needed with --table")
    parser.add_argument("--out", type=Path, default=Path("docs/results"))
    parser.add_argument("--modes", nargs="+", default=["asm", "apx"], choices=["asm", "apx"])
    parser.add_argument("--k", nargs="+", type=int, default=list(range(1, 15)))
    parser.add_argument("--train-images", type=int, help="default: all 60 000")
    parser.add_argument("--test-images", type=int, help="default: all 10 000")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true", help="redo rows already in the CSV")
    parser.add_argument("--table", action="store_true",
                        help="print the rows of OUT/fig4c_finetune.csv as a Markdown table, redraw the PNG, train nothing")
    args = parser.parse_args(argv)
    path = args.out / "fig4c_finetune.csv"
    if args.table:
        if not path.is_file():
            parser.error(f"--table reads {path}, which does not exist")
        rows = list(csv.DictReader(path.open()))
        print(markdown(rows))
        plot(rows, args.out / "fig4c_finetune.png")
        return 0
    if args.data is None:
        parser.error("the data folder is needed unless --table is given")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)

    command = "python tools/fig4c_finetune.py " + " ".join(argv if argv is not None else sys.argv[1:])
    train_folder, test_folder = JpegFolder(args.data / "train"), JpegFolder(args.data / "test")
    samples = subset(train_folder, args.train_images, args.seed)
    test_samples = subset(test_folder, args.test_images, args.seed)
    test = JpegFolder(samples=test_samples, classes=test_folder.classes)
    options = jt.TrainOptions(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=5e-4,
                              schedule="cosine", workers=args.workers, seed=args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = list(csv.DictReader(path.open())) if path.exists() else []
    if args.force:
        rows = []
    done = {(r["mode"], int(r["k"])) for r in rows}
    plan = [("spatial", 15), ("exact", 15)] + [(m, k) for k in args.k for m in args.modes if k < 15]
    for mode, k in plan:
        if (mode, k) in done:
            continue
        began = time.perf_counter()
        if mode == "spatial":
            converted, (finetuned, rate) = float("nan"), spatial_finetune(samples, test_samples, options)
        else:
            relu = "exact" if mode == "exact" else mode
            converted = converted_accuracy(relu, k, test, 500)
            data = JpegFolder(samples=samples, classes=train_folder.classes, augment=[RandomFlip()], seed=args.seed)
            result = jt.fit(copy.deepcopy(datasets.default_model()), data, input_size=32, relu=relu, frequencies=k,
                            val_data=test, options=options)
            finetuned = result.history[-1]["val_top1"]
            rate = sum(r["images_per_s"] * r["seconds"] for r in result.history) / sum(r["seconds"] for r in result.history)
        row = {"mode": mode, "k": k, "converted_top1": f"{converted:.4f}", "finetuned_top1": f"{finetuned:.4f}",
               "train_images": len(samples), "epochs": args.epochs, "images_per_s": f"{rate:.1f}",
               "seconds": f"{time.perf_counter() - began:.0f}", "command": command}
        rows.append(row)
        log.info("%s k=%d: converted %s, fine-tuned %s, %s images/s, %s s", mode, k, row["converted_top1"],
                 row["finetuned_top1"], row["images_per_s"], row["seconds"])
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=FIELDS)
            writer.writeheader()
            writer.writerows(rows)
    plot(rows, args.out / "fig4c_finetune.png")
    for r in rows:
        print(f"{r['mode']:8s} k={int(r['k']):2d}  converted {r['converted_top1']:>6s}  fine-tuned {r['finetuned_top1']}  "
              f"{r['images_per_s']:>7s} images/s  {r['seconds']:>6s} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
