"""The ``prepare`` stage: raw BraTS cases to the (4, 95, 128, 128) uint8 volumes dataset."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Array3D, Array4D, ClassLabel, Dataset, DatasetInfo, Features, List, Value, load_from_disk
from datasets.arrow_writer import ArrowWriter
from datasets.table import MemoryMappedTable
from tqdm.auto import tqdm

from brats_llm import atomic
from brats_llm.parallel import process_context
from brats_llm.constants import GRADE_TO_LABEL, GRADES, IMAGE_SIZE, MODALITIES, N_SLICES
from brats_llm.ingest.layout import CaseFiles, Exclusion, Note, discover
from brats_llm.ingest.nifti import CaseError, load_case
from brats_llm.preprocess import transforms


@dataclass(frozen=True)
class PrepareParams:
    """``prepare`` section of params.yaml.

    Attributes:
        raw_dir: the raw release (BraTS 2020 folder with ``name_mapping.csv``, or 2018/2019 HGG/LGG).
        centre_on: centre the axial window on the ``tumour`` (paper) or the ``volume``.
        slices: axial window length (paper: 95).
        size: in-plane size after resizing (paper: 128).
        lower_percentile, upper_percentile: robust intensity range inside the brain, per modality.
    """

    raw_dir: str = "data/raw/demo"
    centre_on: str = "tumour"
    slices: int = N_SLICES
    size: int = IMAGE_SIZE
    lower_percentile: float = 0.5
    upper_percentile: float = 99.5

    def __post_init__(self) -> None:
        if self.centre_on not in transforms.CENTRE_CHOICES:
            raise ValueError(f"centre_on must be one of {transforms.CENTRE_CHOICES}, got {self.centre_on!r}")
        if self.slices < 1 or self.size < 1:
            raise ValueError("slices and size must be positive")
        if not 0.0 <= self.lower_percentile < self.upper_percentile <= 100.0:
            raise ValueError("need 0 <= lower_percentile < upper_percentile <= 100")


@dataclass
class PrepareResult:
    """What a ``prepare`` run produced."""

    out_dir: Path
    layout: str
    included: list[str]
    excluded: list[Exclusion]
    notes: list[Note]


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


def preprocess_case(case: CaseFiles, params: PrepareParams, root: Path) -> dict[str, Any]:
    """Load, validate and preprocess one case into a dataset row.

    Raises:
        CaseError: naming the file and the reason the case cannot be used.
    """
    loaded = load_case(case)
    try:
        start, stop = transforms.axial_window(loaded.mask, params.slices, params.centre_on)  # type: ignore[arg-type]
    except ValueError as error:
        raise CaseError(case.mask, str(error)) from error
    brain = transforms.brain_mask(loaded.images)
    window = np.s_[:, :, start:stop]
    channels = []
    for image in loaded.images:
        low, high = transforms.intensity_range(image, brain, params.lower_percentile, params.upper_percentile)
        scaled = transforms.scale_to_255(image[window], brain[window], low, high)
        channels.append(transforms.to_uint8(transforms.resize_slices(transforms.to_slices(scaled), params.size)))
    tumour = loaded.mask > 0
    tumour_window = transforms.to_slices(tumour[window].view(np.uint8))
    mask = transforms.resize_slices(tumour_window, params.size, nearest=True)
    nx, ny, _ = loaded.mask.shape
    sx, sy, sz = loaded.spacing_mm
    return {
        "patient_id": case.patient_id,
        "grade": case.grade,
        "label": GRADE_TO_LABEL[case.grade],
        "image": np.stack(channels),
        "mask": mask,
        "spacing_mm": [sz, sy * ny / params.size, sx * nx / params.size],
        "crop_start": start,
        "crop_stop": stop,
        "original_shape": list(loaded.mask.shape),
        "tumour_fraction_in_window": float(tumour[window].sum() / tumour.sum()),
        "layout": case.layout,
        "source": case.folder.relative_to(root).as_posix(),
        "_notes": list(loaded.notes),
    }


def _worker_init() -> None:
    import cv2

    cv2.setNumThreads(1)


def _process(args: tuple[CaseFiles, PrepareParams, Path]) -> tuple[str, Any]:
    case, params, root = args
    try:
        return "ok", preprocess_case(case, params, root)
    except CaseError as error:
        return "excluded", Exclusion(case.patient_id, error.path, error.reason)
    except MemoryError:
        raise
    except Exception as error:  # a bug or an unforeseen file problem must not stop the batch
        return "excluded", Exclusion(case.patient_id, str(case.folder), f"unexpected error: {error!r}")


def prepare(raw_dir: str | os.PathLike, out_dir: str | os.PathLike, params: PrepareParams,
            report: str | os.PathLike | None = None, *, workers: int = 0,
            progress: bool = True) -> PrepareResult:
    """Build the volumes dataset at ``out_dir`` from the raw release at ``raw_dir``.

    Cases are processed one per task on ``workers`` processes and streamed to disk in
    patient order, so memory does not grow with the cohort. The dataset appears atomically.

    Args:
        raw_dir: raw release folder (never modified).
        out_dir: dataset folder to (re)create with ``save_to_disk`` layout.
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

    with atomic.atomic_dir(out_dir) as staging, tempfile.TemporaryDirectory(dir=out_dir.parent) as scratch:
        arrow_path = Path(scratch) / "volumes.arrow"
        with ArrowWriter(features=features, path=str(arrow_path), writer_batch_size=1) as writer:
            pool = process_context().Pool(workers, initializer=_worker_init) if workers > 1 and len(tasks) > 1 else None
            try:
                results = pool.imap(_process, tasks) if pool else map(_process, tasks)
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
            writer.finalize()
        if included:
            digest = hashlib.sha256(arrow_path.read_bytes()).hexdigest()[:16]
            info = DatasetInfo(
                description=f"BraTS volumes {features['image'].shape} uint8, modalities {list(MODALITIES)}",
                features=features,
            )
            table = MemoryMappedTable.from_file(str(arrow_path))
            Dataset(table, info=info, fingerprint=digest).save_to_disk(str(staging))
        if report is not None:
            write_report(report, inventory.layout, params, included, excluded, notes)
        if not included:
            raise NoUsableCaseError(f"{raw_dir}: no usable case ({len(excluded)} excluded; see the report)")
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
