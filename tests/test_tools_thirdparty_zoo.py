"""tools/thirdparty_zoo.py's verdict on a WRONG row: a tamed instance may clear a random instance that
float32 cannot check ("exact when tamed"), and never a conversion that is wrong.

The survey's models need timm; these checks use the project's ResNet-20 with randomised BatchNorm on
real photo crops, and stand in for the measured ill-conditioning (the float64 sensitivity and the
spatial model's own float32 error) where a small model has none.
"""
from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import thirdparty_zoo as zoo  # noqa: E402

from jpegfx import models  # noqa: E402

SIZE = (32, 32)


@pytest.fixture(scope="module")
def batch():
    return zoo.photo_batch(zoo.photos(), SIZE, seed=0)


@pytest.fixture
def model():
    torch.manual_seed(0)
    return models.randomize_batchnorm(models.resnet20(), torch.Generator().manual_seed(0)).eval()


def _row() -> zoo.Row:
    return zoo.Row("resnet20", "32x32", "WRONG", max_rel_error=0.3, top1_agreement=1.0)


def test_a_well_conditioned_model_keeps_its_verdict(model, batch):
    row = _row()
    zoo.recheck_tamed(row, model, SIZE, batch)
    assert row.sensitivity <= zoo.ILL_CONDITIONED and row.spatial_f32_error <= zoo.TOLERANCE
    assert row.outcome == "WRONG" and row.tamed_scale is None


@pytest.mark.parametrize("probe", ["sensitivity", "spatial_f32_error"])
def test_an_ill_conditioned_instance_is_checked_tamed(model, batch, monkeypatch, probe):
    """Either measure of ill-conditioning (the input probe, or the model's own float32 error) sends the
    row to the tamed check, which converts and verifies a damped copy of the same architecture."""
    real = getattr(zoo, probe)
    monkeypatch.setattr(zoo, probe, lambda m, *args: 1e-3 if m is model else real(m, *args))
    row = _row()
    zoo.recheck_tamed(row, model, SIZE, batch)
    assert row.outcome == "exact when tamed" and row.tamed_scale == 0.5
    assert row.tamed_rel_error <= zoo.TOLERANCE


def test_a_wrong_conversion_is_never_cleared(model, batch, monkeypatch):
    """A converter that drifts one kernel by 1% stays WRONG under the tamed check."""
    real_convert = zoo.jpegfx.convert

    def drifting_convert(spatial, *args, **kwargs):
        spatial = copy.deepcopy(spatial)
        with torch.no_grad():
            next(m for m in spatial.modules() if isinstance(m, torch.nn.Conv2d)).weight[0].mul_(1.01)
        return real_convert(spatial, *args, **kwargs)

    monkeypatch.setattr(zoo, "sensitivity", lambda m, *args: 1e-3)  # every instance "ill-conditioned"
    monkeypatch.setattr(zoo, "spatial_f32_error", lambda *args: 0.0)
    monkeypatch.setattr(zoo.jpegfx, "convert", drifting_convert)
    row = _row()
    zoo.recheck_tamed(row, model, SIZE, batch)
    assert row.outcome == "WRONG"
    monkeypatch.setattr(zoo, "sensitivity", lambda m, *args: 1e-3 if m is model else 0.0)
    zoo.recheck_tamed(row, model, SIZE, batch)
    assert row.outcome == "WRONG" and row.tamed_rel_error > zoo.TOLERANCE


def test_the_tamed_instance_is_exported_and_its_export_judged(model, batch, monkeypatch):
    """With --onnx, an "exact when tamed" row's ONNX verdict is its tamed conversion's export: the
    random instance's export (0.3 off, as float32 rounding of that instance makes it) is not judged,
    and a tamed export that differs from torch is reported."""
    monkeypatch.setattr(zoo, "sensitivity", lambda m, *args: 1e-3 if m is model else 0.0)
    row = _row()
    zoo.recheck_tamed(row, model, SIZE, batch, onnx=True)
    assert row.outcome == "exact when tamed" and row.tamed_onnx_error <= zoo.TOLERANCE and row.onnx_mib > 0
    zoo.judge_row_onnx(row, 0.3)
    assert row.onnx_error is None and row.onnx_mib > 0
    assert "its ONNX" in row.cells()[3]
    row.tamed_onnx_error = 1e-3
    zoo.judge_row_onnx(row, 0.3)
    assert "differs from torch by 1.0e-03" in row.onnx_error and row.onnx_mib is None


def test_an_unexported_tamed_instance_is_not_reported_as_checked():
    row = zoo.Row("m", "32x32", "exact when tamed", onnx_mib=5.0, tamed_scale=0.5, tamed_rel_error=1e-7)
    zoo.judge_row_onnx(row, 0.3)
    assert row.onnx_mib is None and row.onnx_error.startswith("not checked")
    exact = zoo.Row("m", "32x32", "exact", onnx_mib=5.0)
    zoo.judge_row_onnx(exact, 0.3)
    assert exact.onnx_mib is None and "differs from torch" in exact.onnx_error
    unexported = zoo.Row("m", "32x32", "exact", onnx_mib=5.0)
    zoo.judge_row_onnx(unexported, None)  # no export error measured: nothing to judge
    assert unexported.onnx_mib == 5.0 and unexported.onnx_error is None
