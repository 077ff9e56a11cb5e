"""tools/paper_experiments.py --quick: every stage runs end to end and its outputs are sane.

Needs Fashion-MNIST (Debian package dataset-fashion-mnist, or $JPEGFX_FASHION_MNIST); skipped otherwise.
The quick run takes a couple of minutes on 2 CPU cores; its numbers are noisy (tiny training), so only
properties that hold whatever the training are checked: exact conversion agrees with the spatial model,
ASM beats APX on the ReLU error, k = 15 is exact.
"""
from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from jpegfx.datasets import fashion_mnist_root

SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "paper_experiments.py"
STAGES = ("table1", "fig4a", "fig4b", "fig4c", "fig5")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _fashion_mnist_present() -> bool:
    root = fashion_mnist_root()
    stems = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    return all((root / s).is_file() or (root / (s + ".gz")).is_file() for s in stems)


pytestmark = pytest.mark.skipif(
    not _fashion_mnist_present(),
    reason=f"Fashion-MNIST not found in {fashion_mnist_root()} (apt-get install dataset-fashion-mnist, "
           "or set JPEGFX_FASHION_MNIST)")


def _read(path: Path) -> list[dict]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("paper_results")
    cmd = [sys.executable, str(SCRIPT), "--quick", "--out", str(out), "--cache", str(out / "cache")]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    return out, result, cmd


def test_outputs_exist(quick_run):
    out, result, _ = quick_run
    for stage in STAGES:
        assert (out / f"{stage}.csv").is_file(), stage
        assert f"{stage}: done" in result.stdout
    for name in ("fig4a", "fig4b", "fig4c", "fig5"):
        data = (out / f"{name}.png").read_bytes()
        assert data[:8] == PNG_MAGIC
        assert len(data) < 200_000, (name, len(data))
    readme = (out / "README.md").read_text()
    for heading in ("Table 1", "Figure 4a", "Figure 4b", "Figure 4c", "Figure 5", "Verdict", "Machine"):
        assert heading in readme, heading


def test_table1_conversion_is_exact(quick_run):
    rows = _read(quick_run[0] / "table1.csv")
    assert rows and {r["dataset"] for r in rows} == {"Fashion-MNIST"}
    for r in rows:
        assert abs(float(r["deviation"])) <= 0.005, r
        assert float(r["agree_jpeg_vs_spatial"]) >= 0.995, r
        assert float(r["agree_jpeg_vs_decode"]) >= 0.995, r
        assert float(r["max_rel_logit_diff_vs_decode"]) < 1e-4, r
        assert 0.0 <= float(r["acc_spatial"]) <= 1.0


def test_fig4a_asm_beats_apx(quick_run):
    rows = _read(quick_run[0] / "fig4a.csv")
    assert [int(r["k"]) for r in rows] == list(range(1, 16))
    asm = {int(r["k"]): float(r["asm_rmse"]) for r in rows}
    apx = {int(r["k"]): float(r["apx_rmse"]) for r in rows}
    assert all(asm[k] < apx[k] for k in range(1, 15))
    assert asm[1] > asm[4] > asm[8] > asm[12] > asm[14] > asm[15]
    assert asm[15] < 1e-10 and apx[15] < 1e-10


def test_fig4b_all_frequencies_is_exact(quick_run):
    rows = _read(quick_run[0] / "fig4b.csv")
    assert len(rows) == 30
    for mode in ("asm", "apx"):
        last = next(r for r in rows if r["mode"] == mode and int(r["k"]) == 15)
        n = int(last["test_images"])
        assert abs(float(last["accuracy"]) - float(last["accuracy_exact"])) <= 1.0 / n + 1e-12, last
        assert float(last["agree_with_exact"]) >= 0.995, last


def test_fig4c_rows(quick_run):
    rows = _read(quick_run[0] / "fig4c.csv")
    modes = {r["mode"] for r in rows}
    assert {"spatial", "exact", "asm", "apx"} <= modes
    for r in rows:
        assert 0.0 <= float(r["accuracy"]) <= 1.0
        assert int(r["steps"]) >= 1


def test_fig5_rows(quick_run):
    rows = _read(quick_run[0] / "fig5.csv")
    assert {r["model"] for r in rows} == {"spatial", "jpeg-exact", "jpeg-exact-all-jpeg", "jpeg-asm-k6",
                                                "jpeg-apx-k6"}
    assert {r["phase"] for r in rows} == {"training", "inference", "inference_from_jpeg_bytes"}
    assert all(float(r["images_per_second"]) > 0 and int(r["batch"]) == 40 for r in rows)


def test_rerun_skips_finished_stages(quick_run):
    out, _, cmd = quick_run
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "done in" not in result.stdout
    assert result.stderr.count("skipped") == len(STAGES)


def test_table1_on_local_mnist_and_cifar10(tmp_path):
    """--mnist / --cifar10 add rows to Table 1 (tiny synthetic files in the real formats; CIFAR batches
    are pickles read without executing code)."""
    import gzip
    import pickle
    import struct

    import numpy as np

    rng = np.random.default_rng(0)
    mnist = tmp_path / "mnist"
    mnist.mkdir()
    for prefix, n in (("train", 120), ("t10k", 40)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n).astype(np.uint8)
        for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
            header = struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
            (mnist / f"{prefix}-{kind}-ubyte.gz").write_bytes(gzip.compress(header + array.tobytes()))
    cifar = tmp_path / "cifar-10-batches-py"
    cifar.mkdir()
    for name, n in [(f"data_batch_{i}", 24) for i in range(1, 6)] + [("test_batch", 40)]:
        batch = {b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
                 b"labels": [int(v) for v in rng.integers(0, 10, size=n)]}
        (cifar / name).write_bytes(pickle.dumps(batch, protocol=2))
    out = tmp_path / "out"
    cmd = [sys.executable, str(SCRIPT), "--quick", "--only", "table1", "--limit-train", "120", "--limit-test", "40",
           "--mnist", str(mnist), "--cifar10", str(tmp_path), "--out", str(out), "--cache", str(out / "cache"),
           "--quiet"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    rows = {r["dataset"]: r for r in _read(out / "table1.csv")}
    assert set(rows) == {"Fashion-MNIST", "MNIST", "CIFAR-10"}
    for name in ("MNIST", "CIFAR-10"):
        assert int(rows[name]["test_images"]) == 40
        assert float(rows[name]["max_rel_logit_diff_vs_decode"]) < 1e-4, rows[name]
        assert float(rows[name]["agree_jpeg_vs_decode"]) >= 0.95, rows[name]
