"""BraTS 2018/2019 release module: HGG/LGG grade folders, grades from the folder."""

from __future__ import annotations

from pathlib import Path

from brats_llm.ingest.layout import discover, identify
from brats_llm.ingest.layouts import brats2018
from tests.release_cases import reasons, write_flat


def write(root: Path, images, labels, case_id: str = "Brats18_TCIA01_1_1") -> Path:
    """One HGG case in the 2018 layout."""
    write_flat(root / "HGG", case_id, images, labels)
    return root


def test_2018_layout_grades_duplicates_and_unsafe_ids(tmp_path, case_factory):
    case_factory(tmp_path / "HGG", "Brats18_A_1")
    case_factory(tmp_path / "LGG", "Brats18_B_1")
    case_factory(tmp_path / "HGG", "Brats18_DUP_1")
    case_factory(tmp_path / "LGG", "Brats18_DUP_1")
    case_factory(tmp_path / "LGG", "bad id; rm")
    inventory = discover(tmp_path)
    assert inventory.layout == brats2018.NAME
    assert {c.patient_id: c.grade for c in inventory.cases} == {"Brats18_A_1": "HGG", "Brats18_B_1": "LGG"}
    assert all(c.labels == {0: 0, 1: 1, 2: 2, 4: 3} for c in inventory.cases)
    dups = [e for e in inventory.excluded if e.id == "Brats18_DUP_1"]
    assert len(dups) == 2 and all("duplicate patient id" in e.reason for e in dups)
    assert reasons(inventory)["bad id; rm"] == "patient id is not a safe file name"


def test_grade_folders_win_over_a_mapping_file(tmp_path, case_factory):
    case_factory(tmp_path / "LGG", "Brats18_A_1")
    (tmp_path / "name_mapping.csv").write_text("Grade,BraTS_2020_subject_ID\nHGG,Brats18_A_1\n")
    assert identify(tmp_path) is brats2018.RELEASE
    assert [c.grade for c in discover(tmp_path).cases] == ["LGG"]


def test_real_sample_layout(sample_dir):
    inventory = discover(sample_dir)
    assert inventory.layout == brats2018.NAME
    assert len(inventory.cases) == 6 and not inventory.excluded
    assert sorted(c.grade for c in inventory.cases) == ["HGG"] * 4 + ["LGG"] * 2
