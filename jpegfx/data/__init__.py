"""Datasets of JPEG files for training and evaluation (:mod:`jpegfx.data.dataset`: :class:`JpegFolder`,
:class:`RandomCrop`, :class:`RandomFlip`, :class:`Collate`), and the package data: the ``paper``
network trained on Fashion-MNIST (state_dict and JSON record) and sample JPEGs, written by
``tools/train_paper.py`` (see :mod:`jpegfx.datasets`). Nothing here imports torch."""
from __future__ import annotations

from jpegfx.data.dataset import *  # noqa: F401,F403
from jpegfx.data.dataset import __all__  # noqa: F401
