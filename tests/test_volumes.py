"""The prepare stage end to end: schema, alignment, determinism, atomicity, exclusions, real data."""

import gzip
import hashlib
import json
import pathlib
import shutil
import warnings

import numpy as np
import pytest
from datasets import load_from_disk

from brats_llm.constants import MODALITIES
from brats_llm.preprocess import case as case_module
from brats_llm.preprocess.volumes import CaseFailuresError, NoUsableCaseError, PrepareParams, load_volumes, prepare
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
    for patient in dataset:  # sub-regions: 0-3 (label 4 stored as 3); the mask is exactly their union
        assert patient["regions"].dtype == np.uint8 and patient["regions"].shape == (24, 32, 32)
        assert set(np.unique(patient["regions"])) <= {0, 1, 2, 3}
        assert np.array_equal(patient["mask"], (patient["regions"] > 0).astype(np.uint8))
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


def sane_cohort(root, case_factory, names):
    """Good tiny cases under ``root``/HGG; returns their folders."""
    return {name: case_factory(root / "HGG", name, seed=index) for index, name in enumerate(names)}


def run_quietly(*args, **kwargs):
    """``prepare`` in-process, asserting that no warning at all escapes it."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            return prepare(*args, workers=1, progress=False, **kwargs)
        finally:
            assert [str(w.message) for w in caught] == []


def test_voxel_sanity_exclusions(tmp_path, case_factory):
    folders = sane_cohort(tmp_path / "raw", case_factory, ["c_nan", "c_zero", "c_huge", "c_flat", "c_ok"])
    nan_flair = np.full(TINY_SHAPE, 0.0, np.float32)
    nan_flair[8:-8, 8:-8, 4:-4] = 200.0
    nan_flair[24, 24, 20] = np.nan  # one voxel used to blank the whole channel
    (folders["c_nan"] / "c_nan_flair.nii.gz").write_bytes(nifti_bytes(nan_flair))
    (folders["c_zero"] / "c_zero_t2.nii.gz").write_bytes(nifti_bytes(np.zeros(TINY_SHAPE, np.int16)))
    huge = np.where(nan_flair > 0, 1e300, 0.0)  # finite in float64, overflows the float32 scaling
    huge[8:-8, 8:-8, 4] = 1.0
    (folders["c_huge"] / "c_huge_t1.nii.gz").write_bytes(nifti_bytes(huge))
    flat = np.where(nan_flair > 0, 7, 0).astype(np.int16)
    flat[9, 9, 9] = 8  # not constant, but both percentiles are 7: the channel would be blank
    (folders["c_flat"] / "c_flat_t1ce.nii.gz").write_bytes(nifti_bytes(flat))
    report = tmp_path / "report.json"
    result = run_quietly(tmp_path / "raw", tmp_path / "volumes", TINY, report)
    assert result.included == ["c_ok"]
    why = {e["id"]: (e["path"], e["reason"]) for e in json.loads(report.read_text())["excluded"]}
    assert why["c_nan"] == (str(folders["c_nan"] / "c_nan_flair.nii.gz"),
                            "1 non-finite voxel(s) (NaN or infinity) in the image data")
    assert why["c_zero"] == (str(folders["c_zero"] / "c_zero_t2.nii.gz"),
                             "constant inside the brain (every brain voxel is 0)")
    assert why["c_huge"][0] == str(folders["c_huge"] / "c_huge_t1.nii.gz") and "numeric problem" in why["c_huge"][1]
    assert why["c_flat"] == (str(folders["c_flat"] / "c_flat_t1ce.nii.gz"),
                             "no contrast inside the brain: the 0.5th and 99.5th percentiles are both 7")


def test_long_tumour_is_a_note_or_a_strict_exclusion(tmp_path, case_factory):
    long_mask = np.zeros(TINY_SHAPE, np.uint8)
    long_mask[20:30, 20:30, 4:36] = 2  # 32 slices, the window has 24
    folders = {"c_long": case_factory(tmp_path / "raw" / "HGG", "c_long", mask=long_mask)}
    folders.update(sane_cohort(tmp_path / "raw", case_factory, ["c_ok"]))
    mask_path = str(folders["c_long"] / "c_long_seg.nii.gz")
    message = ("tumour spans 32 axial slices (4-35), the window keeps slices 8-31: "
               "75.0% of tumour voxels kept (800 lost)")
    result = run_quietly(tmp_path / "raw", tmp_path / "volumes", TINY, tmp_path / "report.json")
    assert result.included == ["c_long", "c_ok"] and not result.excluded
    notes = json.loads((tmp_path / "report.json").read_text())["notes"]
    assert notes == [{"id": "c_long", "path": mask_path, "message": message}]
    result = run_quietly(tmp_path / "raw", tmp_path / "strict", TINY, tmp_path / "strict.json", strict=True)
    assert result.included == ["c_ok"] and not result.notes
    why = [(e.id, e.path, e.reason) for e in result.excluded]
    assert why == [("c_long", mask_path, f"{message}; excluded by --strict")]


def test_unreadable_folder_and_file_are_exclusions(tmp_path, case_factory, monkeypatch):
    folders = sane_cohort(tmp_path / "raw", case_factory, ["c_dir", "c_file", "c_link", "c_ok"])
    denied_file = folders["c_file"] / "c_file_t1ce.nii.gz"
    link = folders["c_link"] / "c_link_flair.nii.gz"
    link.unlink()
    link.symlink_to(tmp_path / "elsewhere.nii.gz")
    iterdir, read_bytes = pathlib.Path.iterdir, pathlib.Path.read_bytes

    def denied(original, path):
        def guarded(self):
            if self == path:
                raise PermissionError(13, "Permission denied", str(self))
            return original(self)
        return guarded

    monkeypatch.setattr(pathlib.Path, "iterdir", denied(iterdir, folders["c_dir"]))
    monkeypatch.setattr(pathlib.Path, "read_bytes", denied(read_bytes, denied_file))
    result = run_quietly(tmp_path / "raw", tmp_path / "volumes", TINY, tmp_path / "report.json")
    assert result.included == ["c_ok"] and not result.errors
    why = {e.id: (e.path, e.reason) for e in result.excluded}
    assert why == {
        "c_dir": (str(folders["c_dir"]), "cannot list folder (Permission denied)"),
        "c_file": (str(denied_file), "cannot read file: Permission denied"),
        "c_link": (str(link), "broken symbolic link"),
    }


def test_unexpected_exception_is_an_internal_error(tiny_demo, tmp_path, monkeypatch):
    original = case_module.preprocess_case

    def buggy(case, params, root):
        if case.patient_id == "BraTS20_Training_003":
            return 1 / 0
        return original(case, params, root)

    monkeypatch.setattr(case_module, "preprocess_case", buggy)
    report = tmp_path / "report.json"
    with pytest.raises(CaseFailuresError, match=r"1 case\(s\) hit internal errors .*BraTS20_Training_003") as info:
        prepare(tiny_demo, tmp_path / "volumes", TINY, report, workers=1, progress=False)
    data = json.loads(report.read_text())
    assert data["counts"] == {"included": 5, "excluded": 0, "errors": 1} and not data["excluded"]
    (error,) = data["errors"]
    assert error["id"] == "BraTS20_Training_003" and error["error"] == "ZeroDivisionError: division by zero"
    assert error["traceback"].startswith("Traceback") and "in buggy" in error["traceback"]
    assert info.value.result.included == data["included"] and len(data["included"]) == 5
    assert len(load_volumes(tmp_path / "volumes")) == 5

    from click.testing import CliRunner

    from brats_llm.cli import main

    args = ["prepare", str(tiny_demo), str(tmp_path / "cli"), "--report", str(tmp_path / "cli.json"), "--workers", "1",
            "--slices", "24", "--size", "32"]
    outcome = CliRunner().invoke(main, args)
    assert outcome.exit_code == 1, outcome.output
    assert "internal error BraTS20_Training_003" in outcome.output and "1 case(s) hit internal errors" in outcome.output
    assert "Traceback" not in outcome.output  # the traceback is in the report
    assert len(load_volumes(tmp_path / "cli")) == 5


def test_internal_error_traceback_is_captured_in_the_worker(tmp_path):
    from brats_llm.ingest.layout import CaseFiles
    from brats_llm.parallel import process_context

    case = CaseFiles("c1", "HGG", tmp_path, (), None, "brats2018")  # type: ignore[arg-type]  # a bug: no mask path
    with process_context().Pool(1) as pool:
        ((status, failure),) = pool.map(case_module.process_task, [(case, TINY, tmp_path)])
    assert status == "error" and (failure.id, failure.path) == ("c1", str(tmp_path))
    assert failure.error.startswith("AttributeError") and "read_bytes" in failure.error
    assert failure.traceback.startswith("Traceback (most recent call last)") and "in read_nifti" in failure.traceback
