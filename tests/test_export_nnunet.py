"""``export-nnunet``: an nnU-Net v2 raw dataset of exactly our patients and folds, at the original resolution."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner

from brats_llm.cli import main
from brats_llm.errors import InputError
from brats_llm.export.nnunet import REGIONS_CLASS_ORDER, export_nnunet
from brats_llm.ingest.layout import discover
from brats_llm.preprocess.volumes import PrepareParams, prepare
from brats_llm.split.splits import SplitParams, split_volumes
from tests.release_cases import patient, remap
from tests.test_layouts_msd import write as write_msd

HAS_NNUNET = importlib.util.find_spec("nnunetv2") is not None
PARAMS = PrepareParams(slices=20, size=24)


@pytest.fixture(scope="module")
def demo_inputs(tiny_demo, tmp_path_factory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("export")
    prepare(tiny_demo, root / "volumes", PARAMS, workers=1, progress=False)
    split_volumes(root / "volumes", root / "splits.csv", SplitParams(test_fraction=0.3, folds=2))
    return tiny_demo, root / "volumes", root / "splits.csv"


@pytest.fixture(scope="module")
def exported(demo_inputs, tmp_path_factory) -> Path:
    raw, volumes, splits = demo_inputs
    out = tmp_path_factory.mktemp("nnunet_raw") / "Dataset501_BraTSDemo"
    export_nnunet(volumes, splits, out, raw, workers=1, progress=False)
    return out


def read_split_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_layout_dataset_json_and_folds(exported, demo_inputs):
    splits = demo_inputs[2]
    rows = read_split_rows(splits)
    trainval = sorted(r["patient_id"] for r in rows if r["split"] == "trainval")
    test = sorted(r["patient_id"] for r in rows if r["split"] == "test")
    description = json.loads((exported / "dataset.json").read_text())
    assert description["channel_names"] == {"0": "FLAIR", "1": "T1", "2": "T1ce", "3": "T2"}
    assert list(description["labels"]) == ["background", "whole_tumor", "tumor_core", "enhancing_tumor"]
    assert description["labels"] == {"background": 0, "whole_tumor": [1, 2, 3], "tumor_core": [1, 3],
                                      "enhancing_tumor": [3]}
    assert description["regions_class_order"] == REGIONS_CLASS_ORDER == [2, 1, 3]
    assert description["numTraining"] == len(trainval) and description["file_ending"] == ".nii.gz"
    names = lambda folder: sorted(p.name for p in (exported / folder).iterdir())
    assert names("imagesTr") == sorted(f"{p}_{k:04d}.nii.gz" for p in trainval for k in range(4))
    assert names("labelsTr") == [f"{p}.nii.gz" for p in trainval]
    assert names("imagesTs") == sorted(f"{p}_{k:04d}.nii.gz" for p in test for k in range(4))
    assert names("labelsTs") == [f"{p}.nii.gz" for p in test]
    folds = json.loads((exported / "splits_final.json").read_text())
    assert len(folds) == 2
    for fold, entry in enumerate(folds):
        val = sorted(r["patient_id"] for r in rows if r["split"] == "trainval" and int(r["fold"]) == fold)
        assert entry["val"] == val and entry["train"] == sorted(set(trainval) - set(val))
        assert not set(test) & (set(entry["train"]) | set(entry["val"]))


def test_files_are_the_originals_with_labels_converted(exported, demo_inputs):
    cases = {c.patient_id: c for c in discover(demo_inputs[0]).cases}
    labels = sorted((exported / "labelsTr").iterdir()) + sorted((exported / "labelsTs").iterdir())
    assert len(labels) == len(cases)
    for label_path in labels:
        case = cases[label_path.name[: -len(".nii.gz")]]
        images = label_path.parent.parent / label_path.parent.name.replace("labels", "images")
        for k, source in enumerate(case.images):  # BraTS .nii.gz images: byte-identical copies
            assert (images / f"{case.patient_id}_{k:04d}.nii.gz").read_bytes() == source.read_bytes()
        label = nib.load(label_path)
        assert label.get_data_dtype() == np.uint8
        assert np.array_equal(label.affine, nib.load(case.images[0]).affine)
        expected = remap(np.asarray(nib.load(case.mask).dataobj), {0: 0, 1: 1, 2: 2, 4: 3})
        assert np.array_equal(np.asarray(label.dataobj), expected)


@pytest.mark.skipif(not HAS_NNUNET, reason="nnunetv2 not installed (pip install .[nnunet])")
def test_nnunet_verify_dataset_integrity_passes(exported):
    from nnunetv2.experiment_planning.verify_dataset_integrity import (
        verify_dataset_integrity,
    )

    verify_dataset_integrity(str(exported), num_processes=1)


def test_msd_export_splits_the_4d_image(tmp_path):
    images, labels = patient()
    raw = tmp_path / "Task01_BrainTumour"
    for n in (1, 2, 3):
        write_msd(raw, images, labels, case_id=f"BRATS_00{n}")
    prepare(raw, tmp_path / "volumes", PARAMS, workers=1, progress=False)
    splits = tmp_path / "splits.csv"
    splits.write_text("patient_id,grade,label,split,fold\nBRATS_001,,-1,trainval,0\nBRATS_002,,-1,trainval,1\n"
                      "BRATS_003,,-1,test,-1\n")  # a release without grades: grade empty, label -1
    out = tmp_path / "nnUNet_raw" / "Dataset502_MSD"
    result = export_nnunet(tmp_path / "volumes", splits, out, raw, workers=1, progress=False)
    assert result.training == ["BRATS_001", "BRATS_002"] and result.test == ["BRATS_003"]
    source = nib.load(raw / "imagesTr" / "BRATS_001.nii.gz")
    for k in range(4):
        channel = nib.load(out / "imagesTr" / f"BRATS_001_{k:04d}.nii.gz")
        assert channel.shape == source.shape[:3] and np.array_equal(channel.affine, source.affine)
        assert np.array_equal(np.asarray(channel.dataobj), np.asarray(source.dataobj)[..., k])
    label = np.asarray(nib.load(out / "labelsTr" / "BRATS_001.nii.gz").dataobj)
    msd = np.asarray(nib.load(raw / "labelsTr" / "BRATS_001.nii.gz").dataobj)
    assert np.array_equal(label, remap(msd, {0: 0, 1: 2, 2: 1, 3: 3}))  # MSD 1 oedema -> 2, 2 NET -> 1
    assert json.loads((out / "splits_final.json").read_text()) == [
        {"train": ["BRATS_002"], "val": ["BRATS_001"]}, {"train": ["BRATS_001"], "val": ["BRATS_002"]}]
    if HAS_NNUNET:
        from nnunetv2.experiment_planning.verify_dataset_integrity import (
            verify_dataset_integrity,
        )

        verify_dataset_integrity(str(out), num_processes=1)


def test_refuses_mismatched_inputs(demo_inputs, tmp_path):
    raw, volumes, splits = demo_inputs
    with pytest.raises(InputError, match="DatasetNNN_Name"):
        export_nnunet(volumes, splits, tmp_path / "nnunet", raw, workers=1, progress=False)
    rows = splits.read_text().splitlines()
    short = tmp_path / "short.csv"
    short.write_text("\n".join(rows[:-1]) + "\n")
    with pytest.raises(InputError, match="patients differ"):
        export_nnunet(volumes, short, tmp_path / "Dataset501_X", raw, workers=1, progress=False)
    images, labels = patient()
    other = write_msd(tmp_path / "msd", images, labels)
    with pytest.raises(InputError, match="wrong --raw-dir"):
        export_nnunet(volumes, splits, tmp_path / "Dataset501_X", other, workers=1, progress=False)
    assert not (tmp_path / "Dataset501_X").exists()


def test_cli_export_nnunet(demo_inputs, tmp_path):
    raw, volumes, splits = demo_inputs
    out = tmp_path / "Dataset503_CLI"
    result = CliRunner().invoke(main, ["export-nnunet", str(volumes), str(splits), str(out), "--raw-dir", str(raw),
                                       "--workers", "2"])
    assert result.exit_code == 0, result.output
    assert "training" in result.output and (out / "dataset.json").is_file()
    reference = tmp_path / "Dataset503_Serial"
    export_nnunet(volumes, splits, reference, raw, workers=1, progress=False)
    for path in sorted(reference.rglob("*.nii.gz")):  # same bytes whatever the workers
        assert (out / path.relative_to(reference)).read_bytes() == path.read_bytes()


@pytest.mark.skipif(not HAS_NNUNET, reason="nnunetv2 not installed (pip install .[nnunet])")
def test_nnunet_turns_region_predictions_back_into_our_labels():
    """nnU-Net paints its region outputs with regions_class_order: the result must be our 0-3 numbering."""
    from nnunetv2.utilities.label_handling.label_handling import LabelManager

    from brats_llm.export.nnunet import dataset_json

    description = dataset_json("X", 1, 0, "brats2020")
    manager = LabelManager(description["labels"], regions_class_order=description["regions_class_order"])
    labels = np.array([[[0, 1, 2, 3], [3, 2, 1, 0]]], dtype=np.uint8)
    probabilities = np.stack([np.isin(labels, region).astype(np.float32) for region in manager.foreground_regions])
    assert np.array_equal(manager.convert_probabilities_to_segmentation(probabilities), labels)
