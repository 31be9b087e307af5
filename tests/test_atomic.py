import json
import os

import pytest

from brats_llm import atomic


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
    with atomic.atomic_dir(out) as staging:
        (staging / "data.arrow").write_text("v1")
    with pytest.raises(RuntimeError):
        with atomic.atomic_dir(out) as staging:
            (staging / "data.arrow").write_text("half")
            raise RuntimeError("killed")
    assert (out / "data.arrow").read_text() == "v1"
    assert sorted(os.listdir(tmp_path)) == ["dataset"]


def test_atomic_dir_replaces_existing(tmp_path):
    out = tmp_path / "dataset"
    out.mkdir()
    (out / "stale").write_text("old")
    with atomic.atomic_dir(out) as staging:
        (staging / "fresh").write_text("new")
    assert sorted(os.listdir(out)) == ["fresh"]
    assert sorted(os.listdir(tmp_path)) == ["dataset"]


def test_write_csv_quotes_and_round_trips(tmp_path):
    import csv

    rows = [{"patient_id": "a,b", "value": 0.5}, {"patient_id": 'c"d', "value": 1}]
    atomic.write_csv(tmp_path / "x.csv", rows)
    with open(tmp_path / "x.csv", newline="") as handle:
        assert list(csv.DictReader(handle)) == [{"patient_id": "a,b", "value": "0.5"}, {"patient_id": 'c"d', "value": "1"}]
    atomic.write_csv(tmp_path / "empty.csv", [])
    assert (tmp_path / "empty.csv").read_text() == ""
