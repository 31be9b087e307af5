"""Provenance: which dataset and which code produced an output (content hashes, never dvc.lock)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from brats_llm import __version__

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


def folder_revision(folder: str | os.PathLike) -> str:
    """Content hash of a folder's files and names (the local stand-in for a Hub commit sha)."""
    folder = Path(folder)
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode())
        with path.open("rb") as handle:
            digest.update(hashlib.file_digest(handle, "sha256").digest())
    return digest.hexdigest()[:40]


def code_version() -> str:
    """Package version and a SHA-256 over the package's source and data files (stable across machines)."""
    digest = hashlib.sha256()
    for path in sorted(PACKAGE.rglob("*")):
        if path.is_file() and path.suffix in (".py", ".yaml", ".md"):
            digest.update(path.relative_to(PACKAGE).as_posix().encode() + b"\0" + path.read_bytes())
    return f"{__version__} (source sha256 {digest.hexdigest()[:12]})"
