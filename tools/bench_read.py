#!/usr/bin/env python3
"""Per-image time to get a JPEG's coefficients (``jpegfx.jpeg.read_jpeg``) against full pixel decodes.

Workload: scikit-learn's china.jpg resized to S×S (default 224 and 512), written by Pillow as a
4:2:0 baseline JPEG at ``--quality`` (default 90), held in memory. Every reader runs on the same
bytes in the same process: ``--warmup`` untimed calls, then ``--repeat`` timings of ``--number``
calls each; the per-image median is reported (milliseconds) with the ratio to Pillow.

Readers:
  read_jpeg(bytes)       coefficients + tables via jpegfx (header check, libjpeg-turbo one pass)
  read_jpeg(path)        the same from a file on disk
  jpeglib.read_dct       jpeglib's public API from a path (what read_jpeg falls back to)
  Pillow decode          Image.open(BytesIO).convert("RGB") → numpy, fancy upsampling, ISLOW IDCT
  simplejpeg decode      simplejpeg.decode_jpeg (libjpeg-turbo, RGB)
  jpegfx.decode          the float64 reference decode of the coefficients (not a fast path)

    python tools/bench_read.py
    python tools/bench_read.py --sizes 224 --repeat 3 --json
"""
from __future__ import annotations

import argparse
import importlib.util
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import timeit

import numpy as np
import torch
from PIL import Image

from jpegfx.jpeg import decode, read_jpeg


def _photo() -> Image.Image:
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("scikit-learn is needed for the sample photo (china.jpg)")
    path = os.path.join(list(spec.submodule_search_locations)[0], "datasets", "images", "china.jpg")
    return Image.open(path).convert("RGB")


def _jpeg_bytes(size: int, quality: int) -> bytes:
    buf = io.BytesIO()
    _photo().resize((size, size), Image.Resampling.BICUBIC).save(buf, format="JPEG", quality=quality, subsampling=2)
    return buf.getvalue()


def _readers(data: bytes, path: str, with_decode: bool) -> dict:
    readers = {
        "read_jpeg(bytes)": lambda: read_jpeg(data),
        "read_jpeg(path)": lambda: read_jpeg(path),
    }
    try:
        import jpeglib

        def public():
            j = jpeglib.read_dct(path)
            return j.Y, j.Cb, j.Cr, j.qt

        readers["jpeglib.read_dct"] = public
    except ImportError:  # pragma: no cover
        pass
    readers["Pillow decode"] = lambda: np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    try:
        import simplejpeg

        readers["simplejpeg decode"] = lambda: simplejpeg.decode_jpeg(data)
    except ImportError:
        print("simplejpeg not installed: skipped", file=sys.stderr)
    if with_decode:
        batch = read_jpeg(data)
        readers["jpegfx.decode (float64)"] = lambda: decode(batch)
    return readers


def run(sizes: list[int], quality: int, repeat: int, number: int, warmup: int, with_decode: bool) -> dict:
    results = []
    for size in sizes:
        data = _jpeg_bytes(size, quality)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, f"bench_{size}.jpg")
            with open(path, "wb") as f:
                f.write(data)
            rows = {}
            for name, fn in _readers(data, path, with_decode).items():
                for _ in range(warmup):
                    fn()
                times = timeit.repeat(fn, number=number, repeat=repeat)
                rows[name] = 1e3 * statistics.median(times) / number
        results.append({"size": size, "bytes": len(data), "ms_per_image": rows})
    return {
        "quality": quality,
        "subsampling": "4:2:0",
        "repeat": repeat,
        "number": number,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "results": results,
    }


def _table(report: dict) -> str:
    lines = []
    for r in report["results"]:
        rows = r["ms_per_image"]
        base = rows.get("Pillow decode")
        lines.append(f"{r['size']}x{r['size']} 4:2:0 q{report['quality']} ({r['bytes']} bytes)")
        lines.append(f"  {'reader':<26}{'ms/image':>10}{'vs Pillow':>11}")
        for name, ms in rows.items():
            ratio = f"{ms / base:.2f}x" if base else "-"
            lines.append(f"  {name:<26}{ms:>10.3f}{ratio:>11}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[224, 512], help="square image sides")
    p.add_argument("--quality", type=int, default=90)
    p.add_argument("--repeat", type=int, default=7, help="timings per reader (median reported)")
    p.add_argument("--number", type=int, default=20, help="calls per timing")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--no-decode", action="store_true", help="skip timing the float64 reference decode")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = p.parse_args(argv)
    report = run(args.sizes, args.quality, args.repeat, args.number, args.warmup, not args.no_decode)
    print(json.dumps(report, indent=2) if args.json else _table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
