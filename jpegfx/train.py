"""Training and fine-tuning in the JPEG domain, on folders of JPEG files, in one or many processes.

:func:`fit` takes a *spatial* model, converts it in train mode (``jpegfx.convert`` keeps the spatial
kernels, BN weights and linear layers as the trainable parameters and builds every JPEG-domain map
from them, differentiably; BN computes batch statistics from DC and Parseval), and trains it on a
:class:`~jpegfx.data.JpegFolder` read as coefficients — never decoded. What comes out:

* the trained weights as the spatial model's own ``state_dict`` (loaded into ``model`` in place and
  written to ``out_dir/model.pt``): the converted network keeps the spatial module names, so its
  parameters and buffers map back name for name; before anything is written the spatial model with
  those weights is converted again (same ReLU mode) and run against the trained JPEG-domain model on
  a training batch in float64, and a mismatch raises :class:`~jpegfx.errors.ConversionError` instead
  of saving weights that compute something else (the per-epoch checkpoint keeps the trained model);
* a checkpoint per epoch (``out_dir/checkpoint.pt``: model, optimiser, schedule, epoch; read back
  with ``weights_only=True``), from which ``resume=True`` continues;
* a log of loss, accuracy, learning rate and images per second per epoch (``log.csv``, ``log.json``);
* optionally the trained model converted for inference (eval mode) and exported to ONNX
  (``model.onnx``), with the evaluation policy as its preprocessing.

**Scale-out** uses PyTorch's own engine: run the same code under ``torchrun`` and :func:`fit` joins
the process group (gloo on CPU, NCCL on GPUs), wraps the model in ``DistributedDataParallel`` and
shards every epoch with a ``DistributedSampler``. ``batch_size`` is the *global* batch (each of the
``world`` processes takes ``batch_size / world``); DDP averages the processes' gradients, so one
step equals one step on the whole batch in one process when the network's outputs do not depend on
the rest of the batch — true with ``freeze_bn`` (BN uses its running statistics, as usual when
fine-tuning); in train-mode BN each process normalises its own share, as ``nn.BatchNorm2d`` does
under DDP. One process also draws its batches through a ``DistributedSampler`` (of one replica), so
the order of samples is the same for every process count; the augmentations of an item depend only
on (seed, epoch, index) (:mod:`jpegfx.data.dataset`).

The library logs; ``progress(epoch, step, steps, loss)`` is called after every step for a caller that
draws a progress bar (``jpegfx train`` does).
"""
from __future__ import annotations

import copy
import csv
import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from jpegfx import jpeg as jpeg_io
from jpegfx.convert import JpegModel, convert
from jpegfx.data.dataset import Collate, JpegFolder, RandomCrop
from jpegfx.errors import ConversionError, JpegfxError, UsageError
from jpegfx.preprocess import Policy
from jpegfx.transforms import MAX_FREQUENCIES

log = logging.getLogger(__name__)

__all__ = ["TrainOptions", "FitResult", "fit", "evaluate", "spatial_state_dict", "make_optimizer",
           "make_schedule", "make_loader", "OPTIMIZERS", "SCHEDULES"]

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "onecycle", "constant")
CHECKPOINT = "checkpoint.pt"
WEIGHTS = "model.pt"
LOG_FIELDS = ("epoch", "steps", "lr", "train_loss", "train_top1", "val_loss", "val_top1", "images_per_s", "seconds")


@dataclass
class TrainOptions:
    """How to train. ``batch_size`` is the global batch (split over ``torchrun``'s processes);
    ``schedule``: "cosine" (linear warm-up for ``warmup_epochs``, then cosine to 0), "onecycle"
    (PyTorch's ``OneCycleLR`` with ``lr`` as its peak) or "constant"; ``freeze_bn`` runs every BN
    layer on its running statistics (its affine weights still learn); ``max_steps`` stops early
    (smoke runs, tests); ``amp`` runs forward and loss under bfloat16 autocast (CUDA or CPU; batch
    statistics of the JPEG-domain normalisation layers stay in float32, the weights and the optimiser
    in the model's dtype); ``check_files`` reads every file's header before the first step
    (:meth:`~jpegfx.data.JpegFolder.check`; it reads each file once, about an epoch's I/O without the
    compute)."""

    epochs: int = 1
    batch_size: int = 32
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    freeze_bn: bool = False
    workers: int = 0
    seed: int = 0
    max_steps: int | None = None
    amp: bool = False
    check_files: bool = True

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise UsageError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise UsageError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise UsageError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.lr <= 0 or self.weight_decay < 0 or not 0 <= self.momentum < 1 or self.workers < 0:
            raise UsageError("lr must be > 0, weight_decay >= 0, momentum in [0, 1) and workers >= 0")
        if not 0 <= self.label_smoothing < 1 or self.warmup_epochs < 0:
            raise UsageError("label_smoothing must be in [0, 1) and warmup_epochs >= 0")

    @classmethod
    def from_dict(cls, values: dict) -> "TrainOptions":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})


@dataclass
class FitResult:
    """``model``: the spatial model with the trained weights (the caller's, updated in place);
    ``jpeg_model``: the JPEG-domain model they were trained in; ``history``: one dict per epoch
    (:data:`LOG_FIELDS`); ``files``: what was written, by kind."""

    model: nn.Module
    jpeg_model: JpegModel
    history: list[dict] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _World:
    rank: int
    size: int
    device: torch.device
    owned: bool  # this call created the process group and destroys it at the end

    @property
    def main(self) -> bool:
        return self.rank == 0


def _join_world(device: str | None) -> _World:
    """The process group ``torchrun`` describes in the environment (``WORLD_SIZE`` > 1), joined here
    unless the caller already did; one process otherwise."""
    if device is not None and device.split(":")[0] == "cuda" and not torch.cuda.is_available():
        raise UsageError("device cuda: this torch has no CUDA device available")
    owned = False
    if not dist.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        backend = "nccl" if torch.cuda.is_available() and device != "cpu" else "gloo"
        dist.init_process_group(backend)
        owned = True
    rank, size = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    return _World(rank, size, torch.device(device), owned)


def _fits(size: tuple[int, int], policy: Policy | None) -> Callable:
    """``header -> problem | None``: whether a file reaches the network's input. With a policy, its
    header must let the policy bring it to ``size`` (a :class:`~jpegfx.data.RandomCrop` keeps crops the
    policy can scale through its ``min_side``); without one, every file must be ``size`` and share the
    first file's chroma layout, to stack into one batch."""
    first: list = []

    def fits(header) -> str | None:
        if policy is not None:
            try:
                _, region = policy.window(header.size)
            except JpegfxError as exc:
                return str(exc)
            return None if (region[2], region[3]) == tuple(size) else (
                f"gives {region[2]}x{region[3]} under the policy ({policy.describe()}), the network trains at "
                f"{size[0]}x{size[1]}")
        if tuple(header.size) != tuple(size):
            return (f"image {header.size[0]}x{header.size[1]}, the network trains at {size[0]}x{size[1]}: bring the "
                    "files to that size with a policy (--resize)")
        if not first:
            first.append(header.layout)
        if header.layout != first[0]:
            return (f"chroma layout {header.subsampling} differs from the first file's; files of one size and layout "
                    "stack into a batch: give a policy (--resize) to mix layouts")
        return None

    return fits


# --------------------------------------------------------------------------------------------
# Building blocks (public so that a spatial twin can be trained the same way)
# --------------------------------------------------------------------------------------------
def make_loader(data: JpegFolder, collate: Collate, options: TrainOptions, *, rank: int = 0, world: int = 1,
                train: bool = True) -> torch.utils.data.DataLoader:
    """Batches of ``options.batch_size / world`` for process ``rank``: shuffled by a
    ``DistributedSampler`` (seeded; call ``loader.sampler.set_epoch``) and dropping the last
    incomplete batch when ``train``; in order, every item once, otherwise."""
    if options.batch_size % world:
        raise UsageError(f"the batch size {options.batch_size} is not a multiple of the {world} processes")
    local = options.batch_size // world
    if train:
        sampler = torch.utils.data.distributed.DistributedSampler(data, num_replicas=world, rank=rank, shuffle=True,
                                                                  seed=options.seed, drop_last=False)
    else:
        sampler = torch.utils.data.SequentialSampler(data)
    return torch.utils.data.DataLoader(data, batch_size=local, sampler=sampler, num_workers=options.workers,
                                       collate_fn=collate, drop_last=train, persistent_workers=False)


def make_optimizer(model: nn.Module, options: TrainOptions) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if options.optimizer == "sgd":
        return torch.optim.SGD(params, lr=options.lr, momentum=options.momentum, weight_decay=options.weight_decay,
                               nesterov=options.momentum > 0)
    return torch.optim.AdamW(params, lr=options.lr, weight_decay=options.weight_decay)


def make_schedule(optimizer: torch.optim.Optimizer, options: TrainOptions, steps_per_epoch: int):
    total = max(1, options.epochs * steps_per_epoch)
    if options.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=options.lr, total_steps=total)
    if options.schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, _Constant())
    return torch.optim.lr_scheduler.LambdaLR(optimizer, _WarmupCosine(int(options.warmup_epochs * steps_per_epoch), total))


class _Constant:
    def __call__(self, step: int) -> float:
        return 1.0


@dataclass(frozen=True)
class _WarmupCosine:
    warmup: int
    total: int

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        progress = (step - self.warmup) / max(1, self.total - self.warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def _batchnorms(model: nn.Module) -> list[nn.Module]:
    from jpegfx.ops.batchnorm import JpegBatchNorm2d

    return [m for m in model.modules() if isinstance(m, (nn.modules.batchnorm._BatchNorm, JpegBatchNorm2d))]


def _set_mode(model: nn.Module, training: bool, freeze_bn: bool) -> None:
    model.train(training)
    if training and freeze_bn:
        for bn in _batchnorms(model):
            bn.eval()


# --------------------------------------------------------------------------------------------
# Weights back to the spatial model
# --------------------------------------------------------------------------------------------
def spatial_state_dict(jpeg_model: JpegModel, model: nn.Module) -> dict[str, torch.Tensor]:
    """The JPEG-domain model's parameters and buffers under ``model``'s ``state_dict`` names (detached
    copies on the CPU). The converted network keeps the spatial module paths; a name it does not have
    or a shape that differs raises :class:`~jpegfx.errors.ConversionError` listing every one."""
    ours = jpeg_model.network.state_dict()
    out, problems = {}, []
    for name, value in model.state_dict().items():
        mine = ours.get(name)
        if mine is None:
            problems.append(f"{name} (not in the converted model)")
        elif mine.shape != value.shape:
            problems.append(f"{name} (shape {tuple(mine.shape)} vs {tuple(value.shape)})")
        else:
            out[name] = mine.detach().to("cpu", value.dtype).clone()
    if problems:
        raise ConversionError("the trained weights do not map back to the spatial model: " + "; ".join(problems))
    return out


CHECK_BOUND = 1e-7
"""Relative logit difference, in float64, allowed between the trained JPEG-domain model and the model
converted again from the saved spatial weights: rounding only (a weight in the wrong place is O(1))."""


def _check_weights(jpeg_model: JpegModel, model: nn.Module, x, domains: str) -> float:
    """Convert ``model`` (the spatial model with the trained weights) again with the JPEG-domain model's
    options and compare the two on ``x``, in eval mode and float64 (copies): the saved weights must give
    back the trained model, in every ReLU mode. In exact mode the conversion's own self-check also
    compares the spatial model itself. :class:`ConversionError` otherwise."""
    trained = copy.deepcopy(jpeg_model).double().eval()
    again = _convert_like(copy.deepcopy(model).double(), jpeg_model, domains)
    if isinstance(x, jpeg_io.JpegBatch):
        again.to(x.components[0].coefficients.device)
    else:
        x = x.double()
        again.to(x.device)
    with torch.no_grad():
        ours, theirs = trained(x).cpu(), again(x).cpu()
    rel = float((ours - theirs).abs().max() / theirs.abs().max().clamp_min(1e-30))
    if rel > CHECK_BOUND:
        raise ConversionError(f"the saved spatial weights do not give back the trained JPEG-domain model (max relative "
                              f"difference {rel:.2e} > {CHECK_BOUND:.0e} in float64); model.pt was not written")
    log.info("the spatial weights give back the trained model: max relative difference %.1e (float64)", rel)
    return rel


# --------------------------------------------------------------------------------------------
# Evaluation and training
# --------------------------------------------------------------------------------------------
def evaluate(jpeg_model: nn.Module, data: JpegFolder, collate: Collate, *, batch_size: int = 64,
             workers: int = 0, device: torch.device | str = "cpu") -> tuple[float, float, int]:
    """``(mean loss, top-1 accuracy, images)`` of ``jpeg_model`` in eval mode over ``data``."""
    loader = make_loader(data, collate, TrainOptions(batch_size=batch_size, workers=workers), train=False)
    was = jpeg_model.training
    jpeg_model.eval()
    loss = correct = count = 0.0
    try:
        with torch.no_grad():
            for x, labels in loader:
                logits = jpeg_model(x.to(device)).float().cpu()
                loss += float(F.cross_entropy(logits, labels, reduction="sum"))
                correct += int((logits.argmax(1) == labels).sum())
                count += len(labels)
    finally:
        jpeg_model.train(was)
    return loss / max(count, 1), correct / max(count, 1), int(count)


def fit(model: nn.Module, train_data: JpegFolder, *, input_size: tuple[int, int] | int,
        relu: str = "exact", frequencies: int = MAX_FREQUENCIES, normalize=None, policy: Policy | None = None,
        val_data: JpegFolder | None = None, val_policy: Policy | None = None,
        options: TrainOptions | None = None, out_dir: str | os.PathLike | None = None, resume: bool = False,
        onnx: bool = False, device: str | None = None, domains: str = "pixels",
        progress: Callable[[int, int, int, float], None] | None = None) -> FitResult:
    """Train ``model`` in the JPEG domain on ``train_data`` (see the module docstring).

    ``input_size``: the network's input size — the files' own size without ``policy``, else the
    policy's crop. ``relu``/``frequencies``: the activation mode the network trains with ("exact",
    "asm", "apx", k = 1 … 15). ``normalize``: the spatial model's input normalisation ("imagenet",
    ``(mean, std)`` or ``None`` for ``x/255``). ``val_policy`` defaults to ``policy`` without
    randomness (the collate applies no augmentation; ``val_data`` should have none). ``domains``: where
    values live between ops (:func:`jpegfx.convert`): "pixels" (default) runs every op on pixels
    after one inverse DCT of the input except the approximate ReLUs, which stay on coefficients — the
    same function and gradients as "jpeg" (the paper's all-coefficient graph), several times faster.
    """
    options = options or TrainOptions()
    if not isinstance(model, nn.Module):
        raise UsageError(f"fit needs a torch.nn.Module, got {type(model).__name__}")
    size = (input_size, input_size) if isinstance(input_size, int) else tuple(int(s) for s in input_size)
    if policy is not None and policy.crop is not None and tuple(policy.crop) != size:
        raise UsageError(f"the policy crops {policy.crop[0]}x{policy.crop[1]}, the network trains at {size[0]}x{size[1]}")
    if val_data is not None and max((label for _, label in val_data.samples), default=0) >= len(train_data.classes):
        raise UsageError(f"the validation data has a label beyond the training data's {len(train_data.classes)} classes")
    if policy is None and any(isinstance(op, RandomCrop) for op in getattr(train_data, "augment", ())):
        raise UsageError("a random crop changes the image size: give a policy that brings each crop to the input size")
    out = Path(out_dir) if out_dir is not None else None
    if resume and (out is None or not (out / CHECKPOINT).exists()):
        raise UsageError(f"{out / CHECKPOINT if out else 'resume'}: no checkpoint to resume from (resume needs the "
                         "output folder of the run to continue)")
    world = _join_world(device)
    try:
        return _fit(model, train_data, size, relu, frequencies, normalize, policy, val_data,
                    val_policy if val_policy is not None else policy, options, out, resume, onnx, world, progress,
                    domains)
    finally:
        if world.owned:
            dist.destroy_process_group()


def _fit(model, train_data, size, relu, frequencies, normalize, policy, val_data, val_policy, options, out, resume,
         onnx, world, progress, domains) -> FitResult:
    torch.manual_seed(options.seed)
    start = time.perf_counter()
    jpeg_model = convert(copy.deepcopy(model).train(), size, relu=relu, frequencies=frequencies, normalize=normalize,
                         any_size=False, domains=domains)
    log.info("converted %s for training at %dx%d in %.1f s", type(model).__name__, *size, time.perf_counter() - start)
    jpeg_model.to(world.device)
    for data, data_policy in ((train_data, policy), (val_data, val_policy)):
        if data is not None and options.check_files:
            data.check(_fits(size, data_policy))
    collate = Collate.for_model(jpeg_model, policy)
    val_collate = Collate.for_model(jpeg_model, val_policy)
    loader = make_loader(train_data, collate, options, rank=world.rank, world=world.size)
    if len(loader) == 0:
        raise UsageError(f"{len(train_data)} training files do not fill one batch of {options.batch_size}")
    net: nn.Module = jpeg_model
    if world.size > 1:
        net = nn.parallel.DistributedDataParallel(
            jpeg_model, device_ids=[world.device.index] if world.device.type == "cuda" else None)
    optimizer = make_optimizer(jpeg_model, options)
    schedule = make_schedule(optimizer, options, len(loader))
    history: list[dict] = []
    first_epoch = 0
    if out is not None and world.main:
        out.mkdir(parents=True, exist_ok=True)
    if resume:
        first_epoch, history = _load_checkpoint(out, jpeg_model, optimizer, schedule, options)
    step = first_epoch * len(loader)
    sample = None
    for epoch in range(first_epoch, options.epochs):
        if options.max_steps is not None and step >= options.max_steps:
            break
        train_data.set_epoch(epoch)
        loader.sampler.set_epoch(epoch)
        _set_mode(jpeg_model, True, options.freeze_bn)
        began, seen, loss_sum, correct, batches = time.perf_counter(), 0, 0.0, 0, 0
        for x, labels in loader:
            if options.max_steps is not None and step >= options.max_steps:
                break
            if sample is None:
                sample = x
                if isinstance(x, jpeg_io.JpegBatch) and tuple(x.size) != size:
                    raise UsageError(f"the training files are {x.size[0]}x{x.size[1]}, the network trains at "
                                     f"{size[0]}x{size[1]}: bring them to that size with a policy (--resize)")
            x, labels = x.to(world.device), labels.to(world.device)
            with torch.autocast(world.device.type, dtype=torch.bfloat16, enabled=options.amp):
                logits = net(x)
                if logits.dim() != 2 or logits.shape[1] != len(train_data.classes):
                    raise UsageError(f"the model gives {tuple(logits.shape[1:])} outputs per image, the training data "
                                     f"has {len(train_data.classes)} classes: give the model one output per class")
                loss = F.cross_entropy(logits, labels, label_smoothing=options.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            step += 1
            batches += 1
            seen += len(labels)
            loss_sum += loss.item() * len(labels)
            correct += int((logits.detach().argmax(1) == labels).sum())
            if progress is not None and world.main:
                progress(epoch, batches, len(loader), loss.item())
        seconds = time.perf_counter() - began
        if batches < len(loader):  # stopped by max_steps: no checkpoint of a partial epoch
            log.info("stopped after %d of epoch %d's %d steps (max_steps)", batches, epoch + 1, len(loader))
            break
        row = {"epoch": epoch + 1, "steps": step, "lr": optimizer.param_groups[0]["lr"],
               "train_loss": loss_sum / max(seen, 1), "train_top1": correct / max(seen, 1),
               "val_loss": None, "val_top1": None, "images_per_s": seen * world.size / max(seconds, 1e-9),
               "seconds": seconds}
        if val_data is not None and world.main:
            row["val_loss"], row["val_top1"], _ = evaluate(jpeg_model, val_data, val_collate,
                                                           batch_size=options.batch_size, workers=options.workers,
                                                           device=world.device)
        history.append(row)
        log.info("epoch %d: loss %.4f, top-1 %.4f, val top-1 %s, %.0f images/s", row["epoch"], row["train_loss"],
                 row["train_top1"], "-" if row["val_top1"] is None else f"{row['val_top1']:.4f}", row["images_per_s"])
        if out is not None and world.main:
            _save_checkpoint(out, jpeg_model, optimizer, schedule, epoch + 1, history, options)
            _write_log(out, history)
        if world.size > 1:
            dist.barrier()
    result = FitResult(model, jpeg_model, history)
    if world.main:
        state = spatial_state_dict(jpeg_model, model)
        trained = copy.deepcopy(model).to(world.device)
        trained.load_state_dict(state, strict=True)
        if sample is not None:
            _check_weights(jpeg_model, trained, sample.to(world.device), domains)
        model.load_state_dict(state, strict=True)
        if out is not None:
            torch.save(state, out / WEIGHTS)
            result.files["weights"] = str(out / WEIGHTS)
            for kind, name in (("checkpoint", CHECKPOINT), ("log", "log.csv")):
                if (out / name).exists():  # none when max_steps stopped the first epoch
                    result.files[kind] = str(out / name)
            if onnx:
                result.files["onnx"] = _export(model, jpeg_model, val_policy, out, domains)
    if world.size > 1:
        dist.barrier()
    return result


def _convert_like(model: nn.Module, jpeg_model: JpegModel, domains: str) -> JpegModel:
    """``model`` (a copy of the spatial model) converted in eval mode with ``jpeg_model``'s options."""
    spec = jpeg_model.spec
    return convert(model.eval(), tuple(spec.input_size), relu=spec.relu, frequencies=spec.frequencies,
                   normalize=spec.normalize, upsampling=spec.upsampling, in_channels=spec.channels, any_size=False,
                   domains=domains)


def _export(model: nn.Module, jpeg_model: JpegModel, policy: Policy | None, out: Path, domains: str) -> str:
    from jpegfx.export import export_onnx

    inference = _convert_like(copy.deepcopy(model).cpu(), jpeg_model, domains)
    path = out / "model.onnx"
    export_onnx(inference, path, preprocess=policy)
    return str(path)


def _save_checkpoint(out: Path, jpeg_model, optimizer, schedule, epochs_done: int, history, options) -> None:
    state = {"model": jpeg_model.state_dict(), "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
             "epoch": epochs_done, "history": json.dumps(history), "options": json.dumps(asdict(options))}
    tmp = out / (CHECKPOINT + ".tmp")
    torch.save(state, tmp)
    tmp.replace(out / CHECKPOINT)  # a run killed while writing keeps the previous checkpoint


def _load_checkpoint(out: Path, jpeg_model, optimizer, schedule, options) -> tuple[int, list[dict]]:
    path = out / CHECKPOINT
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        jpeg_model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        saved = TrainOptions.from_dict(json.loads(state["options"]))
        history = json.loads(state["history"])
        epoch = int(state["epoch"])
    except (KeyError, ValueError, RuntimeError, TypeError) as exc:
        raise UsageError(f"{path}: not a checkpoint of this model ({str(exc).splitlines()[0]})") from None
    changed = [f.name for f in fields(TrainOptions)
               if f.name not in ("workers", "max_steps", "check_files")  # epochs: the schedule spans them
               and getattr(saved, f.name) != getattr(options, f.name)]
    if changed:
        raise UsageError(f"{path}: the run was started with other options ({', '.join(changed)}); "
                         "resume with the same ones")
    log.info("resuming after epoch %d from %s", epoch, path)
    return epoch, history


def _write_log(out: Path, history: list[dict]) -> None:
    with open(out / "log.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=LOG_FIELDS)
        writer.writeheader()
        writer.writerows(history)
    (out / "log.json").write_text(json.dumps(history, indent=2) + "\n")
