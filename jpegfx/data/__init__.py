"""Package data: the ``paper`` network trained on Fashion-MNIST (state_dict and JSON record) and
sample JPEGs, written by ``tools/train_paper.py``; see :mod:`jpegfx.datasets`."""
