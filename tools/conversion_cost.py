"""Conversion time and peak memory of jpegfx.convert for zoo models (one fresh process per model).

    python tools/conversion_cost.py resnet18 resnet50 --input-size 224 [--json]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = """
import json, resource, sys, time, torch
import jpegfx
from jpegfx import models
torch.manual_seed(0)
name, size = sys.argv[1], int(sys.argv[2])
model = models.create_model(name).eval()
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
jm = jpegfx.convert(model, size)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"model": name, "input_size": size, "seconds": seconds, "peak_rss_mib": peak / 1024,
                  "rss_before_mib": base / 1024, "layers": len(jm.records),
                  "lowerings": sorted({r.detail for r in jm.records if r.spatial == "Conv2d"})}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=["resnet18", "resnet50"])
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = []
    for name in args.models:
        out = subprocess.run([sys.executable, "-c", CHILD, name, str(args.input_size)], capture_output=True,
                             text=True, check=True)
        rows.append(json.loads(out.stdout))
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'model':<16} {'size':>5} {'convert s':>10} {'peak RSS MiB':>13} {'RSS before':>11}  lowerings")
    for r in rows:
        print(f"{r['model']:<16} {r['input_size']:>5} {r['seconds']:>10.2f} {r['peak_rss_mib']:>13.0f} "
              f"{r['rss_before_mib']:>11.0f}  {','.join(r['lowerings'])}")


if __name__ == "__main__":
    main()
