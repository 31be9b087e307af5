"""BraTS 2020: flat case folders ``<case>_{flair,t1,t1ce,t2,seg}.nii[.gz]`` plus ``name_mapping.csv`` (grades)."""

from __future__ import annotations

import csv
import os
from collections import defaultdict
from pathlib import Path

from brats_llm.errors import InputError
from brats_llm.ingest.cases import CaseError, Exclusion, Inventory, Release, file_problem, why
from brats_llm.ingest.folders import case_folders, checked_grade, collect
from brats_llm.ingest.layouts.brats2018 import LABEL_MAP, SUFFIXES

NAME = "brats2020"
#: The BraTS 2020 grade table and the columns we read from it.
MAPPING_FILE = "name_mapping.csv"
MAPPING_ID_COLUMN = "BraTS_2020_subject_ID"
MAPPING_GRADE_COLUMN = "Grade"


def detect(root: Path) -> bool:
    """A ``name_mapping.csv`` in the release folder."""
    return os.path.lexists(root / MAPPING_FILE)


def _mapping_rows(path: Path) -> list[dict[str, str | None]]:
    """The rows of ``name_mapping.csv``.

    Raises:
        InputError: unreadable, not UTF-8, not CSV, or lacking the id or grade column.
    """
    problem = file_problem(path)
    if problem:
        raise InputError(f"{path}: cannot read {MAPPING_FILE}: {problem}")
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            rows = list(reader)
    except OSError as error:
        raise InputError(f"{path}: cannot read {MAPPING_FILE} ({why(error)})") from error
    except UnicodeDecodeError as error:
        raise InputError(f"{path}: {MAPPING_FILE} is not UTF-8 text (byte {error.object[error.start]:#04x} "
                         f"at offset {error.start})") from error
    except csv.Error as error:
        raise InputError(f"{path}: {MAPPING_FILE} is not valid CSV ({error})") from error
    missing = {MAPPING_ID_COLUMN, MAPPING_GRADE_COLUMN} - set(reader.fieldnames or ())
    if missing:
        raise InputError(f"{path}: missing column(s) {sorted(missing)}")
    return rows


def read_mapping(path: Path, excluded: list[Exclusion]) -> dict[str, str]:
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


def discover(root: Path) -> Inventory:
    """The case folders of ``root`` with their grades from ``name_mapping.csv``.

    Also the registry's fallback for flat case folders no release claims: without the file every case is
    excluded as "grade missing".
    """
    inventory = Inventory(root=root, layout=NAME)
    mapping_path = root / MAPPING_FILE
    folders = case_folders(root)
    mapping = read_mapping(mapping_path, inventory.excluded) if os.path.lexists(mapping_path) else {}

    def grade_of(patient_id: str, folder: Path) -> str:
        grade = mapping.get(patient_id)
        if grade is None:
            absent = "" if os.path.lexists(mapping_path) else " (no such file; BraTS 2021 case folders are named BraTS2021_NNNNN)"
            raise CaseError(folder, f"grade missing: not listed in {mapping_path}{absent}")
        return checked_grade(grade, folder)

    seen = collect(inventory, folders, hidden_in=[root], names=SUFFIXES, grade_of=grade_of, label_map=LABEL_MAP)
    for patient_id in sorted(set(mapping) - seen):
        inventory.excluded.append(
            Exclusion(patient_id, str(mapping_path), f"listed in {MAPPING_FILE} but no case folder found")
        )
    return inventory


RELEASE = Release(NAME, LABEL_MAP, graded=True, marker=True, detect=detect, discover=discover)
