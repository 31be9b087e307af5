"""Discovery of BraTS 2020 / 2018 layouts and the reasons cases are excluded before loading."""

import os
import pathlib
import shutil

import pytest

from brats_llm.errors import InputError
from brats_llm.ingest.layout import LAYOUT_2018, LAYOUT_2020, discover


def write_mapping(root, rows):
    lines = ["Grade,BraTS_2017_subject_ID,BraTS_2018_subject_ID,TCGA_TCIA_subject_ID,BraTS_2019_subject_ID,BraTS_2020_subject_ID"]
    lines += [f"{grade},NA,NA,NA,NA,{pid}" for pid, grade in rows]
    (root / "name_mapping.csv").write_text("\n".join(lines) + "\n")


def reasons(inventory):
    return {e.id: e.reason for e in inventory.excluded}


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
    assert inventory.layout == LAYOUT_2020
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
    assert "GBM" in why["BraTS20_Training_002"]


def test_2018_layout_grades_duplicates_and_unsafe_ids(tmp_path, case_factory):
    case_factory(tmp_path / "HGG", "Brats18_A_1")
    case_factory(tmp_path / "LGG", "Brats18_B_1")
    case_factory(tmp_path / "HGG", "Brats18_DUP_1")
    case_factory(tmp_path / "LGG", "Brats18_DUP_1")
    case_factory(tmp_path / "LGG", "bad id; rm")
    inventory = discover(tmp_path)
    assert inventory.layout == LAYOUT_2018
    assert {c.patient_id: c.grade for c in inventory.cases} == {"Brats18_A_1": "HGG", "Brats18_B_1": "LGG"}
    dups = [e for e in inventory.excluded if e.id == "Brats18_DUP_1"]
    assert len(dups) == 2 and all("duplicate patient id" in e.reason for e in dups)
    assert reasons(inventory)["bad id; rm"] == "patient id is not a safe file name"


def test_conflicting_grades_in_mapping(tmp_path, case_factory):
    case_factory(tmp_path, "BraTS20_Training_001")
    write_mapping(tmp_path, [("BraTS20_Training_001", "HGG"), ("BraTS20_Training_001", "LGG")])
    inventory = discover(tmp_path)
    assert not inventory.cases
    assert any("conflicting grades" in e.reason for e in inventory.excluded)


def test_missing_root_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        discover(tmp_path / "nope")


def test_real_sample_layout(sample_dir):
    inventory = discover(sample_dir)
    assert inventory.layout == LAYOUT_2018
    assert len(inventory.cases) == 6 and not inventory.excluded
    assert sorted(c.grade for c in inventory.cases) == ["HGG"] * 4 + ["LGG"] * 2


def deny(monkeypatch, method, denied):
    """Make ``Path.<method>`` raise PermissionError for ``denied`` (tests run as root: chmod cannot)."""
    original = getattr(pathlib.Path, method)

    def guarded(self, *args, **kwargs):
        if self == denied:
            raise PermissionError(13, "Permission denied", str(self))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, method, guarded)


def test_unreadable_entries_are_exclusions(tmp_path, case_factory, monkeypatch):
    for name in ("Brats18_A_1", "Brats18_B_1", "Brats18_C_1", "Brats18_D_1", "Brats18_E_1"):
        case_factory(tmp_path / "HGG", name)
    denied = tmp_path / "HGG" / "Brats18_A_1"
    broken = tmp_path / "HGG" / "Brats18_B_1" / "Brats18_B_1_t2.nii.gz"
    broken.unlink()
    broken.symlink_to(tmp_path / "nowhere.nii.gz")
    folder = tmp_path / "HGG" / "Brats18_C_1" / "Brats18_C_1_t1.nii.gz"
    folder.unlink()
    folder.mkdir()
    (tmp_path / "HGG" / "Brats18_F_1").symlink_to(tmp_path / "gone")  # a case folder that is a broken link
    deny(monkeypatch, "iterdir", denied)
    inventory = discover(tmp_path)
    assert [c.patient_id for c in inventory.cases] == ["Brats18_D_1", "Brats18_E_1"]
    excluded = {e.id: e for e in inventory.excluded}
    denied_reason = "cannot list folder (Permission denied)"
    assert (excluded["Brats18_A_1"].path, excluded["Brats18_A_1"].reason) == (str(denied), denied_reason)
    assert (excluded["Brats18_B_1"].path, excluded["Brats18_B_1"].reason) == (str(broken), "broken symbolic link")
    assert (excluded["Brats18_C_1"].path, excluded["Brats18_C_1"].reason) == (str(folder), "is a folder, not a file")
    assert "broken symbolic link" in excluded["Brats18_F_1"].reason


@pytest.mark.parametrize("where", ["root", "grade", "stat"])
def test_unreadable_release_is_one_input_error(tmp_path, case_factory, monkeypatch, where):
    case_factory(tmp_path / "LGG", "Brats18_A_1")
    if where == "root":
        (tmp_path / "LGG").rename(tmp_path / "wrapper")  # no grade folder: the root is listed
        deny(monkeypatch, "iterdir", tmp_path)
    elif where == "grade":
        deny(monkeypatch, "iterdir", tmp_path / "LGG")
    else:
        deny(monkeypatch, "stat", tmp_path / "HGG")
    with pytest.raises(InputError, match="Permission denied") as info:
        discover(tmp_path)
    assert str(tmp_path) in str(info.value)


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


@pytest.mark.parametrize("graded", [True, False])
def test_hidden_case_folder_is_reported(tmp_path, case_factory, graded):
    parent = tmp_path / "HGG" if graded else tmp_path
    case_factory(parent, "Brats18_A_1")
    hidden = case_factory(parent, ".Brats18_B_1")
    (parent / ".cache").mkdir()  # hidden folders without NIfTI files stay silent
    (parent / ".cache" / "notes.txt").write_text("x")
    inventory = discover(tmp_path)
    assert [c.patient_id for c in inventory.cases] == (["Brats18_A_1"] if graded else [])
    hidden_rows = [e for e in inventory.excluded if e.path == str(hidden)]
    assert len(hidden_rows) == 1 and hidden_rows[0].id == ".Brats18_B_1"
    assert "hidden folder (its name starts with '.')" in hidden_rows[0].reason
    assert not any(".cache" in e.path for e in inventory.excluded)


def test_symlink_loop_is_named_a_loop(tmp_path, case_factory):
    case_factory(tmp_path / "HGG", "Brats18_A_1")
    case_dir = case_factory(tmp_path / "HGG", "Brats18_B_1")
    image = case_dir / "Brats18_B_1_t2.nii.gz"
    image.unlink()
    image.symlink_to(image)  # a file that links to itself
    (tmp_path / "HGG" / "Brats18_C_1").symlink_to(tmp_path / "HGG" / "Brats18_C_1")  # a looping case folder
    inventory = discover(tmp_path)
    assert [c.patient_id for c in inventory.cases] == ["Brats18_A_1"]
    why = {e.id: (e.path, e.reason) for e in inventory.excluded}
    assert why["Brats18_B_1"] == (str(image), "symbolic link loop (the link leads back to itself)")
    assert why["Brats18_C_1"] == (str(tmp_path / "HGG" / "Brats18_C_1"), "symbolic link loop (the link leads back to itself)")
