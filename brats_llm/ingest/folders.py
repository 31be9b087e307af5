"""Releases of one folder per case: candidate folders, file matching by suffix, grades and duplicate ids."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Mapping
from pathlib import Path

from brats_llm.constants import GRADES, MASK_SUFFIX, MODALITIES, NO_GRADE, PATIENT_ID_PATTERN
from brats_llm.ingest.cases import (
    CaseError,
    CaseFiles,
    Exclusion,
    Inventory,
    Note,
    dangling_link,
    file_problem,
    is_dir,
    list_dir,
    nifti_files,
    nifti_stem,
)

#: Why a case folder named ``.something`` is left out (it is reported, not dropped silently).
HIDDEN_REASON = "hidden folder (its name starts with '.') holding NIfTI files: skipped; rename it to include the case"
#: A release's grade source: (patient id, case folder) -> grade; raises CaseError to exclude the case.
GradeSource = Callable[[str, Path], str]


def suffixes(names: Mapping[str, str], separator: str) -> dict[str, str]:
    """File-name suffix (separator included) of each modality and of the mask; ``names``: modality -> name in files."""
    return {**{m: f"{separator}{names[m]}" for m in MODALITIES}, MASK_SUFFIX: f"{separator}{MASK_SUFFIX}"}


def no_grade(patient_id: str, folder: Path) -> str:
    """The grade source of releases without grades."""
    return NO_GRADE


def checked_grade(grade: str, folder: Path) -> str:
    """``grade`` when it is one of ``GRADES``; else CaseError naming the folder."""
    if grade not in GRADES:
        raise CaseError(folder, f"grade {grade!r} is not one of {GRADES}")
    return grade


def case_folders(parent: Path) -> list[Path]:
    """Candidate case folders: sub-folders and broken or looping symbolic links (reported, not skipped)."""
    entries = [p for p in list_dir(parent) if not p.name.startswith(".")]
    return [p for p in entries if is_dir(p) or dangling_link(p)]


def _hidden_case_folders(parent: Path) -> list[Path]:
    """Hidden sub-folders (name starting with ``.``) that hold NIfTI files: cases the user may have meant."""
    found = []
    for path in list_dir(parent):
        try:
            if path.name.startswith(".") and path.is_dir() and any(nifti_stem(p) for p in path.iterdir()):
                found.append(path)
        except OSError:
            continue  # an unreadable hidden folder (.cache, .Trash) is not reported as a case
    return found


def _exclude_hidden(parents: list[Path], inventory: Inventory) -> None:
    for folder in (hidden for parent in parents for hidden in _hidden_case_folders(parent)):
        inventory.excluded.append(Exclusion(folder.name, str(folder), HIDDEN_REASON))


def match_files(patient_id: str, folder: Path, files: list[Path], names: Mapping[str, str],
                inventory: Inventory) -> tuple[tuple[Path, ...], Path] | None:
    """Pick one file per modality and the mask among ``files`` by their suffixes ``names`` (see :func:`suffixes`);
    record why when that fails."""
    by_suffix: dict[str, list[Path]] = defaultdict(list)
    for path in files:
        stem = nifti_stem(path).lower()
        for key, suffix in names.items():
            if stem.endswith(suffix):
                by_suffix[key].append(path)
    images = []
    for modality in MODALITIES:
        found = by_suffix.get(modality, [])
        if len(found) != 1:
            problem = "missing" if not found else f"ambiguous ({', '.join(p.name for p in found)})"
            named = "" if names[modality][1:] == modality else f" (*{names[modality]}.nii.gz)"
            inventory.excluded.append(Exclusion(patient_id, str(folder), f"{modality} image{named} {problem}"))
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
        problem = file_problem(path)
        if problem:
            inventory.excluded.append(Exclusion(patient_id, str(path), problem))
            return None
    return tuple(images), masks[0]


def _inspect(folder: Path, inventory: Inventory, seen: dict[str, list[Path]], names: Mapping[str, str],
             grade_of: GradeSource, label_map: tuple[tuple[int, int], ...]) -> CaseFiles | None:
    """One candidate folder to a case, or None after recording the exclusion or note."""
    patient_id = folder.name
    try:
        files = nifti_files(folder)
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
    try:
        grade = grade_of(patient_id, folder)
    except CaseError as error:
        inventory.excluded.append(Exclusion(patient_id, error.path, error.reason))
        return None
    matched = match_files(patient_id, folder, files, names, inventory)
    if matched is None:
        return None
    return CaseFiles(patient_id, grade, folder, matched[0], matched[1], inventory.layout, None, label_map)


def collect(inventory: Inventory, folders: list[Path], *, hidden_in: list[Path], names: Mapping[str, str],
            grade_of: GradeSource, label_map: Mapping[int, int]) -> set[str]:
    """Turn candidate case ``folders`` into ``inventory`` cases (hidden case folders under ``hidden_in`` and
    duplicate ids are exclusions); returns the patient ids seen."""
    _exclude_hidden(hidden_in, inventory)
    labels = tuple(sorted(label_map.items()))
    seen: dict[str, list[Path]] = defaultdict(list)
    found = [case for folder in folders
             if (case := _inspect(folder, inventory, seen, names, grade_of, labels)) is not None]
    duplicates = {pid: paths for pid, paths in seen.items() if len(paths) > 1}
    for pid, paths in sorted(duplicates.items()):
        for folder in paths:
            others = ", ".join(str(f) for f in paths if f != folder)
            inventory.excluded.append(Exclusion(pid, str(folder), f"duplicate patient id (also at {others})"))
    inventory.cases = [case for case in found if case.patient_id not in duplicates]
    return set(seen)
