"""The ``prepare`` stage: raw BraTS cases to the (4, 95, 128, 128) uint8 volumes dataset."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Array3D, Array4D, ClassLabel, Dataset, Features, List, Value, load_from_disk
from tqdm.auto import tqdm

from brats_llm import atomic
from brats_llm.arrowio import EmptyDatasetError, dataset_writer
from brats_llm.constants import GRADES, IMAGE_SIZE, MODALITIES, N_SLICES, NO_GRADE, REGION_LABELS
from brats_llm.errors import BratsLlmError, InputError
from brats_llm.ingest.layout import GRADED_LAYOUTS, Exclusion, Note, discover
from brats_llm.parallel import process_context
from brats_llm.preprocess.case import CaseFailure, PrepareParams, process_task, worker_init


@dataclass
class PrepareResult:
    """What a ``prepare`` run produced."""

    out_dir: Path
    layout: str
    included: list[str]
    excluded: list[Exclusion]
    notes: list[Note]
    errors: list[CaseFailure] = field(default_factory=list)


#: Modules the worker server imports once, so workers start without importing ``datasets``.
PRELOAD = ("brats_llm.preprocess.case",)


class NoUsableCaseError(InputError, RuntimeError):
    """Every case was excluded; the report says why for each."""


class CaseFailuresError(BratsLlmError, RuntimeError):
    """Some cases hit unexpected exceptions (bugs): the dataset and report were written without
    them, the report's ``errors`` hold their tracebacks. ``result`` is what the run produced."""

    def __init__(self, message: str, result: PrepareResult):
        super().__init__(message)
        self.result = result


def volume_features(slices: int = N_SLICES, size: int = IMAGE_SIZE) -> Features:
    """Explicit schema of the volumes dataset (uint8 arrays, so nothing is upcast on disk).

    ``mask`` is the whole tumour (0/1) and equals ``regions > 0``; ``regions`` holds the sub-regions
    in the ``REGION_LABELS`` convention (0 background, 1 NCR/NET, 2 oedema, 3 enhancing). Releases
    without grades have ``grade == NO_GRADE`` ("") and ``label == NO_LABEL`` (-1).
    """
    return Features(
        {
            "patient_id": Value("string"),
            "grade": Value("string"),
            "label": ClassLabel(names=list(GRADES)),
            "image": Array4D((len(MODALITIES), slices, size, size), "uint8"),
            "mask": Array3D((slices, size, size), "uint8"),
            "regions": Array3D((slices, size, size), "uint8"),
            "spacing_mm": List(Value("float32"), length=3),
            "crop_start": Value("int32"),
            "crop_stop": Value("int32"),
            "original_shape": List(Value("int32"), length=3),
            "tumour_fraction_in_window": Value("float32"),
            "layout": Value("string"),
            "source": Value("string"),
        }
    )


def load_volumes(path: str | os.PathLike) -> Dataset:
    """Open a volumes dataset with numpy output that keeps ``image``/``mask`` as uint8.

    ``datasets``' numpy formatter casts integer arrays to int64 unless a dtype is given, so the
    arrays are selected with ``dtype=np.uint8`` and the other columns are returned as Python values.
    """
    return numpy_rows(load_from_disk(str(path)))


def numpy_rows(dataset: Dataset) -> Dataset:
    """``dataset`` formatted so ``image``/``mask``/``regions`` are uint8 arrays, other columns Python values."""
    arrays = [c for c in ("image", "mask", "regions") if c in dataset.column_names]
    return dataset.with_format("numpy", columns=arrays, dtype=np.uint8, output_all_columns=True)


def ungraded_patients(dataset: Dataset) -> list[str]:
    """Patient ids without a grade (``grade == NO_GRADE``, ``label == -1``: BraTS 2021, 2023+, MSD).

    Stages that need grades (stratified split, grade classification) must refuse a dataset where
    this is not empty.
    """
    rows = dataset.select_columns(["patient_id", "grade"])
    return [pid for pid, grade in zip(rows["patient_id"], rows["grade"]) if grade == NO_GRADE]


def prepare(raw_dir: str | os.PathLike, out_dir: str | os.PathLike, params: PrepareParams,
            report: str | os.PathLike | None = None, *, workers: int = 0,
            progress: bool = True, strict: bool = False) -> PrepareResult:
    """Build the volumes dataset at ``out_dir`` from the raw release at ``raw_dir``.

    Cases are processed one per task on ``workers`` processes and streamed to disk in
    patient order, so memory does not grow with the cohort. The dataset appears atomically.

    Args:
        raw_dir: raw release folder (never modified).
        out_dir: dataset folder to (re)create, in the ``save_to_disk`` layout (one Arrow file).
        params: the ``prepare`` params.
        report: optional JSON report path (included ids, exclusions with reasons, notes,
            internal errors with tracebacks).
        workers: processes (0 = all cores); the output does not depend on it.
        progress: show a progress bar.
        strict: exclude cases whose axial window cuts off tumour voxels (otherwise a note).

    Returns:
        The ids included, the exclusions and the notes.

    Raises:
        NoUsableCaseError: no case could be used (the report is still written).
        CaseFailuresError: some cases hit an unexpected exception (a bug); raised after the
            dataset of the other cases and the report are written.
        InputError: the release (folder, grade folder, name_mapping.csv) cannot be read.
    """
    inventory = discover(raw_dir)
    out_dir = Path(out_dir)
    result = PrepareResult(out_dir, inventory.layout, [], list(inventory.excluded), list(inventory.notes))
    features = volume_features(params.slices, params.size)
    workers = workers or os.cpu_count() or 1
    tasks = [(case, params, inventory.root) for case in inventory.cases]

    graded = "grades LGG/HGG" if inventory.layout in GRADED_LAYOUTS else "no grades (grade '', label -1)"
    description = (f"BraTS volumes {features['image'].shape} uint8, modalities {list(MODALITIES)}; regions "
                   f"{dict(REGION_LABELS)}; release {inventory.layout}, {graded}")
    try:
        with dataset_writer(out_dir, features, description, kind="volumes") as writer:
            pool = process_context(PRELOAD).Pool(workers, initializer=worker_init) if workers > 1 and len(tasks) > 1 else None
            try:
                results = pool.imap(process_task, tasks) if pool else map(process_task, tasks)
                bar = tqdm(results, total=len(tasks), desc="prepare", unit="case", disable=not progress)
                for status, value in bar:
                    _record(result, status, value, writer, strict)
            finally:
                if pool:
                    pool.terminate()
            if report is not None:
                write_report(report, params, result)
    except EmptyDatasetError:
        if not result.errors:
            reasons = "; ".join(f"{e.id}: {e.reason}" for e in result.excluded[:3]) or "no case folder found"
            where = f"see {report}" if report is not None else "rerun with --report FILE for every reason"
            raise NoUsableCaseError(f"{raw_dir}: no usable case ({len(result.excluded)} excluded: {reasons}; {where})") from None
    if result.errors:
        raise CaseFailuresError(_failures_message(result, report), result)
    return result


def _record(result: PrepareResult, status: str, value: Any, writer: Any, strict: bool) -> None:
    """File one case's outcome: write its row, or record its exclusion or internal error."""
    if status == "excluded":
        result.excluded.append(value)
        return
    if status == "error":
        result.errors.append(value)
        return
    patient_id = value["patient_id"]
    result.notes += [Note(patient_id, path, message) for path, message in value.pop("_notes")]
    lost = value.pop("_lost_tumour")
    if lost is not None and strict:
        result.excluded.append(Exclusion(patient_id, lost[0], f"{lost[1]}; excluded by --strict"))
        return
    if lost is not None:
        result.notes.append(Note(patient_id, *lost))
    writer.write(value)
    result.included.append(patient_id)


def _failures_message(result: PrepareResult, report: str | os.PathLike | None) -> str:
    ids = ", ".join(failure.id for failure in result.errors)
    written = f"the {len(result.included)} other case(s) were written" if result.included else "no dataset was written"
    where = f"tracebacks in {report}" if report is not None else "rerun with --report to keep the tracebacks"
    return (f"{len(result.errors)} case(s) hit internal errors (a bug, not bad input): {ids}; "
            f"{written}; {where}")


def write_report(path: str | os.PathLike, params: PrepareParams, result: PrepareResult) -> None:
    """Write the report (JSON, stable key order): included ids, exclusions, notes, internal errors."""
    atomic.write_json(
        path,
        {
            "layout": result.layout,
            "params": dataclasses.asdict(params),
            "counts": {"included": len(result.included), "excluded": len(result.excluded),
                       "errors": len(result.errors)},
            "included": result.included,
            "excluded": [dataclasses.asdict(e) for e in result.excluded],
            "notes": [dataclasses.asdict(n) for n in result.notes],
            "errors": [dataclasses.asdict(e) for e in result.errors],
        },
    )
