"""MSD Task01_BrainTumour release module: dataset.json, 4D images, channel and label order read from the file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from brats_llm.constants import NO_GRADE
from brats_llm.errors import InputError
from brats_llm.ingest.layout import discover
from brats_llm.ingest.layouts import msd
from brats_llm.ingest.layouts.msd import read_msd_description
from brats_llm.preprocess.volumes import prepare
from tests.conftest import TINY_SHAPE, nifti_bytes
from tests.release_cases import PARAMS, patient, remap

#: The real MSD Task01_BrainTumour dataset.json (without its file lists).
MSD_DESCRIPTION = {
    "name": "BRATS",
    "description": "Gliomas segmentation tumour and oedema in on brain images",
    "tensorImageSize": "4D",
    "modality": {"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"},
    "labels": {"0": "background", "1": "edema", "2": "non-enhancing tumor", "3": "enhancing tumour"},
    "numTraining": 484,
    "numTest": 266,
}
#: BraTS 2017-2021 label -> MSD label (2017: 1 NCR/NET, 2 ED, 4 ET; MSD: 1 ED, 2 NET, 3 ET).
TO_MSD = {0: 0, 1: 2, 2: 1, 4: 3}


def write(root: Path, images, labels, case_id: str = "BRATS_001", *, description=None, convert: bool = True) -> Path:
    """MSD Task01: the 4 modalities stacked (FLAIR, T1w, t1gd, T2w) into one 4D file, labels renumbered;
    stored in RAS voxel order (x and y flipped) with a RAS affine, so loading must reorient to LPS."""
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "dataset.json").write_text(json.dumps(description or MSD_DESCRIPTION))
    affine = np.eye(4)
    affine[0, 3] = -(TINY_SHAPE[0] - 1)  # the same world coordinates as brats_affine
    stacked = np.stack([image[::-1, ::-1] for image in images], axis=-1)
    (root / "imagesTr" / f"{case_id}.nii.gz").write_bytes(nifti_bytes(np.ascontiguousarray(stacked), affine))
    seg = remap(labels, TO_MSD) if convert else labels
    (root / "labelsTr" / f"{case_id}.nii.gz").write_bytes(nifti_bytes(np.ascontiguousarray(seg[::-1, ::-1]), affine))
    (root / "imagesTr" / f"._{case_id}.nii.gz").write_bytes(b"\x00\x05\x16\x07 AppleDouble junk")
    return root


def test_msd_layout_and_its_bad_cases(tmp_path):
    images, labels = patient()
    root = tmp_path / "Task01_BrainTumour"
    write(root, images, labels)
    write(root, images, labels, case_id="BRATS_002")
    (root / "labelsTr" / "BRATS_002.nii.gz").unlink()  # image without label
    write(root, images, labels, case_id="BRATS_003")
    (root / "imagesTr" / "BRATS_003.nii.gz").unlink()  # label without image
    write(root, images, labels, case_id="BRATS_004")
    (root / "imagesTr" / "BRATS_004.nii.gz").write_bytes(nifti_bytes(images[0]))  # 3D, not 4D
    write(root, images, labels, case_id="BRATS_005", convert=False)  # BraTS label 4 in an MSD file
    inventory = discover(tmp_path)
    assert inventory.layout == msd.NAME and inventory.root == root
    assert [c.patient_id for c in inventory.cases] == ["BRATS_001", "BRATS_004", "BRATS_005"]
    case = inventory.cases[0]
    assert case.channels == (0, 1, 2, 3) and case.labels == dict(msd.LABEL_MAP) and case.grade == NO_GRADE
    why = {e.id: e for e in inventory.excluded}
    assert why["BRATS_002"].path.endswith("imagesTr/BRATS_002.nii.gz")
    assert why["BRATS_002"].reason == "segmentation mask missing (no labelsTr/BRATS_002.nii.gz)"
    assert why["BRATS_003"].path.endswith("labelsTr/BRATS_003.nii.gz") and "image missing" in why["BRATS_003"].reason
    result = prepare(tmp_path, tmp_path / "volumes", PARAMS, workers=1, progress=False)
    assert result.included == ["BRATS_001"]
    why = {e.id: e for e in result.excluded}
    assert why["BRATS_004"].path.endswith("imagesTr/BRATS_004.nii.gz") and "expected a 4D volume" in why["BRATS_004"].reason
    assert why["BRATS_005"].path.endswith("labelsTr/BRATS_005.nii.gz")
    assert "unexpected mask label(s) [4]" in why["BRATS_005"].reason


def test_msd_channel_and_label_order_come_from_dataset_json(tmp_path):
    description = json.loads(json.dumps(MSD_DESCRIPTION))
    description["modality"] = {"0": "T2w", "1": "t1gd", "2": "T1w", "3": "FLAIR"}
    description["labels"] = {"background": 0, "enhancing_tumour": 1, "edema": 2, "non_enhancing_tumor": 3}
    path = tmp_path / "dataset.json"
    path.write_text(json.dumps(description))
    channels, labels = read_msd_description(path)
    assert channels == (3, 2, 1, 0)  # FLAIR, T1, T1ce, T2
    assert labels == {0: 0, 1: 3, 2: 2, 3: 1}


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d.update(labels={"0": "background", "1": "necrosis", "2": "edema", "3": "enhancing tumour"}),
         "unexpected label"),
        (lambda d: d.update(labels={"0": "background", "1": "edema", "2": "enhancing tumour"}), "once each"),
        (lambda d: d.update(modality={"0": "FLAIR", "1": "T1w", "2": "CT", "3": "T2w"}), "unexpected channel"),
        (lambda d: d.pop("modality"), "no 'modality'"),
        (lambda d: d.pop("labels"), "no 'labels'"),
    ],
)
def test_unexpected_msd_dataset_json_fails_loudly(tmp_path, change, message):
    images, labels = patient()
    description = json.loads(json.dumps(MSD_DESCRIPTION))
    change(description)
    write(tmp_path, images, labels, description=description)
    with pytest.raises(InputError, match=message):
        discover(tmp_path)


def test_msd_without_dataset_json_fails_loudly(tmp_path):
    images, labels = patient()
    write(tmp_path, images, labels)
    (tmp_path / "dataset.json").unlink()
    with pytest.raises(InputError, match="dataset.json: missing"):
        discover(tmp_path)
