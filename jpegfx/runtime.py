"""``jpegfx.runtime``: run an exported JPEG model (:func:`jpegfx.export.export_onnx`) with onnxruntime.

::

    session = Session("resnet18_jpeg.onnx")
    predictions = session.predict(["cat.jpg", "dog.jpg"], top_k=5)
    best = {p.path: p.labels[0] if p.labels else p.top1 for p in predictions}

Files are read with :func:`jpegfx.jpeg.read_jpeg` (no decode: the quantised coefficients and tables go
straight into the model) and checked against the model's spec before they are batched: image size,
gray vs colour, and the chroma layout — a model exported for one layout takes only that layout
(re-export for another). Every error is one line that names the file.

A :class:`Session` holds no per-call state: ``run``/``predict`` may be called from several threads at
once (onnxruntime's ``InferenceSession.run`` is thread-safe; :func:`~jpegfx.jpeg.read_jpeg` serialises
its libjpeg calls internally).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Union

import numpy as np

from jpegfx import jpeg as jpeg_io
from jpegfx.export import OnnxSpec, input_names, sampling_ratios, spec_from_metadata
from jpegfx.jpeg import JpegBatch, JpegError

log = logging.getLogger(__name__)

__all__ = ["Prediction", "Session", "default_providers"]

PathLike = Union[str, "os.PathLike[str]"]
_EXPORTABLE = ("4:4:4", "4:2:2", "4:2:0", "4:4:0")  # layouts export_onnx accepts besides "gray"


@dataclass(frozen=True)
class Prediction:
    """One file's result. ``indices``/``scores``: the top-k classes and their softmax probabilities,
    best first; ``labels``: their class names when the model has them. With ``on_error="skip"`` a file
    that could not be used has ``error`` (one line) and empty ``indices``/``scores``."""

    path: str
    indices: tuple[int, ...]
    scores: tuple[float, ...]
    labels: tuple[str, ...] | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def top1(self) -> int | None:
        return self.indices[0] if self.indices else None


def default_providers() -> list[str]:
    """``CUDAExecutionProvider`` first when this onnxruntime build has it, then the CPU provider."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    return (["CUDAExecutionProvider"] if "CUDAExecutionProvider" in available else []) + ["CPUExecutionProvider"]


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class Session:
    """An exported JPEG model in onnxruntime.

    ``path``: an ``.onnx`` file written by :func:`jpegfx.export.export_onnx` (``ValueError`` for a file
    without jpegfx metadata or one onnxruntime cannot load). ``providers``: onnxruntime execution
    providers in order of preference (default :func:`default_providers`). ``intra_op_threads``: the
    size of onnxruntime's intra-op thread pool (default: onnxruntime's choice).
    """

    def __init__(self, path: PathLike, providers: Sequence[str] | None = None,
                 intra_op_threads: int | None = None) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        options = ort.SessionOptions()
        if intra_op_threads is not None:
            if intra_op_threads < 1:
                raise ValueError(f"intra_op_threads must be positive, got {intra_op_threads}")
            options.intra_op_num_threads = int(intra_op_threads)
        providers = list(providers) if providers is not None else default_providers()
        if not self.path.is_file():
            raise ValueError(f"{self.path}: no such file")
        try:
            self._session = ort.InferenceSession(os.fspath(self.path), sess_options=options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types (InvalidProtobuf, Fail, ...)
            raise ValueError(f"{self.path}: onnxruntime cannot load it: {_one_line(exc)}") from None
        meta = self._session.get_modelmeta().custom_metadata_map
        self.spec: OnnxSpec = spec_from_metadata(meta, str(self.path))
        graph_inputs = tuple(i.name for i in self._session.get_inputs())
        known = set(input_names(self.spec.color_space))
        if set(graph_inputs) - known:
            raise ValueError(f"{self.path}: unexpected ONNX inputs {sorted(set(graph_inputs) - known)} "
                             f"for a {self.spec.color_space} model")
        self._inputs = graph_inputs
        self._output = self._session.get_outputs()[0].name
        self._ratios = self.spec.ratios()
        log.info("loaded %s (%s %s, %s) with %s", self.path, self.spec.size_text, self.spec.layout,
                 "no class names" if self.spec.class_names is None else f"{len(self.spec.class_names)} classes",
                 self.providers)

    @property
    def providers(self) -> list[str]:
        """The execution providers onnxruntime actually uses."""
        return self._session.get_providers()

    @property
    def class_names(self) -> tuple[str, ...] | None:
        return self.spec.class_names

    def __repr__(self) -> str:
        return f"Session({str(self.path)!r}, {self.spec.size_text} {self.spec.layout}, providers={self.providers})"

    # -- checking ----------------------------------------------------------------------------
    def check(self, batch_or_path: JpegBatch | PathLike, name: str | None = None) -> JpegBatch:
        """Validate a batch (or read and validate a file) against the model's spec; returns the batch.

        Raises :class:`~jpegfx.jpeg.JpegError` (a ``ValueError``) with one line that starts with the
        file name (``name``, or the path) for an unreadable file, a size other than the model's, gray
        vs colour, or a different chroma layout.
        """
        if isinstance(batch_or_path, JpegBatch):
            batch = batch_or_path
        else:
            batch = jpeg_io.read_jpeg(batch_or_path)  # its errors already name the file
            if name is None and isinstance(batch_or_path, (str, os.PathLike)):
                name = os.fspath(batch_or_path)
        problem = self._mismatch(batch)
        if problem is not None:
            raise JpegError(f"{name}: {problem}" if name else problem)
        return batch

    def _mismatch(self, batch: JpegBatch) -> str | None:
        spec = self.spec
        if tuple(batch.size) != tuple(spec.input_size):
            return (f"image size {batch.size[0]}x{batch.size[1]} does not match the model's {spec.size_text} "
                    "(resize the image, or export a model for this size)")
        if batch.color_space != spec.color_space:
            if spec.color_space == "gray":
                hint = (f"re-export with subsampling='{batch.subsampling}'" if batch.subsampling in _EXPORTABLE
                        else "convert the image to grayscale")
                return f"colour JPEG (YCbCr {batch.subsampling}) does not match the model's grayscale input; {hint}"
            return (f"grayscale JPEG does not match the model's colour input (YCbCr {spec.subsampling}); "
                    "re-export with subsampling='gray' or convert the image to colour")
        ratios = sampling_ratios([c.sampling for c in batch.components])
        if ratios != self._ratios:
            if batch.subsampling in _EXPORTABLE:
                hint = f"re-export with subsampling='{batch.subsampling}' or re-encode the image as {spec.subsampling}"
            else:
                hint = f"re-encode the image as {spec.subsampling}"
            return (f"subsampling {batch.subsampling} does not match the model's {spec.subsampling} "
                    f"(a model takes only the layout it was exported for); {hint}")
        return None

    # -- running -----------------------------------------------------------------------------
    def _feed(self, batch: JpegBatch) -> dict[str, np.ndarray]:
        names = input_names(batch.color_space)
        k = len(batch.components)
        arrays = {}
        for i, c in enumerate(batch.components):
            arrays[names[i]] = c.coefficients
            arrays[names[k + i]] = c.qtable
        dtypes = {n: (np.int32 if n.endswith("_qtable") else np.int16) for n in names}
        return {n: np.ascontiguousarray(arrays[n].numpy(), dtype=dtypes[n]) for n in self._inputs}

    def run(self, batch: JpegBatch) -> np.ndarray:
        """The model's first output (logits) for a checked batch, as a numpy array."""
        self.check(batch)
        return self._session.run([self._output], self._feed(batch))[0]

    def predict(self, paths: Sequence[PathLike], batch_size: int = 32, top_k: int = 5,
                on_error: str = "raise") -> list[Prediction]:
        """Top-``top_k`` classes (softmax probabilities) for each JPEG file, in the order given.

        Files are read, checked and run ``batch_size`` at a time. ``on_error="raise"`` (default): the
        first file that cannot be read or does not fit the model raises its one-line
        :class:`~jpegfx.jpeg.JpegError` (naming the file). ``on_error="skip"``: such a file is logged
        as a warning and gets a :class:`Prediction` with ``error`` set; the others are still run.
        """
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        if batch_size < 1 or top_k < 1:
            raise ValueError(f"batch_size and top_k must be positive, got {batch_size} and {top_k}")
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        paths = [os.fspath(p) for p in paths]
        results: list[Prediction] = []
        for start in range(0, len(paths), batch_size):
            chunk = paths[start:start + batch_size]
            good: list[tuple[int, JpegBatch]] = []
            slots: list[Prediction | None] = []
            for p in chunk:
                try:
                    good.append((len(slots), self.check(p)))
                    slots.append(None)
                except (JpegError, ValueError, OSError) as exc:
                    if on_error == "raise":
                        raise
                    message = _one_line(exc)
                    log.warning("skipping %s", message if message.startswith(p) else f"{p}: {message}")
                    slots.append(Prediction(p, (), (), None, message))
            if good:
                logits = self.run(jpeg_io.stack([b for _, b in good]))
                if logits.ndim != 2:
                    raise ValueError(f"{self.path}: predict needs (N, classes) logits, the model gives "
                                     f"shape {logits.shape}")
                probs = _softmax(logits)
                k = min(top_k, probs.shape[1])
                order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
                for row, (slot, _) in enumerate(good):
                    idx = tuple(int(i) for i in order[row])
                    labels = None if self.class_names is None else tuple(self.class_names[i] for i in idx)
                    slots[slot] = Prediction(chunk[slot], idx, tuple(float(probs[row, i]) for i in idx), labels)
            results.extend(slots)  # type: ignore[arg-type]
        return results
