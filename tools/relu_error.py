#!/usr/bin/env python3
"""ReLU approximation error vs spatial frequencies: the paper's Figure 4a (Ehrlich & Davis, §5.3).

Protocol: ``N`` random 4×4 pixel blocks, uniform in [−1, 1], box-upscaled to 8×8 (each pixel becomes
a 2×2 square). For every number of spatial frequencies ``k = 1 … 15`` the mean over blocks of the
per-block RMSE (:func:`jpegfx.ops.relu_block_error`) of ASM(k) and APX(k) against the true ReLU is
computed in float64. ``k = 15`` keeps all 64 coefficients and is exact for both.

Blocks are drawn chunk by chunk from one ``torch.Generator`` seeded with ``--seed``; the result is a
deterministic function of ``(blocks, seed, chunk)``.

Outputs (``--out-dir``, default ``out/relu_error/``): ``relu_error.csv`` (header + 15 rows) and
``relu_error.png``. The table (or ``--json``) goes to stdout, progress to stderr.

    python tools/relu_error.py                      # 10^6 blocks
    python tools/relu_error.py --blocks 10000000 --seed 1
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path
from typing import Callable

import torch

from jpegfx.ops import relu_block_error
from jpegfx.transforms import MAX_FREQUENCIES

DEFAULT_BLOCKS = 1_000_000
DEFAULT_CHUNK = 1 << 18
DEFAULT_OUT_DIR = Path("out") / "relu_error"
CSV_NAME = "relu_error.csv"
PNG_NAME = "relu_error.png"
FIELDS = ("k", "asm_rmse", "apx_rmse", "ratio")
RATIO_FLOOR = 1e-12
"""Below this ASM RMSE (k = 15: both errors are float64 round-off) the ratio is reported as None."""


def paper_blocks(n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` pixel blocks (n, 8, 8) float64: uniform 4×4 in [−1, 1], each pixel repeated 2×2."""
    small = torch.rand(n, 4, 4, generator=generator, dtype=torch.float64) * 2 - 1
    return small.repeat_interleave(2, dim=1).repeat_interleave(2, dim=2)


def relu_error_table(blocks: int, seed: int = 0, chunk: int = DEFAULT_CHUNK,
                     progress: Callable[[int, int], None] | None = None) -> list[dict]:
    """Mean per-block RMSE of ASM(k) and APX(k) for k = 1 … 15 over ``blocks`` paper test blocks.

    Returns one dict per k: ``k``, ``asm_rmse``, ``apx_rmse`` and ``ratio`` = APX / ASM (``None``
    when the ASM error is below :data:`RATIO_FLOOR`, i.e. at k = 15). ``progress(done, total)`` is
    called after every chunk with the number of blocks processed so far.
    """
    if blocks < 1:
        raise ValueError(f"blocks must be positive, got {blocks}")
    if chunk < 1:
        raise ValueError(f"chunk must be positive, got {chunk}")
    generator = torch.Generator().manual_seed(seed)
    frequencies = range(1, MAX_FREQUENCIES + 1)
    sums = {mode: torch.zeros(MAX_FREQUENCIES, dtype=torch.float64) for mode in ("asm", "apx")}
    done = 0
    while done < blocks:
        size = min(chunk, blocks - done)
        batch = paper_blocks(size, generator)
        for mode, acc in sums.items():
            for k in frequencies:
                acc[k - 1] += relu_block_error(batch, mode, k).sum()
        done += size
        if progress is not None:
            progress(done, blocks)
    rows = []
    for k in frequencies:
        asm = float(sums["asm"][k - 1]) / blocks
        apx = float(sums["apx"][k - 1]) / blocks
        rows.append({"k": k, "asm_rmse": asm, "apx_rmse": apx,
                     "ratio": apx / asm if asm > RATIO_FLOOR else None})
    return rows


# ---------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------
def format_table(rows: list[dict]) -> str:
    lines = [f"{'k':>3}  {'ASM RMSE':>12}  {'APX RMSE':>12}  {'APX/ASM':>8}"]
    for r in rows:
        ratio = "n/a" if r["ratio"] is None else f"{r['ratio']:.3f}"
        lines.append(f"{r['k']:>3}  {r['asm_rmse']:>12.6e}  {r['apx_rmse']:>12.6e}  {ratio:>8}")
    return "\n".join(lines)


def write_csv(rows: list[dict], path: Path) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=FIELDS)
        writer.writeheader()
        for r in rows:
            writer.writerow({**r, "asm_rmse": repr(r["asm_rmse"]), "apx_rmse": repr(r["apx_rmse"]),
                             "ratio": "" if r["ratio"] is None else repr(r["ratio"])})


def write_plot(rows: list[dict], path: Path, blocks: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = [r["k"] for r in rows]
    asm = [r["asm_rmse"] for r in rows]
    apx = [r["apx_rmse"] for r in rows]
    fig, (lin, log) = plt.subplots(1, 2, figsize=(11, 4.2))
    # Left: the paper's linear axis, k = 1 … 15. Right: log axis for k = 1 … 14 (k = 15 is ~1e-16).
    for ax, last in ((lin, len(ks)), (log, len(ks) - 1)):
        ax.plot(ks[:last], asm[:last], "o-", label="ASM (approximated spatial masking)")
        ax.plot(ks[:last], apx[:last], "s--", label="APX (ReLU of the approximation)")
        ax.set_xlabel("spatial frequencies k (coefficients with u + v < k)")
        ax.set_ylabel("mean per-block RMSE vs true ReLU")
        ax.set_xticks(ks[:last])
        ax.grid(True, alpha=0.3, which="both")
        ax.legend()
    lin.set_ylim(bottom=0)
    lin.set_title("ReLU approximation error (linear, k = 1…15)")
    log.set_yscale("log")
    log.set_title("ReLU approximation error (log, k = 1…14)")
    fig.suptitle(f"Paper Fig. 4a protocol: {blocks:,} random 4×4 blocks in [−1, 1] upscaled to 8×8")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _stderr_progress(start: float) -> Callable[[int, int], None]:
    def report(done: int, total: int) -> None:
        end = "\n" if done >= total else ""
        print(f"\rrelu_error: {done:,}/{total:,} blocks ({100 * done / total:5.1f}%) "
              f"{time.perf_counter() - start:6.1f} s", end=end, file=sys.stderr, flush=True)
    return report


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--blocks", type=int, default=DEFAULT_BLOCKS, help="number of random test blocks")
    parser.add_argument("--seed", type=int, default=0, help="seed of the block generator")
    parser.add_argument("--chunk", type=int, default=DEFAULT_CHUNK, help="blocks per chunk (bounds memory)")
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR, help="where the CSV and PNG go")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (omit: torch's choice)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    progress = None if args.no_progress else _stderr_progress(start)
    rows = relu_error_table(args.blocks, args.seed, args.chunk, progress=progress)
    seconds = time.perf_counter() - start
    args.out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, png_path = args.out_dir / CSV_NAME, args.out_dir / PNG_NAME
    write_csv(rows, csv_path)
    write_plot(rows, png_path, args.blocks)
    if args.json:
        print(json.dumps({"blocks": args.blocks, "seed": args.seed, "chunk": args.chunk,
                          "seconds": seconds, "csv": str(csv_path), "png": str(png_path), "rows": rows},
                         indent=2))
    else:
        print(f"ReLU approximation error, {args.blocks:,} blocks, seed {args.seed}, chunk {args.chunk}")
        print(format_table(rows))
        print(f"computed in {seconds:.1f} s; wrote {csv_path} and {png_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
