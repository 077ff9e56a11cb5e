"""jpegfx: run ResNets directly on JPEG DCT coefficients.

The package is laid out like a small compiler:

* :mod:`jpegfx.transforms` — the JPEG transform maths and the conventions (layout, order, sizes);
* :mod:`jpegfx.ops` — JPEG-domain modules, one per spatial op, each built ``from_spatial``;
* :mod:`jpegfx.registry` — which spatial op lowers to which JPEG-domain op, with capability checks;
* :mod:`jpegfx.passes` — the conversion pipeline, one pass per file, in an explicit ordered list;
* :mod:`jpegfx.convert`, :mod:`jpegfx.verify` — the public entry points;
* :mod:`jpegfx.models` — a zoo of spatial ResNets (no downloads).
"""
from jpegfx import models, ops, transforms
from jpegfx.convert import JpegModel, ModelSpec, convert
from jpegfx.errors import ConversionError, JpegfxError, UnsupportedModelError
from jpegfx.transforms import BlockGeometry
from jpegfx.verify import VerifyReport, verify

__version__ = "0.1.0"

__all__ = [
    "BlockGeometry",
    "ConversionError",
    "JpegModel",
    "JpegfxError",
    "ModelSpec",
    "UnsupportedModelError",
    "VerifyReport",
    "convert",
    "models",
    "ops",
    "transforms",
    "verify",
    "__version__",
]
