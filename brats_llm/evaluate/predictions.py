"""The ``score-predictions`` command: score a folder of NIfTI segmentations (nnU-Net's or anyone's) with our
metrics (legacy whole-volume and BraTS 2023 lesion-wise, per region) against the pinned volumes dataset.

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
from brats_llm.evaluate.cnn import SegEvalParams, per_patient_csv_rows, summarise_regions
from brats_llm.evaluate.write import write_scores
from brats_llm.ingest.nifti import read_nifti
from brats_llm.metrics.finite import finite_or_null
from brats_llm.metrics.segmentation import REGION_NAMES, region_masks, region_metrics
from brats_llm.preprocess import transforms
from brats_llm.split.splits import SPLIT_TEST, SPLIT_TRAINVAL, read_splits
from brats_llm.train.cnn.source import VolumeSource, open_volumes

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


def score_predictions(pred_dir: str | os.PathLike, dataset: str | os.PathLike, splits_file: str | os.PathLike,
                      out_dir: str | os.PathLike, params: SegEvalParams, *, split: str = SPLIT_TEST,
                      labels: str = "auto") -> dict[str, Any]:
    """Score ``pred_dir`` against the ``split`` patients of ``dataset``; write ``out_dir``.

    ``dataset`` as for evaluate-cnn: the revision file publish wrote (data/hub_revision.json: the pinned
    ``volumes`` config, checked or fetched) or a volumes folder. Patients are read one at a time in
    storage order and only their metrics are kept, so memory does not grow with the split.

    Regions: WT, TC and ET when every prediction holds region labels and the dataset has its ``regions``
    column; WT otherwise. A patient without a prediction file scores as an empty prediction (Dice 0, legacy
    HD95 373.13 mm, lesion-wise HD95 374 mm where it has lesions) and is listed under ``missing``.

    Writes ``details.json`` (``<split>/<metric>`` as evaluate-cnn's: WT at the top level, ``tc``/``et``
    nested; means with 95% bootstrap intervals, lesion counts summed, ``n`` and ``missing`` patients),
    ``metrics.json`` (the headline of the scored split, the keys of evaluate-seg's: :func:`headline`),
    ``predictions/<split>.csv`` (per patient) and ``provenance.json`` (inputs, label reading, missing and
    unused files).

    Raises:
        InputError: bad ``split``/``labels``, a patient not in the dataset, an unreadable or misfit file.
        MissingInputError: ``pred_dir`` holds no prediction of the split's patients.
    """
    if split not in SPLIT_CHOICES:
        raise InputError(f"split must be one of {SPLIT_CHOICES}, got {split!r}")
    if labels not in LABEL_MODES:
        raise InputError(f"labels must be one of {LABEL_MODES}, got {labels!r}")
    pred_dir, out_dir = Path(pred_dir), Path(out_dir)
    patients = [a.patient_id for a in read_splits(splits_file) if split == "all" or a.split == split]
    source = open_volumes(dataset)
    source.check(patients)
    if not any(find_prediction(pred_dir, pid) for pid in patients):
        raise MissingInputError(f"{pred_dir}: no prediction {{patient_id}}.nii.gz for any of the {len(patients)} "
                                f"'{split}' patients")
    scores, kinds = _score_patients(pred_dir, source, patients, labels, params)
    missing = [pid for pid in patients if pid not in kinds]
    every_file_regions = all(kind == "regions" for kind in kinds.values())
    regions = REGION_NAMES if "regions" in source.column_names and every_file_regions else ("wt",)
    per_patient = {region: [scores[pid][region] for pid in patients] for region in regions}
    summary = finite_or_null({**summarise_regions(per_patient, params.bootstrap, params.seed), "n": len(patients),
                              "missing": len(missing)})
    files = {p.name for p in pred_dir.iterdir() if p.name.endswith(SUFFIXES)}
    used = {find_prediction(pred_dir, pid).name for pid in kinds}  # type: ignore[union-attr]
    provenance = {
        "predictions": pred_dir.as_posix(), "split": split, "labels": labels, "regions": list(regions),
        "read_as": {kind: sorted(p for p, k in kinds.items() if k == kind) for kind in sorted(set(kinds.values()))},
        "missing": missing, "unused_files": sorted(files - used), "dataset": source.version,
        "eval_params": {k: v for k, v in dataclasses.asdict(params).items() if k not in ("thresholds", "overlays")},
        "frame": "reoriented to LPS, axial window crop_start:crop_stop, nearest resize to the stored size",
    }
    with atomic.atomic_dir(out_dir, kind="prediction-scores") as staging:
        write_scores(staging, "predictions", headline(summary), {split: summary})
        atomic.write_csv(staging / "predictions" / f"{split}.csv", per_patient_csv_rows(patients, per_patient))
        atomic.write_json(staging / "provenance.json", provenance)
    return {split: summary, "regions": list(regions), "missing": missing}


def _score_patients(pred_dir: Path, source: VolumeSource, patients: list[str], labels: str, params: SegEvalParams
                    ) -> tuple[dict[str, dict[str, dict[str, float]]], dict[str, str]]:
    """Metrics per patient and region, and the label kind each prediction file was read as (by patient).

    Rows are read in storage order, one at a time; a patient without a file scores an empty prediction.
    TC and ET are scored while every file so far holds region labels; once a binary file is read only WT
    is (WT is the same either way: any non-zero label).
    """
    has_regions = "regions" in source.column_names
    options = {"dilation": params.lesion_dilation, "min_volume_mm3": params.lesion_min_volume_mm3}
    scores: dict[str, dict[str, dict[str, float]]] = {}
    kinds: dict[str, str] = {}
    for pid, row in source.rows(patients):
        truth_labels = np.asarray(row["regions"] if has_regions else row["mask"], dtype=np.uint8)
        path = find_prediction(pred_dir, pid)
        if path is None:
            pred_labels = np.zeros_like(truth_labels)
        else:
            array, affine, kinds[pid] = read_labels(path, labels)
            pred_labels = to_stored_frame(array, affine, row, path)
        regions = REGION_NAMES if has_regions and all(k == "regions" for k in kinds.values()) else ("wt",)
        truth = region_masks(truth_labels, regions) if has_regions else (truth_labels > 0)[None]
        pred = region_masks(pred_labels, regions) if regions != ("wt",) else (pred_labels > 0)[None]
        spacing = np.asarray(row["spacing_mm"], dtype=float)
        scores[pid] = {region: region_metrics(pred[r], truth[r], spacing, **options)
                       for r, region in enumerate(regions)}
    return scores, kinds


def headline(summary: dict[str, Any]) -> dict[str, Any]:
    """metrics.json: the scored patients and the whole-tumour scores, under evaluate-seg's headline keys."""
    return {"n_patients": summary["n"], "dice_wt_3d": summary["dice"], "hd95_wt_3d_mm": summary["hd95_mm"]}
