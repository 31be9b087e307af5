"""Provenance: which dataset and which code produced an output (content hashes, never dvc.lock)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from brats_llm import __version__
from brats_llm.errors import InputError, MissingInputError

PACKAGE = Path(__file__).resolve().parent


def dataset_version(folder: str | os.PathLike) -> dict[str, str]:
    """The dataset a model sees: its path and the ``datasets`` fingerprint (SHA-256 of the data file).

    The fingerprint is a content hash written by the stage itself, so it names the data the same
    way inside and outside DVC (stages never read dvc.lock, an undeclared input).
    """
    folder = Path(folder)
    version = {"path": folder.as_posix()}
    state = folder / "state.json"
    if state.is_file():
        version["fingerprint"] = json.loads(state.read_text())["_fingerprint"]
    return version


def files_revision(root: str | os.PathLike, files: list[Path]) -> str:
    """Content hash of ``files`` (under ``root``) with their relative names, in the order given."""
    root = Path(root)
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(root).as_posix().encode())
        with path.open("rb") as handle:
            digest.update(hashlib.file_digest(handle, "sha256").digest())
    return digest.hexdigest()[:40]


def folder_revision(folder: str | os.PathLike) -> str:
    """Content hash of a folder's files and names (the local stand-in for a Hub commit sha)."""
    return files_revision(folder, sorted(p for p in Path(folder).rglob("*") if p.is_file()))


def code_version() -> str:
    """Package version and a SHA-256 over the package's source and data files (stable across machines)."""
    digest = hashlib.sha256()
    for path in sorted(PACKAGE.rglob("*")):
        if path.is_file() and path.suffix in (".py", ".yaml", ".md"):
            digest.update(path.relative_to(PACKAGE).as_posix().encode() + b"\0" + path.read_bytes())
    return f"{__version__} (source sha256 {digest.hexdigest()[:12]})"


def read_revision(revision_file: str | os.PathLike) -> dict[str, Any]:
    """The pinned dataset revision record (data/hub_revision.json written by ``publish``).

    Raises:
        MissingInputError: the file does not exist.
        InputError: it is not a JSON object with a ``revision`` (e.g. params.yaml given by mistake).
    """
    path = Path(revision_file)
    if not path.is_file():
        raise MissingInputError(f"{path}: revision file not found (written by `brats-llm publish`)")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"{path}: not a revision file (expected the JSON written by `brats-llm publish`, "
                         f"e.g. data/hub_revision.json; {error})") from error
    if not isinstance(record, dict) or "revision" not in record:
        raise InputError(f"{path}: not a revision file (no 'revision' key; expected data/hub_revision.json)")
    return record
