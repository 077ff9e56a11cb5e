"""Logit errors of every zoo model converted with exact ReLU and with ASM / APX at k frequencies.

Random weights with randomised BatchNorm statistics, eval mode, float32, a batch of real photo crops
(scikit-learn's china.jpg / flower.jpg, written as 4:2:0 JPEGs and read with read_jpeg; the paper
network gets their luma). Reports max relative logit error and top-1 agreement against the spatial
model on the float decode of the same files.

    python tools/zoo_errors.py [--k 2 6 10] [--batch 8] [--json]
"""
from __future__ import annotations

import argparse
import io
import json

import numpy as np
import torch
from PIL import Image

import jpegfx
from jpegfx import models
from jpegfx.jpeg import read_jpeg, stack

SIZES = {"paper": 32, "resnet20": 32, "resnet56": 32, "preact_resnet18": 32,
         "resnet18": 224, "resnet34": 224, "resnet50": 224}


def photo_batch(size: int, n: int, seed: int):
    from sklearn.datasets import load_sample_image

    rng = np.random.default_rng(seed)
    photos = [load_sample_image(name) for name in ("china.jpg", "flower.jpg")]
    files = []
    for i in range(n):
        img = photos[i % 2]
        top, left = rng.integers(0, img.shape[0] - size), rng.integers(0, img.shape[1] - size)
        buf = io.BytesIO()
        Image.fromarray(img[top:top + size, left:left + size]).save(buf, "JPEG", quality=85)
        files.append(buf.getvalue())
    return stack([read_jpeg(f) for f in files])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(SIZES))
    parser.add_argument("--k", type=int, nargs="+", default=[2, 6, 10])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = []
    for name in args.models:
        torch.manual_seed(args.seed)
        model = models.randomize_batchnorm(models.create_model(name), torch.Generator().manual_seed(args.seed)).eval()
        size = SIZES[name]
        batch = photo_batch(size, args.batch, args.seed)
        normalize = None if name == "paper" else "imagenet"
        for relu, k in [("exact", 15)] + [(mode, k) for k in args.k for mode in ("asm", "apx")]:
            jpeg_model = jpegfx.convert(model, size, relu=relu, frequencies=k, normalize=normalize)
            with torch.no_grad():
                reference = model(jpeg_model.spatial_input(batch))
                output = jpeg_model(batch)
            rel = float((output - reference).abs().max() / reference.abs().max())
            top1 = float((output.argmax(1) == reference.argmax(1)).float().mean())
            rows.append({"model": name, "size": size, "relu": relu, "k": k, "max_rel_error": rel, "top1_agreement": top1})
            if not args.json:
                print(f"{name:<16} {size:>4} {relu:<6} k={k:<3} max rel {rel:.3e}  top-1 agreement {100 * top1:6.2f}%",
                      flush=True)
    if args.json:
        print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
