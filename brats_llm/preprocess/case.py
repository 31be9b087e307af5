"""Preprocess one case: load, validate, window, scale to 0-255 and resize to the dataset row."""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from brats_llm.constants import GRADE_TO_LABEL, IMAGE_SIZE, N_SLICES, NO_GRADE, NO_LABEL
from brats_llm.ingest.layout import CaseFiles, Exclusion
from brats_llm.ingest.nifti import CaseError, load_case, numeric_guard
from brats_llm.preprocess import transforms


@dataclass(frozen=True)
class PrepareParams:
    """``prepare`` section of params.yaml.

    Attributes:
        raw_dir: the raw release: BraTS 2018/2019 (HGG/LGG), 2020 (``name_mapping.csv``), 2021,
            2023/2024 glioma, or MSD Task01_BrainTumour (see ``brats_llm.ingest.layout``).
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
        if not self.raw_dir:
            raise ValueError("raw_dir must name the raw release folder, got ''")
        for name in ("slices", "size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.lower_percentile < 100.0:
            raise ValueError(f"lower_percentile must lie in [0, 100), got {self.lower_percentile}")
        if not self.lower_percentile < self.upper_percentile <= 100.0:
            raise ValueError(f"upper_percentile must be above lower_percentile ({self.lower_percentile}) and <= 100, "
                             f"got {self.upper_percentile}")


@dataclass(frozen=True)
class CaseFailure:
    """A case that hit an unexpected exception (a bug, not bad input), with the worker's traceback."""

    id: str
    path: str
    error: str
    traceback: str


def intensity_range(image: np.ndarray, brain: np.ndarray, path: Path, params: PrepareParams) -> tuple[float, float]:
    """The robust range of ``image`` inside ``brain``.

    Raises:
        CaseError: the modality is constant inside the brain, or its percentile range is empty
            (the channel would be blank).
    """
    low, high = transforms.intensity_range(image, brain, params.lower_percentile, params.upper_percentile)
    if high > low:
        return low, high
    values = transforms.masked_values(image, brain)
    if values.min() == values.max():
        raise CaseError(path, f"constant inside the brain (every brain voxel is {values.min():g})")
    raise CaseError(path, f"no contrast inside the brain: the {params.lower_percentile:g}th and "
                          f"{params.upper_percentile:g}th percentiles are both {low:g}")


def lost_tumour_note(tumour: np.ndarray, start: int, stop: int) -> str | None:
    """A note when the axial window [start, stop) cuts off tumour voxels, with the fraction kept."""
    kept, total = int(tumour[:, :, start:stop].sum()), int(tumour.sum())
    if kept == total:
        return None
    occupied = np.flatnonzero(tumour.any(axis=(0, 1)))
    extent = int(occupied[-1]) - int(occupied[0]) + 1
    return (f"tumour spans {extent} axial slices ({occupied[0]}-{occupied[-1]}), the window keeps slices "
            f"{start}-{stop - 1}: {kept / total:.1%} of tumour voxels kept ({total - kept} lost)")


def preprocess_case(case: CaseFiles, params: PrepareParams, root: Path) -> dict[str, Any]:
    """Load, validate and preprocess one case into a dataset row.

    The row's ``_notes`` lists (path, message) pairs; ``_lost_tumour`` is the (path, message) of a
    window that cuts off tumour voxels, else None (a note, or an exclusion under ``--strict``).

    Raises:
        CaseError: naming the file and the reason the case cannot be used.
    """
    loaded = load_case(case)
    try:
        start, stop = transforms.axial_window(loaded.mask, params.slices, params.centre_on)  # type: ignore[arg-type]
    except ValueError as error:
        raise CaseError(case.mask, str(error)) from error
    brain = transforms.brain_mask(loaded.images)
    if not brain.any():
        raise CaseError(case.folder, "all images are zero everywhere (no brain voxels)")
    window = np.s_[:, :, start:stop]
    brain_window = transforms.to_slices(brain[window])  # (slice, row, col); free for nibabel's F-order
    channels = []
    for image, path in zip(loaded.images, case.images):
        with numeric_guard(path):  # a numpy warning becomes an exclusion naming this file
            low, high = intensity_range(image, brain, path, params)
            scaled = transforms.scale_to_255(transforms.to_slices(image[window]), brain_window, low, high)
            channels.append(transforms.to_uint8(transforms.resize_slices(scaled, params.size)))
    tumour = loaded.regions > 0
    lost = lost_tumour_note(tumour, start, stop)
    # One nearest-neighbour rule for both, so ``mask == (regions > 0)`` holds exactly.
    regions = transforms.resize_slices(transforms.to_slices(loaded.regions[window]), params.size, nearest=True)
    mask = (regions > 0).view(np.uint8)
    nx, ny, _ = loaded.mask.shape
    sx, sy, sz = loaded.spacing_mm
    return {
        "patient_id": case.patient_id,
        "grade": case.grade,
        "label": NO_LABEL if case.grade == NO_GRADE else GRADE_TO_LABEL[case.grade],
        "image": np.stack(channels),
        "mask": mask,
        "regions": regions,
        "spacing_mm": [sz, sy * ny / params.size, sx * nx / params.size],
        "crop_start": start,
        "crop_stop": stop,
        "original_shape": list(loaded.mask.shape),
        "tumour_fraction_in_window": float(tumour[window].sum() / tumour.sum()),
        "layout": case.layout,
        "source": case.source(root),
        "_notes": [(str(case.folder), note) for note in loaded.notes],
        "_lost_tumour": None if lost is None else (str(case.mask), lost),
    }


def worker_init() -> None:
    """Keep OpenCV single-threaded inside worker processes (one process per core already)."""
    cv2.setNumThreads(1)


def process_task(args: tuple[CaseFiles, PrepareParams, Path]) -> tuple[str, Any]:
    """Run one case: ("ok", row), ("excluded", Exclusion) or ("error", CaseFailure) for a bug.

    An unexpected exception must not stop the batch nor pass for an exclusion: its traceback is
    captured here as text (this runs in a worker process) for the report.
    """
    case, params, root = args
    try:
        with numeric_guard(case.folder):  # fallback: files are named where the problem is known
            return "ok", preprocess_case(case, params, root)
    except CaseError as error:
        return "excluded", Exclusion(case.patient_id, error.path, error.reason)
    except MemoryError:
        raise
    except Exception as error:
        failure = f"{type(error).__name__}: {error}"
        return "error", CaseFailure(case.patient_id, str(case.folder), failure, traceback.format_exc())
