"""jpegfx: run ResNets directly on JPEG DCT coefficients.

The package is laid out like a small compiler:

* :mod:`jpegfx.transforms` — the JPEG transform maths and the conventions (layout, order, sizes);
* :mod:`jpegfx.ops` — JPEG-domain modules, one per spatial op, each built ``from_spatial``;
* :mod:`jpegfx.registry` — which spatial op lowers to which JPEG-domain op, with capability checks;
* :mod:`jpegfx.passes` — the conversion pipeline, one pass per file, in an explicit ordered list;
* :mod:`jpegfx.convert`, :mod:`jpegfx.verify` — the public entry points;
* :mod:`jpegfx.reader` — JPEG files → quantised coefficients (numpy; a libjpeg-turbo binding);
* :mod:`jpegfx.preprocess` — any photo in: scaled decode (N/8), centre crop and flip of coefficients
  into a network's input (numpy);
* :mod:`jpegfx.jpeg` — coefficients as torch batches, the float reference decode, an in-memory encoder;
* :mod:`jpegfx.export`, :mod:`jpegfx.runtime` — ONNX export and the onnxruntime session;
* :mod:`jpegfx.models` — a zoo of spatial ResNets (no downloads).
"""
import importlib
import sys
import types

from jpegfx.errors import ConversionError, JpegError, JpegfxError, UnsupportedModelError

__version__ = "0.1.0"

# Everything but the errors is imported on first use, so that serving (jpegfx.reader,
# jpegfx.runtime: numpy + onnxruntime) never imports torch.
_LAZY = {
    "models": "jpegfx.models",
    "ops": "jpegfx.ops",
    "transforms": "jpegfx.transforms",
    "JpegModel": "jpegfx.convert",
    "ModelSpec": "jpegfx.convert",
    "convert": "jpegfx.convert",
    "OnnxSpec": "jpegfx.export",
    "export_onnx": "jpegfx.export",
    "read_spec": "jpegfx.export",
    "JpegBatch": "jpegfx.jpeg",
    "decode": "jpegfx.jpeg",
    "encode": "jpegfx.jpeg",
    "read_jpeg": "jpegfx.jpeg",
    "stack": "jpegfx.jpeg",
    "Policy": "jpegfx.preprocess",
    "Prediction": "jpegfx.runtime",
    "Session": "jpegfx.runtime",
    "BlockGeometry": "jpegfx.transforms",
    "VerifyReport": "jpegfx.verify",
    "verify": "jpegfx.verify",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'jpegfx' has no attribute {name!r}")
    mod = importlib.import_module(module)
    value = mod if name in ("models", "ops", "transforms") else getattr(mod, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


class _Package(types.ModuleType):
    """``import jpegfx.convert`` binds the submodule as an attribute of the package; the public API
    names the functions ``convert`` and ``verify`` like their modules, so the functions are kept."""

    def __setattr__(self, name: str, value) -> None:
        if name in ("convert", "verify") and isinstance(value, types.ModuleType):
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


__all__ = [
    "BlockGeometry",
    "ConversionError",
    "JpegBatch",
    "JpegError",
    "JpegModel",
    "JpegfxError",
    "ModelSpec",
    "OnnxSpec",
    "Policy",
    "Prediction",
    "Session",
    "UnsupportedModelError",
    "VerifyReport",
    "convert",
    "decode",
    "encode",
    "export_onnx",
    "read_jpeg",
    "read_spec",
    "stack",
    "models",
    "ops",
    "transforms",
    "verify",
    "__version__",
]
