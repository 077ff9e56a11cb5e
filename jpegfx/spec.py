"""What an exported JPEG model expects, read from its ONNX metadata; imports neither torch nor onnx.

:func:`jpegfx.export.export_onnx` writes the metadata; :class:`jpegfx.runtime.Session` reads it with
:func:`spec_from_metadata` and checks every key (one line naming the key when one is missing or
malformed). Nothing here needs torch, so serving an exported model needs only onnxruntime and numpy.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Mapping, Sequence

from jpegfx.errors import UsageError
from jpegfx.preprocess import Policy
from jpegfx.reader import SUBSAMPLINGS

__all__ = ["OnnxSpec", "input_names", "sampling_ratios", "spec_from_metadata", "UPSAMPLING", "RELU_MODES",
           "MAX_FREQUENCIES", "ANY_LAYOUT", "DCT_INPUT", "PIXEL_INPUT"]

# What the converter accepts (jpegfx.ops.input.UPSAMPLING, jpegfx.ops.relu.MODES and
# jpegfx.transforms.MAX_FREQUENCIES, which import torch; tests/test_export.py checks they agree).
UPSAMPLING = ("fancy", "nearest")
RELU_MODES = ("exact", "asm", "apx")
MAX_FREQUENCIES = 15
_COMPONENTS = ("y", "cb", "cr")
ANY_LAYOUT = "any"
"""``color_space`` and ``subsampling`` of a file that takes any photo through its ``preprocess`` policy."""
DCT_INPUT = "x"
"""The one input of such a file: the network's JPEG-domain input ``(N, C·64, Hb, Wb)``."""
PIXEL_INPUT = "pixels"
"""Or, for a network that starts on pixels (``convert(domains="pixels")``): its normalised pixels
``(N, C, H, W)``, computed from the coefficients; ``H`` and ``W`` are dynamic without a crop."""


@dataclass(frozen=True)
class OnnxSpec:
    """What an exported model expects, read from its ONNX metadata (see :func:`read_spec`)."""

    jpegfx_version: str
    input_size: tuple[int, int]
    channels: int
    subsampling: str
    color_space: str
    samplings: tuple[tuple[int, int], ...]
    normalize: tuple[tuple[float, ...], tuple[float, ...]] | None
    upsampling: str
    relu: str
    frequencies: int
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    class_names: tuple[str, ...] | None = None
    dtype: str = "float32"
    preprocess: Policy | None = None

    @property
    def size_text(self) -> str:
        """``"HxW"``."""
        return f"{self.input_size[0]}x{self.input_size[1]}"

    @property
    def pixel_input(self) -> bool:
        """The file takes normalised pixels (:data:`PIXEL_INPUT`) computed from the coefficients."""
        return self.input_names == (PIXEL_INPUT,)

    @property
    def any_size(self) -> bool:
        """The file runs at whatever size its policy gives (pixel input, no crop): dynamic height and width."""
        return self.pixel_input and self.preprocess is not None and self.preprocess.crop is None

    @property
    def layout(self) -> str:
        """The layout in words, e.g. ``"YCbCr 4:2:0"``, ``"grayscale"`` or, for a file with a
        preprocessing policy, ``"any photo (…)"``."""
        if self.preprocess is not None:
            return f"any photo ({self.preprocess.describe()})"
        return "grayscale" if self.color_space == "gray" else f"YCbCr {self.subsampling}"

    def ratios(self) -> tuple[tuple[int, int], ...]:
        """Per component, the upsampling factors ``(v_max / v, h_max / h)`` of the layout."""
        return sampling_ratios(self.samplings)


def sampling_ratios(samplings: Sequence[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """``(v_max / v, h_max / h)`` per component; layouts with the same ratios read the same."""
    vmax = max(v for v, _ in samplings)
    hmax = max(h for _, h in samplings)
    return tuple((vmax // v, hmax // h) if vmax % v == 0 and hmax % h == 0 else (-v, -h) for v, h in samplings)


def input_names(color_space: str) -> tuple[str, ...]:
    """ONNX input names of a layout: coefficients per component, then their tables."""
    comps = _COMPONENTS[:1] if color_space == "gray" else _COMPONENTS
    return comps + tuple(f"{c}_qtable" for c in comps)


class _BadMetadata(Exception):
    """One problem with one metadata key; :func:`spec_from_metadata` turns it into a UsageError."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(key, problem)
        self.key, self.problem = key, problem


def _field(meta: Mapping[str, str], key: str) -> str:
    if key not in meta:
        raise _BadMetadata(key, "missing")
    return meta[key]


def _json(meta: Mapping[str, str], key: str):
    try:
        return json.loads(_field(meta, key))
    except json.JSONDecodeError as exc:
        raise _BadMetadata(key, f"not JSON ({exc.msg})") from None


def _int(meta: Mapping[str, str], key: str, low: int, high: int | None = None) -> int:
    text = _field(meta, key)
    try:
        value = int(text)
    except ValueError:
        raise _BadMetadata(key, f"{text!r} is not an integer") from None
    if value < low or (high is not None and value > high):
        raise _BadMetadata(key, f"{value} is outside {low}..{'' if high is None else high}")
    return value


def _strings(meta: Mapping[str, str], key: str, allowed: Sequence[str] | None = None) -> tuple[str, ...]:
    value = _json(meta, key)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise _BadMetadata(key, "expected a non-empty JSON list of strings")
    if allowed is not None and set(value) - set(allowed):
        raise _BadMetadata(key, f"unknown name(s) {sorted(set(value) - set(allowed))}; expected some of {list(allowed)}")
    return tuple(value)


def _choice(meta: Mapping[str, str], key: str, choices: Sequence[str]) -> str:
    value = _field(meta, key)
    if value not in choices:
        raise _BadMetadata(key, f"{value!r} is not one of {', '.join(choices)}")
    return value


def _input_size(meta: Mapping[str, str]) -> tuple[int, int]:
    text = _field(meta, "input_size")
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise _BadMetadata("input_size", f"{text!r} is not HxW") from None
    if h < 1 or w < 1:
        raise _BadMetadata("input_size", f"{text!r}: sizes must be positive")
    return h, w


def _samplings(meta: Mapping[str, str], color_space: str, subsampling: str) -> tuple[tuple[int, int], ...]:
    value = _json(meta, "samplings")
    count = 1 if color_space == "gray" else 3
    if (not isinstance(value, list) or len(value) != count
            or not all(isinstance(s, list) and len(s) == 2 and all(type(f) is int for f in s) for s in value)):
        raise _BadMetadata("samplings", f"expected {count} [v, h] pair(s) of integers for {color_space}, got {value}")
    samplings = tuple((v, h) for v, h in value)
    if not all(1 <= f <= 4 for s in samplings for f in s):
        raise _BadMetadata("samplings", f"sampling factors must be 1..4, got {value}")
    ratios = sampling_ratios(samplings)
    if any(r < 0 for pair in ratios for r in pair):
        raise _BadMetadata("samplings", f"{value}: every factor must divide the largest one")
    luma = (1, 1) if subsampling == "gray" else SUBSAMPLINGS[subsampling]
    expected = ((1, 1),) if color_space == "gray" else (luma, (1, 1), (1, 1))
    if ratios != sampling_ratios(expected):
        raise _BadMetadata("samplings", f"{value} is not the layout of subsampling {subsampling!r}")
    return samplings


def _normalize(meta: Mapping[str, str], channels: int):
    if _field(meta, "normalize") == "none":
        return None
    norm = _json(meta, "normalize")
    try:
        mean, std = (tuple(float(v) for v in norm[k]) for k in ("mean", "std"))
    except (TypeError, ValueError, KeyError):
        raise _BadMetadata("normalize", 'expected "none" or {"mean": [...], "std": [...]} of numbers') from None
    if not all(len(v) in (1, channels) for v in (mean, std)) or min(std) <= 0:
        raise _BadMetadata("normalize", f"expected 1 or {channels} values each and a positive std, got {norm}")
    return mean, std


def spec_from_metadata(meta: Mapping[str, str], source: str = "model") -> OnnxSpec:
    """An :class:`OnnxSpec` from ONNX ``metadata_props`` (e.g. onnxruntime's ``custom_metadata_map``);
    :class:`~jpegfx.errors.UsageError` (a ``ValueError``; one line naming ``source`` and the key) when
    the jpegfx metadata is missing, malformed or inconsistent (e.g. samplings that are not the layout of
    ``subsampling``, class names that are not strings)."""
    if "jpegfx_version" not in meta:
        raise UsageError(f"{source}: not a jpegfx model (no jpegfx metadata in the ONNX file); "
                         "export it with jpegfx.export.export_onnx")
    try:
        channels = _int(meta, "channels", 1, 3)
        if channels == 2:
            raise _BadMetadata("channels", "2 is neither gray (1) nor colour (3)")
        if "preprocess" in meta:
            try:
                policy = Policy.from_json(_json(meta, "preprocess"))
            except UsageError as exc:
                raise _BadMetadata("preprocess", str(exc)) from None
            size = _input_size(meta)
            if policy.crop is not None and policy.crop != size:
                raise _BadMetadata("preprocess", f"crop {list(policy.crop)} is not the input_size {meta['input_size']}")
            color_space = subsampling = _choice(meta, "color_space", (ANY_LAYOUT,))
            _choice(meta, "subsampling", (ANY_LAYOUT,))
            samplings: tuple = ()
            names = _strings(meta, "input_names", (DCT_INPUT, PIXEL_INPUT))
            if len(names) != 1:
                raise _BadMetadata("input_names", f"a model with a preprocessing policy takes one input, got {list(names)}")
        else:
            policy = None
            color_space = _choice(meta, "color_space", ("gray", "ycbcr"))
            subsampling = _choice(meta, "subsampling", (*SUBSAMPLINGS, "gray"))
            if (subsampling == "gray") != (color_space == "gray"):
                raise _BadMetadata("subsampling", f"{subsampling!r} does not go with color_space {color_space!r}")
            samplings = _samplings(meta, color_space, subsampling)
            names = _strings(meta, "input_names", input_names(color_space))
        return OnnxSpec(
            jpegfx_version=meta["jpegfx_version"],
            input_size=_input_size(meta),
            channels=channels,
            subsampling=subsampling,
            color_space=color_space,
            samplings=samplings,
            normalize=_normalize(meta, channels),
            upsampling=_choice(meta, "upsampling", UPSAMPLING),
            relu=_choice(meta, "relu", RELU_MODES),
            frequencies=_int(meta, "frequencies", 1, MAX_FREQUENCIES),
            input_names=names,
            output_names=_strings(meta, "output_names") if "output_names" in meta else ("logits",),
            class_names=_strings(meta, "class_names") if "class_names" in meta else None,
            dtype=meta.get("dtype", "float32"),
            preprocess=policy,
        )
    except _BadMetadata as bad:
        problem = "missing" if bad.problem == "missing" else f"bad: {_one_line(bad.problem)}"
        raise UsageError(f"{source}: jpegfx metadata {bad.key!r} {problem}") from None


def _one_line(text: object) -> str:
    return " ".join(str(text).split())
