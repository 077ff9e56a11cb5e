"""Datasets of JPEG files for training and evaluation (:mod:`jpegfx.data.dataset`: :class:`JpegFolder`,
:class:`RandomCrop`, :class:`RandomFlip`, :class:`Collate`), and the package data: the ``paper``
network trained on Fashion-MNIST (state_dict and JSON record) and sample JPEGs, written by
``tools/train_paper.py`` (see :mod:`jpegfx.datasets`).

The names are imported on first use, so reading the package data imports nothing else."""
from __future__ import annotations

import importlib

__all__ = ["JPEG_SUFFIXES", "JpegFolder", "RandomCrop", "RandomFlip", "Collate", "Unreadable", "read_list"]


def __getattr__(name: str):
    if name in __all__:
        return getattr(importlib.import_module("jpegfx.data.dataset"), name)
    raise AttributeError(f"module 'jpegfx.data' has no attribute {name!r}")
