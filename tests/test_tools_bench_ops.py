"""tools/bench_ops.py smoke test: a tiny run exits 0 and its JSON lists every op (no timing thresholds)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "bench_ops.py"

EXPECTED = {
    "conv3x3": {"spatial", "factored", "fused"},
    "conv1x1": {"spatial", "pointwise", "factored"},
    "batchnorm": {"spatial", "jpeg"},
    "relu": {"spatial", "exact", "asm(6) spatial", "asm(6) harmonic", "apx(6)"},
    "maxpool": {"spatial", "exact", "asm(6)"},
}


def test_quick_json_run_lists_every_op():
    result = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--json", "--quiet"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["config"]["batch"] == 1 and report["config"]["channels"] == 8
    assert report["config"]["size"] == 16 and report["config"]["repeat"] == 1
    found: dict[str, set[str]] = {}
    for row in report["ops"]:
        assert row["error"] is None, row
        assert row["median_ms"] >= 0 and row["ratio"] >= 0
        found.setdefault(row["op"], set()).add(row["variant"])
    assert found == EXPECTED
    # Exact variants reproduce the spatial op to float32 round-off.
    for row in report["ops"]:
        if row["variant"] in {"spatial", "factored", "fused", "pointwise", "jpeg", "exact"}:
            assert row["rel_err"] < 1e-4, row
    builds = report["fused_map_build"]
    assert [b["channels"] for b in builds] == [4, 8]
    assert all(b["error"] is None and b["bytes"] == b["predicted_bytes"] for b in builds)
    memory = report["factored_memory"]
    assert memory["fused_map_bytes"] > memory["factored_module_bytes"] >= memory["spatial_weight_bytes"]
