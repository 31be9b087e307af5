"""BraTS 2021 release module: flat ``BraTS2021_*`` case folders, no grades."""

from __future__ import annotations

from pathlib import Path

from brats_llm.constants import NO_GRADE, NO_LABEL
from brats_llm.ingest.layout import discover, identify
from brats_llm.ingest.layouts import brats2021
from brats_llm.preprocess.volumes import load_volumes, prepare, ungraded_patients
from tests.release_cases import PARAMS, TO_REGIONS, patient, remap, write_flat


def write(root: Path, images, labels, case_id: str = "BraTS2021_00001", **kwargs) -> Path:
    """One case in the 2021 layout."""
    write_flat(root, case_id, images, labels, **kwargs)
    return root


def test_2021_layout_and_its_bad_cases(tmp_path):
    images, labels = patient()
    root = tmp_path / "BraTS2021_Training_Data"
    write(root, images, labels)
    write(root, images, labels, case_id="BraTS2021_00002", skip=("t1ce",))
    write(root, images, labels, case_id="BraTS2021_00003", skip=("seg",))
    write(root, images, remap(labels, TO_REGIONS), case_id="BraTS2021_00004")  # 2023 labels
    inventory = discover(tmp_path)
    assert inventory.layout == brats2021.NAME and inventory.root == root
    assert [c.patient_id for c in inventory.cases] == ["BraTS2021_00001", "BraTS2021_00004"]
    assert all(c.grade == NO_GRADE for c in inventory.cases)
    why = {e.id: e for e in inventory.excluded}
    assert why["BraTS2021_00002"].reason == "t1ce image missing"
    assert why["BraTS2021_00003"].reason == "segmentation mask missing"
    result = prepare(tmp_path, tmp_path / "volumes", PARAMS, workers=1, progress=False)
    assert result.included == ["BraTS2021_00001"]
    bad = {e.id: e for e in result.excluded}["BraTS2021_00004"]
    assert bad.path.endswith("BraTS2021_00004_seg.nii.gz") and "unexpected mask label(s) [3]" in bad.reason


def test_one_prefixed_folder_is_enough(tmp_path, case_factory):
    case_factory(tmp_path, "Other_001")
    assert identify(tmp_path) is not brats2021.RELEASE
    case_factory(tmp_path, "BraTS2021_00001")
    assert identify(tmp_path) is brats2021.RELEASE


def test_ungraded_dataset_is_detectable(tmp_path):
    images, labels = patient()
    raw = write(tmp_path / "raw", images, labels)
    write(raw, images, labels, case_id="BraTS2021_00002")
    prepare(raw, tmp_path / "volumes", PARAMS, workers=1, progress=False)
    volumes = load_volumes(tmp_path / "volumes")
    assert ungraded_patients(volumes) == ["BraTS2021_00001", "BraTS2021_00002"]
    assert list(volumes["label"]) == [NO_LABEL, NO_LABEL]
    assert "no grades" in volumes.info.description
