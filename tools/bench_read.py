#!/usr/bin/env python3
"""Per-image time to get a JPEG's coefficients against libjpeg-turbo's full decode of the same file.

Workloads, all 4:2:0 baseline files held in memory: scikit-learn's china.jpg resized to S×S
(``--sizes``, default 32 and 224) and written by Pillow at ``--quality``; china.jpg at its own size
(640×427) re-encoded the same way; and, when libjxl-testdata is installed, its 2268×1512 flower
photo as the file ships (q85).

Readers (all libjpeg-turbo underneath):
  reader(bytes)      jpegfx.reader.read_coefficients: numpy coefficients + tables, one file
  read_batches(bytes) jpegfx.reader.read_batches on 16 copies, per file: straight into stacked arrays
                     (the serving path of jpegfx.runtime.Session)
  read_jpeg(bytes)   jpegfx.jpeg.read_jpeg: the same wrapped into a torch JpegBatch
  read_jpeg(path)    the same from a file on disk (open, fstat, read)
  jpeglib.read_dct   jpeglib's public API from a path (only if jpeglib is installed)
  simplejpeg decode  simplejpeg.decode_jpeg → RGB pixels (the baseline the ratios use)
  Pillow decode      Image.open(BytesIO).convert("RGB") → numpy

Timings are interleaved: each of ``--repeat`` rounds times every reader once (``--number`` calls,
after ``--warmup`` untimed calls at the start), so machine noise hits all of them alike. Reported:
median ms/image, and the median and min–max over rounds of each reader's time divided by
simplejpeg's time in the same round.

    python tools/bench_read.py
    python tools/bench_read.py --sizes 224 --repeat 5 --json
"""
from __future__ import annotations

import argparse
import glob
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
from PIL import Image

from jpegfx import reader
from jpegfx.jpeg import read_jpeg

BASELINE = "simplejpeg decode"


def _photo() -> Image.Image:
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("scikit-learn is needed for the sample photo (china.jpg)")
    path = os.path.join(list(spec.submodule_search_locations)[0], "datasets", "images", "china.jpg")
    return Image.open(path).convert("RGB")


def _encode(image: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality, subsampling=2)
    return buf.getvalue()


def workloads(sizes: list[int], quality: int) -> list[tuple[str, bytes]]:
    photo = _photo()
    out = [(f"{s}x{s} q{quality}", _encode(photo.resize((s, s), Image.Resampling.BICUBIC), quality)) for s in sizes]
    out.append((f"{photo.width}x{photo.height} q{quality} (china.jpg)", _encode(photo, quality)))
    flower = glob.glob("/usr/share/libjxl-testdata/jxl/flower/flower.png.im_q85_420.jpg")
    if flower:
        with open(flower[0], "rb") as f:
            out.append(("2268x1512 q85 (libjxl flower)", f.read()))
    return out


BATCH = 16
"""Files per call of read_batches (its time is reported per file)."""


def _readers(data: bytes, path: str) -> dict:
    batch = [data] * BATCH
    readers = {
        "reader(bytes)": lambda: reader.read_coefficients(data),
        "read_batches(bytes)": lambda: reader.read_batches(batch),
        "read_jpeg(bytes)": lambda: read_jpeg(data),
        "read_jpeg(path)": lambda: read_jpeg(path),
    }
    try:
        import jpeglib

        def public():
            j = jpeglib.read_dct(path)
            return j.Y, j.Cb, j.Cr, j.qt

        readers["jpeglib.read_dct"] = public
    except ImportError:
        pass
    import simplejpeg  # a hard requirement: it is the baseline

    readers[BASELINE] = lambda: simplejpeg.decode_jpeg(data)
    readers["Pillow decode"] = lambda: np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    return readers


def run(sizes: list[int], quality: int, repeat: int, number: int, warmup: int) -> dict:
    results = []
    for name, data in workloads(sizes, quality):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "bench.jpg")
            with open(path, "wb") as f:
                f.write(data)
            readers = _readers(data, path)
            calls = max(1, number if len(data) < 200_000 else number // 10)
            for fn in readers.values():
                for _ in range(warmup):
                    fn()
            times: dict[str, list[float]] = {k: [] for k in readers}
            for _ in range(repeat):
                for key, fn in readers.items():
                    per_call = BATCH if key == "read_batches(bytes)" else 1
                    times[key].append(timeit.timeit(fn, number=calls) / calls / per_call)
        base = times[BASELINE]
        rows = {}
        for key, ts in times.items():
            ratios = [t / b for t, b in zip(ts, base)]
            rows[key] = {
                "ms": 1e3 * statistics.median(ts),
                "ratio": statistics.median(ratios),
                "ratio_min": min(ratios),
                "ratio_max": max(ratios),
            }
        results.append({"workload": name, "bytes": len(data), "calls": calls, "readers": rows})
    return {
        "baseline": BASELINE,
        "libjpeg": reader.backend(),
        "repeat": repeat,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "results": results,
    }


def _table(report: dict) -> str:
    lines = [f"jpegfx reader: {report['libjpeg']}; ratios to {report['baseline']} in the same round "
             f"(median, min-max over {report['repeat']} rounds)"]
    for r in report["results"]:
        lines.append(f"{r['workload']} ({r['bytes']} bytes)")
        lines.append(f"  {'reader':<20}{'ms/image':>10}{'ratio':>8}  {'range':<12}")
        for key, row in r["readers"].items():
            lines.append(f"  {key:<20}{row['ms']:>10.4f}{row['ratio']:>8.2f}  "
                         f"{row['ratio_min']:.2f}-{row['ratio_max']:.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[32, 224], help="square image sides")
    p.add_argument("--quality", type=int, default=90)
    p.add_argument("--repeat", type=int, default=9, help="interleaved rounds")
    p.add_argument("--number", type=int, default=200, help="calls per reader per round (÷10 for big files)")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = p.parse_args(argv)
    report = run(args.sizes, args.quality, args.repeat, args.number, args.warmup)
    print(json.dumps(report, indent=2) if args.json else _table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
