"""score-predictions: NIfTI predictions at the release's resolution scored in the stored frame."""

import json

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner
from nibabel import orientations

from brats_llm.cli import main
from brats_llm.evaluate.cnn import SegEvalParams
from brats_llm.evaluate.predictions import score_predictions
from brats_llm.metrics.segmentation import HD95_ONE_EMPTY_MM
from brats_llm.preprocess.volumes import PrepareParams, load_volumes, prepare
from brats_llm.split.splits import SplitParams, read_splits, split_volumes

PARAMS = SegEvalParams(bootstrap=20)


@pytest.fixture(scope="module")
def cohort(tiny_demo, tmp_path_factory):
    root = tmp_path_factory.mktemp("score")
    prepare(tiny_demo, root / "volumes", PrepareParams(slices=20, size=24), workers=1, progress=False)
    split_volumes(root / "volumes", root / "splits.csv", SplitParams(test_fraction=0.3, folds=2))
    dataset = load_volumes(root / "volumes")
    segs = {row["patient_id"]: next((tiny_demo / row["source"]).glob("*_seg.nii*")) for row in dataset}
    return root, segs


def write(path, array, affine):
    nib.save(nib.Nifti1Image(np.asarray(array, dtype=np.uint8), affine), str(path))


def test_the_ground_truth_scores_one_in_any_orientation_through_the_cli(cohort, published, tmp_path):
    """Read through the pinned revision file (the published volumes of the same tiny cohort)."""
    _, segs = cohort
    splits = published.parent / "splits.csv"
    test_ids = [a.patient_id for a in read_splits(splits) if a.split == "test"]
    preds = tmp_path / "preds"
    preds.mkdir()
    for i, pid in enumerate(test_ids):
        image = nib.load(segs[pid])  # BraTS 2020 labels 0/1/2/4: read as regions, 4 -> 3
        if i == 0:  # the same labels stored RAS instead of LPS: reoriented back
            to_ras = orientations.ornt_transform(orientations.io_orientation(image.affine), orientations.axcodes2ornt("RAS"))
            image = image.as_reoriented(to_ras)
        write(preds / f"{pid}.nii.gz", image.get_fdata(), image.affine)
    (preds / "someone-else.nii.gz").write_bytes(b"")  # not in the split: ignored, reported
    out = tmp_path / "scores"
    result = CliRunner().invoke(main, ["score-predictions", str(preds), str(published), str(splits), str(out),
                                       "--split", "test"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "details.json").read_text())["test"]
    assert metrics["dice"] == 1.0 and metrics["hd95_mm"] == 0.0 and metrics["lesionwise_dice"] == 1.0
    assert metrics["lesionwise_hd95_mm"] == 0.0 and metrics["n"] == len(test_ids) and metrics["missing"] == 0
    headline = json.loads((out / "metrics.json").read_text())  # evaluate-seg's headline keys
    assert headline == {"n_patients": len(test_ids), "dice_wt_3d": 1.0, "hd95_wt_3d_mm": 0.0}
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["unused_files"] == ["someone-else.nii.gz"]
    assert provenance["dataset"]["revision_file"] == published.as_posix() and provenance["dataset"]["config"] == "volumes"
    if "regions" in load_volumes(published.parent / "volumes").column_names:  # regions stored: TC and ET too
        assert provenance["regions"] == ["wt", "tc", "et"]
        assert metrics["tc"]["dice"] == 1.0 and metrics["et"]["dice"] == 1.0
    rows = (out / "predictions" / "test.csv").read_text().splitlines()
    assert len(rows) == 1 + len(test_ids) and "lesionwise_hd95_mm" in rows[0]


def test_empty_binary_and_missing_predictions(cohort, tmp_path):
    root, segs = cohort
    test_ids = [a.patient_id for a in read_splits(root / "splits.csv") if a.split == "test"]
    preds = tmp_path / "preds"
    preds.mkdir()
    first = nib.load(segs[test_ids[0]])
    write(preds / f"{test_ids[0]}.nii.gz", np.zeros(first.shape), first.affine)  # empty prediction
    result = score_predictions(preds, root / "volumes", root / "splits.csv", tmp_path / "empty", PARAMS)
    metrics = result["test"]
    # every patient empty (one file, the rest missing = empty): Dice 0, HD95 373.13 mm (legacy), and
    # lesion-wise 0 / 374 mm for every patient with a lesion over 50 mm^3 (1 / 0 for one without)
    assert metrics["dice"] == 0.0 and metrics["hd95_mm"] == pytest.approx(HD95_ONE_EMPTY_MM)
    assert result["missing"] == test_ids[1:] and metrics["missing"] == len(test_ids) - 1
    rows = (tmp_path / "empty" / "predictions" / "test.csv").read_text().splitlines()[1:]
    header = (tmp_path / "empty" / "predictions" / "test.csv").read_text().splitlines()[0].split(",")
    for row in rows:
        values = dict(zip(header, row.split(",")))
        kept = int(values["lesionwise_fn"])
        expected = (0.0, 374.0) if kept else (1.0, 0.0)
        assert (float(values["lesionwise_dice"]), float(values["lesionwise_hd95_mm"])) == expected
    assert sum(int(r.split(",")[header.index("lesionwise_fn")]) for r in rows) > 0  # some lesion counted

    binary = tmp_path / "binary"
    binary.mkdir()
    for pid in test_ids:
        image = nib.load(segs[pid])
        write(binary / f"{pid}.nii.gz", np.asarray(image.dataobj) > 0, image.affine)
    result = score_predictions(binary, root / "volumes", root / "splits.csv", tmp_path / "binary_scores", PARAMS)
    assert result["regions"] == ["wt"] and result["test"]["dice"] == 1.0


def test_bad_predictions_fail_naming_the_file(cohort, tmp_path):
    root, segs = cohort
    test_ids = [a.patient_id for a in read_splits(root / "splits.csv") if a.split == "test"]
    preds = tmp_path / "preds"
    preds.mkdir()
    write(preds / f"{test_ids[0]}.nii.gz", np.zeros((24, 24, 20)), np.eye(4))
    with pytest.raises(ValueError, match="original resolution"):
        score_predictions(preds, root / "volumes", root / "splits.csv", tmp_path / "o", PARAMS)
    image = nib.load(segs[test_ids[0]])
    labels = np.asarray(image.dataobj).copy()
    labels[0, 0, 0], labels[0, 0, 1] = 3, 4
    write(preds / f"{test_ids[0]}.nii.gz", labels, image.affine)
    with pytest.raises(ValueError, match="labels"):
        score_predictions(preds, root / "volumes", root / "splits.csv", tmp_path / "o", PARAMS)
    with pytest.raises(FileNotFoundError, match="no prediction"):
        score_predictions(tmp_path / "o2" if (tmp_path / "o2").mkdir() is None else None, root / "volumes",
                          root / "splits.csv", tmp_path / "o", PARAMS)


def test_patients_stream_through_memory(cohort, tmp_path, monkeypatch):
    """Each patient's volumes are released once scored: never more than the current and the previous row alive."""
    import gc
    import weakref

    from brats_llm.train.cnn.source import VolumeSource

    root, segs = cohort
    test_ids = [a.patient_id for a in read_splits(root / "splits.csv") if a.split == "test"]
    preds = tmp_path / "preds"
    preds.mkdir()
    for pid in test_ids:
        image = nib.load(segs[pid])
        write(preds / f"{pid}.nii.gz", image.get_fdata(), image.affine)
    alive_before: list[int] = []
    real_rows = VolumeSource.rows

    def watched(self, patient_ids):
        refs = []
        for pid, row in real_rows(self, patient_ids):
            gc.collect()
            alive_before.append(sum(ref() is not None for ref in refs))
            refs.append(weakref.ref(row["mask"]))
            yield pid, row

    monkeypatch.setattr(VolumeSource, "rows", watched)
    result = score_predictions(preds, root / "volumes", root / "splits.csv", tmp_path / "out", PARAMS, split="all")
    assert len(alive_before) == result["all"]["n"] > 2 and max(alive_before) <= 1
