"""Shared fixtures: dtypes and the one tolerance table of the test suite."""
from __future__ import annotations

import pytest
import torch

# Exact JPEG-domain ops must match their spatial twins to float rounding:
# max |jpeg - spatial| <= RTOL[dtype] * max |spatial|.
RTOL = {torch.float32: 1e-5, torch.float64: 1e-10}


@pytest.fixture(params=[torch.float32, torch.float64], ids=["f32", "f64"])
def dtype(request):
    return request.param


def assert_close_rel(actual: torch.Tensor, expected: torch.Tensor, rtol: float | None = None) -> None:
    """Assert ``max|actual - expected| <= rtol * max(max|expected|, 1e-30)``."""
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    tol = RTOL[expected.dtype] if rtol is None else rtol
    scale = expected.abs().max().clamp_min(1e-30)
    err = (actual - expected).abs().max()
    assert err <= tol * scale, f"max abs error {err:.3e} > {tol:.0e} x {scale:.3e}"
