"""The ``split`` stage: stratified patient-level test split and K folds, plus fold and oversampling helpers."""

from __future__ import annotations

import csv
import io
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedKFold, train_test_split

from brats_llm import atomic
from brats_llm.constants import GRADE_TO_LABEL, GRADES, NO_GRADE, NO_LABEL
from brats_llm.errors import InputError

SPLIT_TEST, SPLIT_TRAINVAL = "test", "trainval"
#: Columns of the split file; ``fold`` is the validation fold of a trainval patient, -1 for test.
SPLIT_COLUMNS = ("patient_id", "grade", "label", "split", "fold")


@dataclass(frozen=True)
class SplitParams:
    """``split`` section of params.yaml.

    Attributes:
        test_fraction: share of patients held out for testing (paper: 55/365 = 0.15).
        folds: cross-validation folds over the remaining patients (paper: 5).
        seed: seed of the stratified shuffles.
    """

    test_fraction: float = 0.15
    folds: int = 5
    seed: int = 2020

    def __post_init__(self) -> None:
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must lie in (0, 1), got {self.test_fraction}")
        if self.folds < 2:
            raise ValueError(f"folds must be >= 2, got {self.folds}")
        if not 0 <= self.seed < 2**32:
            raise ValueError(f"seed must lie in [0, 2**32) (scikit-learn's random_state), got {self.seed}")


@dataclass(frozen=True)
class Assignment:
    """One patient's place in the split."""

    patient_id: str
    grade: str
    split: str
    fold: int

    @property
    def label(self) -> int:
        return NO_LABEL if self.grade == NO_GRADE else GRADE_TO_LABEL[self.grade]


def make_splits(patients: dict[str, str], params: SplitParams) -> list[Assignment]:
    """Assign each patient to test or to one of ``params.folds`` validation folds, stratified by grade.

    A release without grades (BraTS 2021, 2023+, MSD: every grade is ``NO_GRADE``) is split the same
    way without stratification; no grade is invented.

    Args:
        patients: patient id -> grade ("LGG"/"HGG", or "" for every patient of an ungraded release).
        params: split params.

    Returns:
        Assignments sorted by patient id.

    Raises:
        InputError: an unknown grade, graded and ungraded patients mixed, or too few patients of a
            grade to stratify.
    """
    unknown = {g for g in patients.values() if g not in (*GRADES, NO_GRADE)}
    if unknown:
        raise InputError(f"unknown grade(s) {sorted(unknown)}; expected {GRADES}")
    ungraded = sum(g == NO_GRADE for g in patients.values())
    if 0 < ungraded < len(patients):
        raise InputError(f"{ungraded} of {len(patients)} patients have no grade: a cohort is either graded "
                         "(BraTS 2017-2020) or not (2021, 2023+, MSD); prepare one release at a time")
    ids = np.array(sorted(patients))
    grades = np.array([patients[p] for p in ids])
    try:
        trainval, test = train_test_split(
            ids, test_size=params.test_fraction, stratify=grades, random_state=params.seed, shuffle=True
        )
    except ValueError as error:
        raise InputError(f"cannot stratify a test split of {params.test_fraction} over {dict(Counter(grades.tolist()))}: {error}") from error
    remaining = Counter(patients[p] for p in trainval)
    short = {g or "ungraded": n for g, n in remaining.items() if n < params.folds}
    if short:
        raise InputError(
            f"too few patients for {params.folds} stratified folds after the test split: {short} "
            f"(each grade needs at least {params.folds} outside the test set)"
        )
    assignments = [Assignment(p, patients[p], SPLIT_TEST, -1) for p in test]
    trainval = np.sort(trainval)
    trainval_grades = np.array([patients[p] for p in trainval])
    folds = StratifiedKFold(n_splits=params.folds, shuffle=True, random_state=params.seed)  # one class: plain K-fold
    for fold, (_, val_index) in enumerate(folds.split(trainval, trainval_grades)):
        assignments += [Assignment(p, patients[p], SPLIT_TRAINVAL, fold) for p in trainval[val_index]]
    return sorted(assignments, key=lambda a: a.patient_id)


def fold_members(assignments: list[Assignment], fold: int) -> dict[str, list[str]]:
    """Patient ids of ``train``, ``validation`` and ``test`` for cross-validation fold ``fold``."""
    folds = {a.fold for a in assignments if a.split == SPLIT_TRAINVAL}
    if fold not in folds:
        raise InputError(f"fold {fold} does not exist; folds are {sorted(folds)}")
    members: dict[str, list[str]] = {"train": [], "validation": [], "test": []}
    for a in assignments:
        key = "test" if a.split == SPLIT_TEST else ("validation" if a.fold == fold else "train")
        members[key].append(a.patient_id)
    return members


def oversample_indices(labels: list[int] | np.ndarray, seed: int) -> np.ndarray:
    """Indices that balance the classes by drawing minority rows again (LGG in BraTS).

    Each class is brought up to the majority count: every row appears at least once, the extra
    draws are without replacement where possible, and the result is shuffled with ``seed``.
    Nothing is duplicated on disk; loaders index the dataset with this.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    target = counts.max(initial=0)
    picks = []
    for cls, count in zip(classes, counts):
        rows = np.flatnonzero(labels == cls)
        full, rest = divmod(int(target), int(count))
        picks += [np.tile(rows, full), rng.choice(rows, size=rest, replace=False)]
    order = np.concatenate(picks) if picks else np.array([], dtype=int)
    return rng.permutation(order)


def write_splits(path: str | os.PathLike, assignments: list[Assignment]) -> None:
    """Write the split file as CSV (one row per patient, stable order)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(SPLIT_COLUMNS)
    for a in assignments:
        writer.writerow([a.patient_id, a.grade, a.label, a.split, a.fold])
    atomic.write_text(path, buffer.getvalue())


def read_splits(path: str | os.PathLike) -> list[Assignment]:
    """Read a split file written by :func:`write_splits`; malformed rows fail loudly."""
    path = Path(path)
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != SPLIT_COLUMNS:
            raise InputError(f"{path}: expected columns {SPLIT_COLUMNS}, got {reader.fieldnames}")
        rows = []
        for line, row in enumerate(reader, start=2):
            if row["grade"] not in (*GRADES, NO_GRADE) or row["split"] not in (SPLIT_TEST, SPLIT_TRAINVAL):
                raise InputError(f"{path}:{line}: bad grade or split in {row}")
            rows.append(Assignment(row["patient_id"], row["grade"], row["split"], int(row["fold"])))
    return rows


def split_summary(assignments: list[Assignment]) -> dict[str, dict[str, int]]:
    """Patient counts per split (test, and each validation fold) and grade: the details beside the headline."""
    summary: dict[str, dict[str, int]] = {}
    for a in assignments:
        key = SPLIT_TEST if a.split == SPLIT_TEST else f"fold{a.fold}"
        counts = summary.setdefault(key, {g: 0 for g in GRADES} if a.grade != NO_GRADE else {"ungraded": 0})
        counts[a.grade or "ungraded"] += 1
    return dict(sorted(summary.items()))


def split_headline(assignments: list[Assignment]) -> dict[str, int]:
    """The DVC metrics headline: test patients (``n``, as in every evaluation's metrics.json) and the rest."""
    test = sum(a.split == SPLIT_TEST for a in assignments)
    return {"n": test, "n_trainval": len(assignments) - test}


def details_file(summary_file: str | os.PathLike) -> Path:
    """Where the per-fold, per-grade counts go: beside the summary, ``<stem>.details.json``."""
    return Path(summary_file).with_suffix(".details.json")


def split_volumes(volumes_dir: str | os.PathLike, out_file: str | os.PathLike, params: SplitParams,
                  summary_file: str | os.PathLike | None = None) -> list[Assignment]:
    """The stage: read patient ids and grades from the volumes dataset, write the split file.

    With ``summary_file``: the headline (:func:`split_headline`) there and :func:`split_summary` in
    :func:`details_file`.
    """
    from datasets import load_from_disk

    dataset = load_from_disk(str(volumes_dir)).select_columns(["patient_id", "grade"])
    patients = dict(zip(dataset["patient_id"], dataset["grade"]))
    if len(patients) != len(dataset):
        raise InputError(f"{volumes_dir}: duplicate patient ids in the volumes dataset")
    assignments = make_splits(patients, params)
    write_splits(out_file, assignments)
    if summary_file is not None:
        atomic.write_json(summary_file, split_headline(assignments))
        atomic.write_json(details_file(summary_file), split_summary(assignments))
    return assignments
