"""Shared fixtures: dtypes and the one tolerance table of the test suite."""
from __future__ import annotations

import importlib.util
import os

import pytest
import torch

# Exact JPEG-domain ops must match their spatial twins to float rounding:
# max |jpeg - spatial| <= RTOL[dtype] * max |spatial|.
RTOL = {torch.float32: 1e-5, torch.float64: 1e-10}
# Two libjpeg-turbo builds (Pillow's, simplejpeg's, torchvision's) decoding the same file, compared as
# normalised model inputs: within two 8-bit levels of the image's largest value.
DECODER_RTOL = 0.02


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


class CountingReader:
    """Stands in for the compiled reader (``jpegfx.reader._BINDING``) and counts the files whose scans
    were decoded into a result (``read`` without ``header_only``; each slot ``read_many`` filled), to
    prove which files were refused from their header alone."""

    def __init__(self, real) -> None:
        self.real, self.decoded = real, 0

    def __getattr__(self, name: str):
        return getattr(self.real, name)

    def read(self, data, header_only=False, *args, **kwargs):
        result = self.real.read(data, header_only, *args, **kwargs)
        if not header_only:
            self.decoded += 1
        return result

    def read_many(self, datas, *args, **kwargs):
        outcomes = self.real.read_many(datas, *args, **kwargs)
        self.decoded += sum(isinstance(o, int) for o in outcomes)  # a file's slot: its scans were decoded
        return outcomes


@pytest.fixture
def counting_reader(monkeypatch) -> CountingReader:
    from jpegfx import reader

    counter = CountingReader(reader._binding())
    monkeypatch.setattr(reader, "_BINDING", counter)
    return counter


def package_file(package: str, *parts: str) -> str:
    """A file shipped by an installed package (scikit-learn's sample photos, matplotlib's sample data),
    found without importing the package; the test skips with a reason when it is not there."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        pytest.skip(f"{package} is not installed")
    path = os.path.join(list(spec.submodule_search_locations)[0], *parts)
    if not os.path.exists(path):
        pytest.skip(f"{package} ships no {parts[-1]}")
    return path
