#!/usr/bin/env python3
"""Mutation fuzzing of the JPEG reader, cross-checked against libjpeg-turbo's ``djpeg``.

Seeded mutants of a few real files (Pillow baseline 4:2:0 and progressive 4:4:4, a gray file, and
with ``jpegtran`` present arithmetic-coded and restart-marker variants) are read by
:func:`jpegfx.reader.read_coefficients` in child processes, so that a crash or a hang is counted,
not suffered. Every mutant is also decoded by ``djpeg`` (exit 0 = clean, 2 = warnings, 1 = error).

Outcomes per mutant:
  read        jpegfx read it; djpeg decoded it cleanly (exit 0)
  refused     jpegfx raised its one-line JpegError
  WRONG       jpegfx read it but djpeg reports a warning or an error: a corrupt file read as good
  TRACEBACK   jpegfx raised something other than JpegError, or a message of more than one line
  CRASH       the child process died (signal)
  HANG        one read took longer than --timeout seconds

    python tools/fuzz_reader.py --count 10000
    python tools/fuzz_reader.py --count 300 --seed 7 --json
"""
from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter

import numpy as np
from PIL import Image

OUTCOMES = ("read", "refused", "WRONG", "TRACEBACK", "CRASH", "HANG")
BAD = ("WRONG", "TRACEBACK", "CRASH", "HANG")

CHILD = r"""
import sys
from jpegfx import reader
from jpegfx.errors import JpegError
for line in sys.stdin:
    path = line.rstrip("\n")
    print("start", flush=True)
    try:
        reader.read_coefficients(path)
        out = "read"
    except JpegError as exc:
        out = "refused" if str(exc) and "\n" not in str(exc) else "TRACEBACK"
    except BaseException as exc:
        out = "TRACEBACK " + type(exc).__name__
    print(out, flush=True)
"""


def base_files(seed: int = 0) -> list[bytes]:
    """Real JPEGs written by Pillow (and jpegtran when installed) from a seeded smooth image."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:72, 0:88]
    img = (np.stack([xx * 3 + yy, yy * 2 + 40, (xx * yy) % 256], -1) + rng.integers(0, 24, (72, 88, 3)))
    img = np.clip(img, 0, 255).astype(np.uint8)
    out = []
    for kw in ({"subsampling": 2}, {"subsampling": 0, "progressive": True}, {"subsampling": 1}):
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=85, **kw)
        out.append(buf.getvalue())
    buf = io.BytesIO()
    Image.fromarray(img[..., 0]).save(buf, format="JPEG", quality=90)
    out.append(buf.getvalue())
    jpegtran = shutil.which("jpegtran")
    if jpegtran:
        for args in (["-arithmetic"], ["-restart", "1"], ["-arithmetic", "-progressive"]):
            proc = subprocess.run([jpegtran, *args], input=out[0], capture_output=True, check=True)
            out.append(proc.stdout)
    return out


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    d = bytearray(data)
    kind = int(rng.integers(7))
    n = len(d)
    if kind == 0:  # a few random bytes anywhere
        for _ in range(int(rng.integers(1, 10))):
            d[int(rng.integers(2, n))] = int(rng.integers(256))
    elif kind == 1:  # truncation, sometimes with an EOI appended
        d = d[: int(rng.integers(2, n))] + (b"\xff\xd9" if rng.random() < 0.5 else b"")
    elif kind == 2:  # the header region
        for _ in range(int(rng.integers(1, 4))):
            d[int(rng.integers(2, min(700, n)))] = int(rng.integers(256))
    elif kind == 3:  # a random run inside the scan data
        p = int(rng.integers(n // 2, n - 2))
        d[p : p + 32] = rng.bytes(32)[: len(d[p : p + 32])]
    elif kind == 4:  # a marker inserted somewhere
        p = int(rng.integers(2, n))
        d[p:p] = bytes([0xFF, int(rng.integers(256))])
    elif kind == 5:  # a bit flip
        p = int(rng.integers(2, n))
        d[p] ^= 1 << int(rng.integers(8))
    else:  # a chunk duplicated
        a = int(rng.integers(2, n - 1))
        b = min(n, a + int(rng.integers(1, 200)))
        p = int(rng.integers(2, n))
        d[p:p] = d[a:b]
    return bytes(d)


def _run_children(paths: list[str], timeout: float) -> list[str]:
    """jpegfx's outcome per path, restarting the child after a crash or a hang."""
    results: list[str] = []
    env = dict(os.environ, PYTHONFAULTHANDLER="0")
    while len(results) < len(paths):
        todo = paths[len(results):]
        proc = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True, env=env)
        try:
            out, _ = proc.communicate("\n".join(todo) + "\n", timeout=timeout * len(todo) + 30)
            hung = False
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
            hung = True
        got = [line.split()[0] for line in out.split("\n") if line and line != "start"]
        results.extend(got)
        if len(results) < len(paths):  # the read after the last answer never finished
            results.append("HANG" if hung else "CRASH")
    return results


def _djpeg(path: str, djpeg: str, timeout: float) -> int:
    try:
        return subprocess.run([djpeg, "-outfile", os.devnull, path], capture_output=True, timeout=timeout).returncode
    except subprocess.TimeoutExpired:
        return -1


def fuzz(count: int, seed: int = 0, timeout: float = 10.0, keep: str | None = None) -> dict:
    djpeg = shutil.which("djpeg")
    if djpeg is None:
        raise SystemExit("djpeg (Debian libjpeg-turbo-progs) is needed to cross-check the reader")
    rng = np.random.default_rng(seed)
    bases = base_files(seed)
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i in range(count):
            path = os.path.join(tmp, f"m{i:06d}.jpg")
            with open(path, "wb") as f:
                f.write(mutate(bases[i % len(bases)], rng))
            paths.append(path)
        ours = _run_children(paths, timeout)
        rows, examples = [], {}
        for path, outcome in zip(paths, ours):
            rc = _djpeg(path, djpeg, timeout)
            if outcome == "read" and rc != 0:
                outcome = "WRONG"
            rows.append((outcome, rc))
            if outcome in BAD and outcome not in examples:
                examples[outcome] = os.path.basename(path)
                if keep:
                    os.makedirs(keep, exist_ok=True)
                    shutil.copy(path, keep)
    table = Counter(o for o, _ in rows)
    djpeg_table = Counter({0: "clean", 2: "warning", 1: "error", -1: "timeout"}.get(rc, f"rc{rc}") for _, rc in rows)
    return {
        "count": count,
        "seed": seed,
        "bases": len(bases),
        "outcomes": {k: table.get(k, 0) for k in OUTCOMES},
        "djpeg": dict(djpeg_table),
        "examples": examples,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--count", type=int, default=10000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=10.0, help="seconds one read may take")
    p.add_argument("--keep", help="copy the first mutant of each bad outcome into this folder")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    report = fuzz(args.count, args.seed, args.timeout, args.keep)
    if args.json:
        print(json.dumps(report))
    else:
        print(f"{report['count']} mutants of {report['bases']} files, seed {report['seed']}")
        for k in OUTCOMES:
            print(f"  {k:<10}{report['outcomes'][k]:>7}")
        print("  djpeg: " + ", ".join(f"{k} {v}" for k, v in sorted(report["djpeg"].items())))
    return 1 if any(report["outcomes"][k] for k in BAD) else 0


if __name__ == "__main__":
    sys.exit(main())
