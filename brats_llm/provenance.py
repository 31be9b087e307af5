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
#: Hex digits of a revision (a folder or config content hash), as long as a git commit sha.
REVISION_LENGTH = 40


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


def folder_files(folder: str | os.PathLike) -> list[Path]:
    """Every file under ``folder`` (recursively), sorted: the order content hashes take them in."""
    return sorted(p for p in Path(folder).rglob("*") if p.is_file())


def file_digest(path: str | os.PathLike, *, large: int | None = None) -> bytes:
    """SHA-256 of a file's bytes; above ``large`` bytes, of its size and mtime (multi-GB weights, not read).

    A ``datasets`` fingerprint is the first 16 hex digits of a data file's digest.
    """
    path = Path(path)
    if large is not None:
        stat = path.stat()
        if stat.st_size > large:
            return hashlib.sha256(f"{stat.st_size}:{stat.st_mtime_ns}".encode()).digest()
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").digest()


def file_digests(root: str | os.PathLike, files: list[Path], *, large: int | None = None) -> dict[str, bytes]:
    """Each of ``files`` (under ``root``) by its relative name: its :func:`file_digest`, in the order given."""
    root = Path(root)
    return {path.relative_to(root).as_posix(): file_digest(path, large=large) for path in files}


def content_hash(digests: dict[str, bytes]) -> str:
    """The one content hash: SHA-256 over each relative name followed by its file digest, in order (64 hex).

    Build ``digests`` with :func:`file_digests`; a subset of them (one config of a repo) hashes without
    reading any file again.
    """
    digest = hashlib.sha256()
    for name, file in digests.items():
        digest.update(name.encode() + file)
    return digest.hexdigest()


def files_revision(root: str | os.PathLike, files: list[Path]) -> str:
    """Content hash of ``files`` (under ``root``) with their relative names, in the order given (40 hex)."""
    return content_hash(file_digests(root, files))[:REVISION_LENGTH]


def folder_revision(folder: str | os.PathLike) -> str:
    """Content hash of a folder's files and names (the local stand-in for a Hub commit sha)."""
    return files_revision(folder, folder_files(folder))


def code_version() -> str:
    """Package version and a content hash of the package's source and data files (stable across machines)."""
    files = [p for p in folder_files(PACKAGE) if p.suffix in (".py", ".yaml", ".md")]
    return f"{__version__} (source sha256 {content_hash(file_digests(PACKAGE, files))[:12]})"


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
