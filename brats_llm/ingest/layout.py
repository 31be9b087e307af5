"""Find the cases of a raw BraTS release: locate the release folder, let its ``ingest.layouts`` module read it."""

from __future__ import annotations

from pathlib import Path

from brats_llm.errors import MissingInputError
from brats_llm.ingest.cases import (
    CaseError,
    CaseFiles,
    Exclusion,
    Inventory,
    Note,
    Release,
    is_dir,
    list_dir,
    nifti_files,
)
from brats_llm.ingest.layouts import FALLBACK, GRADED_LAYOUTS, LAYOUTS, RELEASES

#: What callers of discovery use (the types are defined in brats_llm.ingest.cases, the releases in .layouts).
__all__ = ["GRADED_LAYOUTS", "LAYOUTS", "CaseError", "CaseFiles", "Exclusion", "Inventory", "Note", "discover",
           "identify"]


def _find_root(raw_dir: Path) -> Path:
    """Descend through single wrapper folders (as in zip downloads) to the case folders."""
    root = raw_dir
    for _ in range(3):
        if any(release.detect(root) for release in RELEASES if release.marker):
            return root
        folders = [p for p in list_dir(root) if not p.name.startswith(".") and is_dir(p)]
        if len(folders) != 1 or _holds_nifti(folders[0]):
            return root
        root = folders[0]
    return root


def _holds_nifti(folder: Path) -> bool:
    try:
        return bool(nifti_files(folder))
    except CaseError:
        return True  # an unreadable single folder is treated as a case folder (and excluded later)


def identify(root: Path) -> Release:
    """The release of the release folder ``root``: the first in registry order that detects it, else the fallback."""
    return next((release for release in RELEASES if release.detect(root)), FALLBACK)


def discover(raw_dir: str | Path) -> Inventory:
    """List the cases under ``raw_dir`` without reading image data.

    Args:
        raw_dir: a BraTS release folder (or a folder wrapping exactly one).

    Returns:
        The inventory; every folder or mapping row that is not a usable case is an exclusion. How each release
        is recognised, matched, labelled and graded lives in its module of :mod:`brats_llm.ingest.layouts`;
        releases without grades give cases with ``grade == NO_GRADE`` (no grade is invented).

    Raises:
        MissingInputError: ``raw_dir`` is not a folder.
        InputError: the release folder, a grade folder or the release's description file (``name_mapping.csv``,
            ``dataset.json``) cannot be read or is malformed (unreadable case folders are exclusions).
    """
    raw_dir = Path(raw_dir)
    if not is_dir(raw_dir):
        raise MissingInputError(f"{raw_dir}: raw data folder does not exist")
    root = _find_root(raw_dir)
    return identify(root).discover(root)
