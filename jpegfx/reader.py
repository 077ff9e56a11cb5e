"""Reading JPEG files into quantised DCT coefficients: numpy only (no torch), for serving and loading.

The entropy decoding is libjpeg-turbo's own (``jpeg_read_coefficients``), reached through
:mod:`jpegfx._jpegread`, a thin C binding built with the package (see ``setup.py``). Why a binding
of our own and not a Python JPEG library: the coefficient readers on PyPI report libjpeg's warnings
by printing them (so a corrupt file reads as good unless the process's stderr is captured, which is
neither thread- nor fork-safe), read paths only, keep every APPn payload, and parse the header more
than once. The binding reads bytes already in memory, parses the header once, returns every problem
to its caller and shares nothing between threads (each keeps one idle decompressor for its next call).

What a read guarantees
----------------------
* **Every libjpeg warning is an error** (corrupt entropy-coded data, premature end of file, bad
  progression, an unknown JFIF revision …): :class:`~jpegfx.errors.JpegError`, one line. With
  ``tolerant=True`` the file is read as libjpeg reads it (undecodable data becomes zeros) and the
  warnings are returned in :attr:`Coefficients.warnings` and logged.
* **Limits from the header, before any entropy decoding**: ``max_pixels`` (image area),
  ``max_bytes`` (libjpeg's whole-image coefficient arrays plus the returned copy), and ``max_scans``
  (checked while the scans are read; real encoders write at most a few dozen). Files are read only
  when they are regular files (a FIFO or a device named ``x.jpg`` is refused without blocking) of
  at most ``max_file_bytes``.
* Refused with a one-line reason: not a JPEG, truncated, lossless, hierarchical, 12-bit, CMYK/YCCK,
  RGB colour space (Adobe transform 0, or component ids 'R','G','B'), component counts other than 1
  or 3, fractional sampling ratios, zero-size or DNL-defined heights, a component no scan covers.
* Calls are independent: safe from several threads at once (libjpeg runs without the GIL) and in
  forked processes.

Conventions (those of :class:`jpegfx.jpeg.JpegBatch`): ``planes[c]`` is ``int16 (Hb_c, Wb_c, 8, 8)``
indexed ``[block row, block column, u, v]`` on the component's logical block grid
``ceil(size_c / 8)``; ``qtables[c]`` is ``int32 (64,)`` in natural order: the table libjpeg latched
for the component (what a decoder multiplies by).
"""
from __future__ import annotations

import logging
import os
import stat
from typing import BinaryIO, Callable, NamedTuple, Union

import numpy as np

from jpegfx.errors import JpegError

log = logging.getLogger(__name__)

__all__ = [
    "ComponentHeader",
    "Header",
    "Coefficients",
    "read_bytes",
    "read_header",
    "read_coefficients",
    "Batch",
    "read_batches",
    "subsampling_name",
    "SUBSAMPLINGS",
    "backend",
    "MAX_PIXELS",
    "MAX_BYTES",
    "MAX_SCANS",
    "MAX_FILE_BYTES",
]

Source = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, BinaryIO]

MAX_PIXELS = 100_000_000
"""Default limit on width × height."""
MAX_BYTES = 1 << 30
"""Default limit on coefficient memory (libjpeg's arrays + the returned copy, 4 bytes per sample):
1 GiB, about an 89-megapixel 4:4:4 or a 178-megapixel 4:2:0 image."""
MAX_SCANS = 1000
"""Default scan limit (libjpeg-turbo's own tools suggest a few hundred to stop scan bombs)."""
MAX_FILE_BYTES = 1 << 30
"""Default limit on the size of a file read from a path or a file object."""

BLOCK = 8

SUBSAMPLINGS: dict[str, tuple[int, int]] = {
    "4:4:4": (1, 1),
    "4:2:2": (1, 2),
    "4:2:0": (2, 2),
    "4:4:0": (2, 1),
}
"""Subsampling names an encoder writes and an export takes → luma sampling factors ``(v, h)``
(chroma is 1×1)."""

# Chroma ratios (v_max / v_c, h_max / h_c) → conventional J:a:b names (luma at the maximum).
_RATIO_NAMES = {
    (1, 1): "4:4:4",
    (1, 2): "4:2:2",
    (2, 2): "4:2:0",
    (2, 1): "4:4:0",
    (1, 4): "4:1:1",
    (2, 4): "4:1:0",
}


def subsampling_name(color_space: str, samplings: tuple[tuple[int, int], ...]) -> str:
    """"4:4:4", "4:2:2", "4:2:0", "4:4:0", "4:1:1", "4:1:0"; "4:0:0" for gray; otherwise the raw
    factors as "h{h}v{v}/…" per component. ``samplings``: ``(v, h)`` per component."""
    if color_space == "gray":
        return "4:0:0"
    vmax, hmax = max(s[0] for s in samplings), max(s[1] for s in samplings)
    y, cb, cr = samplings
    if y == (vmax, hmax) and cb == cr and vmax % cb[0] == 0 and hmax % cb[1] == 0:
        name = _RATIO_NAMES.get((vmax // cb[0], hmax // cb[1]))
        if name is not None:
            return name
    return "/".join(f"h{h}v{v}" for v, h in samplings)


class ComponentHeader(NamedTuple):
    """One component as the frame header declares it: ``id``, ``sampling`` ``(v, h)``, logical
    ``size`` ``(h_c, w_c)`` (ITU T.81 A.1.1) and block grid ``blocks`` ``(Hb_c, Wb_c)``."""

    id: int
    sampling: tuple[int, int]
    size: tuple[int, int]
    blocks: tuple[int, int]


class Header(NamedTuple):
    """What a JPEG's header says, read without decoding any scan."""

    size: tuple[int, int]
    color_space: str  # "gray" | "ycbcr"
    components: tuple[ComponentHeader, ...]
    progressive: bool
    arithmetic: bool

    @property
    def samplings(self) -> tuple[tuple[int, int], ...]:
        return tuple(c.sampling for c in self.components)

    @property
    def subsampling(self) -> str:
        return subsampling_name(self.color_space, self.samplings)

    @property
    def layout(self) -> tuple:
        """Everything two files must share to be stacked into one batch."""
        return (self.size, self.color_space, self.samplings)


class Coefficients(NamedTuple):
    """A JPEG's quantised coefficients: ``planes[c]`` ``int16 (Hb_c, Wb_c, 8, 8)``, ``qtables[c]``
    ``int32 (64,)`` natural order, the number of ``scans`` read, and libjpeg's ``warnings`` (always
    empty unless read with ``tolerant=True``)."""

    header: Header
    planes: tuple[np.ndarray, ...]
    qtables: tuple[np.ndarray, ...]
    scans: int
    warnings: tuple[str, ...] = ()


class Batch(NamedTuple):
    """Files of one layout read straight into stacked arrays: ``planes[c]`` ``int16 (N, Hb_c, Wb_c, 8,
    8)``, ``qtables[c]`` ``int32 (N, 64)``, ``header`` (the first file's; every file of the batch has
    its layout), and ``indices``, the positions of the N files among the sources, in order."""

    header: Header
    planes: tuple[np.ndarray, ...]
    qtables: tuple[np.ndarray, ...]
    indices: tuple[int, ...]

    def select(self, rows) -> "Batch":
        """The files at ``rows`` (a slice or a list of positions within the batch) as a batch."""
        indices = self.indices[rows] if isinstance(rows, slice) else tuple(self.indices[r] for r in rows)
        return Batch(self.header, tuple(p[rows] for p in self.planes), tuple(q[rows] for q in self.qtables), indices)

    def coefficients(self, k: int) -> Coefficients:
        """The ``k``-th file as :class:`Coefficients` (views, no copy). Its header is the batch's: the
        layout is every file's, details such as component ids and ``progressive`` the first file's."""
        return Coefficients(self.header, tuple(p[k] for p in self.planes), tuple(q[k] for q in self.qtables), 0)


def backend() -> str:
    """The libjpeg the binding was built against, e.g. ``"libjpeg-turbo 2.1.5"``."""
    return _binding().LIBJPEG_VERSION


_BINDING = None


def _binding():
    global _BINDING
    if _BINDING is not None:
        return _BINDING
    try:
        from jpegfx import _jpegread
    except ImportError as exc:  # pragma: no cover - an install without the compiled binding
        raise JpegError(
            "jpegfx was installed without its compiled JPEG reader (jpegfx._jpegread): reinstall it with a "
            f"C compiler and libjpeg-turbo's headers (e.g. Debian's libjpeg62-turbo-dev) ({exc})"
        ) from None
    _BINDING = _jpegread
    return _jpegread


def _positive(name: str, value: int, default: int) -> int:
    if value is default:
        return value
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise JpegError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _source_bytes(source: Source, max_file_bytes: int) -> tuple[bytes | bytearray | memoryview, str]:
    """The file's bytes and a label for messages (the path, or '' for in-memory data)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return source, ""
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        return _read_regular_file(path, max_file_bytes), str(path)
    read = getattr(source, "read", None)
    if read is None:
        raise TypeError(f"expected a path, bytes or a binary file object, got {type(source).__name__}")
    data = read(max_file_bytes + 1)
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError("the file object must be opened in binary mode")
    name = getattr(source, "name", None)
    label = os.fsdecode(name) if isinstance(name, (str, bytes)) else ""
    if len(data) > max_file_bytes:
        raise JpegError(f"{label + ': ' if label else ''}file larger than max_file_bytes={max_file_bytes}")
    return data, label


def _read_regular_file(path: str, max_file_bytes: int) -> bytes:
    """Open without blocking (a FIFO would wait for a writer), then refuse anything but a regular file."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise JpegError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
            raise JpegError(f"{path}: {kind}: only regular files are read")
        if info.st_size > max_file_bytes:
            raise JpegError(f"{path}: {info.st_size} bytes, larger than max_file_bytes={max_file_bytes}")
        with open(fd, "rb", buffering=0, closefd=False) as f:
            data = f.readall()
    except OSError as exc:
        raise JpegError(f"{path}: cannot read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if len(data) > max_file_bytes:  # the file grew while being read
        raise JpegError(f"{path}: larger than max_file_bytes={max_file_bytes}")
    return data


def _header(raw: tuple) -> Header:
    comps = tuple(ComponentHeader(c[0], c[1], c[2], c[3]) for c in raw[6])
    return Header((raw[0], raw[1]), raw[2], comps, raw[3], raw[4])


def _call(data, label: str, header_only: bool, tolerant: bool, max_scans: int, max_pixels: int,
          max_bytes: int) -> tuple:
    binding = _binding()
    try:
        if len(data) == 0:
            raise JpegError("empty input: not a JPEG file")
        return binding.read(data, header_only, tolerant, max_scans, max_pixels, max_bytes)  # positional: cheaper
    except binding.ReadError as exc:
        raise JpegError(f"{label}: {exc}" if label else str(exc)) from None
    except JpegError as exc:
        raise JpegError(f"{label}: {exc}" if label else str(exc)) from None


def read_bytes(source: Source, *, max_file_bytes: int = MAX_FILE_BYTES) -> bytes | bytearray | memoryview:
    """The bytes of a path (a regular file of at most ``max_file_bytes``; opened without blocking), of a
    binary file object, or bytes as given: read once, then pass them to :func:`read_header` and
    :func:`read_coefficients`."""
    return _source_bytes(source, _positive("max_file_bytes", max_file_bytes, MAX_FILE_BYTES))[0]


def read_header(source: Source, *, max_pixels: int = MAX_PIXELS, max_file_bytes: int = MAX_FILE_BYTES,
                tolerant: bool = False) -> Header:
    """The geometry of a JPEG (size, colour space, sampling) from its header alone.

    Checks everything :func:`read_coefficients` checks before entropy decoding, including libjpeg's
    warnings about the header (``tolerant`` as there); a file that passes may still be refused later
    for corrupt scan data.
    """
    data, label = _source_bytes(source, _positive("max_file_bytes", max_file_bytes, MAX_FILE_BYTES))
    raw = _call(data, label, True, bool(tolerant), MAX_SCANS, _positive("max_pixels", max_pixels, MAX_PIXELS),
                MAX_BYTES)
    return _header(raw)


def read_coefficients(
    source: Source,
    *,
    max_pixels: int = MAX_PIXELS,
    max_bytes: int = MAX_BYTES,
    max_scans: int = MAX_SCANS,
    max_file_bytes: int = MAX_FILE_BYTES,
    tolerant: bool = False,
) -> Coefficients:
    """Read one JPEG's quantised coefficients and quantisation tables (numpy arrays).

    ``source``: a path, the file's bytes, or a binary file object (read to its end). Raises
    :class:`~jpegfx.errors.JpegError` with one line (naming the file when it has a path) for
    anything that is not a readable 8-bit sequential or progressive (Huffman or arithmetic)
    gray/YCbCr JPEG within the limits; see the module docstring.
    """
    data, label = _source_bytes(source, _positive("max_file_bytes", max_file_bytes, MAX_FILE_BYTES))
    raw = _call(data, label, False, bool(tolerant), _positive("max_scans", max_scans, MAX_SCANS),
                _positive("max_pixels", max_pixels, MAX_PIXELS), _positive("max_bytes", max_bytes, MAX_BYTES))
    header = _header(raw)
    planes = tuple(c[5] for c in raw[6])
    qtables = tuple(c[4] for c in raw[6])
    warnings = tuple(raw[7])
    for w in warnings:
        log.warning("%slibjpeg: %s", f"{label}: " if label else "", w)
    return Coefficients(header, planes, qtables, int(raw[5]), warnings)


def read_batches(
    sources: "list[Source]",
    *,
    max_pixels: int = MAX_PIXELS,
    max_bytes: int = MAX_BYTES,
    max_scans: int = MAX_SCANS,
    max_file_bytes: int = MAX_FILE_BYTES,
    tolerant: bool = False,
    accept: "Callable[[Header], str | None] | None" = None,
) -> tuple[list[Batch], dict[int, JpegError]]:
    """Read many JPEGs into stacked arrays, one :class:`Batch` per layout (size, colour space and
    sampling factors), in order of first appearance; and ``{position: error}`` for each source that
    cannot be read. Limits and ``tolerant`` as in :func:`read_coefficients`, per file. ``accept``:
    called with each new layout's header; a string it returns refuses the files of that layout (their
    scans are not decoded) with that reason.

    The serving path for many files: the first file's layout is allocated for all of them and each
    file is decoded straight into its slot (no per-file arrays, no stacking copy); a file of another
    layout is found from its header, before its scans are decoded, and read into its own group.
    """
    binding = _binding()
    options = (bool(tolerant), _positive("max_scans", max_scans, MAX_SCANS),
               _positive("max_pixels", max_pixels, MAX_PIXELS), _positive("max_bytes", max_bytes, MAX_BYTES))
    file_limit = _positive("max_file_bytes", max_file_bytes, MAX_FILE_BYTES)
    errors: dict[int, JpegError] = {}
    groups: dict[tuple, list] = {}  # layout -> [header, planes, qtables, used indices]
    refused: dict[tuple, str] = {}  # layout -> why ``accept`` refused it

    def group_for(data, label: str, capacity: int) -> list:
        header = _header(_call(data, label, True, options[0], *options[1:]))
        layout = header.layout
        if layout not in groups and layout not in refused:
            problem = accept(header) if accept is not None else None
            if problem is not None:
                refused[layout] = problem
            else:
                _group(groups, header, capacity)
        if layout in refused:
            raise JpegError(f"{label}: {refused[layout]}" if label else refused[layout])
        return groups[layout]

    pending = []  # (position, bytes, label) of the files not yet read, in order
    for i, source in enumerate(sources):
        try:
            data, label = _source_bytes(source, file_limit)
        except JpegError as exc:
            errors[i] = exc
            continue
        pending.append((i, data, label))
    while pending:
        # The first pending file's layout becomes a group with a slot for every pending file; one call
        # then reads every pending file of that layout into it (without the GIL), leaving the others.
        i, data, label = pending[0]
        try:
            header, planes, qtables, used = group_for(data, label, len(pending))
        except JpegError as exc:
            errors[i] = exc
            pending.pop(0)
            continue
        rest = []
        if options[0]:  # tolerant: file by file, to report each file's warnings
            for i, data, label in pending:
                try:
                    raw = _into(binding, data, label, options, groups[header.layout])
                except JpegError as exc:
                    errors[i] = exc
                    continue
                except binding.LayoutMismatch:
                    rest.append((i, data, label))
                    continue
                used.append(i)
                for w in raw[7]:
                    log.warning("%slibjpeg: %s", f"{label}: " if label else "", w)
        else:
            outcomes = binding.read_many([d for _, d, _ in pending], planes, qtables, len(used), header.size[0],
                                         header.size[1], header.samplings, *options[1:])
            for (i, data, label), outcome in zip(pending, outcomes):
                if outcome is None:
                    rest.append((i, data, label))
                elif isinstance(outcome, str):
                    errors[i] = JpegError(f"{label}: {outcome}" if label else outcome)
                else:
                    used.append(i)
        pending = rest
    errors = dict(sorted(errors.items()))
    batches = []
    for header, planes, qtables, used in groups.values():
        if not used:
            continue
        n = len(used)  # views: the slots never written were never touched, so they hold no memory
        batches.append(Batch(header, tuple(p[:n] for p in planes), tuple(q[:n] for q in qtables), tuple(used)))
    return batches, errors


def _group(groups: dict, header: Header, capacity: int) -> list:
    """A new layout group with ``capacity`` slots."""
    group = [header, tuple(np.empty((capacity, *c.blocks, BLOCK, BLOCK), dtype=np.int16) for c in header.components),
             tuple(np.empty((capacity, BLOCK * BLOCK), dtype=np.int32) for _ in header.components), []]
    groups[header.layout] = group
    return group


def _into(binding, data, label: str, options: tuple, group: list) -> tuple:
    """Decode into the group's next slot; a file whose header differs only in size from the group's
    (same block grids) is moved to a group of its own layout by the caller's LayoutMismatch path."""
    header, planes, qtables, used = group
    try:
        if len(data) == 0:
            raise JpegError("empty input: not a JPEG file")
        raw = binding.read(data, False, *options, planes, qtables, len(used))
    except binding.ReadError as exc:
        raise JpegError(f"{label}: {exc}" if label else str(exc)) from None
    if (raw[0], raw[1]) != header.size or raw[2] != header.color_space or any(
            c[1] != h.sampling for c, h in zip(raw[6], header.components)):  # same block grids, another layout
        raise binding.LayoutMismatch("another layout")
    return raw
