"""Preprocess one case: load, validate, window, scale to 0-255 and resize to the dataset row."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from brats_llm.constants import GRADE_TO_LABEL, IMAGE_SIZE, N_SLICES
from brats_llm.ingest.layout import CaseFiles, Exclusion
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
    brain_window = transforms.to_slices(brain[window])  # (slice, row, col); free for nibabel's F-order
    channels = []
    for image in loaded.images:
        low, high = transforms.intensity_range(image, brain, params.lower_percentile, params.upper_percentile)
        scaled = transforms.scale_to_255(transforms.to_slices(image[window]), brain_window, low, high)
        channels.append(transforms.to_uint8(transforms.resize_slices(scaled, params.size)))
    tumour = loaded.mask > 0
    mask = transforms.resize_slices(transforms.to_slices(tumour[window]).view(np.uint8), params.size, nearest=True)
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


def worker_init() -> None:
    """Keep OpenCV single-threaded inside worker processes (one process per core already)."""
    cv2.setNumThreads(1)


def process_task(args: tuple[CaseFiles, PrepareParams, Path]) -> tuple[str, Any]:
    case, params, root = args
    try:
        return "ok", preprocess_case(case, params, root)
    except CaseError as error:
        return "excluded", Exclusion(case.patient_id, error.path, error.reason)
    except MemoryError:
        raise
    except Exception as error:  # a bug or an unforeseen file problem must not stop the batch
        return "excluded", Exclusion(case.patient_id, str(case.folder), f"unexpected error: {error!r}")
