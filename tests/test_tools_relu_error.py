"""tools/relu_error.py: the paper's Fig. 4a table on a small sample, and the script end to end."""
from __future__ import annotations

import csv
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "relu_error.py"


def _load_tool():
    spec = importlib.util.spec_from_file_location("relu_error_tool", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def rows():
    return _load_tool().relu_error_table(5000, seed=0, chunk=2048)  # 3 chunks: exercises chunking


def test_table_has_every_k(rows):
    assert [r["k"] for r in rows] == list(range(1, 16))


def test_asm_beats_apx_below_all_frequencies(rows):
    for r in rows[:14]:
        assert r["asm_rmse"] < r["apx_rmse"], r
        assert r["ratio"] > 1.0, r


def test_all_frequencies_are_exact(rows):
    last = rows[14]
    assert last["asm_rmse"] < 1e-10 and last["apx_rmse"] < 1e-10, last
    assert last["ratio"] is None


def test_error_decreases_with_k(rows):
    asm = {r["k"]: r["asm_rmse"] for r in rows}
    apx = {r["k"]: r["apx_rmse"] for r in rows}
    # Robust with large margins (every step drops the error by >10 % on this sample).
    assert asm[1] > asm[8] > asm[14] > asm[15]
    assert apx[1] > apx[8] > apx[14] > apx[15]
    # Strictly monotone on this seed; every step is far above sampling noise (paired blocks).
    assert all(asm[k] > asm[k + 1] for k in range(1, 15))
    assert all(apx[k] > apx[k + 1] for k in range(1, 15))


def test_script_writes_csv_and_png(tmp_path):
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--blocks", "2000", "--out-dir", str(tmp_path), "--no-progress"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    csv_path, png_path = tmp_path / "relu_error.csv", tmp_path / "relu_error.png"
    lines = csv_path.read_text().splitlines()
    assert len(lines) == 16
    table = list(csv.DictReader(lines))
    assert [int(r["k"]) for r in table] == list(range(1, 16))
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
