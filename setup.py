"""Build of the one compiled part of jpegfx: ``jpegfx._jpegread``, a thin binding to libjpeg-turbo's
coefficient API. It needs a C compiler and libjpeg-turbo's headers (Debian/Ubuntu:
``libjpeg62-turbo-dev`` or ``libjpeg-turbo8-dev``; Fedora: ``libjpeg-turbo-devel``; macOS:
``brew install jpeg-turbo``). Everything else is in pyproject.toml."""
import os

import numpy
from setuptools import Extension, setup


def _dirs(variable: str) -> list[str]:
    return [d for d in os.environ.get(variable, "").split(os.pathsep) if d]


setup(
    ext_modules=[
        Extension(
            "jpegfx._jpegread",
            sources=["jpegfx/_jpegread.c"],
            libraries=["jpeg"],
            include_dirs=[numpy.get_include(), *_dirs("JPEGFX_JPEG_INCLUDE")],
            library_dirs=_dirs("JPEGFX_JPEG_LIB"),
            extra_compile_args=["-O2", "-Wall"],
        )
    ]
)
