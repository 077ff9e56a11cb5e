"""Training throughput from JPEG files: the JPEG-domain step against decode + spatial step (the paper's
Fig. 5, training side), measured side by side.

Per round and per path, one training step on each of ``--batches`` batches of files, end to end:

* **spatial**: Pillow decodes each file (libjpeg-turbo), ``pixels / 255`` (and the model's
  normalisation), stack, forward, cross-entropy, backward, SGD step;
* **jpeg (pixels)** / **jpeg (all-coefficient)**: :class:`jpegfx.data.JpegFolder` reads each file's
  coefficients, :class:`jpegfx.data.Collate` stacks them, the JPEG-domain model (converted in train
  mode, ``domains="pixels"`` or ``"jpeg"``) takes the step — with the chosen ReLU.

Rounds interleave the paths; each prints images/s and the ratio to the spatial path of the same round
(> 1: faster than decoding), then medians (min–max) over ``--repeat`` rounds.

    python tools/bench_train.py FOLDER [--model paper] [--size 32] [--batch 128] [--relu exact|asm|apx -k 6]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

import jpegfx
from jpegfx import models
from jpegfx.data import Collate, JpegFolder
from jpegfx.ops.input import normalization


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", help="class-per-folder JPEG files of one size and layout (e.g. tools/fashion_jpegs.py)")
    parser.add_argument("--model", default="paper")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--relu", default="exact", choices=["exact", "asm", "apx"])
    parser.add_argument("-k", "--frequencies", type=int, default=6)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, help="torch threads")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    folder = JpegFolder(args.folder)
    samples = folder.samples[:args.batch * args.batches]
    channels = 1 if Image.open(samples[0][0]).mode == "L" else 3
    torch.manual_seed(0)
    spatial = models.create_model(args.model, num_classes=len(folder.classes), in_channels=channels).train()
    k = 15 if args.relu == "exact" else args.frequencies
    nets = {d: jpegfx.convert(models.create_model(args.model, num_classes=len(folder.classes),
                                                  in_channels=channels).train(),
                              args.size, relu=args.relu, frequencies=k, any_size=False, domains=d)
            for d in ("pixels", "jpeg")}
    mean, std = (t.reshape(1, -1, 1, 1).float() for t in normalization(None, channels))

    def spatial_step(chunk):
        images = [np.asarray(Image.open(p).convert("L" if channels == 1 else "RGB"), dtype=np.float32) for p, _ in chunk]
        x = torch.from_numpy(np.stack(images)).reshape(len(chunk), args.size, args.size, channels).permute(0, 3, 1, 2)
        x = (x / 255.0 - mean) / std
        return spatial, x, torch.tensor([label for _, label in chunk])

    def jpeg_step(domains):
        data = JpegFolder(samples=samples, classes=folder.classes)
        collate = Collate.for_model(nets[domains])

        def step(chunk):
            start = samples.index(chunk[0])
            x, labels = collate([data[i] for i in range(start, start + len(chunk))])
            return nets[domains], x, labels
        return step

    paths = {"spatial": spatial_step, "jpeg (pixels)": jpeg_step("pixels"), "jpeg (all-coefficient)": jpeg_step("jpeg")}
    optimizers = {name: torch.optim.SGD((spatial if name == "spatial" else nets["pixels" if "pixels" in name else "jpeg"])
                                        .parameters(), lr=1e-3, momentum=0.9) for name in paths}
    chunks = [samples[i:i + args.batch] for i in range(0, len(samples), args.batch)]
    rates: dict[str, list[float]] = {name: [] for name in paths}
    ratios: dict[str, list[float]] = {name: [] for name in paths if name != "spatial"}
    print(f"{args.model} {args.size}x{args.size}, batch {args.batch}, relu {args.relu}"
          f"{'' if args.relu == 'exact' else f' k={k}'}, {torch.get_num_threads()} thread(s); images/s per round")
    for round_ in range(args.repeat + 1):
        times = {}
        for name, make in paths.items():
            began = time.perf_counter()
            for chunk in chunks:
                model, x, labels = make(chunk)
                loss = F.cross_entropy(model(x), labels)
                optimizers[name].zero_grad()
                loss.backward()
                optimizers[name].step()
            times[name] = time.perf_counter() - began
        if round_ == 0:
            continue  # warm-up
        for name in paths:
            rates[name].append(len(samples) / times[name])
            if name != "spatial":
                ratios[name].append(times["spatial"] / times[name])
        print("  " + ", ".join(f"{n} {len(samples) / t:.0f}" for n, t in times.items()))

    def spread(values):
        return f"{statistics.median(values):.2f} ({min(values):.2f}–{max(values):.2f})"

    print(f"spatial (Pillow decode + step): {statistics.median(rates['spatial']):.0f} images/s")
    for name in ratios:
        print(f"{name}: {statistics.median(rates[name]):.0f} images/s, {spread(ratios[name])}x the spatial path's rate")
    return 0


if __name__ == "__main__":
    sys.exit(main())
