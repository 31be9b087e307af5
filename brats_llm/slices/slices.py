"""The ``slices`` stage: 2D PNG slices with their masks and patient/split fields, in one Arrow dataset."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from datasets import ClassLabel, Features, Image, Value, load_from_disk
from tqdm.auto import tqdm

from brats_llm.arrowio import dataset_writer
from brats_llm.constants import AXIS_COL, AXIS_ROW, AXIS_SLICE, GRADES, MODALITIES
from brats_llm.errors import InputError
from brats_llm.preprocess.volumes import load_volumes
from brats_llm.split.splits import read_splits

#: Plane name -> the axis of the (slice, row, col) volume that is fixed for one 2D slice.
PLANES = {"axial": AXIS_SLICE, "coronal": AXIS_ROW, "sagittal": AXIS_COL}


@dataclass(frozen=True)
class SlicesParams:
    """``slices`` section of params.yaml.

    Attributes:
        modalities: which modalities become slices (paper: FLAIR only).
        planes: ``axial`` (paper's segmentation tasks) and optionally ``coronal`` / ``sagittal``
            (the paper's general-LLM classification used all three).
        tumour_range_only: keep only slices between the first and last slice with tumour in each
            plane (as the paper); False keeps every slice.
    """

    modalities: tuple[str, ...] = ("flair",)
    planes: tuple[str, ...] = ("axial", "coronal", "sagittal")
    tumour_range_only: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "modalities", tuple(self.modalities))
        object.__setattr__(self, "planes", tuple(self.planes))
        if not self.modalities or set(self.modalities) - set(MODALITIES):
            raise ValueError(f"modalities must be a non-empty subset of {MODALITIES}, got {list(self.modalities)}")
        if not self.planes or set(self.planes) - set(PLANES):
            raise ValueError(f"planes must be a non-empty subset of {tuple(PLANES)}, got {list(self.planes)}")


def patient_fields() -> dict:
    """Columns every per-slice dataset carries, so rows join back to the patient split."""
    return {
        "patient_id": Value("string"),
        "grade": Value("string"),
        "label": ClassLabel(names=list(GRADES)),
        "split": Value("string"),
        "fold": Value("int32"),
    }


def slice_features() -> Features:
    return Features({
        **patient_fields(),
        "modality": Value("string"),
        "plane": Value("string"),
        "slice_index": Value("int32"),
        "has_tumour": Value("bool"),
        "tumour_pixels": Value("int32"),
        "image": Image(),
        "mask": Image(),
        "regions": Image(),
    })


def plane_slices(volume: np.ndarray, plane: str) -> np.ndarray:
    """(n, h, w) stack of 2D slices of a (slice, row, col) volume along ``plane``."""
    return np.moveaxis(volume, PLANES[plane], 0)


def slice_range(mask: np.ndarray, plane: str, tumour_only: bool) -> range:
    """Indices between the first and last slice with tumour (inclusive), or all slices."""
    stack = plane_slices(mask, plane)
    if not tumour_only:
        return range(stack.shape[0])
    occupied = np.flatnonzero(stack.reshape(stack.shape[0], -1).any(axis=1))
    return range(int(occupied[0]), int(occupied[-1]) + 1) if occupied.size else range(0)


def build_slices(volumes_dir: str | os.PathLike, splits_file: str | os.PathLike, out_dir: str | os.PathLike,
                 params: SlicesParams, *, progress: bool = True) -> int:
    """Write the slices dataset: one row per (patient, modality, plane, slice), images as PNG.

    Masks are stored as PNG with values 0/1, ``regions`` as PNG with the sub-region labels
    0/1/2/3 (``REGION_LABELS``; ``mask == regions > 0``). Rows carry the patient's split and fold so every
    later split follows the patient split. Random access is an Arrow row read plus a PNG decode.

    Returns:
        Number of rows written.
    """
    volumes = load_volumes(volumes_dir)
    if "regions" not in volumes.column_names:
        raise InputError(f"{volumes_dir}: volumes dataset has no 'regions' column (made before sub-regions were "
                         f"kept); rerun prepare")
    assignments = {a.patient_id: a for a in read_splits(splits_file)}
    missing = set(volumes["patient_id"]) - set(assignments)
    if missing:
        raise InputError(f"{splits_file}: patients of {volumes_dir} without a split: {sorted(missing)[:5]}")
    description = f"BraTS 2D slices ({', '.join(params.modalities)}; {', '.join(params.planes)})"
    with dataset_writer(out_dir, slice_features(), description, kind="slices") as writer:
        for row in tqdm(volumes, total=len(volumes), desc="slices", unit="patient", disable=not progress):
            assignment = assignments[row["patient_id"]]
            for plane in params.planes:
                masks = plane_slices(row["mask"], plane)
                regions = plane_slices(row["regions"], plane)
                indices = slice_range(row["mask"], plane, params.tumour_range_only)
                for modality in params.modalities:
                    images = plane_slices(row["image"][MODALITIES.index(modality)], plane)
                    for k in indices:
                        pixels = int(masks[k].sum())
                        writer.write({
                            "patient_id": row["patient_id"], "grade": assignment.grade, "label": assignment.label,
                            "split": assignment.split, "fold": assignment.fold, "modality": modality,
                            "plane": plane, "slice_index": k, "has_tumour": pixels > 0, "tumour_pixels": pixels,
                            "image": np.ascontiguousarray(images[k]), "mask": np.ascontiguousarray(masks[k]),
                            "regions": np.ascontiguousarray(regions[k]),
                        })
        rows = writer.rows
    return rows


def load_slices(path: str | os.PathLike):
    """Open the slices dataset (images decode to PIL on access)."""
    return load_from_disk(str(Path(path)))
