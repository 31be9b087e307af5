"""Export a volumes dataset's patients and folds as an nnU-Net v2 raw dataset, at the original resolution.

The volumes dataset records each patient's ``layout`` and ``source`` (case folder, or MSD image file,
relative to the release root); the raw release is discovered again and must hold exactly those cases.
Per patient the four modalities are written as ``{case}_0000..0003.nii.gz`` in the order FLAIR, T1,
T1ce, T2 (BraTS ``.nii.gz`` files are copied byte for byte, ``.nii`` files gzip-compressed, MSD's 4D
image split into its channels with its own header), in the release's own voxel grid and orientation
(no reorientation, crop or resize). The label is the segmentation converted to the ``REGION_LABELS``
convention (0 background, 1 NCR/NET, 2 oedema, 3 enhancing), written with the FLAIR file's header so
image and label geometry are identical.

Layout of ``OUT_DIR`` (which must be named ``DatasetNNN_Name``, as nnU-Net requires):

* ``imagesTr/``, ``labelsTr/``: the ``trainval`` patients of the split file;
* ``imagesTs/``, ``labelsTs/``: the ``test`` patients (nnU-Net never trains on ``imagesTs``; the labels
  are there for scoring predictions);
* ``dataset.json``: channel names, region-based labels (whole tumour, tumour core, enhancing tumour),
  ``regions_class_order`` and counts;
* ``splits_final.json``: one ``{"train": [...], "val": [...]}`` per fold, from the split file's folds.
  nnU-Net reads it from ``nnUNet_preprocessed/DatasetNNN_Name/``: copy it there after
  ``nnUNetv2_plan_and_preprocess`` so nnU-Net trains on exactly our folds.

``regions_class_order`` is ``[2, 1, 3]``, not the ``[1, 2, 3]`` of nnU-Net's BraTS example: nnU-Net
paints each predicted region with that label, in order (whole tumour, then core, then enhancing), and
nnU-Net's example numbers labels 1 oedema, 2 necrosis; ours are 1 NCR/NET, 2 oedema. With ``[2, 1, 3]``
nnU-Net's predictions come back in our ``REGION_LABELS`` convention.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from tqdm.auto import tqdm

from brats_llm import atomic
from brats_llm.constants import (
    REGION_EDEMA,
    REGION_ENHANCING,
    REGION_ET,
    REGION_LABELS,
    REGION_NCR_NET,
    REGION_TC,
    REGION_WT,
    REGIONS,
)
from brats_llm.errors import InputError, MissingInputError
from brats_llm.ingest.layout import CaseError, CaseFiles, discover
from brats_llm.ingest.nifti import (
    _array,
    check_finite,
    mask_labels,
    read_nifti,
    to_regions,
)
from brats_llm.parallel import process_context
from brats_llm.split.splits import SPLIT_TEST, SPLIT_TRAINVAL

#: nnU-Net v2 raw dataset folder names: ``Dataset`` + three digits + ``_`` + a name.
DATASET_FOLDER_PATTERN = r"^Dataset(\d{3})_([A-Za-z0-9][A-Za-z0-9_.-]*)$"
FILE_ENDING = ".nii.gz"
#: dataset.json ``channel_names``: the channel index of each of our ``MODALITIES``.
CHANNEL_NAMES = {"0": "FLAIR", "1": "T1", "2": "T1ce", "3": "T2"}
#: Region-based labels (nnU-Net documentation/region_based_training.md) over ``REGION_LABELS`` values.
NNUNET_LABELS = {
    "background": 0,
    "whole_tumor": list(REGIONS[REGION_WT]),
    "tumor_core": list(REGIONS[REGION_TC]),
    "enhancing_tumor": list(REGIONS[REGION_ET]),
}
#: The label painted for each region above, in order: predictions come back as ``REGION_LABELS``.
REGIONS_CLASS_ORDER = [REGION_EDEMA, REGION_NCR_NET, REGION_ENHANCING]
SPLITS_FINAL = "splits_final.json"
KIND = "nnunet-raw"


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_nnunet` wrote."""

    out_dir: Path
    training: list[str]
    test: list[str]
    folds: int
    layout: str


def read_fold_file(path: str | os.PathLike) -> dict[str, tuple[str, int]]:
    """patient id -> (split, fold) from a split file (only ``patient_id``, ``split``, ``fold`` are read,
    so a split of a release without grades is accepted).

    Raises:
        MissingInputError: the file does not exist.
        InputError: missing columns, a bad split or fold value, or a duplicate patient id.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"{path}: split file does not exist")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = {"patient_id", "split", "fold"} - set(reader.fieldnames or ())
        if missing:
            raise InputError(f"{path}: missing column(s) {sorted(missing)}")
        rows: dict[str, tuple[str, int]] = {}
        for line, row in enumerate(reader, start=2):
            patient_id, split = row["patient_id"], row["split"]
            try:
                fold = int(row["fold"])
            except (TypeError, ValueError):
                raise InputError(f"{path}:{line}: fold {row['fold']!r} is not an integer") from None
            if split not in (SPLIT_TEST, SPLIT_TRAINVAL) or (split == SPLIT_TRAINVAL) != (fold >= 0):
                raise InputError(f"{path}:{line}: bad split/fold {split!r}/{fold} (test rows have fold -1)")
            if patient_id in rows:
                raise InputError(f"{path}:{line}: duplicate patient id {patient_id!r}")
            rows[patient_id] = (split, fold)
    return rows


def splits_final(folds: dict[str, tuple[str, int]]) -> list[dict[str, list[str]]]:
    """nnU-Net's ``splits_final.json``: per fold (ascending), the other trainval patients and the fold's own."""
    trainval = {pid: fold for pid, (split, fold) in folds.items() if split == SPLIT_TRAINVAL}
    return [
        {"train": sorted(p for p, f in trainval.items() if f != fold), "val": sorted(p for p, f in trainval.items() if f == fold)}
        for fold in sorted(set(trainval.values()))
    ]


def dataset_json(name: str, n_training: int, n_test: int, layout: str) -> dict[str, Any]:
    """nnU-Net v2 ``dataset.json`` (key order matters for the labels: written without sorting)."""
    return {
        "name": name,
        "description": f"BraTS ({layout}) exported by brats-llm export-nnunet; labels {dict(REGION_LABELS)} "
                       f"trained as regions; {SPLITS_FINAL} holds the project's folds",
        "channel_names": dict(CHANNEL_NAMES),
        "labels": {key: value for key, value in NNUNET_LABELS.items()},
        "regions_class_order": list(REGIONS_CLASS_ORDER),
        "numTraining": n_training,
        "numTest": n_test,
        "file_ending": FILE_ENDING,
    }


def _gzip(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=1, mtime=0)


def _nifti_gz(image: nib.Nifti1Image) -> bytes:
    return _gzip(image.to_bytes())


def _header_shape(path: Path) -> tuple[int, ...]:
    try:
        return tuple(nib.load(path).header.get_data_shape())
    except Exception as error:  # nibabel raises several types for bad headers
        raise CaseError(path, f"not a readable NIfTI-1 file ({error})") from error


def _channel_bytes(path: Path) -> bytes:
    """A 3D modality file as ``.nii.gz`` bytes: copied when it already is one, else (re)encoded."""
    shape = _header_shape(path)
    if len(shape) == 3:
        try:
            data = path.read_bytes()
        except OSError as error:
            raise CaseError(path, f"cannot read file: {error.strerror or error}") from error
        return data if data[:2] == b"\x1f\x8b" else _gzip(data)
    image = read_nifti(path)
    return _nifti_gz(nib.Nifti1Image(_array(image, path), None, header=image.header.copy()))


def _label_image(case: CaseFiles, reference: nib.Nifti1Image) -> nib.Nifti1Image:
    """The segmentation in the ``REGION_LABELS`` convention, with the reference (FLAIR) header."""
    seg = read_nifti(case.mask)
    array = _array(seg, case.mask)
    check_finite(array, case.mask)
    labels = case.labels
    regions = to_regions(mask_labels(array, case.mask, labels, case.layout), labels)
    header = reference.header.copy()
    header.set_data_dtype(np.uint8)
    if regions.shape != tuple(header.get_data_shape()[:3]):
        raise CaseError(case.mask, f"shape {regions.shape} differs from {case.images[0].name}")
    image = nib.Nifti1Image(regions, None, header=header)
    image.header.set_slope_inter(1.0, 0.0)
    return image


def export_case(args: tuple[CaseFiles, Path, Path]) -> tuple[str, str] | None:
    """Write one patient's ``{case}_000k.nii.gz`` files and its label (a pool task); None, or the
    (path, reason) of a CaseError (returned: its pickling across processes is not reliable)."""
    try:
        _export_case(*args)
    except CaseError as error:
        return error.path, error.reason
    return None


def _export_case(case: CaseFiles, images_dir: Path, labels_dir: Path) -> None:
    name = case.patient_id
    if case.channels is not None:  # MSD: split the 4D image with its own header
        path = case.images[0]
        source = read_nifti(path)
        volumes = _array(source, path, channels=max(case.channels) + 1)
        header = source.header.copy()
        for index, channel in enumerate(case.channels):
            channel_image = nib.Nifti1Image(np.asarray(volumes[..., channel]), None, header=header)
            (images_dir / f"{name}_{index:04d}{FILE_ENDING}").write_bytes(_nifti_gz(channel_image))
        header.set_data_shape(volumes.shape[:3])
        reference = nib.Nifti1Image(np.zeros(volumes.shape[:3], np.uint8), None, header=header)
    else:
        for index, path in enumerate(case.images):
            (images_dir / f"{name}_{index:04d}{FILE_ENDING}").write_bytes(_channel_bytes(path))
        reference = nib.load(case.images[0])
    (labels_dir / f"{name}{FILE_ENDING}").write_bytes(_nifti_gz(_label_image(case, reference)))


def _volumes_rows(volumes_dir: Path) -> list[dict[str, str]]:
    from datasets import load_from_disk

    if not volumes_dir.is_dir():
        raise MissingInputError(f"{volumes_dir}: volumes dataset does not exist")
    dataset = load_from_disk(str(volumes_dir))
    missing = {"patient_id", "layout", "source"} - set(dataset.column_names)
    if missing:
        raise InputError(f"{volumes_dir}: volumes dataset lacks column(s) {sorted(missing)}")
    rows = dataset.select_columns(["patient_id", "layout", "source"])
    return [dict(zip(("patient_id", "layout", "source"), values))
            for values in zip(rows["patient_id"], rows["layout"], rows["source"])]


def export_nnunet(volumes_dir: str | os.PathLike, splits_file: str | os.PathLike, out_dir: str | os.PathLike,
                  raw_dir: str | os.PathLike, *, workers: int = 0, progress: bool = True) -> ExportResult:
    """Write the nnU-Net v2 raw dataset ``out_dir`` (``DatasetNNN_Name``) for the patients and folds of
    ``volumes_dir`` and ``splits_file``, from the original files under ``raw_dir``. The folder appears
    atomically; the same inputs give the same bytes whatever ``workers`` (0 = all cores).

    Raises:
        InputError: a badly named ``out_dir``; patients of the volumes dataset and the split file differ;
            the raw release does not hold a patient as prepared (another release, layout or folder); a raw
            file has become unreadable or its labels invalid since ``prepare``.
    """
    volumes_dir, out_dir = Path(volumes_dir), Path(out_dir)
    match = re.match(DATASET_FOLDER_PATTERN, out_dir.name)
    if not match:
        raise InputError(f"{out_dir}: nnU-Net needs the dataset folder named DatasetNNN_Name (e.g. Dataset501_BraTS)")
    rows = _volumes_rows(volumes_dir)
    folds = read_fold_file(splits_file)
    ids = [row["patient_id"] for row in rows]
    if set(ids) != set(folds):
        only_volumes, only_splits = sorted(set(ids) - set(folds)), sorted(set(folds) - set(ids))
        raise InputError(f"{splits_file}: patients differ from {volumes_dir}: only in the volumes {only_volumes[:5]}, "
                         f"only in the split file {only_splits[:5]}")
    layouts = Counter(row["layout"] for row in rows)
    if len(layouts) != 1:
        raise InputError(f"{volumes_dir}: patients from several layouts {dict(layouts)}")
    inventory = discover(raw_dir)
    cases = {case.patient_id: case for case in inventory.cases}
    tasks: list[tuple[CaseFiles, str]] = []
    for row in sorted(rows, key=lambda r: r["patient_id"]):
        case = cases.get(row["patient_id"])
        found = None if case is None else (case.layout, case.source(inventory.root))
        if found != (row["layout"], row["source"]):
            where = "not a usable case" if case is None else f"{found[0]} case at {found[1]!r}"
            raise InputError(f"{raw_dir}: patient {row['patient_id']} was prepared from {row['layout']} case "
                             f"{row['source']!r}; this release has it as {where} (wrong --raw-dir?)")
        tasks.append((case, folds[row["patient_id"]][0]))

    training = [case.patient_id for case, split in tasks if split == SPLIT_TRAINVAL]
    test = [case.patient_id for case, split in tasks if split == SPLIT_TEST]
    folds_json = splits_final(folds)
    if not training:
        raise InputError(f"{splits_file}: no trainval patient to train nnU-Net on")
    workers = workers or os.cpu_count() or 1
    with atomic.atomic_dir(out_dir, kind=KIND) as staging:
        jobs = []
        for case, split in tasks:
            images_dir = staging / ("imagesTr" if split == SPLIT_TRAINVAL else "imagesTs")
            labels_dir = staging / ("labelsTr" if split == SPLIT_TRAINVAL else "labelsTs")
            images_dir.mkdir(exist_ok=True)
            labels_dir.mkdir(exist_ok=True)
            jobs.append((case, images_dir, labels_dir))
        pool = process_context().Pool(min(workers, len(jobs))) if workers > 1 and len(jobs) > 1 else None
        try:
            results = pool.imap(export_case, jobs) if pool else map(export_case, jobs)
            for failure in tqdm(results, total=len(jobs), desc="export-nnunet", unit="case", disable=not progress):
                if failure is not None:
                    raise InputError(f"{failure[0]}: {failure[1]} (raw file changed since prepare?)")
        finally:
            if pool:
                pool.terminate()
        description = dataset_json(match.group(2), len(training), len(test), inventory.layout)
        # sort_keys=False: nnU-Net reads the region order from the key order of "labels".
        (staging / "dataset.json").write_text(json.dumps(description, indent=2) + "\n", encoding="utf-8")
        (staging / SPLITS_FINAL).write_text(json.dumps(folds_json, indent=2) + "\n", encoding="utf-8")
    return ExportResult(out_dir, training, test, len(folds_json), inventory.layout)
