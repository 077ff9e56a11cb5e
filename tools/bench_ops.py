#!/usr/bin/env python3
"""Per-op CPU time of the JPEG-domain ops against their spatial twins, side by side in one run.

Default workload (ResNet stage-1 sized): a batch of 8, 64 channels, 56×56, float32, eval mode,
``torch.inference_mode()``. The JPEG-domain input is ``jpegfx.transforms.to_dct(x)``, computed once
outside the timing. Every variant is built just before it is timed and freed after, runs
``--warmup`` untimed calls and then ``--repeat`` timed calls; the median is reported, with the ratio
to the spatial op's median. ``rel err`` is ``max |to_spatial(jpeg out) − spatial out| / max |spatial
out|`` (round-off for exact variants, the approximation error for ASM/APX).

Ops: conv 3×3 64→64 pad 1 (spatial, factored, fused), conv 1×1 64→64 (spatial, pointwise, factored),
BatchNorm2d eval, ReLU (spatial, exact, ASM(6) spatial method, ASM(6) harmonic method, APX(6)),
MaxPool2d(3, 2, 1) (spatial, exact, ASM(6)). Convs have no bias (ResNet style).

Also reported: bytes and build seconds of the fused map Ξ for C→C 3×3 convs (``--map-channels``,
default 16 and 64) at the benchmark size (``JpegConv2d.from_spatial(conv, geometry, "fused",
map_budget=2**31)`` under ``torch.no_grad()``), and the memory of the factored lowering of a
512→512 3×3 conv at 7×7 against its spatial weight and against ``fused_map_bytes`` for that layer.

    python tools/bench_ops.py                 # full run (fused 64→64 map: 576 MiB)
    python tools/bench_ops.py --quick --json  # smoke run: batch 1, 8 channels, 16×16, repeat 1
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
from typing import Callable

import torch
from torch import nn

from jpegfx import transforms as T
from jpegfx.ops import (
    JpegBatchNorm2d,
    JpegConv2d,
    JpegMaxPool2d,
    JpegReLU,
    fused_map_bytes,
    to_spatial,
)
from jpegfx.transforms import BlockGeometry

MAP_BUDGET = 2**31
ASM_K = 6
OPS = ("conv3x3", "conv1x1", "batchnorm", "relu", "maxpool")


def _bytes_of(module: nn.Module) -> int:
    tensors = list(module.parameters()) + list(module.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)


def _mib(n: int) -> float:
    return n / 2**20


# ---------------------------------------------------------------------------------------------
# The variants: (op, variant, builder). A builder returns (module, takes_jpeg_input).
# ---------------------------------------------------------------------------------------------
def variants(channels: int, geometry: BlockGeometry, seed: int) -> list[tuple[str, str, Callable]]:
    torch.manual_seed(seed)
    conv3 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False).eval()
    conv1 = nn.Conv2d(channels, channels, 1, bias=False).eval()
    bn = nn.BatchNorm2d(channels).eval()
    with torch.no_grad():  # non-trivial eval statistics and affine parameters
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
    pool = nn.MaxPool2d(3, 2, 1)
    g = geometry

    def spatial(module):
        return lambda: (module, False)

    def jpeg(make):
        return lambda: (make().eval(), True)

    return [
        ("conv3x3", "spatial", spatial(conv3)),
        ("conv3x3", "factored", jpeg(lambda: JpegConv2d.from_spatial(conv3, g, "factored"))),
        ("conv3x3", "fused", jpeg(lambda: JpegConv2d.from_spatial(conv3, g, "fused", map_budget=MAP_BUDGET))),
        ("conv1x1", "spatial", spatial(conv1)),
        ("conv1x1", "pointwise", jpeg(lambda: JpegConv2d.from_spatial(conv1, g, "pointwise"))),
        ("conv1x1", "factored", jpeg(lambda: JpegConv2d.from_spatial(conv1, g, "factored"))),
        ("batchnorm", "spatial", spatial(bn)),
        ("batchnorm", "jpeg", jpeg(lambda: JpegBatchNorm2d.from_spatial(bn, g))),
        ("relu", "spatial", spatial(nn.ReLU())),
        ("relu", "exact", jpeg(lambda: JpegReLU(g, "exact"))),
        ("relu", f"asm({ASM_K}) spatial", jpeg(lambda: JpegReLU(g, "asm", ASM_K, "spatial"))),
        ("relu", f"asm({ASM_K}) harmonic", jpeg(lambda: JpegReLU(g, "asm", ASM_K, "harmonic"))),
        ("relu", f"apx({ASM_K})", jpeg(lambda: JpegReLU(g, "apx", ASM_K))),
        ("maxpool", "spatial", spatial(pool)),
        ("maxpool", "exact", jpeg(lambda: JpegMaxPool2d.from_spatial(pool, g, "exact"))),
        ("maxpool", f"asm({ASM_K})", jpeg(lambda: JpegMaxPool2d.from_spatial(pool, g, "asm", ASM_K))),
    ]


def time_calls(fn: Callable[[], torch.Tensor], warmup: int, repeat: int) -> tuple[torch.Tensor, list[float]]:
    """Run ``fn`` ``warmup`` times, then time ``repeat`` calls; returns the last output and seconds."""
    out = None
    for _ in range(warmup):
        out = fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return out, times


def bench_ops(batch: int, channels: int, size: int, warmup: int, repeat: int, seed: int,
              log: Callable[[str], None]) -> list[dict]:
    geometry = BlockGeometry(size, size)
    torch.manual_seed(seed)
    x = torch.randn(batch, channels, size, size)
    xj = T.to_dct(x)  # once, outside every timing
    rows: list[dict] = []
    reference: dict[str, tuple[torch.Tensor, float]] = {}
    for op, variant, build in variants(channels, geometry, seed):
        log(f"{op} / {variant}")
        row = {"op": op, "variant": variant, "median_ms": None, "ratio": None, "rel_err": None,
               "times_ms": [], "error": None}
        module = None
        try:
            with torch.no_grad():
                module, takes_jpeg = build()
            with torch.inference_mode():
                inp = xj if takes_jpeg else x
                out, times = time_calls(lambda m=module: m(inp), warmup, repeat)
                if takes_jpeg:
                    out = to_spatial(out, module.out_geometry)
            row["times_ms"] = [1e3 * t for t in times]
            row["median_ms"] = statistics.median(row["times_ms"])
            if not takes_jpeg:
                reference[op] = (out, row["median_ms"])
            ref, ref_ms = reference[op]
            row["ratio"] = row["median_ms"] / ref_ms
            row["rel_err"] = float((out - ref).abs().max() / ref.abs().max().clamp_min(1e-30))
        except (RuntimeError, MemoryError, ValueError) as exc:  # e.g. out of memory for the fused map
            row["error"] = f"{type(exc).__name__}: {exc}"
        rows.append(row)
        del module
        gc.collect()
    return rows


def bench_fused_build(channel_list: list[int], size: int, repeat: int, seed: int,
                      log: Callable[[str], None]) -> list[dict]:
    geometry = BlockGeometry(size, size)
    rows = []
    for c in channel_list:
        log(f"fused map build {c}->{c}")
        torch.manual_seed(seed)
        conv = nn.Conv2d(c, c, 3, 1, 1, bias=False).eval()
        row = {"channels": c, "size": size, "predicted_bytes": fused_map_bytes(conv, geometry),
               "bytes": None, "median_s": None, "times_s": [], "error": None}
        try:
            for _ in range(repeat):
                with torch.no_grad():
                    start = time.perf_counter()
                    module = JpegConv2d.from_spatial(conv, geometry, "fused", map_budget=MAP_BUDGET)
                    row["times_s"].append(time.perf_counter() - start)
                row["bytes"] = module.xi.numel() * module.xi.element_size()
                del module
                gc.collect()
            row["median_s"] = statistics.median(row["times_s"])
        except (RuntimeError, MemoryError, ValueError) as exc:
            row["error"] = f"{type(exc).__name__}: {exc}"
        rows.append(row)
    return rows


def factored_memory(channels: int, size: int, seed: int) -> dict:
    torch.manual_seed(seed)
    conv = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
    geometry = BlockGeometry(size, size)
    with torch.no_grad():
        module = JpegConv2d.from_spatial(conv, geometry, "factored")
    return {
        "channels": channels, "size": size,
        "factored_module_bytes": _bytes_of(module),
        "spatial_weight_bytes": conv.weight.numel() * conv.weight.element_size(),
        "fused_map_bytes": fused_map_bytes(conv, geometry),
    }


# ---------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------
def format_report(result: dict) -> str:
    cfg = result["config"]
    out = [f"jpegfx op benchmark: batch {cfg['batch']}, {cfg['channels']} channels, "
           f"{cfg['size']}x{cfg['size']}, float32, eval, inference_mode; torch {cfg['torch']}, "
           f"{cfg['threads']} threads, {cfg['cpu_count']} CPUs; warmup {cfg['warmup']}, repeat {cfg['repeat']}",
           "",
           f"{'op':<10} {'variant':<18} {'median ms':>10} {'min ms':>10} {'JPEG/spatial':>12} {'rel err':>9}"]
    for r in result["ops"]:
        if r["error"] is not None:
            out.append(f"{r['op']:<10} {r['variant']:<18} FAILED {r['error']}")
            continue
        out.append(f"{r['op']:<10} {r['variant']:<18} {r['median_ms']:>10.3f} {min(r['times_ms']):>10.3f} "
                   f"{r['ratio']:>12.2f} "
                   f"{r['rel_err']:>9.1e}")
    out += ["", "fused map Ξ construction (3x3, pad 1, JpegConv2d.from_spatial(..., 'fused', map_budget=2**31)):",
            f"{'conv':<12} {'size':>7} {'bytes':>14} {'MiB':>9} {'median s':>9}"]
    for r in result["fused_map_build"]:
        name, size = f"{r['channels']}->{r['channels']}", f"{r['size']}x{r['size']}"
        if r["error"] is not None:
            out.append(f"{name:<12} {size:>7} {r['predicted_bytes']:>14,} {_mib(r['predicted_bytes']):>9.1f} "
                       f"FAILED {r['error']}")
            continue
        out.append(f"{name:<12} {size:>7} {r['bytes']:>14,} {_mib(r['bytes']):>9.1f} {r['median_s']:>9.3f}")
    m = result["factored_memory"]
    out += ["", f"memory of a {m['channels']}->{m['channels']} 3x3 conv at {m['size']}x{m['size']}:",
            f"  spatial weight          {m['spatial_weight_bytes']:>16,} B {_mib(m['spatial_weight_bytes']):>12.2f} MiB",
            f"  factored module (p + b) {m['factored_module_bytes']:>16,} B {_mib(m['factored_module_bytes']):>12.2f} MiB"
            f"  ({m['factored_module_bytes'] / m['spatial_weight_bytes']:.4f}x spatial)",
            f"  fused map (would need)  {m['fused_map_bytes']:>16,} B {_mib(m['fused_map_bytes']):>12.2f} MiB"
            f"  ({m['fused_map_bytes'] / m['spatial_weight_bytes']:.0f}x spatial)"]
    out.append(f"\ntotal {result['seconds']:.1f} s")
    return "\n".join(out)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--batch", type=int, default=8, help="batch size")
    parser.add_argument("--channels", type=int, default=64, help="channels of every benchmarked op")
    parser.add_argument("--size", type=int, default=56, help="square input side in pixels")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls per variant")
    parser.add_argument("--repeat", type=int, default=7, help="timed calls per variant (median reported)")
    parser.add_argument("--build-repeat", type=int, default=3, help="timed fused-map builds per layer")
    parser.add_argument("--map-channels", type=int, nargs="+", default=[16, 64],
                        help="C for the C->C fused-map build timings")
    parser.add_argument("--memory-channels", type=int, default=512, help="C of the C->C memory report")
    parser.add_argument("--memory-size", type=int, default=7, help="input side of the memory report")
    parser.add_argument("--seed", type=int, default=0, help="seed of inputs and weights")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: batch 1, 8 channels, 16x16, warmup 1, repeat 1, map channels 4 8; "
                             "exits 1 if any variant failed (a full run reports failures and exits 0)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the tables")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args(argv)
    if args.quick:
        args.batch, args.channels, args.size = 1, 8, 16
        args.warmup, args.repeat, args.build_repeat, args.map_channels = 1, 1, 1, [4, 8]
    if min(args.batch, args.channels, args.size, args.threads, args.repeat, args.build_repeat) < 1:
        parser.error("batch, channels, size, threads, repeat and build-repeat must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)

    def log(message: str) -> None:
        if not args.quiet:
            print(f"bench_ops: {message}", file=sys.stderr, flush=True)

    start = time.perf_counter()
    result = {
        "config": {"batch": args.batch, "channels": args.channels, "size": args.size, "dtype": "float32",
                   "threads": torch.get_num_threads(), "warmup": args.warmup, "repeat": args.repeat,
                   "build_repeat": args.build_repeat, "seed": args.seed, "asm_k": ASM_K,
                   "torch": torch.__version__, "python": platform.python_version(),
                   "cpu_count": os.cpu_count()},
        "ops": bench_ops(args.batch, args.channels, args.size, args.warmup, args.repeat, args.seed, log),
        "fused_map_build": bench_fused_build(args.map_channels, args.size, args.build_repeat, args.seed, log),
        "factored_memory": factored_memory(args.memory_channels, args.memory_size, args.seed),
    }
    result["seconds"] = time.perf_counter() - start
    print(json.dumps(result, indent=2) if args.json else format_report(result))
    failed = [r for r in result["ops"] if r["error"] is not None]
    return 1 if failed and args.quick else 0


if __name__ == "__main__":
    sys.exit(main())
