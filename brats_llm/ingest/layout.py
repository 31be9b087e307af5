"""Find the cases of a raw BraTS release (2020 flat layout or 2018/2019 HGG/LGG layout)."""

from __future__ import annotations

import csv
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from brats_llm.constants import GRADES, MASK_SUFFIX, MODALITIES, PATIENT_ID_PATTERN

#: The BraTS 2020 grade table and the columns we read from it.
MAPPING_FILE = "name_mapping.csv"
MAPPING_ID_COLUMN = "BraTS_2020_subject_ID"
MAPPING_GRADE_COLUMN = "Grade"
LAYOUT_2020, LAYOUT_2018 = "brats2020", "brats2018"
NIFTI_SUFFIXES = (".nii.gz", ".nii")


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


def _find_root(raw_dir: Path) -> Path:
    """Descend through single wrapper folders (as in zip downloads) to the case folders."""
    root = raw_dir
    for _ in range(3):
        if (root / MAPPING_FILE).is_file() or any((root / grade).is_dir() for grade in GRADES):
            return root
        children = [p for p in root.iterdir() if not p.name.startswith(".")]
        folders = [p for p in children if p.is_dir()]
        if len(folders) != 1 or any(_nifti_files(f) for f in folders):
            return root
        root = folders[0]
    return root


def _nifti_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and nifti_stem(p) is not None)


def _read_mapping(path: Path, excluded: list[Exclusion]) -> dict[str, str]:
    """Map patient id -> grade from ``name_mapping.csv``; bad or conflicting rows are excluded."""
    grades: dict[str, set[str]] = defaultdict(set)
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = {MAPPING_ID_COLUMN, MAPPING_GRADE_COLUMN} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: missing column(s) {sorted(missing)}")
        for row in reader:
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


def _match_files(patient_id: str, folder: Path, inventory: Inventory) -> tuple[tuple[Path, ...], Path] | None:
    """Pick one file per modality and the mask in ``folder``; record why when that fails."""
    files = _nifti_files(folder)
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
    return tuple(images), masks[0]


def discover(raw_dir: str | Path) -> Inventory:
    """List the cases under ``raw_dir`` without reading image data.

    Args:
        raw_dir: a BraTS release folder (or a folder wrapping exactly one).

    Returns:
        The inventory; every folder or mapping row that is not a usable case is an exclusion.

    Raises:
        FileNotFoundError: ``raw_dir`` is not a folder.
        ValueError: ``name_mapping.csv`` lacks its id or grade column.
    """
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise FileNotFoundError(f"{raw_dir}: raw data folder does not exist")
    root = _find_root(raw_dir)
    grade_folders = [root / grade for grade in GRADES if (root / grade).is_dir()]
    inventory = Inventory(root=root, layout=LAYOUT_2018 if grade_folders else LAYOUT_2020)

    candidates: list[tuple[Path, str | None]] = []
    mapping: dict[str, str] = {}
    if grade_folders:
        for grade_folder in grade_folders:
            candidates += [(p, grade_folder.name) for p in sorted(grade_folder.iterdir()) if p.is_dir()]
    else:
        mapping_path = root / MAPPING_FILE
        if mapping_path.is_file():
            mapping = _read_mapping(mapping_path, inventory.excluded)
        candidates = [(p, None) for p in sorted(root.iterdir()) if p.is_dir()]

    seen: dict[str, list[Path]] = defaultdict(list)
    found: list[CaseFiles] = []
    for folder, grade in candidates:
        patient_id = folder.name
        if patient_id.startswith("."):
            continue
        if not _nifti_files(folder):
            inventory.notes.append(Note(patient_id, str(folder), "folder holds no NIfTI files; skipped"))
            continue
        seen[patient_id].append(folder)
        if not re.match(PATIENT_ID_PATTERN, patient_id):
            inventory.excluded.append(Exclusion(patient_id, str(folder), "patient id is not a safe file name"))
            continue
        if grade is None:
            grade = mapping.get(patient_id)
            if grade is None:
                inventory.excluded.append(
                    Exclusion(patient_id, str(folder), f"grade missing: not listed in {root / MAPPING_FILE}")
                )
                continue
        if grade not in GRADES:
            inventory.excluded.append(Exclusion(patient_id, str(folder), f"grade {grade!r} is not one of {GRADES}"))
            continue
        matched = _match_files(patient_id, folder, inventory)
        if matched is not None:
            found.append(CaseFiles(patient_id, grade, folder, matched[0], matched[1], inventory.layout))

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
