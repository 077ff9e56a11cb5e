"""Typed errors of jpegfx. Every message is one line per problem and says what to do.

Everything jpegfx raises for bad *input* (a file, a model, weights, options) is a
:class:`JpegfxError`; the command line catches exactly these and prints one line (exit 2). Any other
exception is a bug in jpegfx and keeps its traceback. Errors about values also derive from
``ValueError`` so that ``except ValueError`` in older callers keeps working.
"""
from __future__ import annotations


class JpegfxError(Exception):
    """Base class of all jpegfx errors."""


class JpegError(JpegfxError, ValueError):
    """A JPEG that cannot be read into a :class:`~jpegfx.jpeg.JpegBatch`; the message is one line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


class MapBudgetError(JpegfxError, ValueError):
    """A fused map would exceed the memory budget."""


class UsageError(JpegfxError, ValueError):
    """Bad options or arguments (command line or API), or a file that is not what it should be."""


class UnknownOptionError(UsageError, TypeError):
    """An option (keyword) a function does not take; also a ``TypeError``, as Python raises for one."""


class ConversionError(JpegfxError):
    """A model could not be converted; ``pass_name`` names the pass that failed."""

    def __init__(self, message: str, pass_name: str | None = None) -> None:
        self.pass_name = pass_name
        super().__init__(f"[{pass_name}] {message}" if pass_name else message)


class UnsupportedModelError(ConversionError):
    """The model holds ops with no JPEG-domain lowering; ``problems`` lists every one of them."""

    def __init__(self, problems: list[str], pass_name: str | None = None, hint: str = "") -> None:
        self.problems, self.hint = problems, hint
        head = f"{len(problems)} unsupported op kind(s) in the JPEG-domain part of the model:"
        lines = [head, *(f"  - {p}" for p in problems)] + ([f"  hint: {hint}"] if hint else [])
        super().__init__("\n".join(lines), pass_name)
