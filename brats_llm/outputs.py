"""Refuse a command whose outputs overlap its inputs, before anything is read or written."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from brats_llm.errors import OutputError

PathArg = str | os.PathLike | None


def _real(path: str | os.PathLike) -> Path:
    """Absolute, symlinks resolved as far as the path exists (outputs often do not yet)."""
    return Path(os.path.realpath(os.path.expanduser(path)))


def _relation(output: Path, source: Path) -> str | None:
    if output == source:
        return "is"
    if source in output.parents:
        return "lies inside"
    if output in source.parents:
        return "contains"
    return None


def check_paths(inputs: Iterable[PathArg], outputs: Iterable[PathArg], containers: Iterable[PathArg] = ()) -> None:
    """Refuse when an output equals, contains or lies inside an input or another output (None entries skipped).

    Inputs that do not exist are skipped (nothing to lose: a Hub model id, an absent params.yaml).
    ``containers`` are inputs holding several stages' outputs (the report's models folder): an
    output may lie inside one (its marked neighbours are protected by :mod:`brats_llm.atomic`),
    but not equal or contain it.

    Raises:
        OutputError: naming the output, the input and how they overlap; nothing was touched.
    """
    _check_outputs_apart([o for o in outputs if o is not None])
    nested_ok = {_real(c) for c in containers if c is not None and os.path.lexists(c)}
    sources = [(p, _real(p)) for p in [*inputs, *containers] if p is not None and os.path.lexists(p)]
    for output in (o for o in outputs if o is not None):
        real = _real(output)
        for source, source_real in sources:
            relation = _relation(real, source_real)
            if relation == "lies inside" and source_real in nested_ok:
                continue
            if relation:
                raise OutputError(f"output {output} {relation} input {source}{_via(output, real, source, source_real)}; "
                                  "nothing was written: choose an output path outside the inputs")


def _check_outputs_apart(outputs: list[PathArg]) -> None:
    """Two outputs of one command must not overlap: the folder swap would delete the other (a report inside OUT_DIR)."""
    reals = [(o, _real(o)) for o in outputs]
    for i, (output, real) in enumerate(reals):
        for other, other_real in reals[i + 1:]:
            relation = _relation(real, other_real)
            if relation:
                raise OutputError(f"output {output} {relation} output {other}; nothing was written: "
                                  "write each output to its own path")


def _via(output: PathArg, real: Path, source: PathArg, source_real: Path) -> str:
    if real == Path(os.path.abspath(output)) and source_real == Path(os.path.abspath(source)):
        return ""
    return f" ({real} vs {source_real}, symbolic links resolved)"


def pinned_folder(revision_file: PathArg) -> Path | None:
    """The local folder a revision file (from ``publish``) pins, when it names one; else None."""
    try:
        path = json.loads(Path(revision_file).read_text()).get("path") if revision_file else None
    except (OSError, ValueError, AttributeError):
        return None
    return Path(path) if isinstance(path, str) and path else None
