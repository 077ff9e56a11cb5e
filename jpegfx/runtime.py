"""``jpegfx.runtime``: run an exported JPEG model (:func:`jpegfx.export.export_onnx`) with onnxruntime.

::

    session = Session("resnet18_jpeg.onnx")
    predictions = session.predict(["cat.jpg", "dog.jpg"], top_k=5)
    best = {p.path: p.labels[0] if p.labels else p.top1 for p in predictions}

Serving needs numpy and onnxruntime only (no torch). Each file is read once; its header is checked
against the model's spec — image size, gray vs colour, and the chroma layout (a model exported for one
layout takes only that layout; re-export for another) — before its scans are decoded by
:func:`jpegfx.reader.read_coefficients` (no pixel decode: the quantised coefficients and tables go
straight into the model). Every error is one line that names the file.

A model exported with a preprocessing policy (``export_onnx(..., preprocess=Policy(...))``) takes
photos of any size and chroma layout, gray or colour: each file is scaled by N/8 and centre-cropped to
the model's size in its coefficients (:mod:`jpegfx.preprocess`, numpy) and the network runs on the
result; only files the policy cannot bring to the model's size (too small) are refused, from the header.
A file that takes ``pixels`` and whose policy does not crop runs each photo at the size the policy
scales it to: files of one output size run as one batch.

A :class:`Session` holds no per-call state: ``run``/``predict`` may be called from several threads at
once (onnxruntime's ``InferenceSession.run`` is thread-safe, and so is the reader, which releases the
GIL while libjpeg runs).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Iterator, Sequence, Union

import numpy as np

from jpegfx import preprocess, reader
from jpegfx.errors import JpegError, JpegfxError, UsageError
from jpegfx.spec import DCT_INPUT, PIXEL_INPUT, OnnxSpec, input_names, sampling_ratios, spec_from_metadata

if TYPE_CHECKING:  # torch is not needed to serve
    from jpegfx.jpeg import JpegBatch

log = logging.getLogger(__name__)

__all__ = ["Prediction", "Session", "default_providers"]

PathLike = Union[str, "os.PathLike[str]"]
_EXPORTABLE = ("4:4:4", "4:2:2", "4:2:0", "4:4:0")  # layouts export_onnx accepts besides "gray"
CALL_PIXELS = 16_000_000
"""At most this many pixels per image plane in one onnxruntime run of photos at their own size (a file
without a crop): a batch of large photos runs in parts, one photo at least."""
_ONNX_FLOAT = {"float32": "tensor(float)", "float64": "tensor(double)"}
_NUMPY_FLOAT = {"float32": np.float32, "float64": np.float64}


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


def _label(item, index: int) -> str:
    """What a result and its errors call an input: a path as given, a file object's name, else
    ``<bytes #i>`` / ``<file #i>`` (``i``: its position in the call)."""
    if isinstance(item, (str, os.PathLike)):
        return os.fspath(item)
    name = getattr(item, "name", None)
    if isinstance(name, str) and hasattr(item, "read"):
        return name
    return f"<{'file' if hasattr(item, 'read') else 'bytes'} #{index}>"


def _chunks(items: Sequence, policy) -> Iterator[tuple[int, list]]:
    """``(position of the first, items)`` for runs of consecutive files whose outputs under ``policy``
    hold at most :data:`CALL_PIXELS` pixels together (one file at least)."""
    start, held = 0, 0
    for i, c in enumerate(items):
        _, (_, _, h, w) = policy.window(tuple(c.header.size))
        if i > start and held + h * w > CALL_PIXELS:
            yield start, list(items[start:i])
            start, held = i, 0
        held += h * w
    if start < len(items):
        yield start, list(items[start:])


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _ort_errors() -> tuple[type[BaseException], ...]:
    """The exception types onnxruntime raises for a model or a feed it cannot handle."""
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    names = ("Fail", "InvalidArgument", "InvalidGraph", "InvalidProtobuf", "NoSuchFile", "NoModel", "NotFound",
             "NotImplemented", "RuntimeException", "EngineError", "EPFail")
    return tuple(getattr(state, n) for n in names if hasattr(state, n)) + (RuntimeError,)


def _blocks(size: tuple[int, int], samplings: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Per component, its block grid ``(ceil(h_c / 8), ceil(w_c / 8))`` with ``h_c = ceil(h · v / v_max)``."""
    def ceil(a: int, b: int) -> int:
        return -(-a // b)

    vmax = max(v for v, _ in samplings)
    hmax = max(h for _, h in samplings)
    return [(ceil(ceil(size[0] * v, vmax), 8), ceil(ceil(size[1] * h, hmax), 8)) for v, h in samplings]


def _shape_text(shape: Sequence[object]) -> str:
    return "[" + ", ".join(str(d) if isinstance(d, int) else "N" for d in shape) + "]"


class Session:
    """An exported JPEG model in onnxruntime.

    ``path``: an ``.onnx`` file written by :func:`jpegfx.export.export_onnx`. ``providers``:
    onnxruntime execution providers in order of preference (default :func:`default_providers`).
    ``intra_op_threads``: the size of onnxruntime's intra-op thread pool (default: onnxruntime's choice).
    ``session_options``: an ``onnxruntime.SessionOptions`` to start from (graph optimisation level,
    spinning, profiling …; ``intra_op_threads`` overrides its thread count).

    Loading checks the jpegfx metadata against itself and against the graph (input names, element
    types and block grids for the metadata's size and layout, the number of classes against
    ``class_names``). Every problem with the file — missing, not ONNX, no or bad jpegfx metadata,
    metadata that disagrees with the graph, onnxruntime failing to load or run it — raises a one-line
    :class:`~jpegfx.errors.UsageError` (a ``ValueError``) naming the file.
    """

    def __init__(self, path: PathLike, providers: Sequence[str] | None = None,
                 intra_op_threads: int | None = None, session_options=None) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        if session_options is not None and not isinstance(session_options, ort.SessionOptions):
            raise UsageError(f"session_options must be an onnxruntime.SessionOptions, got {type(session_options).__name__}")
        options = session_options if session_options is not None else ort.SessionOptions()
        if intra_op_threads is not None:
            if isinstance(intra_op_threads, bool) or not isinstance(intra_op_threads, int) or intra_op_threads < 1:
                raise UsageError(f"intra_op_threads must be a positive integer, got {intra_op_threads!r}")
            options.intra_op_num_threads = intra_op_threads
        providers = list(providers) if providers is not None else default_providers()
        if self.path.is_dir():
            raise UsageError(f"{self.path}: is a directory, not an ONNX file")
        if not self.path.is_file():
            raise UsageError(f"{self.path}: no such file")
        try:
            self._session = ort.InferenceSession(os.fspath(self.path), sess_options=options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types (InvalidProtobuf, Fail, ...)
            raise UsageError(f"{self.path}: onnxruntime cannot load it: {_one_line(exc)}") from None
        meta = self._session.get_modelmeta().custom_metadata_map
        self.spec: OnnxSpec = spec_from_metadata(meta, str(self.path))
        self._inputs = tuple(i.name for i in self._session.get_inputs())
        self._output = self._session.get_outputs()[0].name
        self._ratios = self.spec.ratios() if self.spec.preprocess is None else None
        self._check_graph()
        log.info("loaded %s (%s %s, %s) with %s", self.path, self.spec.size_text, self.spec.layout,
                 "no class names" if self.spec.class_names is None else f"{len(self.spec.class_names)} classes",
                 self.providers)

    def _check_graph(self) -> None:
        """The graph's inputs and output agree with the metadata (one-line UsageError otherwise)."""
        spec, where = self.spec, f"{self.path}: jpegfx metadata disagrees with the graph"
        if spec.preprocess is not None:
            self._check_dct_input(where)
            self._check_output(where)
            return
        known = input_names(spec.color_space)
        if set(self._inputs) - set(known):
            raise UsageError(f"{where}: unexpected ONNX inputs {sorted(set(self._inputs) - set(known))} "
                             f"for a {spec.color_space} model")
        if set(self._inputs) != set(spec.input_names):
            raise UsageError(f"{where}: input_names {list(spec.input_names)} vs the graph's {list(self._inputs)}")
        components = len(spec.samplings)
        blocks = _blocks(spec.input_size, spec.samplings)
        for node in self._session.get_inputs():
            index = known.index(node.name)
            if index < components:
                want, dtype = [None, *blocks[index], 8, 8], "tensor(int16)"
            else:
                want, dtype = [None, 64], "tensor(int32)"
            shape = list(node.shape)
            fits = len(shape) == len(want) and all(
                w is None or not isinstance(d, int) or d == w for d, w in zip(shape, want))
            if not fits:
                raise UsageError(f"{where}: input {node.name!r} has shape {_shape_text(shape)}, the metadata's "
                                 f"{spec.size_text} {spec.layout} needs {_shape_text(want)}; re-export the model")
            if node.type != dtype:
                raise UsageError(f"{where}: input {node.name!r} is {node.type}, expected {dtype}")
        self._check_output(where)

    def _check_dct_input(self, where: str) -> None:
        """An any-photo file takes one input, ``x`` ``(N, C·64, Hb, Wb)`` or ``pixels`` ``(N, C, H, W)``
        (``H``, ``W`` dynamic without a crop), in the metadata's dtype."""
        spec = self.spec
        nodes = self._session.get_inputs()
        name = spec.input_names[0]
        if [n.name for n in nodes] != [name]:
            raise UsageError(f"{where}: a model with a preprocessing policy takes one input {name!r}, the graph "
                             f"takes {[n.name for n in nodes]}")
        shape = list(nodes[0].shape)
        if spec.pixel_input:
            want = [None, spec.channels, *((None, None) if spec.any_size else spec.input_size)]
            if spec.any_size and any(isinstance(d, int) for d in shape[2:]):
                raise UsageError(f"{where}: input {name!r} has shape {_shape_text(shape)}, a file for photos of any "
                                 "size needs dynamic height and width; re-export the model")
        else:
            want = [None, spec.channels * 64, *(-(-s // 8) for s in spec.input_size)]
        if len(shape) != 4 or any(w is not None and isinstance(d, int) and d != w for d, w in zip(shape, want)):
            raise UsageError(f"{where}: input {name!r} has shape {_shape_text(shape)}, a {spec.channels}-channel "
                             f"{spec.size_text} model needs {_shape_text(want)}; re-export the model")
        dtype = _ONNX_FLOAT.get(spec.dtype)
        if nodes[0].type != dtype:
            raise UsageError(f"{where}: input {name!r} is {nodes[0].type}, expected {dtype} ({spec.dtype})")

    def _check_output(self, where: str) -> None:
        spec = self.spec
        if spec.class_names is not None:
            shape = list(self._session.get_outputs()[0].shape)
            if len(shape) != 2:
                raise UsageError(f"{where}: class_names need (batch, classes) logits, the output has shape "
                                 f"{_shape_text(shape)}")
            if isinstance(shape[1], int) and shape[1] != len(spec.class_names):
                raise UsageError(f"{where}: {len(spec.class_names)} class_names for {shape[1]} classes")

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
    def check(self, item: JpegBatch | reader.Coefficients | PathLike | bytes | BinaryIO, name: str | None = None,
              tolerant: bool = False):
        """Validate a batch or read coefficients, or read and validate a file, against the model's spec.

        A path (or the file's bytes, or a binary file object) is checked from its header first, so a file of the wrong size or
        layout is refused before its scans are decoded; it is then read with
        :func:`jpegfx.reader.read_coefficients` and its :class:`~jpegfx.reader.Coefficients` returned.
        A :class:`~jpegfx.jpeg.JpegBatch` or ``Coefficients`` is returned as given. ``tolerant``: read
        files libjpeg can decode only with warnings (corrupt data becomes zeros), logging the warnings;
        by default any warning refuses the file.

        Raises :class:`~jpegfx.jpeg.JpegError` (a ``ValueError``) with one line that starts with the
        file name (``name``, or the path) for an unreadable file, a size other than the model's, gray
        vs colour, or a different chroma layout. Sampling factors need not equal the model's, only
        their ratios (a gray JPEG with sampling 2x2 reads like one with 1x1).
        """
        if isinstance(item, reader.Coefficients):
            size, color_space, samplings = item.header.layout
        elif hasattr(item, "components") and hasattr(item, "color_space"):  # a JpegBatch (torch)
            if self.spec.preprocess is not None:
                raise UsageError(f"{self.path}: a model with a preprocessing policy reads JPEG files, their bytes or "
                                 "reader.Coefficients, not a JpegBatch")
            size, color_space = item.size, item.color_space
            samplings = tuple(c.sampling for c in item.components)
        else:
            if name is None and isinstance(item, (str, os.PathLike)):
                name = os.fspath(item)
            # Read once (a path or a file object), check the header, then decode.
            data = item if isinstance(item, (bytes, bytearray, memoryview)) else reader.read_bytes(item)
            try:
                header = reader.read_header(data, tolerant=tolerant)
                problem = self._mismatch(*header.layout)
                if problem is not None:
                    raise JpegError(problem)
                return reader.read_coefficients(data, tolerant=tolerant)
            except JpegError as exc:
                raise JpegError(f"{name}: {exc}" if name else str(exc)) from None
        problem = self._mismatch(size, color_space, samplings)
        if problem is not None:
            raise JpegError(f"{name}: {problem}" if name else problem)
        return item

    def _mismatch(self, size, color_space: str, samplings) -> str | None:
        spec = self.spec
        if spec.preprocess is not None:  # any size and layout the policy can bring to the model's size
            try:
                spec.preprocess.window(tuple(size))
            except JpegError as exc:
                return str(exc)
            return None
        subsampling = reader.subsampling_name(color_space, samplings)
        if tuple(size) != tuple(spec.input_size):
            return (f"image size {size[0]}x{size[1]} does not match the model's {spec.size_text} "
                    "(resize the image, or export a model for this size)")
        if color_space != spec.color_space:
            if spec.color_space == "gray":
                hint = (f"re-export with subsampling='{subsampling}'" if subsampling in _EXPORTABLE
                        else "convert the image to grayscale")
                return f"colour JPEG (YCbCr {subsampling}) does not match the model's grayscale input; {hint}"
            return (f"grayscale JPEG does not match the model's colour input (YCbCr {spec.subsampling}); "
                    "re-export with subsampling='gray' or convert the image to colour")
        if sampling_ratios(samplings) != self._ratios:
            detail = f"sampling factors (v, h) {tuple(samplings)} vs the model's {spec.samplings}"
            if subsampling in _EXPORTABLE:
                hint = f"re-export with subsampling='{subsampling}' or re-encode the image as {spec.subsampling}"
            else:
                hint = f"re-encode the image as {spec.subsampling}"
            return (f"subsampling {subsampling} does not match the model's {spec.subsampling} ({detail}; "
                    f"a model takes only the layout it was exported for); {hint}")
        return None

    # -- running -----------------------------------------------------------------------------
    def _feed(self, items) -> dict[str, np.ndarray]:
        """ONNX inputs from a JpegBatch, or from Coefficients of one layout (stacked along N)."""
        spec = self.spec
        if spec.preprocess is not None:
            x = preprocess.model_inputs(items, spec.preprocess, spec.input_size, spec.channels, spec.normalize,
                                        spec.upsampling, _NUMPY_FLOAT.get(spec.dtype, np.float32))
            return {DCT_INPUT: x}
        if hasattr(items, "components"):  # a JpegBatch
            planes = [c.coefficients.numpy() for c in items.components]
            tables = [c.qtable.numpy() for c in items.components]
            color_space = items.color_space
        else:
            layouts = {c.header.layout for c in items}
            if len(layouts) != 1:
                raise JpegError(f"files of different layouts cannot run as one batch: {sorted(map(str, layouts))}")
            planes = [np.stack([c.planes[i] for c in items]) for i in range(len(items[0].planes))]
            tables = [np.stack([c.qtables[i] for c in items]) for i in range(len(items[0].qtables))]
            color_space = items[0].header.color_space
        names = input_names(color_space)
        k = len(planes)
        arrays = {names[i]: planes[i] for i in range(k)} | {names[k + i]: tables[i] for i in range(k)}
        dtypes = {n: (np.int32 if n.endswith("_qtable") else np.int16) for n in names}
        return {n: np.ascontiguousarray(arrays[n], dtype=dtypes[n]) for n in self._inputs}

    def run(self, batch: JpegBatch | reader.Coefficients | Sequence[reader.Coefficients]) -> np.ndarray:
        """The model's first output (logits) as a numpy array, for a :class:`~jpegfx.jpeg.JpegBatch`,
        one :class:`~jpegfx.reader.Coefficients` or a list of them (one layout; stacked along N). Each is
        checked against the spec; a one-line :class:`~jpegfx.errors.UsageError` names the model file if
        onnxruntime fails to run it."""
        items = [batch] if isinstance(batch, reader.Coefficients) else batch
        if hasattr(items, "components"):
            self.check(items)
        else:
            items = list(items)
            if not items:
                raise UsageError("run needs at least one image")
            for c in items:
                self.check(c)
        if self.spec.preprocess is not None:
            return self._policy_logits(items)
        return self._session_run(self._feed(items))

    def _session_run(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        try:
            return self._session.run([self._output], feed)[0]
        except _ort_errors() as exc:
            raise UsageError(f"{self.path}: onnxruntime cannot run the model: {_one_line(exc)}") from None

    def _policy_logits(self, items: Sequence[reader.Coefficients]) -> np.ndarray:
        """The logits of files brought to the network by the spec's policy, in order: one run on their
        stacked JPEG-domain inputs, or (pixel input) runs of photos of one output size, each holding
        at most :data:`CALL_PIXELS` pixels per plane (one photo at least). Pixels are computed for runs
        of consecutive photos of at most that many pixels (files of one geometry together,
        :func:`~jpegfx.preprocess.model_pixels_many`), and a pending group runs as soon as the pending
        pixels exceed that budget, so memory stays bounded for large photos at their own size."""
        spec = self.spec
        dtype = _NUMPY_FLOAT.get(spec.dtype, np.float32)
        if not spec.pixel_input:
            return self._session_run(self._feed(items))
        size = None if spec.any_size else spec.input_size
        out: list = [None]
        pending: dict[tuple[int, int], tuple[list[int], list[np.ndarray]]] = {}

        def run(key: tuple[int, int]) -> None:
            positions, arrays = pending.pop(key)
            logits = self._session_run({PIXEL_INPUT: np.stack(arrays)})
            if out[0] is None:
                out[0] = np.empty((len(items), *logits.shape[1:]), dtype=logits.dtype)
            out[0][positions] = logits

        def held(key: tuple[int, int]) -> int:
            return len(pending[key][0]) * key[0] * key[1]

        for first, chunk in _chunks(items, spec.preprocess):
            pixels = preprocess.model_pixels_many(chunk, spec.preprocess, size, spec.channels, spec.normalize,
                                                  spec.upsampling)
            for i, x in enumerate(pixels, first):
                key = x.shape[1:]
                while pending and sum(map(held, pending)) + key[0] * key[1] > CALL_PIXELS:
                    run(max(pending, key=held))
                positions, arrays = pending.setdefault(key, ([], []))
                positions.append(i)
                arrays.append(x.astype(dtype, copy=False))
        for key in list(pending):
            run(key)
        return out[0]

    def _policy_batch_logits(self, batch: reader.Batch) -> np.ndarray:
        """The logits of a read batch (files of one size and layout) under the spec's policy, computed
        from its stacked arrays (:func:`~jpegfx.preprocess.batch_pixels`), at most
        :data:`CALL_PIXELS` pixels per plane and run (one file at least)."""
        spec = self.spec
        dtype = _NUMPY_FLOAT.get(spec.dtype, np.float32)
        size = None if spec.pixel_input and spec.any_size else spec.input_size
        _, (_, _, h, w) = spec.preprocess.window(tuple(batch.header.size))
        step = max(1, CALL_PIXELS // (h * w))
        logits = []
        for start in range(0, len(batch.indices), step):
            args = (batch.select(slice(start, start + step)), spec.preprocess, size, spec.channels, spec.normalize,
                    spec.upsampling)
            if spec.pixel_input:
                logits.append(self._session_run({PIXEL_INPUT: preprocess.batch_pixels(*args).astype(dtype, copy=False)}))
            else:
                logits.append(self._session_run({DCT_INPUT: preprocess.batch_inputs(*args, dtype)}))
        return np.concatenate(logits)

    def predict(self, paths: Sequence[PathLike | bytes | BinaryIO], batch_size: int = 32, top_k: int = 5,
                on_error: str = "raise", tolerant: bool = False) -> list[Prediction]:
        """Top-``top_k`` classes (softmax probabilities) for each JPEG file, in the order given.

        ``paths``: paths, the files' bytes, or binary file objects (mixed as you like); a result's ``path``
        is the path, the file object's name, or ``<bytes #i>`` / ``<file #i>`` for the ``i``-th input.

        Files are read, checked and run ``batch_size`` at a time; within a batch, files whose sampling
        factors differ but read alike (same ratios, e.g. gray 1x1 and 2x2) run as separate groups.
        ``on_error="raise"`` (default): the first file that cannot be read or does not fit the model
        raises its one-line :class:`~jpegfx.jpeg.JpegError` (naming the file). ``on_error="skip"``:
        such a file gets a :class:`Prediction` with ``error`` set (one line starting with its path,
        logged at INFO) and every other file still gets its result, whatever its neighbours.
        ``tolerant``: as in :meth:`check`. Bad arguments raise :class:`~jpegfx.errors.UsageError` (a
        ``ValueError``).
        """
        if on_error not in ("raise", "skip"):
            raise UsageError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        for name, value in (("batch_size", batch_size), ("top_k", top_k)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UsageError(f"{name} must be a positive integer, got {value!r}")
        if isinstance(paths, (str, os.PathLike, bytes, bytearray, memoryview)) or hasattr(paths, "read"):
            paths = [paths]
        items = list(paths)
        labels = [_label(item, i) for i, item in enumerate(items)]
        results: list[Prediction] = []
        for start in range(0, len(items), batch_size):
            chunk = labels[start:start + batch_size]
            slots: list[Prediction | None] = [None] * len(chunk)
            # Each file's header is checked against the model before its scans are decoded; the files
            # that fit are decoded straight into one stacked batch per layout.
            batches, errors = reader.read_batches(items[start:start + batch_size], tolerant=tolerant,
                                                  accept=lambda header: self._mismatch(*header.layout))
            for slot in sorted(errors):
                message = _one_line(errors[slot])
                if not message.startswith(chunk[slot]):
                    message = f"{chunk[slot]}: {message}"
                if on_error == "raise":
                    raise JpegError(message)
                slots[slot] = self._failed(chunk[slot], JpegError(message))
            for batch in batches:
                self._predict_group(chunk, list(batch.indices), batch, slots, top_k, on_error)
            results.extend(slots)  # type: ignore[arg-type]
        return results

    def _failed(self, path: str, exc: BaseException) -> Prediction:
        message = _one_line(exc)
        message = message if message.startswith(path) else f"{path}: {message}"
        log.info("skipping %s", message)
        return Prediction(path, (), (), None, message)

    def _predict_group(self, chunk: list[str], slots_of: list[int], batch: reader.Batch,
                       slots: list[Prediction | None], top_k: int, on_error: str, rows: list[int] | None = None) -> None:
        """Run files of one layout together (``rows`` of ``batch``, default all); if that fails, each
        alone, so a failure is one file's."""
        rows = list(range(len(slots_of))) if rows is None else rows
        try:
            logits = self._run_rows(batch, rows)
        except JpegfxError as exc:
            if on_error == "raise":
                raise
            if len(rows) > 1:
                for row in rows:
                    self._predict_group(chunk, slots_of, batch, slots, top_k, on_error, [row])
                return
            slot = slots_of[rows[0]]
            slots[slot] = self._failed(chunk[slot], exc)
            return
        probs = self._probabilities(logits)
        k = min(top_k, probs.shape[1])
        order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        scores = np.take_along_axis(probs, order, axis=1).tolist()  # Python ints and floats, row by row
        for row, idx, score in zip(rows, map(tuple, order.tolist()), scores):
            slot = slots_of[row]
            labels = None if self.class_names is None else tuple(self.class_names[j] for j in idx)
            slots[slot] = Prediction(chunk[slot], idx, tuple(score), labels)

    def _run_rows(self, batch: reader.Batch, rows: list[int]) -> np.ndarray:
        """The model on ``rows`` of a read batch (already checked against the spec)."""
        spec = self.spec
        whole = len(rows) == len(batch.indices)
        if spec.preprocess is not None:
            return self._policy_batch_logits(batch if whole else batch.select(rows))
        planes = [p if whole else p[rows] for p in batch.planes]
        tables = [q if whole else q[rows] for q in batch.qtables]
        names = input_names(batch.header.color_space)
        k = len(planes)
        arrays = {names[i]: planes[i] for i in range(k)} | {names[k + i]: tables[i] for i in range(k)}
        return self._session_run({n: np.ascontiguousarray(arrays[n]) for n in self._inputs})

    def _probabilities(self, logits: np.ndarray) -> np.ndarray:
        if logits.ndim != 2:
            raise UsageError(f"{self.path}: predict needs (N, classes) logits, the model gives shape {logits.shape}")
        if self.class_names is not None and len(self.class_names) != logits.shape[1]:
            raise UsageError(f"{self.path}: jpegfx metadata has {len(self.class_names)} class_names for a model with "
                             f"{logits.shape[1]} classes; re-export it with one name per class")
        return _softmax(logits)
