"""Write Fashion-MNIST as folders of JPEG files: ``OUT/train/<label>-<class>/<index>.jpg`` (60 000) and
``OUT/test/…`` (10 000), the class-per-folder layout ``jpegfx train`` and :class:`jpegfx.data.JpegFolder`
read. Folder names start with the label digit, so their sorted order is the label order of the
shipped ``paper`` network. Images are zero-padded from 28×28 to 32×32 (as the paper pads MNIST) and
written by Pillow (libjpeg-turbo) as gray JPEGs at ``--quality``.

    python tools/fashion_jpegs.py OUT [--quality 100] [--train N] [--test N]

Reads the IDX files of the Debian package ``dataset-fashion-mnist`` (or ``$JPEGFX_FASHION_MNIST``).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from jpegfx import datasets


def class_folder(label: int) -> str:
    return f"{label}-{datasets.class_slug(datasets.FASHION_MNIST_CLASSES[label])}"


def write_split(out: Path, split: str, count: int | None, quality: int) -> int:
    images, labels = datasets.load_fashion_mnist(split=split)
    images = datasets.pad_to_32(images)
    n = len(images) if count is None else min(count, len(images))
    for label in range(len(datasets.FASHION_MNIST_CLASSES)):
        (out / split / class_folder(label)).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        path = out / split / class_folder(int(labels[i])) / f"{i:05d}.jpg"
        if not path.exists():
            Image.fromarray(np.ascontiguousarray(images[i])).save(path, format="JPEG", quality=quality)
    return n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--quality", type=int, default=100)
    parser.add_argument("--train", type=int, help="only the first N training images")
    parser.add_argument("--test", type=int, help="only the first N test images")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    counts = {split: write_split(args.out, split, n, args.quality) for split, n in (("train", args.train),
                                                                                      ("test", args.test))}
    print(f"wrote {counts['train']} training and {counts['test']} test JPEGs (quality {args.quality}) under "
          f"{args.out} in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
