"""Training and evaluation helpers shared by the paper-reproduction tools (``tools/paper_experiments.py``).

* :func:`train_spatial` trains a spatial model on uint8 images ``(N, C, 32, 32)`` with the recipe of
  ``tools/train_paper.py`` (SGD, Nesterov momentum 0.9, weight decay, one-cycle schedule, random
  horizontal flips), generalised to any channel count;
* :func:`train_jpeg` trains a JPEG-domain model (``jpegfx.convert`` of a model in train mode: BN uses
  batch statistics, the spatial kernels stay the trainable parameters) with the same recipe on
  JPEG-compressed training images (:class:`~jpegfx.jpeg.JpegBatch`, e.g. from :func:`encode_images`);
* :func:`encode_images` compresses uint8 images with the in-memory encoder
  (:func:`jpegfx.jpeg.encode`), :func:`take` indexes a :class:`~jpegfx.jpeg.JpegBatch`;
* :func:`predict_spatial` / :func:`predict_jpeg` return logits in eval mode, batch by batch.

Progress is reported through an optional callback ``progress(message)``; this module only logs.
"""
from __future__ import annotations

import logging
import math
import time
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from jpegfx import jpeg as jpeg_io
from jpegfx.transforms import channels_last

log = logging.getLogger(__name__)

Progress = Callable[[str], None]

DEFAULT_BATCH = 128
DEFAULT_LR = 0.1
DEFAULT_WEIGHT_DECAY = 5e-4


def to_input(images_u8: torch.Tensor) -> torch.Tensor:
    """uint8 ``(N, C, H, W)`` → float32 ``pixels / 255``."""
    return images_u8.float().div_(255.0)


def take(batch: jpeg_io.JpegBatch, index: torch.Tensor) -> jpeg_io.JpegBatch:
    """The images ``index`` of ``batch`` (coefficients and per-image tables), as a new batch."""
    comps = tuple(jpeg_io.Component(c.coefficients[index], c.qtable[index], c.size, c.sampling)
                  for c in batch.components)
    return jpeg_io.JpegBatch(components=comps, size=batch.size, color_space=batch.color_space)


def select(mask: torch.Tensor, a: jpeg_io.JpegBatch, b: jpeg_io.JpegBatch) -> jpeg_io.JpegBatch:
    """Per image: ``a`` where ``mask`` (bool ``(N,)``) is true, else ``b`` (same layout)."""
    comps = []
    for ca, cb in zip(a.components, b.components):
        m = mask.reshape(-1, 1, 1, 1, 1)
        comps.append(jpeg_io.Component(torch.where(m, ca.coefficients, cb.coefficients),
                                       torch.where(mask.reshape(-1, 1), ca.qtable, cb.qtable), ca.size, ca.sampling))
    return jpeg_io.JpegBatch(components=tuple(comps), size=a.size, color_space=a.color_space)


def concat(batches: list[jpeg_io.JpegBatch]) -> jpeg_io.JpegBatch:
    """Concatenate batches of identical layout along the image axis."""
    first = batches[0]
    comps = tuple(jpeg_io.Component(torch.cat([b.components[i].coefficients for b in batches]),
                                    torch.cat([b.components[i].qtable for b in batches]), c.size, c.sampling)
                  for i, c in enumerate(first.components))
    return jpeg_io.JpegBatch(components=comps, size=first.size, color_space=first.color_space)


def encode_images(images_u8: np.ndarray, *, quality: int = 100, subsampling: str = "4:4:4",
                  chunk: int = 2000) -> jpeg_io.JpegBatch:
    """Compress uint8 ``(N, C, H, W)`` images (C = 1 gray, C = 3 RGB) with :func:`jpegfx.jpeg.encode`."""
    parts = []
    for i in range(0, len(images_u8), chunk):
        x = torch.from_numpy(np.ascontiguousarray(images_u8[i:i + chunk]))
        parts.append(jpeg_io.encode(x, quality=quality, subsampling=subsampling))
    return concat(parts)


def _train_loop(model: nn.Module, n: int, labels: np.ndarray,
                make_batch: Callable[[torch.Tensor, torch.Tensor], object],
                *, epochs: int, batch_size: int, lr: float, weight_decay: float, seed: int,
                progress: Progress | None, name: str, max_steps: int | None = None) -> dict:
    y_all = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    steps_per_epoch = math.ceil(n / batch_size)
    total_steps = epochs * steps_per_epoch
    if max_steps is not None:
        total_steps = min(total_steps, max_steps)
    generator = torch.Generator().manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total_steps)
    start = time.perf_counter()
    model.train()
    step_total, loss_sum, correct, seen = 0, 0.0, 0, 0
    for epoch in range(1, epochs + 1):
        order = torch.randperm(n, generator=generator)
        flips = torch.rand(n, generator=generator) < 0.5
        for step in range(steps_per_epoch):
            if step_total >= total_steps:
                break
            idx = order[step * batch_size:(step + 1) * batch_size]
            x = make_batch(idx, flips[idx])
            y = y_all[idx]
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            step_total += 1
            loss_sum += float(loss.detach()) * len(idx)
            correct += int((logits.argmax(1) == y).sum())
            seen += len(idx)
            if progress is not None and (step_total % 10 == 0 or step_total == total_steps):
                elapsed = time.perf_counter() - start
                progress(f"{name}: epoch {epoch}/{epochs} step {step_total}/{total_steps} "
                         f"loss {loss_sum / seen:.4f} train acc {100 * correct / seen:5.2f}% {elapsed:6.1f} s")
    seconds = time.perf_counter() - start
    log.info("%s: %d step(s) in %.1f s", name, step_total, seconds)
    return {"seconds": seconds, "steps": step_total, "train_loss": loss_sum / max(seen, 1),
            "train_accuracy": correct / max(seen, 1)}


def train_spatial(model: nn.Module, images_u8: np.ndarray, labels: np.ndarray, *, epochs: int,
                  batch_size: int = DEFAULT_BATCH, lr: float = DEFAULT_LR, weight_decay: float = DEFAULT_WEIGHT_DECAY,
                  seed: int = 0, progress: Progress | None = None, max_steps: int | None = None) -> dict:
    """Train a spatial model in place on uint8 ``(N, C, H, W)`` images (input ``pixels / 255``, random
    horizontal flips); returns ``{"seconds", "steps", "train_loss", "train_accuracy"}``."""
    x_all = torch.from_numpy(np.ascontiguousarray(images_u8))
    model.to(memory_format=torch.channels_last)

    def make_batch(idx: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
        x = to_input(x_all[idx])
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        return channels_last(x)  # a decoder's HWC layout, one channel included

    try:
        return _train_loop(model, len(x_all), labels, make_batch, epochs=epochs, batch_size=batch_size, lr=lr,
                           weight_decay=weight_decay, seed=seed, progress=progress, name="spatial",
                           max_steps=max_steps)
    finally:
        model.to(memory_format=torch.contiguous_format)


def train_jpeg(jpeg_model: nn.Module, plain: jpeg_io.JpegBatch, flipped: jpeg_io.JpegBatch | None,
               labels: np.ndarray, *, epochs: int, batch_size: int = DEFAULT_BATCH, lr: float = DEFAULT_LR,
               weight_decay: float = DEFAULT_WEIGHT_DECAY, seed: int = 0, progress: Progress | None = None,
               name: str = "jpeg", max_steps: int | None = None) -> dict:
    """Train a JPEG-domain model in place on JPEG-compressed images: ``plain``, and ``flipped`` (the
    horizontally flipped images, compressed; ``None``: no flips) chosen per image at random, as
    :func:`train_spatial` flips pixels. Same recipe and return value as :func:`train_spatial`."""

    def make_batch(idx: torch.Tensor, flip: torch.Tensor) -> jpeg_io.JpegBatch:
        a = take(plain, idx)
        return a if flipped is None else select(flip, take(flipped, idx), a)

    return _train_loop(jpeg_model, plain.batch_size, labels, make_batch, epochs=epochs, batch_size=batch_size,
                       lr=lr, weight_decay=weight_decay, seed=seed, progress=progress, name=name,
                       max_steps=max_steps)


@torch.no_grad()
def predict_spatial(model: nn.Module, images_u8: np.ndarray, batch_size: int = 1000) -> torch.Tensor:
    """Logits of ``model`` (eval mode) on uint8 ``(N, C, H, W)`` images (input ``pixels / 255``)."""
    model.eval()
    x = torch.from_numpy(np.ascontiguousarray(images_u8))
    return torch.cat([model(to_input(x[i:i + batch_size])) for i in range(0, len(x), batch_size)])


@torch.no_grad()
def predict_jpeg(jpeg_model: nn.Module, batch: jpeg_io.JpegBatch, batch_size: int = 500) -> torch.Tensor:
    """Logits of a JPEG-domain model (eval mode) on a :class:`~jpegfx.jpeg.JpegBatch`."""
    jpeg_model.eval()
    n = batch.batch_size
    return torch.cat([jpeg_model(take(batch, torch.arange(i, min(i + batch_size, n))))
                      for i in range(0, n, batch_size)])


def accuracy(logits: torch.Tensor, labels: np.ndarray) -> float:
    """Top-1 accuracy of ``logits`` against integer ``labels``."""
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    return int((logits.argmax(1) == y).sum()) / len(y)
