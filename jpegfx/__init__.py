"""jpegfx: run ResNets directly on JPEG DCT coefficients.

The package is laid out like a small compiler:

* :mod:`jpegfx.transforms` — the JPEG transform maths and the conventions (layout, order, sizes);
* :mod:`jpegfx.ops` — JPEG-domain modules, one per spatial op, each built ``from_spatial``;
"""
from jpegfx import transforms
from jpegfx.transforms import BlockGeometry

__version__ = "0.1.0"

__all__ = ["BlockGeometry", "transforms", "__version__"]
