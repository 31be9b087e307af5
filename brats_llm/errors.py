"""The project's own error types: the only exceptions the CLI shows as one line without a traceback."""

from __future__ import annotations


class BratsLlmError(Exception):
    """An expected failure the user can act on (bad input, missing file, refused output).

    The message must name the file or setting concerned and the reason. Anything that is not a
    ``BratsLlmError`` is treated as a bug: the CLI shows its traceback.
    """


class InputError(BratsLlmError, ValueError):
    """An input file, folder or value cannot be used (it names the path and why)."""


class ParamsError(InputError):
    """A params file or section is missing or malformed, or a value has the wrong type or range.

    The message names ``section.key``, the value given and what is expected.
    """


class MissingInputError(BratsLlmError, FileNotFoundError):
    """An input path the command needs does not exist."""


class OutputError(BratsLlmError):
    """An output path cannot be written safely (it overlaps an input, holds foreign files, or is locked)."""
