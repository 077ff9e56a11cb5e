"""Top-1 agreement: the JPEG-domain model on JPEG files vs the spatial model on Pillow's decode.

Crops are cut at random from the real photos shipped with scikit-learn (china.jpg, flower.jpg) and
matplotlib (grace_hopper.jpg), written by Pillow as JPEGs, then
(a) read with jpegfx.jpeg.read_jpeg and run through the converted (exact) model, and
(b) decoded by Pillow (libjpeg-turbo: integer IDCT, rounding, clamping) and run through the spatial model.
The difference measures how much libjpeg's integer decode moves the prediction; the float reference
decode (c) is reported too (it must agree 100% with (a)).

    python tools/pillow_agreement.py --model resnet18 --crops 200 --size 224 [--json]
"""
from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import jpegfx
from jpegfx import models
from jpegfx.jpeg import read_jpeg, stack
from jpegfx.ops.input import normalization


def photos() -> list[np.ndarray]:
    from sklearn.datasets import load_sample_image
    import matplotlib

    images = [load_sample_image(name) for name in ("china.jpg", "flower.jpg")]
    hopper = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    if hopper.exists():
        images.append(np.asarray(Image.open(hopper).convert("RGB")))
    return images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--crops", type=int, default=200)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--quality", type=int, default=85)
    parser.add_argument("--subsampling", choices=["4:4:4", "4:2:2", "4:2:0"], default="4:2:0")
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    model = models.randomize_batchnorm(models.create_model(args.model), torch.Generator().manual_seed(args.seed)).eval()
    jpeg_model = jpegfx.convert(model, args.size, normalize="imagenet", subsampling=args.subsampling)
    mean, std = (t.float().reshape(1, 3, 1, 1) for t in normalization("imagenet", 3))
    sources = photos()
    files = []
    for i in range(args.crops):
        img = sources[i % len(sources)]
        top = rng.integers(0, img.shape[0] - args.size + 1)
        left = rng.integers(0, img.shape[1] - args.size + 1)
        buf = io.BytesIO()
        Image.fromarray(img[top:top + args.size, left:left + args.size]).save(
            buf, "JPEG", quality=args.quality, subsampling={"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}[args.subsampling])
        files.append(buf.getvalue())
    agree_pillow = agree_float = 0
    pixel_diff = []
    start = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(files), args.batch):
            chunk = files[i:i + args.batch]
            batch = stack([read_jpeg(f) for f in chunk])
            jpeg_top1 = jpeg_model(batch).argmax(1)
            float_top1 = model(jpeg_model.spatial_input(batch)).argmax(1)
            pillow = torch.stack([torch.from_numpy(np.asarray(Image.open(io.BytesIO(f)).convert("RGB")).copy())
                                  for f in chunk]).permute(0, 3, 1, 2).float()
            pillow_top1 = model((pillow / 255 - mean) / std).argmax(1)
            decoded = jpeg_model.spatial_input(batch) * std + mean
            pixel_diff.append(float((decoded * 255 - pillow).abs().mean()))
            agree_pillow += int((jpeg_top1 == pillow_top1).sum())
            agree_float += int((jpeg_top1 == float_top1).sum())
            print(f"\r{min(i + args.batch, len(files))}/{len(files)} crops", end="", file=sys.stderr)
    print(file=sys.stderr)
    result = {"model": args.model, "weights": "random (seeded), randomised BN statistics", "crops": len(files),
              "size": args.size, "quality": args.quality, "subsampling": args.subsampling,
              "top1_agreement_vs_pillow": agree_pillow / len(files),
              "top1_agreement_vs_float_decode": agree_float / len(files),
              "mean_abs_pixel_diff_float_decode_vs_pillow": float(np.mean(pixel_diff)),
              "seconds": time.perf_counter() - start}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key:<45} {value}")


if __name__ == "__main__":
    main()
