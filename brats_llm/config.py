"""Read one stage's section of ``params.yaml`` into its frozen dataclass."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import re
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import ConfigDict, TypeAdapter, ValidationError

from brats_llm.errors import ParamsError

__all__ = [
    "DEFAULT_PARAMS_FILE", "ParamsError", "ParamsFile", "at_least", "between", "build", "default_params_file",
    "load_section", "read_params", "section_value", "stage_params",
]

T = TypeVar("T")

#: The parameters file DVC reads by default, resolved against the working directory.
DEFAULT_PARAMS_FILE = "params.yaml"

#: Values are checked as YAML/JSON values against the field annotations, strictly: no "95" or 95.7 or 95.0
#: for an int, no 1 for a bool, no true for an int, no NaN or infinity for a float (an int is a valid float).
STRICT = ConfigDict(strict=True, allow_inf_nan=False)

_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string", type(None): "null"}
_PLURALS = {int: "integers", float: "numbers", bool: "booleans (true/false)", str: "strings"}


def read_params(path: str | os.PathLike | None) -> dict[str, Any]:
    """The whole YAML document at ``path``, a mapping of sections ({} when ``path`` is None); parsed each call.

    Raises:
        ParamsError: the file cannot be parsed or is not a mapping.
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
    return document


class ParamsFile:
    """One params file, read once: its sections, a stage's params dataclass, single keys (None: the defaults)."""

    def __init__(self, path: str | os.PathLike | None) -> None:
        self.path = None if path is None else Path(path)
        self.document = read_params(self.path)

    def section(self, name: str) -> dict[str, Any]:
        """A copy of section ``name`` ({} when absent); ParamsError when it is not a mapping."""
        values = self.document.get(name, {}) or {}
        if not isinstance(values, dict):
            raise ParamsError(f"{self.path}: section '{name}' must be a mapping, got {type(values).__name__}")
        return copy.deepcopy(values)

    def stage(self, cls: type[T], section: str, overrides: dict[str, Any]) -> T:
        """``section`` merged with CLI ``overrides`` (None means "not given"), built into ``cls``."""
        values = self.section(section)
        values.update({key: value for key, value in overrides.items() if value is not None})
        return build(cls, values, source=str(self.path or "defaults"), section=section)

    def value(self, section: str, key: str, hint: Any, default: Any) -> Any:
        """One key of ``section`` (``default`` when absent), checked like :func:`build` checks it."""
        value = self.section(section).get(key, default)
        try:
            check_type(hint, value, f"{section}.{key}")
        except ParamsError as error:
            raise ParamsError(f"{self.path}: {error}") from None
        return value


def load_section(path: str | os.PathLike | None, section: str) -> dict[str, Any]:
    """Return ``section`` of the YAML file at ``path`` ({} when ``path`` is None).

    Raises:
        ParamsError: the file cannot be parsed or the section is not a mapping.
    """
    return ParamsFile(path).section(section)


def describe(hint: Any) -> str:
    """What a value of annotation ``hint`` looks like in YAML, for error messages ("a list of strings")."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe(arg) for arg in args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_plural(args[0])}"
        return f"a list of {len(args)} values ({', '.join(describe(arg) for arg in args)})"
    if origin in (list, set, frozenset):
        return f"a list of {_plural(args[0])}" if args else "a list"
    if origin is dict:
        return f"a mapping of names to {_plural(args[1])}" if args else "a mapping"
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(arg) for arg in args)
    return _NAMES.get(hint, getattr(hint, "__name__", str(hint)))


def _plural(hint: Any) -> str:
    return _PLURALS.get(hint) or f"values that are {describe(hint)}"


def check_type(hint: Any, value: Any, name: str) -> None:
    """Refuse ``value`` unless it is a valid ``hint`` (strict, see STRICT); the message names ``name``."""
    expected, adapter = describe(hint), TypeAdapter(hint, config=STRICT)  # a bad annotation is a bug: traceback
    try:
        text = json.dumps(value, allow_nan=True)
    except (TypeError, ValueError):
        raise ParamsError(f"{name} = {value!r} is not valid: expected {expected}") from None  # e.g. a YAML date
    try:
        adapter.validate_json(text)
    except ValidationError as error:
        first = error.errors()[0]
        where = ""
        if typing.get_origin(hint) in (tuple, list, dict) and first["loc"]:
            where = f" (item {'.'.join(str(part) for part in first['loc'])}: {first['msg']})"
        if isinstance(value, str) and float in _leaves(hint) and re.fullmatch(r"[-+]?\d+(\.\d*)?[eE][-+]?\d+", value):
            where += f" (YAML reads {value} as a string: write it with a dot and a signed exponent, e.g. 1.0e-3)"
        raise ParamsError(f"{name} = {value!r} is not valid: expected {expected}{where}") from None


def _leaves(hint: Any) -> set[Any]:
    """The plain types inside annotation ``hint`` (``dict[str, float] | None`` -> {str, float, NoneType})."""
    args = typing.get_args(hint)
    return set().union(*(_leaves(arg) for arg in args if arg is not Ellipsis)) if args else {hint}


def _key_message(error: Exception, section: str, fields: set[str]) -> str:
    """A dataclass's own check message, with ``section.`` before the key it starts with."""
    message = str(error)
    first = re.match(r"\w+", message)
    if section and first and first.group() in fields:
        return f"{section}.{message}"
    return f"{section}: {message}" if section and not message.startswith(f"{section}.") else message


def build(cls: type[T], values: dict[str, Any], *, source: str = "params", section: str = "") -> T:
    """Instantiate the frozen dataclass ``cls`` from ``values`` after checking every key and value.

    Unknown keys, values of the wrong type (per the field annotations, strictly) and values the
    dataclass's own checks refuse all raise :class:`ParamsError` naming ``section.key``, the value and
    what is expected, before any work starts.
    """
    fields = {field.name for field in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - fields)
    prefix = f"{section}." if section else ""
    if unknown:
        raise ParamsError(f"{source}: unknown key(s) {[prefix + key for key in unknown]} for {cls.__name__}; "
                          f"known: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    for key, value in values.items():
        try:
            check_type(hints[key], value, prefix + key)
        except ParamsError as error:
            raise ParamsError(f"{source}: {error}") from None
    try:
        return cls(**values)
    except ValueError as error:  # the dataclass's own range checks (a TypeError now would be a bug)
        raise ParamsError(f"{source}: {_key_message(error, section, fields)}") from error


def stage_params(
    cls: type[T], section: str, params_file: str | os.PathLike | None, overrides: dict[str, Any]
) -> T:
    """Merge ``params_file``'s ``section`` with CLI ``overrides`` (None means "not given")."""
    return ParamsFile(params_file).stage(cls, section, overrides)


def section_value(path: str | os.PathLike | None, section: str, key: str, hint: Any, default: Any) -> Any:
    """One key of ``section`` in ``path`` (``default`` when absent), checked like :func:`build` checks it."""
    return ParamsFile(path).value(section, key, hint, default)


def default_params_file() -> Path | None:
    """``params.yaml`` in the working directory when it exists (as DVC runs stages), else None."""
    path = Path(DEFAULT_PARAMS_FILE)
    return path if path.is_file() else None


def _values(value: Any) -> list[Any]:
    return list(value.values()) if isinstance(value, dict) else [value]


def at_least(params: Any, minimum: float, *names: str) -> None:
    """Refuse (ValueError naming the key) any field in ``names`` of ``params`` below ``minimum``.

    A per-task mapping is checked value by value. Used by the params dataclasses' ``__post_init__``;
    :func:`build` turns the ValueError into a :class:`ParamsError` naming ``section.key``.
    """
    for name in names:
        value = getattr(params, name)
        if any(item < minimum for item in _values(value)):
            raise ValueError(f"{name} must be >= {minimum}, got {value}")


def between(params: Any, low: float, high: float, *names: str) -> None:
    """Refuse any field in ``names`` of ``params`` outside ``[low, high]`` (per-task mappings value by value)."""
    for name in names:
        value = getattr(params, name)
        if any(not low <= item <= high for item in _values(value)):
            raise ValueError(f"{name} must lie in [{low}, {high}], got {value}")

