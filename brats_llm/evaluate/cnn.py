"""The ``evaluate-cnn`` stage: metrics per split (with bootstrap CIs and baselines) and plots via dvclive."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from brats_llm import atomic
from brats_llm.errors import InputError, MissingInputError
from brats_llm.evaluate import figures
from brats_llm.metrics.bootstrap import bootstrap_ci, with_intervals
from brats_llm.metrics.classification import classification_metrics, majority_baseline, rates
from brats_llm.metrics.segmentation import dice, segmentation_metrics
from brats_llm.train.cnn.data import VolumeTensors, dataset_version, fold_patients, load_split
from brats_llm.train.cnn.models import build_model
from brats_llm.train.cnn.trainer import CHECKPOINT_BEST, predict

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class ClsEvalParams:
    """``evaluate_cls`` section: decision threshold on P(HGG), bootstrap replicates and seed."""

    threshold: float = 0.5
    bootstrap: int = 1000
    seed: int = 2020


@dataclass(frozen=True)
class SegEvalParams:
    """``evaluate_seg`` section.

    Attributes:
        thresholds: candidate probability thresholds; the one with the best mean validation Dice
            is used on every split and recorded (the paper tuned 0.7 at test time).
        bootstrap: replicates for 95% intervals (patients resampled).
        seed: bootstrap seed.
        overlays: number of test patients drawn as overlay PNGs.
    """

    thresholds: tuple[float, ...] = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
    bootstrap: int = 1000
    seed: int = 2020
    overlays: int = 4

    def __post_init__(self) -> None:
        object.__setattr__(self, "thresholds", tuple(float(t) for t in self.thresholds))
        if not self.thresholds or not all(0.0 < t < 1.0 for t in self.thresholds):
            raise ValueError("thresholds must be values in (0, 1)")


def load_best(model_dir: Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The best checkpoint among ``fold*/best.pt`` (highest validation metric), weights only."""
    candidates = sorted(model_dir.glob(f"fold*/{CHECKPOINT_BEST}"))
    if not candidates:
        raise MissingInputError(f"{model_dir}: no fold*/{CHECKPOINT_BEST}; run train-cnn first")
    states = [torch.load(path, map_location="cpu", weights_only=True) for path in candidates]
    state = max(states, key=lambda s: (s["best"]["metric"], -s["best"]["loss"]))
    meta = state["meta"]
    model = build_model(meta["task"], tuple(meta["in_shape"]))
    model.load_state_dict(state["model"])
    return model, {**meta, "best_epoch": state["epoch"], "folds_available": [int(p.parent.name[4:]) for p in candidates]}


def _log(live, prefix: str, values: dict[str, float]) -> None:
    for key, value in values.items():
        live.log_metric(f"{prefix}/{key}", float(value), plot=False)


def evaluate_cls(model, meta, members, volumes_dir, out_dir, params: ClsEvalParams, live) -> dict[str, Any]:
    train_labels = None
    curves, results = {}, {}
    for split in SPLITS:
        data = load_split(volumes_dir, members[split], meta["params"]["downsample"], progress=False)
        if len(data) == 0:
            continue
        y = data.labels.numpy()
        prob = predict(model, data, torch.device("cpu"), 4)
        pred = (prob >= params.threshold).astype(int)
        train_labels = y if split == "train" else train_labels
        point = classification_metrics(y, pred, prob)
        ci = bootstrap_ci(len(y), lambda i: rates(classification_metrics(y[i], pred[i], prob[i])),
                          resamples=params.bootstrap, seed=params.seed)
        results[split] = with_intervals(point, ci)
        _log(live, split, results[split])
        _log(live, f"{split}/baseline_majority", majority_baseline(y, train_labels))
        atomic.write_csv(out_dir / "predictions" / f"{split}.csv", [
            {"patient_id": p, "label": int(t), "prob_hgg": f"{s:.6f}", "pred": int(c)}
            for p, t, s, c in zip(data.patient_ids, y, prob, pred)])
        if 0 < y.sum() < len(y):
            live.log_sklearn_plot("roc", y, prob, name=f"{split}/roc.json")
            order = np.argsort(-prob, kind="stable")
            tps, fps = np.cumsum(y[order]), np.cumsum(1 - y[order])
            curves[split] = (np.r_[0, fps / fps[-1]], np.r_[0, tps / tps[-1]], point["auc"])
        live.log_sklearn_plot("confusion_matrix", y.tolist(), pred.tolist(), name=f"{split}/confusion_matrix.json")
        live.log_image(f"{split}_confusion.png", figures.confusion_figure(point, f"{split} (t={params.threshold})"))
    if curves:
        live.log_image("roc.png", figures.roc_figure(curves))
    return results


def _upsampled_probabilities(model, data: VolumeTensors, shape: tuple[int, ...]) -> np.ndarray:
    prob = torch.from_numpy(predict(model, data, torch.device("cpu"), 2))
    if tuple(prob.shape[1:]) != tuple(shape):
        prob = F.interpolate(prob[:, None], size=shape, mode="trilinear", align_corners=False)[:, 0]
    return prob.numpy()


def evaluate_seg(model, meta, members, volumes_dir, out_dir, params: SegEvalParams, live) -> dict[str, Any]:
    factor = meta["params"]["downsample"]
    probs, truths, full = {}, {}, {}
    for split in SPLITS:
        full[split] = load_split(volumes_dir, members[split], 1, progress=False)
        if len(full[split]) == 0:
            continue
        inputs = full[split] if factor == 1 else load_split(volumes_dir, members[split], factor, progress=False)
        truths[split] = full[split].masks.numpy().astype(bool)
        probs[split] = _upsampled_probabilities(model, inputs, truths[split].shape[1:])
    tuning = "validation" if "validation" in probs else "train"
    mean_dice = {t: float(np.mean([dice(p >= t, m) for p, m in zip(probs[tuning], truths[tuning])]))
                 for t in params.thresholds}
    threshold = max(params.thresholds, key=lambda t: (mean_dice[t], -abs(t - 0.5)))
    live.log_metric("threshold", threshold, plot=False)
    results, distributions = {"threshold": threshold, "threshold_tuned_on": tuning}, {}
    for split in probs:
        spacing = full[split].spacing_mm
        per_patient = [segmentation_metrics(p >= threshold, m, s) for p, m, s in zip(probs[split], truths[split], spacing)]
        keys = list(per_patient[0])
        table = np.array([[row[k] for k in keys] for row in per_patient])

        def mean_of(index, table=table):
            return dict(zip(keys, table[index].mean(axis=0)))

        point = mean_of(np.arange(len(table)))
        results[split] = with_intervals(point, bootstrap_ci(len(table), mean_of, resamples=params.bootstrap, seed=params.seed))
        _log(live, split, results[split])
        for name, constant in (("all_background", False), ("all_foreground", True)):
            baseline = [segmentation_metrics(np.full(m.shape, constant), m, s) for m, s in zip(truths[split], spacing)]
            _log(live, f"{split}/baseline_{name}", {k: float(np.mean([b[k] for b in baseline])) for k in keys})
        distributions[split] = [row["dice"] for row in per_patient]
        atomic.write_csv(out_dir / "predictions" / f"{split}.csv", [
            {"patient_id": pid, **{k: f"{row[k]:.6f}" for k in keys}} for pid, row in zip(full[split].patient_ids, per_patient)])
    live.log_image("dice_per_patient.png", figures.distribution_figure(distributions, "Dice"))
    if "test" in probs:
        data = full["test"]
        for i in range(min(params.overlays, len(data))):
            truth = truths["test"][i]
            k = int(truth.sum(axis=(1, 2)).argmax())
            flair = data.images[i, 0, k].numpy()
            live.log_image(f"overlays/{data.patient_ids[i]}.png", figures.overlay(flair, truth[k], probs["test"][i, k] >= threshold))
    return results


def evaluate_cnn(task: str, volumes_dir: str | os.PathLike, splits_file: str | os.PathLike, model_dir: str | os.PathLike,
                 out_dir: str | os.PathLike, params: ClsEvalParams | SegEvalParams) -> dict[str, Any]:
    """Score the best trained fold on its train / validation / test patients.

    Writes (dvclive layout) ``out_dir/metrics.json`` (``<split>/<metric>`` with ``_ci_low``/``_ci_high``
    and baselines), ``out_dir/plots/`` (sklearn-style JSON and PNG images) and per-patient CSVs
    under ``out_dir/predictions/``; ``out_dir/provenance.json`` names the dataset and model.
    """
    from dvclive import Live

    volumes_dir, model_dir, out_dir = Path(volumes_dir), Path(model_dir), Path(out_dir)
    model, meta = load_best(model_dir)
    if meta["task"] != task:
        raise InputError(f"{model_dir} holds a '{meta['task']}' model, not '{task}'")
    members = fold_patients(splits_file, meta["fold"])
    if members["train"] != meta["train_patients"] or members["validation"] != meta["validation_patients"]:
        raise InputError(f"{splits_file}: fold {meta['fold']} differs from the split the model was trained on")
    provenance = {
        "task": task, "fold": meta["fold"], "best_epoch": meta["best_epoch"], "folds_available": meta["folds_available"],
        "train_params": meta["params"], "eval_params": dataclasses.asdict(params),
        "dataset_at_training": meta["dataset"], "dataset_at_evaluation": dataset_version(volumes_dir),
    }
    with atomic.atomic_dir(out_dir, kind="cnn-evaluation") as staging:
        live = Live(str(staging), save_dvc_exp=False, dvcyaml=None)
        run = evaluate_cls if task == "cls" else evaluate_seg
        results = run(model, meta, members, volumes_dir, staging, params, live)  # type: ignore[arg-type]
        live.log_metric("selected_fold", meta["fold"], plot=False)
        live.end()
        atomic.write_json(staging / "provenance.json", provenance)
    return results
