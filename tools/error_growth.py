"""Rounding or a wrong conversion? The error of a converted model node by node, beside the model's own
sensitivity, in float64.

For a deep network with random weights the float32 outputs of the *spatial* model itself can differ
from its float64 outputs by tens of percent: it amplifies rounding. Then a large conversion error may
be rounding too. This tool tells the two apart. It runs, in float64, on the float decode of real
photos:

* **conversion**: the converted model against the spatial model, at every node the two graphs share
  (the value decoded to pixels, relative max error);
* **sensitivity**: the spatial model on its input against the spatial model on the input after an
  exact block-DCT round trip (a change of ~1e-16 relative, what the conversion does to every value),
  at the same nodes.

Rounding shows as the two columns growing together, layer after layer, by the same factors; a wrong
lowering shows as a jump of the conversion column at one node while the sensitivity column stays
small. Prints one line per ``--every`` nodes (and every node where the conversion error jumps by
more than 100× against the sensitivity).

    .venv-thirdparty/bin/python tools/error_growth.py timm/ecaresnet200d --size 224x224 [--every 20]
"""
from __future__ import annotations

import argparse
import copy
import math
import sys

import torch

import jpegfx
from jpegfx.ops.input import spatial_model_input
from jpegfx.passes.check_equivalence import _Recorder, rel_error
from jpegfx.transforms import from_dct, to_dct
from jpegfx.verify import spatial_graph

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from thirdparty_zoo import build, parse_size, photo_batch, photos, qualify  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="timm/NAME or torchvision/NAME (as tools/thirdparty_zoo.py)")
    parser.add_argument("--size", type=parse_size, default=(224, 224))
    parser.add_argument("--every", type=int, default=20, help="print every N-th shared node")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    name = qualify(args.model)
    model = build(name, 10, args.seed).double().eval()
    batch = photo_batch(photos(), args.size, args.seed)
    x = spatial_model_input(batch, 3, "imagenet", "fancy", torch.float64)
    jpeg_model = jpegfx.convert(model, args.size, normalize="imagenet", self_check=False)
    reference = spatial_graph(model, 3)
    spatial = _Recorder(reference, keep=True, decode=False)
    nudged = _Recorder(copy.deepcopy(reference), keep=True, decode=False)
    converted = _Recorder(jpeg_model.network, keep=True)
    with torch.no_grad():
        spatial.run(x)
        nudged.run(from_dct(to_dct(x), args.size))
        converted.run(to_dct(x))
    print(f"{name} at {args.size[0]}x{args.size[1]}, float64: relative max error per node")
    print(f"{'node':40s} {'conversion':>12s} {'sensitivity':>12s} {'ratio':>8s}")
    shared = 0
    worst_ratio = 0.0
    for node in jpeg_model.network.graph.nodes:
        ours, twin, moved = (r.values.get(node.name) for r in (converted, spatial, nudged))
        if ours is None or twin is None or moved is None or ours.shape != twin.shape:
            continue
        shared += 1
        conv, sens = rel_error(ours, twin), rel_error(moved, twin)
        ratio = conv / max(sens, 1e-300)
        jump = ratio > 100 and conv > 1e-12
        worst_ratio = max(worst_ratio, ratio if conv > 1e-12 else 0.0)
        if shared % args.every == 0 or jump or node.next.op == "output":
            flag = "  <- conversion error without sensitivity" if jump else ""
            print(f"{node.name[:40]:40s} {conv:12.2e} {sens:12.2e} {ratio:8.1f}{flag}")
    out_conv = rel_error(converted.values[list(jpeg_model.network.graph.nodes)[-2].name],
                         spatial.values[list(jpeg_model.network.graph.nodes)[-2].name])
    print(f"{shared} shared nodes; output error {out_conv:.2e}; largest conversion/sensitivity ratio where the "
          f"conversion error exceeds 1e-12: {worst_ratio:.1f} (log10 {math.log10(max(worst_ratio, 1e-300)):.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
