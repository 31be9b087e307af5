"""BraTS 2023/2024 glioma release module: ``-t2f/-t1n/-t1c/-t2w`` file names, labels 0-3, no grades."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from brats_llm.constants import NO_GRADE
from brats_llm.ingest.layout import discover, identify
from brats_llm.ingest.layouts import brats2023
from brats_llm.preprocess.volumes import load_volumes, prepare
from tests.release_cases import PARAMS, TO_REGIONS, patient, remap, write_flat


def write(root: Path, images, labels, case_id: str = "BraTS-GLI-00001-000", *, convert: bool = True, **kwargs) -> Path:
    """One case with BraTS 2023 names; ``convert`` turns the 2017 label 4 into 3 as the 2023 release did."""
    seg = remap(labels, TO_REGIONS) if convert else labels
    write_flat(root, case_id, images, seg, sep="-", names=dict(brats2023.MODALITY_NAMES), **kwargs)
    return root


def test_2023_layout_and_its_bad_cases(tmp_path):
    images, labels = patient()
    write(tmp_path, images, labels)
    write(tmp_path, images, labels, case_id="BraTS-GLI-00002-000", skip=("flair",))
    write(tmp_path, images, labels, case_id="BraTS-GLI-00003-000", convert=False)  # label 4: not 2023
    inventory = discover(tmp_path)
    assert inventory.layout == brats2023.NAME
    case = inventory.cases[0]
    assert [c.patient_id for c in inventory.cases] == ["BraTS-GLI-00001-000", "BraTS-GLI-00003-000"]
    assert [p.name for p in case.images] == [f"BraTS-GLI-00001-000-{s}.nii.gz" for s in ("t2f", "t1n", "t1c", "t2w")]
    assert case.mask.name == "BraTS-GLI-00001-000-seg.nii.gz" and case.grade == NO_GRADE
    assert {e.id: e.reason for e in inventory.excluded} == {"BraTS-GLI-00002-000": "flair image (*-t2f.nii.gz) missing"}
    result = prepare(tmp_path, tmp_path.parent / "volumes23", PARAMS, workers=1, progress=False)
    bad = {e.id: e for e in result.excluded}["BraTS-GLI-00003-000"]
    assert bad.path.endswith("BraTS-GLI-00003-000-seg.nii.gz")
    assert "unexpected mask label(s) [4]" in bad.reason and "[0, 1, 2, 3]" in bad.reason
    row = load_volumes(tmp_path.parent / "volumes23")[0]
    assert set(np.unique(row["regions"])) <= {0, 1, 2, 3} and 3 in row["regions"]


def test_2023_file_names_win_over_a_2021_folder_name(tmp_path):
    images, labels = patient()
    write(tmp_path, images, labels, case_id="BraTS2021_00001")
    assert identify(tmp_path) is brats2023.RELEASE
    assert [c.layout for c in discover(tmp_path).cases] == [brats2023.NAME]
