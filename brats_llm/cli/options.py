"""What every ``brats-llm`` command shares: its options, its params (read once), output guards, error reporting."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable

import click

from brats_llm.config import ParamsError, ParamsFile, default_params_file
from brats_llm.errors import BratsLlmError
from brats_llm.outputs import check_paths

PARAMS_HELP = (
    "YAML file whose section for this command supplies defaults (params.yaml in the working "
    "directory when present, as DVC runs stages). Options given here override it."
)
#: Where a command invocation keeps its parsed params files (on the Click context, so one read per invocation).
PARAMS_META = "brats_llm.params"


def params_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--params FILE`` to a command."""
    return click.option(
        "--params", "params_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
        default=None, help=PARAMS_HELP,
    )(command)


def workers_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--workers N``: an execution setting, not a param (outputs do not depend on it)."""
    return click.option(
        "--workers", type=click.IntRange(min=0), default=0, show_default=True,
        help="Worker processes; 0 = all cores. Results are identical for any value.",
    )(command)


def comma_list(context: click.Context, option: click.Parameter, value: str | None) -> list[str] | None:
    """``a,b`` -> ["a", "b"] for list params given on the command line."""
    return None if value is None else [item.strip() for item in value.split(",") if item.strip()]


def params_of(params_file: Path | None) -> ParamsFile:
    """This invocation's params (``--params``, else ./params.yaml), parsed once per command invocation."""
    path = params_file or default_params_file()
    context = click.get_current_context(silent=True)
    cache: dict[Path | None, ParamsFile] = {} if context is None else context.meta.setdefault(PARAMS_META, {})
    if path not in cache:
        try:
            cache[path] = ParamsFile(path)
        except ParamsError as error:
            raise click.UsageError(str(error)) from error
    return cache[path]


def resolve(cls: type, section: str, params_file: Path | None, **overrides: Any) -> Any:
    """Build a stage's params dataclass, turning params errors into a clean CLI error."""
    try:
        return params_of(params_file).stage(cls, section, overrides)
    except ParamsError as error:
        raise click.UsageError(str(error)) from error


def param_value(params_file: Path | None, section: str, key: str, hint: Any, default: Any) -> Any:
    """One key read outside a command's own section, type-checked; a bad value is a usage error."""
    try:
        return params_of(params_file).value(section, key, hint, default)
    except ParamsError as error:
        raise click.UsageError(str(error)) from error


def guard(inputs: list[Any], outputs: list[Any], containers: list[Any] | None = None) -> None:
    """Refuse, before any input is read, outputs that overlap an input or params.yaml (brats_llm.outputs)."""
    check_paths([*inputs, default_params_file()], outputs, containers or [])


def friendly_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Report the project's own errors (bad input, refused output) as one clear line, exit code 1.

    Anything else is a bug and keeps its traceback; with ``-v`` every error shows its traceback.
    """

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except BratsLlmError as error:
            context = click.get_current_context(silent=True)
            if context is not None and context.find_root().params.get("verbose"):
                raise
            raise click.ClickException(str(error)) from error

    return wrapper
