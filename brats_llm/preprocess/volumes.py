"""The ``prepare`` stage: raw BraTS cases to the (4, 95, 128, 128) uint8 volumes dataset."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from datasets import Array3D, Array4D, ClassLabel, Dataset, Features, List, Value, load_from_disk
from tqdm.auto import tqdm

from brats_llm import atomic
from brats_llm.arrowio import EmptyDatasetError, dataset_writer
from brats_llm.constants import GRADES, IMAGE_SIZE, MODALITIES, N_SLICES
from brats_llm.ingest.layout import Exclusion, Note, discover
from brats_llm.parallel import process_context
from brats_llm.preprocess.case import PrepareParams, process_task, worker_init


@dataclass
class PrepareResult:
    """What a ``prepare`` run produced."""

    out_dir: Path
    layout: str
    included: list[str]
    excluded: list[Exclusion]
    notes: list[Note]


#: Modules the worker server imports once, so workers start without importing ``datasets``.
PRELOAD = ("brats_llm.preprocess.case",)


class NoUsableCaseError(RuntimeError):
    """Every case was excluded; the report says why for each."""


def volume_features(slices: int = N_SLICES, size: int = IMAGE_SIZE) -> Features:
    """Explicit schema of the volumes dataset (uint8 arrays, so nothing is upcast on disk)."""
    return Features(
        {
            "patient_id": Value("string"),
            "grade": Value("string"),
            "label": ClassLabel(names=list(GRADES)),
            "image": Array4D((len(MODALITIES), slices, size, size), "uint8"),
            "mask": Array3D((slices, size, size), "uint8"),
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
    dataset = load_from_disk(str(path))
    return dataset.with_format("numpy", columns=["image", "mask"], dtype=np.uint8, output_all_columns=True)


def prepare(raw_dir: str | os.PathLike, out_dir: str | os.PathLike, params: PrepareParams,
            report: str | os.PathLike | None = None, *, workers: int = 0,
            progress: bool = True) -> PrepareResult:
    """Build the volumes dataset at ``out_dir`` from the raw release at ``raw_dir``.

    Cases are processed one per task on ``workers`` processes and streamed to disk in
    patient order, so memory does not grow with the cohort. The dataset appears atomically.

    Args:
        raw_dir: raw release folder (never modified).
        out_dir: dataset folder to (re)create, in the ``save_to_disk`` layout (one Arrow file).
        params: the ``prepare`` params.
        report: optional JSON report path (included ids, exclusions with reasons, notes).
        workers: processes (0 = all cores); the output does not depend on it.
        progress: show a progress bar.

    Returns:
        The ids included and the exclusions.

    Raises:
        NoUsableCaseError: no case could be used (the report is still written).
    """
    inventory = discover(raw_dir)
    out_dir = Path(out_dir)
    excluded = list(inventory.excluded)
    notes = list(inventory.notes)
    included: list[str] = []
    features = volume_features(params.slices, params.size)
    workers = workers or os.cpu_count() or 1
    tasks = [(case, params, inventory.root) for case in inventory.cases]

    description = f"BraTS volumes {features['image'].shape} uint8, modalities {list(MODALITIES)}"
    try:
        with dataset_writer(out_dir, features, description) as writer:
            pool = process_context(PRELOAD).Pool(workers, initializer=worker_init) if workers > 1 and len(tasks) > 1 else None
            try:
                results = pool.imap(process_task, tasks) if pool else map(process_task, tasks)
                bar = tqdm(results, total=len(tasks), desc="prepare", unit="case", disable=not progress)
                for status, value in bar:
                    if status == "ok":
                        notes += [Note(value["patient_id"], value["source"], n) for n in value.pop("_notes")]
                        writer.write(value)
                        included.append(value["patient_id"])
                    else:
                        excluded.append(value)
            finally:
                if pool:
                    pool.terminate()
            if report is not None:
                write_report(report, inventory.layout, params, included, excluded, notes)
    except EmptyDatasetError:
        raise NoUsableCaseError(f"{raw_dir}: no usable case ({len(excluded)} excluded; see the report)") from None
    return PrepareResult(out_dir, inventory.layout, included, excluded, notes)


def write_report(path: str | os.PathLike, layout: str, params: PrepareParams, included: list[str],
                 excluded: list[Exclusion], notes: list[Note]) -> None:
    """Write the exclusions report (JSON, stable key order)."""
    atomic.write_json(
        path,
        {
            "layout": layout,
            "params": dataclasses.asdict(params),
            "counts": {"included": len(included), "excluded": len(excluded)},
            "included": included,
            "excluded": [dataclasses.asdict(e) for e in excluded],
            "notes": [dataclasses.asdict(n) for n in notes],
        },
    )
