"""The standard form every release is converted to (cases, exclusions, notes), the release contract and file checks."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from brats_llm.errors import InputError

NIFTI_SUFFIXES = (".nii.gz", ".nii")
#: Reasons for symbolic links that lead nowhere.
BROKEN_LINK = "broken symbolic link"
LINK_LOOP = "symbolic link loop (the link leads back to itself)"


class CaseError(InputError):
    """A case cannot be used; ``path`` names the offending file, ``reason`` says why."""

    def __init__(self, path: str | Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


@dataclass(frozen=True)
class Exclusion:
    """A case (or file) left out of the dataset, with the file to look at and why."""

    id: str
    path: str
    reason: str


@dataclass(frozen=True)
class Note:
    """Something unusual that was handled (e.g. a mask under a non-standard name)."""

    id: str
    path: str
    message: str


@dataclass(frozen=True)
class CaseFiles:
    """The files of one patient: one image per modality (in ``MODALITIES`` order) and a mask.

    ``grade`` is ``NO_GRADE`` for releases without grades. For MSD, ``images`` repeats the one 4D
    file per modality and ``channels`` gives each modality's volume index in it. ``label_map``
    (file label -> ``REGION_LABELS`` value) is set by the case's release module.
    """

    patient_id: str
    grade: str
    folder: Path
    images: tuple[Path, ...]
    mask: Path
    layout: str
    channels: tuple[int, ...] | None = None
    label_map: tuple[tuple[int, int], ...] | None = None

    @property
    def labels(self) -> dict[int, int]:
        """File label -> ``REGION_LABELS`` value for this case's segmentation."""
        if self.label_map is None:
            raise ValueError(f"{self.mask}: case {self.patient_id} ({self.layout}) has no label map; "
                             f"its release module in brats_llm.ingest.layouts sets one")
        return dict(self.label_map)

    def source(self, root: Path) -> str:
        """The case's place in the release (the ``source`` column): its folder, or for MSD its image file."""
        where = self.images[0] if self.channels is not None else self.folder
        return where.relative_to(root).as_posix()


@dataclass
class Inventory:
    """What discovery found: usable cases, exclusions and notes, in a stable order."""

    root: Path
    layout: str
    cases: list[CaseFiles] = field(default_factory=list)
    excluded: list[Exclusion] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)


@dataclass(frozen=True)
class Release:
    """One release's converter into :class:`Inventory` (the ``RELEASE`` of a ``brats_llm.ingest.layouts`` module).

    Attributes:
        name: the ``Inventory.layout`` / volumes ``layout`` value.
        label_map: label in the release's segmentation files -> ``REGION_LABELS`` value; other labels fail loudly.
        graded: whether cases carry a grade (LGG/HGG); the others give ``grade == NO_GRADE``.
        marker: ``detect`` looks for a file or folder of the release folder itself (so the descent through
            wrapper folders stops there), rather than at the case folders.
        detect: whether a release folder is this release (asked in registry order; the first yes wins).
        discover: the release folder's cases, exclusions and notes.
    """

    name: str
    label_map: Mapping[int, int]
    graded: bool
    marker: bool
    detect: Callable[[Path], bool]
    discover: Callable[[Path], Inventory]


def nifti_stem(path: Path) -> str | None:
    """File name without ``.nii``/``.nii.gz``, or None for non-NIfTI files."""
    name = path.name
    for suffix in NIFTI_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return None


def why(error: OSError) -> str:
    return error.strerror or str(error)


def list_dir(folder: Path) -> list[Path]:
    """The entries of ``folder``, sorted.

    Raises:
        CaseError: the folder cannot be listed (permission denied, broken symbolic link, ...).
    """
    try:
        return sorted(folder.iterdir())
    except OSError as error:
        dangling = dangling_link(folder)
        if dangling == BROKEN_LINK:
            raise CaseError(folder, f"{BROKEN_LINK} (its target does not exist)") from error
        raise CaseError(folder, dangling or f"cannot list folder ({why(error)})") from error


def is_dir(path: Path) -> bool:
    """``path.is_dir()``, raising CaseError (not a bare OSError) when ``path`` cannot be examined."""
    try:
        return path.is_dir()
    except OSError as error:
        raise CaseError(path, f"cannot read ({why(error)})") from error


def dangling_link(path: Path) -> str | None:
    """``BROKEN_LINK`` or ``LINK_LOOP`` when ``path`` is a symbolic link whose target cannot be reached, else None."""
    if not path.is_symlink():
        return None
    try:
        os.stat(path)
    except OSError as error:
        if error.errno == errno.ELOOP:
            return LINK_LOOP
        return BROKEN_LINK if error.errno in (errno.ENOENT, errno.ENOTDIR) else None
    return None


def file_problem(path: Path) -> str | None:
    """Why ``path`` is not a regular file we can open, or None when it is one."""
    try:
        if path.is_file():
            return None
        dangling = dangling_link(path)
        if dangling:
            return dangling
        if path.is_symlink():
            return "symbolic link to a folder, not a file"
        return "is a folder, not a file" if path.is_dir() else "not a regular file"
    except OSError as error:
        return f"cannot read ({why(error)})"


def nifti_files(folder: Path) -> list[Path]:
    """Entries with a NIfTI name, whatever their type (bad ones are reported when matched)."""
    return [p for p in list_dir(folder) if nifti_stem(p) is not None]
