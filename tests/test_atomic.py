import json
import os

import pytest

from brats_llm import atomic
from brats_llm.errors import OutputError


def test_write_json_is_stable_and_leaves_no_temp(tmp_path):
    path = tmp_path / "sub" / "report.json"
    atomic.write_json(path, {"b": 1, "a": [1, 2]})
    first = path.read_bytes()
    atomic.write_json(path, {"a": [1, 2], "b": 1})
    assert path.read_bytes() == first
    assert json.loads(first) == {"a": [1, 2], "b": 1}
    assert os.listdir(path.parent) == ["report.json"]


def test_atomic_dir_failure_keeps_previous_output(tmp_path):
    out = tmp_path / "dataset"
    with atomic.atomic_dir(out, kind="test") as staging:
        (staging / "data.arrow").write_text("v1")
    with pytest.raises(RuntimeError):
        with atomic.atomic_dir(out, kind="test") as staging:
            (staging / "data.arrow").write_text("half")
            raise RuntimeError("killed")
    assert (out / "data.arrow").read_text() == "v1"
    assert sorted(os.listdir(tmp_path)) == ["dataset"]


def test_atomic_dir_replaces_its_own_output(tmp_path):
    out = tmp_path / "dataset"
    with atomic.atomic_dir(out, kind="test") as staging:
        (staging / "stale").write_text("old")
    with atomic.atomic_dir(out, kind="test") as staging:
        (staging / "fresh").write_text("new")
    assert sorted(os.listdir(out)) == [atomic.MARKER, "fresh"]
    assert json.loads((out / atomic.MARKER).read_text()) == {"kind": "test"}
    assert sorted(os.listdir(tmp_path)) == ["dataset"]


def test_write_csv_quotes_and_round_trips(tmp_path):
    import csv

    rows = [{"patient_id": "a,b", "value": 0.5}, {"patient_id": 'c"d', "value": 1}]
    atomic.write_csv(tmp_path / "x.csv", rows)
    with open(tmp_path / "x.csv", newline="") as handle:
        assert list(csv.DictReader(handle)) == [{"patient_id": "a,b", "value": "0.5"}, {"patient_id": 'c"d', "value": "1"}]
    atomic.write_csv(tmp_path / "empty.csv", [])
    assert (tmp_path / "empty.csv").read_text() == ""


def _tree(folder):
    return sorted((p.relative_to(folder).as_posix(), p.read_bytes() if p.is_file() else None) for p in folder.rglob("*"))


def test_atomic_dir_fills_an_empty_folder(tmp_path):
    (tmp_path / "out").mkdir()
    with atomic.atomic_dir(tmp_path / "out", kind="test") as staging:
        (staging / "x").write_text("1")
    assert sorted(os.listdir(tmp_path / "out")) == [atomic.MARKER, "x"]


@pytest.mark.parametrize("make, phrase", [
    (lambda out: (out.mkdir(), (out / "thesis.tex").write_text("mine")), "did not write"),
    (lambda out: out.write_text("a file"), "is a file"),
    (lambda out: (out.mkdir(), (out / atomic.MARKER).write_text('{"kind": "slices"}'), (out / "d").write_text("x")),
     "'slices' output"),
    (lambda out: (out.mkdir(), (out / atomic.MARKER).write_text("garbage")), "did not write"),
])
def test_atomic_dir_refuses_what_it_did_not_write(tmp_path, make, phrase):
    out = tmp_path / "out"
    make(out)
    before = _tree(tmp_path)
    ran = []
    with pytest.raises(OutputError, match=phrase) as caught:
        with atomic.atomic_dir(out, kind="volumes") as staging:
            ran.append(staging)
    assert str(out) in str(caught.value) and "nothing was changed" in str(caught.value)
    assert not ran and _tree(tmp_path) == before


def test_atomic_dir_refuses_a_symlink(tmp_path):
    target = tmp_path / "target"
    with atomic.atomic_dir(target, kind="test") as staging:
        (staging / "x").write_text("1")
    (tmp_path / "link").symlink_to(target)
    with pytest.raises(OutputError, match="symbolic link"):
        with atomic.atomic_dir(tmp_path / "link", kind="test"):
            pass
    assert (tmp_path / "link").is_symlink() and (target / "x").read_text() == "1"


def test_second_writer_fails_fast_and_lock_is_removed(tmp_path):
    out = tmp_path / "out"
    with atomic.atomic_dir(out, kind="test"):
        assert (tmp_path / ".out.lock").exists()
        with pytest.raises(OutputError, match="another brats-llm run"):
            with atomic.atomic_dir(out, kind="test"):
                pass
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_lock_held_by_another_process(tmp_path):
    import fcntl

    with open(tmp_path / ".out.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        with pytest.raises(OutputError, match=r"\.out\.lock"):
            with atomic.atomic_dir(tmp_path / "out", kind="test"):
                pass
    assert not (tmp_path / "out").exists()


def test_lock_survives_the_unlink_race(tmp_path, monkeypatch):
    """A lock file removed by its previous holder between our open and flock is not trusted."""
    lock = tmp_path / ".out.lock"
    real_flock, calls = atomic.fcntl.flock, []

    def flock_after_unlink(fd, op):
        if not calls:
            os.unlink(lock)  # the previous holder finished: our fd now points at a removed file
        calls.append(fd)
        return real_flock(fd, op)

    monkeypatch.setattr(atomic.fcntl, "flock", flock_after_unlink)
    with atomic.output_lock(tmp_path / "out"):
        assert len(calls) == 2 and lock.exists()
        assert os.fstat(calls[1]).st_ino == os.stat(lock).st_ino
    assert not lock.exists()


def test_stale_own_leftovers_are_cleaned_foreign_kept(tmp_path):
    for name in (".out.partial-abcd1234", ".out.old-4242", ".other.partial-x", ".out.partial-keep.me", "out.partial-x"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "f").write_text("x")
    with atomic.atomic_dir(tmp_path / "out", kind="test") as staging:
        (staging / "x").write_text("1")
    assert sorted(os.listdir(tmp_path)) == [".other.partial-x", ".out.partial-keep.me", "out", "out.partial-x"]


def test_owned_dir_marks_locks_and_refuses(tmp_path):
    out = tmp_path / "fold0"
    with atomic.owned_dir(out, kind="cnn-model") as folder:
        (folder / "last.pt").write_text("1")
        assert (tmp_path / ".fold0.lock").exists()
    with atomic.owned_dir(out, kind="cnn-model") as folder:  # resume: the same kind, files kept
        assert (folder / "last.pt").read_text() == "1"
    assert sorted(os.listdir(tmp_path)) == ["fold0"]
    with pytest.raises(OutputError, match="'cnn-model' output"):
        with atomic.owned_dir(out, kind="volumes"):
            pass
    assert atomic.output_kind(out) == "cnn-model"
