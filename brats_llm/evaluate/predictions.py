"""The ``score-predictions`` command: score a folder of NIfTI segmentations (nnU-Net's or anyone's) with our
metrics (legacy whole-volume and BraTS 2023 lesion-wise, per region) against the volumes dataset.

Each prediction ``{patient_id}.nii.gz`` (or ``.nii``) is at the original resolution of the patient's release
files. It is brought into the stored frame exactly as ``prepare`` brings the mask: reoriented to
constants.CANONICAL_AXCODES, cut to the axial window ``crop_start:crop_stop`` of the dataset row, transposed to
(slice, row, col) and resized in-plane with the same pixel-centre nearest neighbour
(brats_llm.preprocess.transforms), so a prediction equal to the ground truth scores Dice 1.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np
from nibabel import orientations

from brats_llm import atomic
from brats_llm.constants import CANONICAL_AXCODES
from brats_llm.errors import InputError, MissingInputError
from brats_llm.evaluate.cnn import (
    SegEvalParams,
    per_patient_csv_rows,
    summarise_regions,
)
from brats_llm.ingest.nifti import read_nifti
from brats_llm.metrics.segmentation import REGION_NAMES, region_masks, region_metrics
from brats_llm.preprocess import transforms
from brats_llm.preprocess.volumes import load_volumes
from brats_llm.provenance import dataset_version
from brats_llm.split.splits import SPLIT_TEST, SPLIT_TRAINVAL, read_splits

#: ``--labels``: ``auto`` reads a file with labels in {0, 1} as binary WT, anything else as region labels.
LABEL_MODES = ("auto", "regions", "wt")
#: ``--split``: a split of the split file, or every patient in it.
SPLIT_CHOICES = (SPLIT_TEST, SPLIT_TRAINVAL, "all")
SUFFIXES = (".nii.gz", ".nii")


def to_stored_frame(array: np.ndarray, affine: np.ndarray, row: dict[str, Any], path: Path) -> np.ndarray:
    """A label volume in voxel order (i, j, k) of the release -> the dataset row's (slices, size, size) grid.

    Raises:
        InputError: the reoriented shape is not the row's ``original_shape``.
    """
    # The same reorientation as brats_llm.ingest.nifti.load_case (done inline there).
    transform = orientations.ornt_transform(orientations.io_orientation(affine), orientations.axcodes2ornt(CANONICAL_AXCODES))
    array = orientations.apply_orientation(array, transform)
    expected = tuple(int(n) for n in row["original_shape"])
    if array.shape != expected:
        raise InputError(f"{path}: shape {array.shape} after reorientation to {''.join(CANONICAL_AXCODES)}; the "
                         f"patient's release files are {expected} (predictions must be at the original resolution)")
    size = int(np.asarray(row["mask"]).shape[-1])
    window = transforms.to_slices(array[:, :, int(row["crop_start"]) : int(row["crop_stop"])])
    return transforms.resize_slices(window, size, nearest=True)


def read_labels(path: Path, mode: str) -> tuple[np.ndarray, np.ndarray, str]:
    """(uint8 labels, affine, kind): kind ``wt`` (binary) or ``regions`` (BraTS 2023 labels 0-3; a file with
    BraTS 2017-2021's 4 for enhancing and no 3 is renumbered 4 -> 3).

    Raises:
        InputError: unreadable file, not 3D, non-integer or unexpected labels.
    """
    image = read_nifti(path)
    array = np.asanyarray(image.dataobj)
    if array.ndim == 4 and array.shape[3] == 1:
        array = array[..., 0]
    if array.ndim != 3:
        raise InputError(f"{path}: expected a 3D label volume, got shape {array.shape}")
    if not np.all(np.isfinite(array)) or not np.array_equal(array, np.round(array)):
        raise InputError(f"{path}: labels must be integers")
    values = set(np.unique(array).astype(int).tolist())
    kind = mode if mode != "auto" else ("wt" if values <= {0, 1} else "regions")
    if kind == "wt":  # --labels wt: any non-zero label is tumour
        return (array != 0).astype(np.uint8), image.affine, kind
    if {3, 4} <= values or values - {0, 1, 2, 3, 4}:
        raise InputError(f"{path}: labels {sorted(values)}; expected 0/1/2/3 (BraTS 2023) or 0/1/2/4 (BraTS 2017-2021)")
    labels = array.astype(np.uint8)
    labels[labels == 4] = 3
    return labels, image.affine, kind


def find_prediction(pred_dir: Path, patient_id: str) -> Path | None:
    for suffix in SUFFIXES:
        path = pred_dir / f"{patient_id}{suffix}"
        if path.is_file():
            return path
    return None


def score_predictions(pred_dir: str | os.PathLike, volumes_dir: str | os.PathLike, splits_file: str | os.PathLike,
                      out_dir: str | os.PathLike, params: SegEvalParams, *, split: str = SPLIT_TEST,
                      labels: str = "auto") -> dict[str, Any]:
    """Score ``pred_dir`` against the ``split`` patients; write ``out_dir``.

    Regions: WT, TC and ET when every prediction holds region labels and the dataset has its ``regions``
    column; WT otherwise. A patient without a prediction file scores as an empty prediction (Dice 0, legacy
    HD95 373.13 mm, lesion-wise HD95 374 mm where it has lesions) and is listed under ``missing``.

    Writes ``metrics.json`` (``<split>/<metric>`` as evaluate-cnn's details.json: WT at the top level,
    ``tc``/``et`` nested; means with 95% bootstrap intervals, lesion counts summed), ``predictions/<split>.csv`` (per patient) and
    ``provenance.json`` (inputs, label reading, missing and unused files).

    Raises:
        InputError: bad ``split``/``labels``, a patient not in the dataset, an unreadable or misfit file.
        MissingInputError: ``pred_dir`` holds no prediction of the split's patients.
    """
    if split not in SPLIT_CHOICES:
        raise InputError(f"split must be one of {SPLIT_CHOICES}, got {split!r}")
    if labels not in LABEL_MODES:
        raise InputError(f"labels must be one of {LABEL_MODES}, got {labels!r}")
    pred_dir, volumes_dir, out_dir = Path(pred_dir), Path(volumes_dir), Path(out_dir)
    patients = [a.patient_id for a in read_splits(splits_file) if split == "all" or a.split == split]
    dataset = load_volumes(volumes_dir)
    has_regions = "regions" in dataset.column_names
    if has_regions:
        dataset = dataset.with_format("numpy", columns=["image", "mask", "regions"], dtype=np.uint8, output_all_columns=True)
    rows = {pid: i for i, pid in enumerate(dataset["patient_id"])}
    unknown = [pid for pid in patients if pid not in rows]
    if unknown:
        raise InputError(f"{volumes_dir}: patients of the split file not in the dataset: {unknown[:5]}")

    stored, truths, spacing, kinds, missing = {}, {}, {}, {}, []
    for pid in patients:
        row = dataset[rows[pid]]
        truths[pid] = np.asarray(row["regions"] if has_regions else row["mask"], dtype=np.uint8)
        spacing[pid] = np.asarray(row["spacing_mm"], dtype=float)
        path = find_prediction(pred_dir, pid)
        if path is None:
            missing.append(pid)
            continue
        array, affine, kinds[pid] = read_labels(path, labels)
        stored[pid] = to_stored_frame(array, affine, row, path)
    if not stored:
        raise MissingInputError(f"{pred_dir}: no prediction {{patient_id}}.nii.gz for any of the {len(patients)} "
                                f"'{split}' patients")
    regions = REGION_NAMES if has_regions and all(k == "regions" for k in kinds.values()) else ("wt",)
    options = {"dilation": params.lesion_dilation, "min_volume_mm3": params.lesion_min_volume_mm3}
    per_patient: dict[str, list[dict[str, float]]] = {region: [] for region in regions}
    for pid in patients:
        truth = region_masks(truths[pid], regions) if has_regions else (truths[pid] > 0)[None]
        pred_labels = stored.get(pid, np.zeros_like(truths[pid]))
        pred = region_masks(pred_labels, regions) if regions != ("wt",) else (pred_labels > 0)[None]
        for r, region in enumerate(regions):
            per_patient[region].append(region_metrics(pred[r], truth[r], spacing[pid], **options))
    summary = {**summarise_regions(per_patient, params.bootstrap, params.seed), "n": len(patients), "missing": len(missing)}
    files = {p.name for p in pred_dir.iterdir() if p.name.endswith(SUFFIXES)}
    used = {find_prediction(pred_dir, pid).name for pid in stored}  # type: ignore[union-attr]
    provenance = {
        "predictions": pred_dir.as_posix(), "split": split, "labels": labels, "regions": list(regions),
        "read_as": {kind: sorted(p for p, k in kinds.items() if k == kind) for kind in sorted(set(kinds.values()))},
        "missing": missing, "unused_files": sorted(files - used), "dataset": dataset_version(volumes_dir),
        "eval_params": {k: v for k, v in dataclasses.asdict(params).items() if k not in ("thresholds", "overlays")},
        "frame": "reoriented to LPS, axial window crop_start:crop_stop, nearest resize to the stored size",
    }
    with atomic.atomic_dir(out_dir, kind="prediction-scores") as staging:
        atomic.write_json(staging / "metrics.json", {split: summary})
        atomic.write_csv(staging / "predictions" / f"{split}.csv", per_patient_csv_rows(patients, per_patient))
        atomic.write_json(staging / "provenance.json", provenance)
    return {split: summary, "regions": list(regions), "missing": missing}
