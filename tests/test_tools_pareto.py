"""tools/pareto.py end to end on a few hundred Fashion-MNIST JPEG files: it fine-tunes, exports and
serves each size, and jpegfx's input taken from the coefficients (the float form of libjpeg's N/8
scaled decode) gives the classes that libjpeg-turbo's own scaled decode (simplejpeg) gives with the
same weights. Timings are not checked (never a wall-clock threshold in a test).

Needs Fashion-MNIST (Debian package dataset-fashion-mnist, or $JPEGFX_FASHION_MNIST).
"""
from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from test_paper_experiments import _fashion_mnist_present

from jpegfx.datasets import fashion_mnist_root

TOOLS = Path(__file__).resolve().parents[1] / "tools"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not _fashion_mnist_present(),
                       reason=f"Fashion-MNIST not found in {fashion_mnist_root()} (apt-get install "
                              "dataset-fashion-mnist, or set JPEGFX_FASHION_MNIST)"),
]


def test_pareto_pipelines_agree_with_libjpeg_scaled_decode(tmp_path):
    pytest.importorskip("simplejpeg", reason="simplejpeg is a test dependency (pip install -e .[test])")
    data, out = tmp_path / "data", tmp_path / "out"
    subprocess.run([sys.executable, str(TOOLS / "fashion_jpegs.py"), str(data), "--train", "300", "--test", "400"],
                   check=True, capture_output=True, timeout=300)
    result = subprocess.run([sys.executable, str(TOOLS / "pareto.py"), str(data), "--out", str(out), "--sizes", "16",
                             "--epochs", "1", "--timing-files", "40", "--rounds", "1"],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    rows = {(r["pipeline"], int(r["size"])): r for r in csv.DictReader((out / "pareto_paper.csv").open())}
    assert set(rows) == {(p, s) for p in ("jpegfx", "simplejpeg", "pillow-draft") for s in (32, 16)}
    assert float(rows["simplejpeg", 32]["ratio_median"]) == 1.0
    # the network is the shipped one, briefly fine-tuned: its classes vary, so agreeing means something
    assert float(rows["simplejpeg", 32]["top1"]) >= 0.8 and float(rows["simplejpeg", 16]["top1"]) >= 0.4, rows
    for (pipeline, size), row in rows.items():
        # the same weights on libjpeg's integer decode and on jpegfx's float one: rounding flips a few
        # near-ties at most
        assert float(row["agree_simplejpeg"]) >= 0.98, (pipeline, size, row)
        assert float(row["ms_per_image"]) > 0 and float(row["ratio_min"]) <= float(row["ratio_median"])
    assert (out / "pareto_paper.png").read_bytes()[:8] == PNG_MAGIC
    assert (data / "pareto" / "paper" / "r16" / "model.pt").is_file()
