"""The prepare stage end to end: schema, alignment, determinism, atomicity, exclusions, real data."""

import gzip
import hashlib
import json
import shutil

import numpy as np
import pytest
from datasets import load_from_disk

from brats_llm.constants import MODALITIES
from brats_llm.preprocess import case as case_module
from brats_llm.preprocess.volumes import NoUsableCaseError, PrepareParams, load_volumes, prepare
from tests.conftest import TINY_SHAPE, nifti_bytes

TINY = PrepareParams(slices=24, size=32)


def digest_tree(root):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.iterdir())}


@pytest.fixture(scope="module")
def tiny_volumes(tiny_demo, tmp_path_factory):
    out = tmp_path_factory.mktemp("volumes") / "volumes"
    result = prepare(tiny_demo, out, TINY, out.parent / "report.json", workers=1, progress=False)
    return out, result


def test_schema_and_dtypes(tiny_volumes, tiny_params):
    out, result = tiny_volumes
    assert len(result.included) == 6 and not result.excluded
    dataset = load_volumes(out)
    row = dataset[0]
    assert row["image"].dtype == np.uint8 and row["image"].shape == (len(MODALITIES), 24, 32, 32)
    assert row["mask"].dtype == np.uint8 and row["mask"].shape == (24, 32, 32)
    assert set(np.unique(row["mask"])) == {0, 1}
    assert row["spacing_mm"] == pytest.approx([1.0, 48 / 32, 48 / 32])
    assert row["crop_stop"] - row["crop_start"] == 24 and row["original_shape"] == list(TINY_SHAPE)
    assert row["label"] == {"LGG": 0, "HGG": 1}[row["grade"]]
    assert dataset.features["label"].names == ["LGG", "HGG"]
    # The plain numpy format upcasts integers (datasets' default); values are the same.
    plain = load_from_disk(str(out)).with_format("numpy")[0]["image"]
    assert plain.dtype == np.int64 and np.array_equal(plain, row["image"])


def test_mask_aligns_with_image(tiny_volumes):
    dataset = load_volumes(tiny_volumes[0])
    for row in dataset:
        flair, mask = row["image"][0].astype(float), row["mask"].astype(bool)
        assert mask.any()
        brain = flair > 0
        assert flair[mask].mean() > flair[brain & ~mask].mean() + 20  # tumour is bright on FLAIR
        assert 0.0 < row["tumour_fraction_in_window"] <= 1.0


def test_byte_identical_across_runs_and_workers(tiny_volumes, tiny_demo, tmp_path):
    out, _ = tiny_volumes
    again = tmp_path / "again"
    prepare(tiny_demo, again, TINY, tmp_path / "report.json", workers=2, progress=False)
    assert digest_tree(again) == digest_tree(out)
    assert (tmp_path / "report.json").read_bytes() == (out.parent / "report.json").read_bytes()


def test_interrupted_run_leaves_nothing(tiny_demo, tmp_path, monkeypatch):
    calls = []

    def explode(case, params, root):
        calls.append(case)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(case, params, root)

    original = case_module.preprocess_case
    monkeypatch.setattr(case_module, "preprocess_case", explode)
    with pytest.raises(KeyboardInterrupt):
        prepare(tiny_demo, tmp_path / "volumes", TINY, tmp_path / "report.json", workers=1, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_quirky_release_is_reported_not_fatal(tiny_demo, tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(tiny_demo, raw)
    # .nii next to .nii.gz cases, and the real release's misnamed mask.
    case = raw / "BraTS20_Training_001"
    for path in list(case.iterdir()):
        (case / path.name[:-3]).write_bytes(gzip.decompress(path.read_bytes()))
        path.unlink()
    (case / "BraTS20_Training_001_seg.nii").rename(case / "W39_1998.09.19_Segm.nii")
    truncated = raw / "BraTS20_Training_002" / "BraTS20_Training_002_t1.nii.gz"
    truncated.write_bytes(truncated.read_bytes()[:3000])
    bad_labels = np.zeros(TINY_SHAPE, np.uint8)
    bad_labels[20:25, 20:25, 20:25] = 3
    (raw / "BraTS20_Training_003" / "BraTS20_Training_003_seg.nii.gz").write_bytes(nifti_bytes(bad_labels))
    report = tmp_path / "report.json"
    result = prepare(raw, tmp_path / "volumes", TINY, report, workers=2, progress=False)
    data = json.loads(report.read_text())
    assert data["included"] == result.included == ["BraTS20_Training_001", "BraTS20_Training_004",
                                                   "BraTS20_Training_005", "BraTS20_Training_006"]
    excluded = {e["id"]: e for e in data["excluded"]}
    assert excluded["BraTS20_Training_002"]["path"] == str(truncated)
    assert "truncated" in excluded["BraTS20_Training_002"]["reason"]
    assert "unexpected mask label(s) [3]" in excluded["BraTS20_Training_003"]["reason"]
    assert any("non-standard name" in n["message"] for n in data["notes"])
    assert len(load_from_disk(str(tmp_path / "volumes"))) == 4


def test_nothing_usable(tmp_path, case_factory):
    case_factory(tmp_path / "raw" / "HGG", "c1", skip=("flair",))
    report = tmp_path / "report.json"
    with pytest.raises(NoUsableCaseError, match="no usable case"):
        prepare(tmp_path / "raw", tmp_path / "volumes", TINY, report, workers=1, progress=False)
    assert json.loads(report.read_text())["excluded"][0]["reason"] == "flair image missing"
    assert not (tmp_path / "volumes").exists()


def test_real_sample(sample_dir, tmp_path):
    result = prepare(sample_dir, tmp_path / "volumes", PrepareParams(), tmp_path / "report.json", progress=False)
    assert len(result.included) == 6 and not result.excluded
    dataset = load_volumes(tmp_path / "volumes")
    grades = dict(zip(dataset["patient_id"], dataset["grade"]))
    assert grades["Brats18_TCIA10_628_1"] == "LGG" and grades["Brats18_2013_11_1"] == "HGG"
    assert sorted(grades.values()) == ["HGG"] * 4 + ["LGG"] * 2
    for row in dataset:
        assert row["image"].shape == (4, 95, 128, 128)
        assert row["mask"].sum() > 1000  # non-empty inside the 95-slice window
        assert row["tumour_fraction_in_window"] > 0.95
        assert all(row["image"][c].max() == 255 for c in range(4))


def test_layout_matches_save_to_disk(tiny_volumes, tmp_path):
    out, _ = tiny_volumes
    dataset = load_from_disk(str(out))
    dataset.save_to_disk(str(tmp_path / "copy"))
    ours, theirs = (json.loads((d / "state.json").read_text()) for d in (out, tmp_path / "copy"))
    assert set(ours) == set(theirs) and ours["_data_files"] == theirs["_data_files"]
    assert load_from_disk(str(tmp_path / "copy")).features == dataset.features
