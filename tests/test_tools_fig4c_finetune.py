"""tools/fig4c_finetune.py --table: the Markdown table of docs/training.md comes from the results CSV."""
from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import fig4c_finetune as fig4c  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _row(mode, k, converted, finetuned, seconds=600, rate=200.0):
    return {"mode": mode, "k": k, "converted_top1": converted, "finetuned_top1": finetuned, "train_images": 60000,
            "epochs": 2, "images_per_s": f"{rate:.1f}", "seconds": str(seconds), "command": "python tools/x.py"}


def test_table_orders_rows_and_formats_them(tmp_path, capsys):
    rows = [_row("apx", 10, "0.8800", "0.9050"), _row("asm", 2, "0.3328", "0.8407", 874, 153.4),
            _row("exact", 15, "0.9059", "0.9111"), _row("asm", 10, "0.8900", "0.9060"),
            _row("spatial", 15, "nan", "0.9119", 637, 192.2)]
    with (tmp_path / "fig4c_finetune.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fig4c.FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    assert fig4c.main(["--table", "--out", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" | ")[0:2] for line in lines[2:]] == [
        ["| spatial", "15"], ["| exact", "15"], ["| asm", "2"], ["| asm", "10"], ["| apx", "10"]]
    assert lines[2] == "| spatial | 15 | — | 91.19% | 10.6 min | 192 |"
    assert lines[4] == "| asm | 2 | 33.28% | 84.07% | 14.6 min | 153 |"
    assert (tmp_path / "fig4c_finetune.png").read_bytes()[:8] == PNG_MAGIC


def test_training_doc_shows_every_row_of_the_results_csv():
    rows = list(csv.DictReader((ROOT / "docs/results/fig4c_finetune.csv").open()))
    assert fig4c.markdown(rows) in (ROOT / "docs/training.md").read_text()


def test_training_needs_the_data_folder(capsys):
    with pytest.raises(SystemExit) as exit_info:
        fig4c.main(["--out", "unused"])
    assert exit_info.value.code == 2
    assert "data folder is needed" in capsys.readouterr().err


def test_table_without_results_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        fig4c.main(["--table", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "does not exist" in capsys.readouterr().err
