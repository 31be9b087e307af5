"""Read one stage's section of ``params.yaml`` into its frozen dataclass."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, TypeVar

import yaml

from brats_llm.errors import InputError

T = TypeVar("T")

#: The parameters file DVC reads by default, resolved against the working directory.
DEFAULT_PARAMS_FILE = "params.yaml"


class ParamsError(InputError):
    """A params file or section is missing, malformed or has keys the stage does not know."""


def load_section(path: str | os.PathLike | None, section: str) -> dict[str, Any]:
    """Return ``section`` of the YAML file at ``path`` ({} when ``path`` is None).

    Raises:
        ParamsError: the file cannot be parsed or the section is not a mapping.
    """
    if path is None:
        return {}
    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as error:
        raise ParamsError(f"{path}: cannot read params: {error}") from error
    if not isinstance(document, dict):
        raise ParamsError(f"{path}: expected a mapping of stage sections at the top level")
    values = document.get(section, {}) or {}
    if not isinstance(values, dict):
        raise ParamsError(f"{path}: section '{section}' must be a mapping, got {type(values).__name__}")
    return values


def build(cls: type[T], values: dict[str, Any], *, source: str = "params") -> T:
    """Instantiate the frozen dataclass ``cls`` from ``values``; unknown keys fail loudly."""
    names = {field.name for field in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - names)
    if unknown:
        raise ParamsError(f"{source}: unknown key(s) {unknown} for {cls.__name__}; known: {sorted(names)}")
    try:
        return cls(**values)
    except (TypeError, ValueError) as error:
        raise ParamsError(f"{source}: {error}") from error


def stage_params(
    cls: type[T], section: str, params_file: str | os.PathLike | None, overrides: dict[str, Any]
) -> T:
    """Merge ``params_file``'s ``section`` with CLI ``overrides`` (None means "not given")."""
    values = load_section(params_file, section)
    values.update({key: value for key, value in overrides.items() if value is not None})
    return build(cls, values, source=f"{params_file or 'defaults'}:{section}")


def default_params_file() -> Path | None:
    """``params.yaml`` in the working directory when it exists (as DVC runs stages), else None."""
    path = Path(DEFAULT_PARAMS_FILE)
    return path if path.is_file() else None
