"""jpegfx: run ResNets directly on JPEG DCT coefficients.

The package is laid out like a small compiler:

* :mod:`jpegfx.transforms` — the JPEG transform maths and the conventions (layout, order, sizes);
* :mod:`jpegfx.ops` — JPEG-domain modules, one per spatial op, each built ``from_spatial``;
* :mod:`jpegfx.registry` — which spatial op lowers to which JPEG-domain op, with capability checks;
* :mod:`jpegfx.passes` — the conversion pipeline, one pass per file, in an explicit ordered list;
* :mod:`jpegfx.convert`, :mod:`jpegfx.verify` — the public entry points;
* :mod:`jpegfx.jpeg` — JPEG files ↔ coefficients, the float reference decode, an in-memory encoder;
* :mod:`jpegfx.export`, :mod:`jpegfx.runtime` — ONNX export and the onnxruntime session;
* :mod:`jpegfx.models` — a zoo of spatial ResNets (no downloads).
"""
from jpegfx import models, ops, transforms
from jpegfx.convert import JpegModel, ModelSpec, convert
from jpegfx.errors import ConversionError, JpegfxError, UnsupportedModelError
from jpegfx.export import OnnxSpec, export_onnx, read_spec
from jpegfx.jpeg import JpegBatch, JpegError, decode, encode, read_jpeg, stack
from jpegfx.runtime import Prediction, Session
from jpegfx.transforms import BlockGeometry
from jpegfx.verify import VerifyReport, verify

__version__ = "0.1.0"

__all__ = [
    "BlockGeometry",
    "ConversionError",
    "JpegBatch",
    "JpegError",
    "JpegModel",
    "JpegfxError",
    "ModelSpec",
    "OnnxSpec",
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
