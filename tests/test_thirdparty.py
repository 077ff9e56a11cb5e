"""Equivalence of the conversion on third-party ResNet code: torchvision's and timm's own model files.

Each model is built with ``pretrained=False``, ``num_classes=10``, seeded random weights, randomised
BatchNorm statistics (:func:`jpegfx.models.randomize_batchnorm`) and in eval mode. Two outcomes pass:

* exact: ``jpegfx.convert(model, size)`` succeeds and ``jpegfx.verify`` on a seeded random batch of 2
  finds max relative logit error <= RTOL (tests/conftest.py; 1e-5 in float32) and 100% top-1 agreement;
* refused: convert raises :class:`jpegfx.ConversionError` with a complete message: one line per
  problem, naming the op (the module's class, the function or the node). A refusal is recorded as a
  ``ThirdPartyRefusal`` warning, so that it shows in the run's warnings summary.

A model that converts but differs from its spatial twin, or whose error is not complete, fails.

torchvision and timm cannot load beside the CPU torch 2.13 of ``.venv``, so this module skips there;
``make test-thirdparty`` runs it in ``.venv-thirdparty`` (torch 2.14.1, see constraints-thirdparty.txt).
"""
from __future__ import annotations

import copy
import io
import warnings
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pytest
import torch
import torch.fx as fx
from PIL import Image
from torch import nn

import jpegfx
from conftest import RTOL
from jpegfx import models
from jpegfx.jpeg import JpegBatch, read_jpeg, stack

_SKIP = ("needs torchvision and timm, which cannot load beside the CPU torch 2.13 of .venv: "
         "run `make test-thirdparty` (builds .venv-thirdparty with torch 2.14.1)")
try:
    torchvision = pytest.importorskip("torchvision", reason=_SKIP, exc_type=ImportError)
    timm = pytest.importorskip("timm", reason=_SKIP, exc_type=ImportError)
except RuntimeError as exc:  # a torchvision built for another torch: "operator torchvision::nms does not exist"
    pytest.skip(f"{_SKIP}; importing torchvision failed: {exc}", allow_module_level=True)

SIZES = [(64, 64), (57, 41)]  # 57x41: neither side a multiple of 8 (partial blocks everywhere)
SEED = 0


class ThirdPartyRefusal(UserWarning):
    """A third-party model that the converter refused, with a complete error (an accepted outcome)."""


@dataclass(frozen=True)
class Case:
    """A third-party model; ``dtype`` is the precision it is checked in, ``sizes`` the input sizes."""

    source: str
    name: str
    dtype: torch.dtype = torch.float32
    sizes: tuple[tuple[int, int], ...] = tuple(SIZES)

    @property
    def id(self) -> str:
        return f"{'tv' if self.source == 'torchvision' else 'timm'}-{self.name}"


# Outcomes when written (timm 1.0.31, torchvision 0.29.1): all exact at 64x64 and 57x41 (tresnet_m: 64x64 only).
CASES = [
    Case("torchvision", "resnet18"),
    Case("torchvision", "resnet50"),
    Case("torchvision", "resnext50_32x4d"),  # grouped 3x3 convs
    Case("timm", "resnet18"),
    Case("timm", "resnet18d"),  # deep stem, avg-pool downsampling shortcut
    Case("timm", "resnet26t"),  # tiered deep stem
    Case("timm", "resnet50d"),
    Case("timm", "seresnet18"),  # squeeze-excitation: global mean → FC → sigmoid → channel scale
    Case("timm", "ecaresnet26t"),  # ECA: global mean → view(x.shape[0], 1, -1) → Conv1d → channel scale
    Case("timm", "skresnet18"),  # selective kernel: two branches mixed by a channel attention
    Case("timm", "res2net50_14w_8s"),  # split / concat of channel groups within the block
    Case("timm", "cspresnet50"),  # cross-stage partial: channel split and concat across stages
    Case("timm", "resnetblur18"),  # anti-aliased (blur-pool) downsampling
    Case("timm", "resnetv2_50"),  # pre-activation, BatchNorm
    # BiT: StdConv2d (F.conv2d of a weight standardised at run time) and GroupNorm. float64: in float32
    # the spatial model alone is only good to ~1e-5 (float32 vs float64 spatial: 1.1e-5 relative at
    # 64x64), so the conversion's float32 error (2-3e-5) says nothing about exactness.
    Case("timm", "resnetv2_50x1_bit", torch.float64),
    # TResNet's stem is SpaceToDepth (view → permute → view, so sides must be multiples of 4): the
    # channel count is not in the graph; only 3 channels run, so they are inferred; exact.
    Case("timm", "tresnet_m", sizes=((64, 64),)),
]


@lru_cache(maxsize=2)
def build(source: str, name: str, dtype: torch.dtype = torch.float32) -> nn.Module:
    """The third-party model ``name`` with seeded random weights and BN statistics, in eval mode."""
    torch.manual_seed(SEED)
    if source == "torchvision":
        model = getattr(torchvision.models, name)(weights=None, num_classes=10)
    else:
        model = timm.create_model(name, pretrained=False, num_classes=10)
    return models.randomize_batchnorm(model, torch.Generator().manual_seed(SEED)).eval().to(dtype)


def random_input(size: tuple[int, int], dtype: torch.dtype = torch.float32, seed: int = 1) -> torch.Tensor:
    """A seeded random batch of 2 normalised RGB inputs of ``size``."""
    return torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(dtype)


def op_names(model: nn.Module) -> set[str]:
    """Names (lower case) an error may use for an op of ``model``: module classes and paths, traced
    functions and methods, node names."""
    names = {type(m).__name__ for m in model.modules()}
    for path, _ in model.named_modules():
        names |= {path, path.replace(".", "_")}
    try:
        graph = fx.symbolic_trace(copy.deepcopy(model)).graph
    except Exception:  # noqa: BLE001 - untraceable by plain fx: the module names above must do
        graph = fx.Graph()
    for node in graph.nodes:
        names.add(node.name)
        if node.op in ("call_function", "call_method"):
            names.add(node.target if isinstance(node.target, str) else getattr(node.target, "__name__", str(node.target)))
    return {n.lower() for n in names if len(n) >= 3}


def assert_complete_error(exc: jpegfx.ConversionError, model: nn.Module) -> None:
    """The error gives one line per problem, and each problem names an op of ``model``."""
    message = str(exc)
    names = op_names(model)
    if isinstance(exc, jpegfx.UnsupportedModelError):
        assert exc.problems, message
        assert len(message.splitlines()) == 1 + len(exc.problems) + (1 if exc.hint else 0), message
        for problem in exc.problems:
            assert "\n" not in problem, message
            assert any(n in problem.lower() for n in names), f"names no op of the model: {problem!r}"
    else:
        assert "\n" not in message, f"a single problem takes one line: {message!r}"
        assert any(n in message.lower() for n in names), f"names no op of the model: {message!r}"


def _params() -> list:
    return [pytest.param(case, size, id=f"{case.id}-{size[0]}x{size[1]}") for case in CASES for size in case.sizes]


@pytest.mark.parametrize(("case", "size"), _params())
def test_thirdparty_model(case: Case, size: tuple[int, int]) -> None:
    model = build(case.source, case.name, case.dtype)
    try:
        jpeg_model = jpegfx.convert(model, size)
    except jpegfx.ConversionError as exc:
        assert_complete_error(exc, model)
        warnings.warn(f"{case.id} at {size[0]}x{size[1]} refused: {exc}", ThirdPartyRefusal, stacklevel=1)
        return
    report = jpegfx.verify(model, jpeg_model, random_input(size, case.dtype))
    assert report.max_rel_error <= RTOL[case.dtype], f"{case.id} at {size}: {report.summary()}"
    assert report.top1_agreement == 1.0, report.summary()


def test_strict_refuses_completely_or_converts_exactly() -> None:
    """``strict=True`` refuses every op kind that has no JPEG-domain lowering in one error, one line per
    op kind; where it converts (all of BiT's ops lowered or exact on pixels), the result is exact."""
    model = build("timm", "resnetv2_50x1_bit", torch.float64)
    try:
        jpeg_model = jpegfx.convert(model, (64, 64), strict=True)
    except jpegfx.UnsupportedModelError as exc:
        assert_complete_error(exc, model)
        warnings.warn(f"timm-resnetv2_50x1_bit strict refused: {exc}", ThirdPartyRefusal, stacklevel=1)
        return
    report = jpegfx.verify(model, jpeg_model, random_input((64, 64), torch.float64))
    assert report.max_rel_error <= RTOL[torch.float64], report.summary()


def photo_batch(size: int, n: int = 2, seed: int = 0) -> JpegBatch:
    """``n`` seeded random ``size``-square crops of scikit-learn's china.jpg, written by Pillow as
    4:2:0 JPEGs (quality 90) and read back with :func:`read_jpeg`."""
    from sklearn.datasets import load_sample_image

    photo = load_sample_image("china.jpg")
    rng = np.random.default_rng(seed)
    files = []
    for _ in range(n):
        top, left = (int(rng.integers(0, photo.shape[d] - size)) for d in (0, 1))
        buf = io.BytesIO()
        Image.fromarray(photo[top:top + size, left:left + size]).save(buf, "JPEG", quality=90, subsampling="4:2:0")
        files.append(buf.getvalue())
    return stack([read_jpeg(f) for f in files])


@pytest.mark.parametrize("case", [
    pytest.param(Case("torchvision", "resnet18"), id="tv-resnet18"),
    pytest.param(Case("timm", "resnet50d"), id="timm-resnet50d", marks=pytest.mark.slow),
])
def test_thirdparty_model_on_photo_jpegs(case: Case) -> None:
    """Real photo JPEGs: the converted model reads their coefficients, the spatial model their float decode."""
    batch = photo_batch(96)
    assert batch.subsampling == "4:2:0"
    model = build(case.source, case.name)
    jpeg_model = jpegfx.convert(model, (96, 96), normalize="imagenet")
    report = jpegfx.verify(model, jpeg_model, batch)
    assert report.max_rel_error <= RTOL[torch.float32], f"{case.id}: {report.summary()}"
    assert report.top1_agreement == 1.0, report.summary()


@pytest.mark.parametrize("source,name", [("timm", "resnet10t"), ("torchvision", "resnet18"), ("timm", "seresnet18")])
def test_thirdparty_finetuning_matches_spatial_steps(tmp_path, source, name) -> None:
    """Fine-tuning third-party model code in the JPEG domain (jpegfx.train, exact ReLU, train-mode BN,
    float64) takes the steps torch's own autograd and SGD take on the spatial model with the float
    decode of the same files; the trained weights load into the model's own class with strict=True."""
    from jpegfx import train as jt
    from jpegfx.data import Collate, JpegFolder

    rng = np.random.default_rng(0)
    for label in range(2):
        folder = tmp_path / f"class{label}"
        folder.mkdir()
        for i in range(4):
            pixels = rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)
            pixels[..., label] = 200
            Image.fromarray(pixels).save(folder / f"{i}.jpg", quality=85, subsampling=2)

    def build():
        torch.manual_seed(SEED)
        if source == "timm":
            return timm.create_model(name, pretrained=False, num_classes=2).double()
        return getattr(torchvision.models, name)(weights=None, num_classes=2).double()

    options = jt.TrainOptions(batch_size=4, lr=0.05, weight_decay=1e-4, schedule="constant", seed=1)
    model = build()
    result = jt.fit(model, JpegFolder(tmp_path), input_size=48, options=options)
    assert result.history[0]["steps"] == 2

    spatial = build().train()
    optimizer = jt.make_optimizer(spatial, options)
    loader = jt.make_loader(JpegFolder(tmp_path), Collate.for_model(result.jpeg_model), options)
    loader.sampler.set_epoch(0)
    for batch, labels in loader:
        optimizer.zero_grad()
        nn.functional.cross_entropy(spatial(result.jpeg_model.spatial_input(batch)), labels).backward()
        optimizer.step()
    fresh = build()
    fresh.load_state_dict(model.state_dict(), strict=True)
    for key, value in spatial.state_dict().items():
        if value.is_floating_point():
            assert (model.state_dict()[key] - value).abs().max() <= RTOL[torch.float64] * value.abs().max().clamp_min(1e-30) * 10, key


@pytest.mark.parametrize("name", ["resnetv2_50x1_bit", "skresnet18", "resnest14d", "res2net50_14w_8s"])
def test_thirdparty_families_train_and_map_back(tmp_path, name) -> None:
    """Weight-standardised convs with GroupNorm (BiT), selective kernels, split attention and Res2Net
    splits train in the JPEG domain (float32, train-mode BN/GN), and fit's own check — the saved spatial
    weights converted again give back the trained model in float64 — passes; they load with strict=True."""
    from jpegfx import train as jt
    from jpegfx.data import JpegFolder

    rng = np.random.default_rng(1)
    for label in range(2):
        (tmp_path / f"c{label}").mkdir()
        for i in range(4):
            pixels = rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)
            pixels[..., label] = 200
            Image.fromarray(pixels).save(tmp_path / f"c{label}" / f"{i}.jpg", quality=85)
    torch.manual_seed(SEED)
    model = timm.create_model(name, pretrained=False, num_classes=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = jt.fit(model, JpegFolder(tmp_path), input_size=48, options=jt.TrainOptions(batch_size=4, lr=0.01))
    assert result.history[0]["steps"] == 2
    fresh = timm.create_model(name, pretrained=False, num_classes=2)
    fresh.load_state_dict(model.state_dict(), strict=True)
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items() if v.is_floating_point())


def test_bench_compares_with_torchvision_decode() -> None:
    """``jpegfx bench``'s torchvision baseline (the one that runs nvJPEG on a GPU) decodes on the CPU
    here: it is timed end to end, in torch and onnxruntime, and feeds the spatial model the image
    Pillow decodes."""
    from conftest import DECODER_RTOL
    from jpegfx.bench import run_bench

    r = run_bench("paper", (32, 32), batch=3, warmup=0, repeat=1, layers=False)
    for key in ("decode_torchvision", "end_to_end_torchvision_spatial", "ort_end_to_end_torchvision_spatial"):
        assert r.seconds[key] > 0, key
    assert r.ratios["end_to_end_jpeg_over_torchvision_spatial"] > 0
    assert r.checks["torchvision_input_vs_pillow"] <= DECODER_RTOL
    assert r.checks["jpeg_network_vs_spatial"] <= RTOL[torch.float32]
