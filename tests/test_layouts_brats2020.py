"""BraTS 2020 release module: flat case folders, grades from name_mapping.csv, the registry's fallback."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from brats_llm.errors import InputError
from brats_llm.ingest.layout import discover, identify
from brats_llm.ingest.layouts import FALLBACK, brats2020
from brats_llm.preprocess.volumes import prepare
from tests.release_cases import PARAMS, TO_REGIONS, deny, patient, reasons, remap, write_flat


def write(root: Path, images, labels, case_id: str = "BraTS20_Training_001") -> Path:
    """One HGG case in the 2020 layout with its name_mapping.csv."""
    write_flat(root, case_id, images, labels)
    (root / "name_mapping.csv").write_text(f"Grade,BraTS_2020_subject_ID\nHGG,{case_id}\n")
    return root


def write_mapping(root, rows):
    lines = ["Grade,BraTS_2017_subject_ID,BraTS_2018_subject_ID,TCGA_TCIA_subject_ID,BraTS_2019_subject_ID,BraTS_2020_subject_ID"]
    lines += [f"{grade},NA,NA,NA,NA,{pid}" for pid, grade in rows]
    (root / "name_mapping.csv").write_text("\n".join(lines) + "\n")


def test_2020_layout_with_quirks(tmp_path, case_factory):
    root = tmp_path / "MICCAI_BraTS2020_TrainingData"
    case_factory(root, "BraTS20_Training_001")
    case_factory(root, "BraTS20_Training_002", ext=".nii")  # uncompressed release files
    case_factory(root, "BraTS20_Training_003", mask_name="W39_1998.09.19_Segm.nii")  # the real misnamed mask
    case_factory(root, "BraTS20_Training_004", skip=("t1ce",))
    case_factory(root, "BraTS20_Training_005")  # not in the mapping
    case_factory(root, "BraTS20_Training_006", skip=("seg",))
    write_mapping(root, [("BraTS20_Training_001", "HGG"), ("BraTS20_Training_002", "LGG"),
                         ("BraTS20_Training_003", "HGG"), ("BraTS20_Training_004", "HGG"),
                         ("BraTS20_Training_006", "LGG"), ("BraTS20_Training_099", "HGG")])
    inventory = discover(tmp_path)  # a wrapper folder above the release is descended
    assert inventory.layout == brats2020.NAME
    assert inventory.root == root
    assert [c.patient_id for c in inventory.cases] == ["BraTS20_Training_001", "BraTS20_Training_002", "BraTS20_Training_003"]
    assert [c.grade for c in inventory.cases] == ["HGG", "LGG", "HGG"]
    assert inventory.cases[2].mask.name == "W39_1998.09.19_Segm.nii"
    assert [p.name.split("_")[-1] for p in inventory.cases[0].images] == ["flair.nii.gz", "t1.nii.gz", "t1ce.nii.gz", "t2.nii.gz"]
    assert any("non-standard name" in n.message for n in inventory.notes)
    why = reasons(inventory)
    assert why["BraTS20_Training_004"] == "t1ce image missing"
    assert "grade missing" in why["BraTS20_Training_005"]
    assert why["BraTS20_Training_006"] == "segmentation mask missing"
    assert "no case folder" in why["BraTS20_Training_099"]


def test_ambiguous_files_and_bad_grade(tmp_path, case_factory):
    case = case_factory(tmp_path, "BraTS20_Training_001")
    shutil.copy(case / "BraTS20_Training_001_t2.nii.gz", case / "BraTS20_Training_001_t2.nii")
    case_factory(tmp_path, "BraTS20_Training_002")
    write_mapping(tmp_path, [("BraTS20_Training_001", "HGG"), ("BraTS20_Training_002", "GBM")])
    why = reasons(discover(tmp_path))
    assert why["BraTS20_Training_001"].startswith("t2 image ambiguous")
    assert why["BraTS20_Training_002"] == "grade 'GBM' is not one of ('LGG', 'HGG')"


def test_conflicting_grades_in_mapping(tmp_path, case_factory):
    case_factory(tmp_path, "BraTS20_Training_001")
    write_mapping(tmp_path, [("BraTS20_Training_001", "HGG"), ("BraTS20_Training_001", "LGG")])
    inventory = discover(tmp_path)
    assert not inventory.cases
    assert any("conflicting grades" in e.reason for e in inventory.excluded)


def test_flat_folders_no_release_claims_are_2020_without_grades(tmp_path, case_factory):
    case_factory(tmp_path, "Case_001")
    assert identify(tmp_path) is FALLBACK is brats2020.RELEASE
    inventory = discover(tmp_path)
    assert inventory.layout == brats2020.NAME and not inventory.cases
    assert reasons(inventory)["Case_001"] == (f"grade missing: not listed in {tmp_path / 'name_mapping.csv'} (no such "
                                              f"file; BraTS 2021 case folders are named BraTS2021_NNNNN)")


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda p: p.write_bytes("Grade,BraTS_2020_subject_ID\nHGG,BraTS20_Training_001\xe9\n".encode("latin-1")),
         r"not UTF-8 text \(byte 0xe9"),
        (lambda p: p.mkdir(), "is a folder, not a file"),
        (lambda p: p.symlink_to(p.parent / "missing.csv"), "broken symbolic link"),
        (lambda p: p.write_text("Grade,ID\nHGG,x\n"), r"missing column\(s\) \['BraTS_2020_subject_ID'\]"),
        (lambda p: p.write_text("Grade,BraTS_2020_subject_ID\nHGG,\"" + "x" * 200_000 + "\"\n"), "not valid CSV"),
    ],
)
def test_bad_mapping_is_one_input_error(tmp_path, case_factory, make, reason):
    case_factory(tmp_path, "BraTS20_Training_001")
    make(tmp_path / "name_mapping.csv")
    with pytest.raises(InputError, match=reason) as info:
        discover(tmp_path)
    assert str(info.value).startswith(str(tmp_path / "name_mapping.csv"))


def test_unreadable_mapping(tmp_path, case_factory, monkeypatch):
    case_factory(tmp_path, "BraTS20_Training_001")
    write_mapping(tmp_path, [("BraTS20_Training_001", "HGG")])
    deny(monkeypatch, "open", tmp_path / "name_mapping.csv")
    with pytest.raises(InputError, match=r"name_mapping.csv: cannot read name_mapping.csv \(Permission denied\)"):
        discover(tmp_path)


def test_unreadable_folder_listed_in_mapping_is_not_reported_twice(tmp_path, case_factory, monkeypatch):
    case_factory(tmp_path, "BraTS20_Training_001")
    case_factory(tmp_path, "BraTS20_Training_002")
    write_mapping(tmp_path, [("BraTS20_Training_001", "HGG"), ("BraTS20_Training_002", "LGG")])
    deny(monkeypatch, "iterdir", tmp_path / "BraTS20_Training_002")
    inventory = discover(tmp_path)
    assert [c.patient_id for c in inventory.cases] == ["BraTS20_Training_001"]
    why = [(e.id, e.reason) for e in inventory.excluded]
    assert why == [("BraTS20_Training_002", "cannot list folder (Permission denied)")]
    assert os.path.isdir(tmp_path / "BraTS20_Training_002")


def test_label_3_in_a_2020_case_is_excluded_naming_the_file(tmp_path):
    images, labels = patient()
    write_flat(tmp_path, "BraTS20_Training_001", images, labels)
    write_flat(tmp_path, "BraTS20_Training_002", images, remap(labels, TO_REGIONS))
    (tmp_path / "name_mapping.csv").write_text(
        "Grade,BraTS_2020_subject_ID\nHGG,BraTS20_Training_001\nLGG,BraTS20_Training_002\n")
    result = prepare(tmp_path, tmp_path.parent / "v20", PARAMS, workers=1, progress=False)
    assert result.layout == brats2020.NAME and result.included == ["BraTS20_Training_001"]
    (bad,) = result.excluded
    assert bad.path.endswith("BraTS20_Training_002_seg.nii.gz")
    assert "unexpected mask label(s) [3]" in bad.reason and "[0, 1, 2, 4]" in bad.reason
