"""Release-independent discovery: the wrapper descent, unreadable entries, hidden folders and symbolic links
(each release's own rules are tested in tests/test_layouts_<release>.py)."""

import pytest

from brats_llm.errors import InputError
from brats_llm.ingest.layout import discover
from tests.release_cases import deny


def test_missing_root_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        discover(tmp_path / "nope")


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
