"""Typed errors of jpegfx. Every message is one line per problem and says what to do."""
from __future__ import annotations


class JpegfxError(Exception):
    """Base class of all jpegfx errors."""


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
