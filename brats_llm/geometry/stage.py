"""The ``geometry`` stage: box, centre and polygon of every axial tumour slice of the slices dataset."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from datasets import Features, Image, List, Value
from tqdm.auto import tqdm

from brats_llm.arrowio import dataset_writer
from brats_llm.constants import MODALITIES
from brats_llm.errors import InputError
from brats_llm.geometry.shapes import slice_geometry
from brats_llm.slices.slices import load_slices, patient_fields


@dataclass(frozen=True)
class GeometryParams:
    """``geometry`` section of params.yaml.

    Attributes:
        modality: the slices whose masks are described (the paper: FLAIR, axial).
        min_tumour_pixels: slices with fewer tumour pixels (all components) are skipped.
    """

    modality: str = "flair"
    min_tumour_pixels: int = 1

    def __post_init__(self) -> None:
        if self.modality not in MODALITIES:
            raise ValueError(f"modality must be one of {MODALITIES}, got {self.modality!r}")
        if self.min_tumour_pixels < 1:
            raise ValueError(f"min_tumour_pixels must be >= 1, got {self.min_tumour_pixels}")


def geometry_features() -> Features:
    return Features({
        **patient_fields(),
        "slice_index": Value("int32"),
        "image": Image(),
        "bbox": List(List(Value("int32"), length=2), length=4),
        "center": List(Value("float32"), length=2),
        "polygon": List(List(Value("float32"), length=2)),
        "components": Value("int32"),
        "area": Value("int32"),
        "total_area": Value("int32"),
        "polygon_iou": Value("float32"),
    })


def build_geometry(slices_dir: str | os.PathLike, out_dir: str | os.PathLike, params: GeometryParams,
                   *, progress: bool = True) -> int:
    """Write one row per axial slice with tumour: shapes in the project frame and quality fields.

    Returns:
        Number of rows written.
    """
    slices = load_slices(slices_dir)
    keep = [i for i, (plane, modality, pixels) in enumerate(zip(slices["plane"], slices["modality"], slices["tumour_pixels"]))
            if plane == "axial" and modality == params.modality and pixels >= params.min_tumour_pixels]
    if not keep:
        raise InputError(f"{slices_dir}: no axial {params.modality} slice with >= {params.min_tumour_pixels} tumour pixels")
    description = "Tumour bounding box, centre and polygon per axial slice (x = column, y = row, pixels)"
    with dataset_writer(out_dir, geometry_features(), description, kind="geometry") as writer:
        for row in tqdm(slices.select(keep), total=len(keep), desc="geometry", unit="slice", disable=not progress):
            shapes = slice_geometry(np.asarray(row["mask"]))
            writer.write({
                "patient_id": row["patient_id"], "grade": row["grade"], "label": row["label"], "split": row["split"],
                "fold": row["fold"], "slice_index": row["slice_index"], "image": row["image"],
                "bbox": shapes.bbox, "center": shapes.center, "polygon": shapes.polygon,
                "components": shapes.components, "area": shapes.area, "total_area": shapes.total_area,
                "polygon_iou": shapes.polygon_iou,
            })
        rows = writer.rows
    return rows
