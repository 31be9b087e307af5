"""Find the cases of a raw BraTS release (2020 flat layout or 2018/2019 HGG/LGG layout)."""

from __future__ import annotations

import csv
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from brats_llm.constants import GRADES, MASK_SUFFIX, MODALITIES, PATIENT_ID_PATTERN
from brats_llm.errors import InputError, MissingInputError

#: The BraTS 2020 grade table and the columns we read from it.
MAPPING_FILE = "name_mapping.csv"
MAPPING_ID_COLUMN = "BraTS_2020_subject_ID"
MAPPING_GRADE_COLUMN = "Grade"
LAYOUT_2020, LAYOUT_2018 = "brats2020", "brats2018"
NIFTI_SUFFIXES = (".nii.gz", ".nii")


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
    """The files of one patient: one image per modality (in ``MODALITIES`` order) and a mask."""

    patient_id: str
    grade: str
    folder: Path
    images: tuple[Path, ...]
    mask: Path
    layout: str


@dataclass
class Inventory:
    """What :func:`discover` found: usable cases, exclusions and notes, in a stable order."""

    root: Path
    layout: str
    cases: list[CaseFiles] = field(default_factory=list)
    excluded: list[Exclusion] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)


def nifti_stem(path: Path) -> str | None:
    """File name without ``.nii``/``.nii.gz``, or None for non-NIfTI files."""
    name = path.name
    for suffix in NIFTI_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return None


def _why(error: OSError) -> str:
    return error.strerror or str(error)


def _list(folder: Path) -> list[Path]:
    """The entries of ``folder``, sorted.

    Raises:
        CaseError: the folder cannot be listed (permission denied, broken symbolic link, ...).
    """
    try:
        return sorted(folder.iterdir())
    except OSError as error:
        if _file_problem(folder) == "broken symbolic link":
            raise CaseError(folder, "broken symbolic link (its target does not exist)") from error
        raise CaseError(folder, f"cannot list folder ({_why(error)})") from error


def _is_dir(path: Path) -> bool:
    """``path.is_dir()``, raising CaseError (not a bare OSError) when ``path`` cannot be examined."""
    try:
        return path.is_dir()
    except OSError as error:
        raise CaseError(path, f"cannot read ({_why(error)})") from error


def _file_problem(path: Path) -> str | None:
    """Why ``path`` is not a regular file we can open, or None when it is one."""
    try:
        if path.is_file():
            return None
        if path.is_symlink():
            return "symbolic link to a folder, not a file" if path.exists() else "broken symbolic link"
        return "is a folder, not a file" if path.is_dir() else "not a regular file"
    except OSError as error:
        return f"cannot read ({_why(error)})"


def _find_root(raw_dir: Path) -> Path:
    """Descend through single wrapper folders (as in zip downloads) to the case folders."""
    root = raw_dir
    for _ in range(3):
        if os.path.lexists(root / MAPPING_FILE) or any(_is_dir(root / grade) for grade in GRADES):
            return root
        folders = [p for p in _list(root) if not p.name.startswith(".") and _is_dir(p)]
        if len(folders) != 1 or _holds_nifti(folders[0]):
            return root
        root = folders[0]
    return root


def _holds_nifti(folder: Path) -> bool:
    try:
        return bool(_nifti_files(folder))
    except CaseError:
        return True  # an unreadable single folder is treated as a case folder (and excluded later)


def _nifti_files(folder: Path) -> list[Path]:
    """Entries with a NIfTI name, whatever their type (bad ones are reported when matched)."""
    return [p for p in _list(folder) if nifti_stem(p) is not None]


def _mapping_rows(path: Path) -> list[dict[str, str | None]]:
    """The rows of ``name_mapping.csv``.

    Raises:
        InputError: unreadable, not UTF-8, not CSV, or lacking the id or grade column.
    """
    problem = _file_problem(path)
    if problem:
        raise InputError(f"{path}: cannot read {MAPPING_FILE}: {problem}")
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            rows = list(reader)
    except OSError as error:
        raise InputError(f"{path}: cannot read {MAPPING_FILE} ({_why(error)})") from error
    except UnicodeDecodeError as error:
        raise InputError(f"{path}: {MAPPING_FILE} is not UTF-8 text (byte {error.object[error.start]:#04x} "
                         f"at offset {error.start})") from error
    except csv.Error as error:
        raise InputError(f"{path}: {MAPPING_FILE} is not valid CSV ({error})") from error
    missing = {MAPPING_ID_COLUMN, MAPPING_GRADE_COLUMN} - set(reader.fieldnames or ())
    if missing:
        raise InputError(f"{path}: missing column(s) {sorted(missing)}")
    return rows


def _read_mapping(path: Path, excluded: list[Exclusion]) -> dict[str, str]:
    """Map patient id -> grade from ``name_mapping.csv``; bad or conflicting rows are excluded."""
    grades: dict[str, set[str]] = defaultdict(set)
    for row in _mapping_rows(path):
        patient_id = (row[MAPPING_ID_COLUMN] or "").strip()
        if patient_id:
            grades[patient_id].add((row[MAPPING_GRADE_COLUMN] or "").strip().upper())
    mapping = {}
    for patient_id, values in grades.items():
        if len(values) > 1:
            excluded.append(Exclusion(patient_id, str(path), f"conflicting grades {sorted(values)} in {MAPPING_FILE}"))
        else:
            mapping[patient_id] = values.pop()
    return mapping


def _match_files(patient_id: str, folder: Path, files: list[Path],
                 inventory: Inventory) -> tuple[tuple[Path, ...], Path] | None:
    """Pick one file per modality and the mask among ``files``; record why when that fails."""
    by_suffix: dict[str, list[Path]] = defaultdict(list)
    for path in files:
        stem = nifti_stem(path).lower()
        for key in (*MODALITIES, MASK_SUFFIX):
            if stem.endswith(f"_{key}"):
                by_suffix[key].append(path)
    images = []
    for modality in MODALITIES:
        found = by_suffix.get(modality, [])
        if len(found) != 1:
            problem = "missing" if not found else f"ambiguous ({', '.join(p.name for p in found)})"
            inventory.excluded.append(Exclusion(patient_id, str(folder), f"{modality} image {problem}"))
            return None
        images.append(found[0])
    masks = by_suffix.get(MASK_SUFFIX, [])
    if not masks:
        # Known quirk: one BraTS 2020 case ships its mask under another name (e.g. *_Segm.nii).
        claimed = set(images)
        masks = [p for p in files if p not in claimed and "seg" in p.name.lower()]
        if len(masks) == 1:
            inventory.notes.append(Note(patient_id, str(masks[0]), "mask file has a non-standard name; used it"))
    if len(masks) != 1:
        problem = "missing" if not masks else f"ambiguous ({', '.join(p.name for p in masks)})"
        inventory.excluded.append(Exclusion(patient_id, str(folder), f"segmentation mask {problem}"))
        return None
    for path in (*images, masks[0]):
        problem = _file_problem(path)
        if problem:
            inventory.excluded.append(Exclusion(patient_id, str(path), problem))
            return None
    return tuple(images), masks[0]


def _case_folders(parent: Path) -> list[Path]:
    """Candidate case folders: sub-folders and broken symbolic links (reported, not skipped)."""
    entries = [p for p in _list(parent) if not p.name.startswith(".")]
    return [p for p in entries if _is_dir(p) or _file_problem(p) == "broken symbolic link"]


def _inspect(folder: Path, grade: str | None, mapping: dict[str, str], inventory: Inventory,
             seen: dict[str, list[Path]]) -> CaseFiles | None:
    """One candidate folder to a case, or None after recording the exclusion or note."""
    patient_id = folder.name
    try:
        files = _nifti_files(folder)
    except CaseError as error:
        seen[patient_id].append(folder)
        inventory.excluded.append(Exclusion(patient_id, error.path, error.reason))
        return None
    if not files:
        inventory.notes.append(Note(patient_id, str(folder), "folder holds no NIfTI files; skipped"))
        return None
    seen[patient_id].append(folder)
    if not re.match(PATIENT_ID_PATTERN, patient_id):
        inventory.excluded.append(Exclusion(patient_id, str(folder), "patient id is not a safe file name"))
        return None
    if grade is None:
        grade = mapping.get(patient_id)
        if grade is None:
            inventory.excluded.append(
                Exclusion(patient_id, str(folder), f"grade missing: not listed in {inventory.root / MAPPING_FILE}")
            )
            return None
    if grade not in GRADES:
        inventory.excluded.append(Exclusion(patient_id, str(folder), f"grade {grade!r} is not one of {GRADES}"))
        return None
    matched = _match_files(patient_id, folder, files, inventory)
    if matched is None:
        return None
    return CaseFiles(patient_id, grade, folder, matched[0], matched[1], inventory.layout)


def discover(raw_dir: str | Path) -> Inventory:
    """List the cases under ``raw_dir`` without reading image data.

    Args:
        raw_dir: a BraTS release folder (or a folder wrapping exactly one).

    Returns:
        The inventory; every folder or mapping row that is not a usable case is an exclusion.

    Raises:
        MissingInputError: ``raw_dir`` is not a folder.
        InputError: the release folder, a grade folder or ``name_mapping.csv`` cannot be read,
            or the mapping lacks its id or grade column (unreadable case folders are exclusions).
    """
    raw_dir = Path(raw_dir)
    if not _is_dir(raw_dir):
        raise MissingInputError(f"{raw_dir}: raw data folder does not exist")
    root = _find_root(raw_dir)
    grade_folders = [root / grade for grade in GRADES if _is_dir(root / grade)]
    inventory = Inventory(root=root, layout=LAYOUT_2018 if grade_folders else LAYOUT_2020)

    candidates: list[tuple[Path, str | None]] = []
    mapping: dict[str, str] = {}
    if grade_folders:
        for grade_folder in grade_folders:
            candidates += [(p, grade_folder.name) for p in _case_folders(grade_folder)]
    else:
        mapping_path = root / MAPPING_FILE
        if os.path.lexists(mapping_path):
            mapping = _read_mapping(mapping_path, inventory.excluded)
        candidates = [(p, None) for p in _case_folders(root)]

    seen: dict[str, list[Path]] = defaultdict(list)
    found: list[CaseFiles] = []
    for folder, grade in candidates:
        case = _inspect(folder, grade, mapping, inventory, seen)
        if case is not None:
            found.append(case)

    duplicates = {pid: folders for pid, folders in seen.items() if len(folders) > 1}
    for pid, folders in sorted(duplicates.items()):
        for folder in folders:
            others = ", ".join(str(f) for f in folders if f != folder)
            inventory.excluded.append(Exclusion(pid, str(folder), f"duplicate patient id (also at {others})"))
    inventory.cases = [case for case in found if case.patient_id not in duplicates]
    for patient_id in sorted(set(mapping) - set(seen)):
        inventory.excluded.append(
            Exclusion(patient_id, str(root / MAPPING_FILE), f"listed in {MAPPING_FILE} but no case folder found")
        )
    return inventory
