"""Training and evaluation stages on a tiny prepared cohort: checkpoints, resume, metrics files."""

import json

import numpy as np
import pytest
import torch

from brats_llm.evaluate.cnn import HEADLINE_KEYS, ClsEvalParams, SegEvalParams, evaluate_cnn
from brats_llm.provenance import dataset_version
from brats_llm.train.cnn.data import downsample, load_split
from brats_llm.train.cnn.trainer import CnnTrainParams, SegTrainParams, augment_batch, train_cnn

TINY_TRAIN = CnnTrainParams(epochs=3, batch_size=2, downsample=2, checkpoint_every=2)


def test_downsample_pools_image_and_mask():
    image = np.zeros((4, 4, 4, 4), np.uint8)
    image[:, :2] = 200
    mask = np.zeros((4, 4, 4), np.uint8)
    mask[:2, :2, :2] = 1
    pooled, pooled_mask = downsample(image, mask, 2)
    assert pooled.shape == (4, 2, 2, 2) and pooled.dtype == torch.uint8 and pooled[0, 0, 0, 0] == 200
    assert pooled_mask.tolist() == [[[1, 0], [0, 0]], [[0, 0], [0, 0]]]


def test_augmentation_moves_image_and_mask_together():
    images = torch.rand(3, 4, 5, 8, 8)
    masks = (images[:, 0] > 0.5).to(torch.uint8)
    out_images, out_masks = augment_batch(images, masks, np.random.default_rng(0))
    assert torch.equal((out_images[:, 0] > 0.5).to(torch.uint8), out_masks)
    assert not torch.equal(out_images, images)


@pytest.mark.parametrize("task", ["cls", "seg"])
def test_train_resume_and_evaluate(prepared, tmp_path, task):
    models = tmp_path / "models"
    summary = train_cnn(task, prepared / "volumes", prepared / "splits.csv", models, TINY_TRAIN, tmp_path / "live", progress=False)
    fold_dir = models / "fold0"
    assert {"best.pt", "last.pt", "train_summary.json"} <= {p.name for p in fold_dir.iterdir()}
    state = torch.load(fold_dir / "last.pt", weights_only=True)
    assert state["epoch"] == 3 and state["meta"]["in_shape"] == [4, 10, 12, 12]
    assert state["meta"]["dataset"]["fingerprint"] == json.loads((prepared / "volumes" / "state.json").read_text())["_fingerprint"]
    assert 1 <= summary[0]["best_epoch"] <= 3
    curve = (tmp_path / "live" / "fold0" / "plots" / "metrics" / "train" / "loss.tsv").read_text().splitlines()
    assert len(curve) == 1 + 3

    longer = CnnTrainParams(**{**TINY_TRAIN.__dict__, "epochs": 4})
    train_cnn(task, prepared / "volumes", prepared / "splits.csv", models, longer, tmp_path / "live", resume=True, progress=False)
    assert torch.load(fold_dir / "last.pt", weights_only=True)["epoch"] == 4
    assert len((tmp_path / "live" / "fold0" / "plots" / "metrics" / "train" / "loss.tsv").read_text().splitlines()) == 1 + 4

    out = tmp_path / "eval"
    params = ClsEvalParams(bootstrap=50) if task == "cls" else SegEvalParams(bootstrap=50, overlays=1)
    results = evaluate_cnn(task, prepared / "volumes", prepared / "splits.csv", models, out, params)
    metrics = json.loads((out / "details.json").read_text())
    assert set(metrics) >= {"train", "validation", "test", "selected_fold"}
    for key, value in results["test"].items():
        assert metrics["test"][key] == pytest.approx(value, nan_ok=True)
    test_patients = len((out / "predictions" / "test.csv").read_text().splitlines()) - 1
    headline = json.loads((out / "metrics.json").read_text())  # dvclive's summary replaced by the headline only
    named = {key: metrics["test"][source] for key, source in HEADLINE_KEYS[task].items()}
    assert headline == {"n_patients": test_patients, **named}
    if task == "cls":
        assert {"accuracy", "auc", "mcc", "specificity", "accuracy_ci_low", "baseline_majority"} <= set(metrics["test"])
        rows = (out / "predictions" / "test.csv").read_text().splitlines()
        assert rows[0] == "patient_id,label,prob_hgg,pred" and len(rows) == 1 + int(metrics["test"]["n"])
        assert (out / "plots" / "images" / "roc.png").is_file()  # the training patients hold both grades
        assert (out / "plots" / "sklearn" / "train" / "roc.json").is_file()
        assert (out / "plots" / "images" / "train_confusion.png").is_file()
    else:
        assert {"dice", "hd95_mm", "precision", "recall", "specificity", "baseline_all_foreground", "lesionwise_dice",
                "lesionwise_hd95_mm", "lesionwise_dice_ci_low", "lesionwise_fp"} <= set(metrics["test"])
        assert "tc" not in metrics["test"]
        assert metrics["threshold"] in params.thresholds
        assert len(list((out / "plots" / "images" / "overlays").glob("*.png"))) == 1
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["dataset_at_training"]["fingerprint"] == provenance["dataset_at_evaluation"]["fingerprint"]


@pytest.mark.slow
def test_ddp_under_torchrun(prepared, tmp_path):
    """Two CPU processes (gloo) train one model; only rank 0 writes checkpoints and reports."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    exe = shutil.which("brats-llm", path=str(Path(sys.executable).parent))
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29531",
               exe, "train-cnn", "--task", "cls", str(prepared / "volumes"), str(prepared / "splits.csv"),
               str(tmp_path / "models"), "--epochs", "2", "--downsample", "2"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr.count("fold 0: best epoch") == 1
    state = torch.load(tmp_path / "models" / "fold0" / "last.pt", weights_only=True)
    assert state["epoch"] == 2 and not any(k.startswith("module.") for k in state["model"])


def test_unknown_fold_and_wrong_task(prepared, tmp_path):
    with pytest.raises(ValueError, match="fold"):
        train_cnn("cls", prepared / "volumes", prepared / "splits.csv", tmp_path, CnnTrainParams(fold=7, epochs=1))
    with pytest.raises(ValueError, match="fold must be"):
        CnnTrainParams(fold="some")
    with pytest.raises(FileNotFoundError, match="run train-cnn first"):
        evaluate_cnn("cls", prepared / "volumes", prepared / "splits.csv", tmp_path, tmp_path / "e", ClsEvalParams())


def test_dataset_version_never_reads_dvc_lock(prepared, tmp_path, monkeypatch):
    """Provenance is the dataset's own content hash: dvc.lock is no stage's (undeclared) input."""
    volumes = prepared / "volumes"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dvc.lock").write_text(f"schema: '2.0'\nstages:\n  prepare:\n    outs:\n    - path: {volumes}\n      md5: abc.dir\n")
    version = dataset_version(volumes)
    assert version == {"path": volumes.as_posix(),
                       "fingerprint": json.loads((volumes / "state.json").read_text())["_fingerprint"]}
    assert len(load_split(volumes, [], 1, progress=False)) == 0


def with_regions(volumes, out):
    """The prepared volumes with a ``regions`` column (prepare writes one; synthesised here when absent):
    outer half of the tumour oedema (2), inner part core (1), its centre enhancing (3)."""
    from datasets import Array3D, load_from_disk
    from scipy import ndimage

    dataset = load_from_disk(str(volumes))
    if "regions" in dataset.column_names:
        return volumes

    def add(row):
        mask = np.asarray(row["mask"], dtype=bool)
        core = ndimage.binary_erosion(mask, iterations=1)
        regions = np.where(mask, 2, 0).astype(np.uint8)
        regions[core] = 1
        regions[ndimage.binary_erosion(core, iterations=1)] = 3
        return {"regions": regions}

    shape = dataset.features["mask"].shape
    features = dataset.features.copy()
    features["regions"] = Array3D(shape, "uint8")
    dataset.map(add, features=features).save_to_disk(str(out))
    return out


def test_regions_target_with_monai_segresnet(prepared, tmp_path):
    volumes = with_regions(prepared / "volumes", tmp_path / "volumes")
    params = SegTrainParams(epochs=2, batch_size=2, downsample=2, target="regions", architecture="segresnet",
                            width=4, levels=2)
    train_cnn("seg", volumes, prepared / "splits.csv", tmp_path / "models", params, progress=False)
    out = tmp_path / "eval"
    results = evaluate_cnn("seg", volumes, prepared / "splits.csv", tmp_path / "models", out,
                           SegEvalParams(bootstrap=20, overlays=0))
    metrics = json.loads((out / "details.json").read_text())
    assert results["target"] == "regions"
    for region in ("tc", "et"):
        assert {"dice", "hd95_mm", "lesionwise_dice", "lesionwise_hd95_mm", "baseline_all_background"} <= set(metrics["test"][region])
        assert metrics["test"][region]["dice"] == pytest.approx(results["test"][region]["dice"])
    assert "lesionwise_dice" in metrics["test"]  # WT at the top level
    header = (out / "predictions" / "test.csv").read_text().splitlines()[0].split(",")
    assert {"dice", "lesionwise_dice", "tc_dice", "et_lesionwise_hd95_mm"} <= set(header)
    assert "nan" not in (out / "details.json").read_text().lower() + (out / "metrics.json").read_text().lower()
    if volumes != prepared / "volumes":  # a dataset from before the regions column: a clear refusal
        with pytest.raises(ValueError, match="no 'regions' column"):
            load_split(prepared / "volumes", [], 1, progress=False, target="regions")


def test_the_classifier_refuses_a_cohort_without_grades(prepared, tmp_path):
    from datasets import load_from_disk

    from brats_llm.train.cnn.data import require_grades

    require_grades(prepared / "volumes")  # LGG/HGG throughout: accepted
    dataset = load_from_disk(str(prepared / "volumes"))
    dataset.map(lambda row, i: {"grade": "unknown" if i == 0 else row["grade"]}, with_indices=True).save_to_disk(str(tmp_path / "v"))
    with pytest.raises(ValueError, match="cannot train the classifier"):
        train_cnn("cls", tmp_path / "v", prepared / "splits.csv", tmp_path / "m", TINY_TRAIN, progress=False)


def test_cnn_metrics_never_hold_nan(tmp_path):
    """dvclive writes an undefined AUC (one-class split) as NaN; details.json and the headline must stay valid JSON."""
    from brats_llm.evaluate.cnn import _finite_metrics, headline

    path = tmp_path / "metrics.json"
    path.write_text('{"test": {"auc": NaN, "auc_ci_low": "nan", "auc_ci_high": 1.0, "n": 3}, "selected_fold": 0}')
    data = json.loads(json.dumps(_finite_metrics(path), allow_nan=False))
    assert headline("cls", data, 3) == {"n_patients": 3, "accuracy_3d": None, "balanced_accuracy_3d": None, "auc_3d": None}
    assert data["test"]["auc"] is None and data["test"]["auc_note"]
    assert data["test"]["auc_ci_low"] is None and data["test"]["auc_ci_note"] and data["test"]["auc_ci_high"] == 1.0
    assert data["selected_fold"] == 0


def test_fold_all_reports_mean_and_spread_over_folds(prepared, tmp_path):
    """Cross-validation: every fold's best model scored on test; mean and sd beside the selected fold's metrics."""
    from brats_llm.report.build import ReportParams, build_report

    models = tmp_path / "models"
    params = CnnTrainParams(**{**TINY_TRAIN.__dict__, "fold": "all", "epochs": 1})
    train_cnn("cls", prepared / "volumes", prepared / "splits.csv", models / "cnn_cls", params, progress=False)
    out = models / "evaluate_cls"
    evaluate_cnn("cls", prepared / "volumes", prepared / "splits.csv", models / "cnn_cls", out, ClsEvalParams(bootstrap=20))
    test = json.loads((out / "details.json").read_text())["test"]
    assert test["folds"] == 2 and 0 <= test["accuracy_fold_mean"] <= 1 and test["accuracy_fold_sd"] >= 0
    assert {"auc_fold_mean", "auc_fold_sd", "f1_fold_mean"} <= set(test)
    build_report(models, tmp_path / "report", ReportParams())
    assert "; folds " in (tmp_path / "report" / "report.md").read_text() and "(k=2)" in (tmp_path / "report" / "report.md").read_text()
