"""The ``evaluate-cnn`` stage: metrics per split (with bootstrap CIs and baselines) and plots via dvclive."""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from brats_llm import atomic
from brats_llm import plots as figures
from brats_llm.errors import InputError, MissingInputError
from brats_llm.evaluate.write import METRICS_FILE, write_scores
from brats_llm.metrics.bootstrap import bootstrap_ci, with_intervals
from brats_llm.metrics.classification import classification_metrics, majority_baseline, rates
from brats_llm.metrics.finite import finite_or_null
from brats_llm.metrics.lesionwise import GLIOMA_DILATION, GLIOMA_MIN_VOLUME_MM3
from brats_llm.metrics.segmentation import REGION_NAMES, dice, region_metrics, segmentation_metrics
from brats_llm.train.cnn.data import VolumeTensors, fold_patients, load_split
from brats_llm.train.cnn.models import build_model
from brats_llm.train.cnn.source import VolumeSource, open_volumes
from brats_llm.train.cnn.trainer import CHECKPOINT_BEST, model_options, predict

SPLITS = ("train", "validation", "test")
#: metrics.json (the DVC headline) beside ``n_patients``: headline key -> the test block's key (WT for the segmenter).
HEADLINE_KEYS = {"cls": {"accuracy_3d": "accuracy", "balanced_accuracy_3d": "balanced_accuracy", "auc_3d": "auc"},
                 "seg": {"dice_wt_3d": "dice", "hd95_wt_3d_mm": "hd95_mm"}}


@dataclass(frozen=True)
class ClsEvalParams:
    """``evaluate_cls`` section: decision threshold on P(HGG), bootstrap replicates and seed."""

    threshold: float = 0.5
    bootstrap: int = 1000
    seed: int = 2020

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must lie in [0, 1] (a probability), got {self.threshold}")
        _check_bootstrap(self.bootstrap, self.seed)


@dataclass(frozen=True)
class SegEvalParams:
    """``evaluate_seg`` section.

    Attributes:
        thresholds: candidate probability thresholds; the one with the best mean validation Dice
            is used on every split and recorded (the paper tuned 0.7 at test time).
        bootstrap: replicates for 95% intervals (patients resampled).
        seed: bootstrap seed.
        overlays: number of test patients drawn as overlay PNGs.
        lesion_dilation: BraTS 2023 lesion-wise matching: dilations of the ground truth, in voxels of
            the stored grid (3 for gliomas; brats_llm.metrics.lesionwise explains the resampled grid).
        lesion_min_volume_mm3: lesions of at most this volume (mm^3, via each patient's voxel volume)
            are ignored by the lesion-wise metrics (BraTS 2023 gliomas: 50).
    """

    thresholds: tuple[float, ...] = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
    bootstrap: int = 1000
    seed: int = 2020
    overlays: int = 4
    lesion_dilation: int = GLIOMA_DILATION
    lesion_min_volume_mm3: float = GLIOMA_MIN_VOLUME_MM3

    def __post_init__(self) -> None:
        object.__setattr__(self, "thresholds", tuple(float(t) for t in self.thresholds))
        if not self.thresholds or not all(0.0 < t < 1.0 for t in self.thresholds):
            raise ValueError(f"thresholds must be values in (0, 1), got {list(self.thresholds)}")
        _check_bootstrap(self.bootstrap, self.seed)
        for name in ("overlays", "lesion_dilation", "lesion_min_volume_mm3"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


def _check_bootstrap(bootstrap: int, seed: int) -> None:
    if bootstrap < 1:
        raise ValueError(f"bootstrap must be >= 1 (replicates), got {bootstrap}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")


def load_best(model_dir: Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The best checkpoint among ``fold*/best.pt`` (highest validation metric), weights only."""
    candidates = sorted(model_dir.glob(f"fold*/{CHECKPOINT_BEST}"))
    if not candidates:
        raise MissingInputError(f"{model_dir}: no fold*/{CHECKPOINT_BEST}; run train-cnn first")
    states = [torch.load(path, map_location="cpu", weights_only=True) for path in candidates]
    model, meta = _restore(max(states, key=lambda s: (s["best"]["metric"], -s["best"]["loss"])))
    return model, {**meta, "folds_available": [int(p.parent.name[4:]) for p in candidates]}


def _restore(state: dict[str, Any]) -> tuple[torch.nn.Module, dict[str, Any]]:
    meta = state["meta"]
    model = build_model(meta["task"], tuple(meta["in_shape"]), **model_options(meta["task"], meta["params"]))
    model.load_state_dict(state["model"])
    return model, {**meta, "best_epoch": state["epoch"]}


def fold_spread(task: str, model_dir: Path, volumes: VolumeSource, splits_file: str | os.PathLike,
                params: ClsEvalParams | SegEvalParams, folds: list[int]) -> dict[str, float]:
    """Test metrics of every trained fold (``fold: all``): ``<metric>_fold_mean`` / ``_fold_sd`` and ``folds``.

    Each fold's best model is scored exactly like the selected one (the segmenter's threshold tuned on
    that fold's own validation patients); {} when fewer than two folds were trained.
    """
    from dvclive import Live

    if len(folds) < 2:
        return {}
    per_fold = []
    for fold in folds:
        state = torch.load(model_dir / f"fold{fold}" / CHECKPOINT_BEST, map_location="cpu", weights_only=True)
        model, meta = _restore(state)
        with tempfile.TemporaryDirectory(prefix="brats-llm-fold-") as scratch:
            live = Live(scratch, save_dvc_exp=False, dvcyaml=None)
            run = evaluate_cls if task == "cls" else evaluate_seg
            results = run(model, meta, fold_patients(splits_file, fold), volumes, Path(scratch), params, live)  # type: ignore[arg-type]
            live.end()
        per_fold.append(results["test"])
    keys = [k for k, v in per_fold[0].items() if isinstance(v, (int, float)) and "_ci_" not in k and "baseline" not in k]
    spread: dict[str, float] = {"folds": len(folds)}
    for key in keys:
        values = np.array([float(scores[key]) for scores in per_fold])
        spread[f"{key}_fold_mean"], spread[f"{key}_fold_sd"] = float(values.mean()), float(values.std(ddof=1))
    return spread


def _log(live, prefix: str, values: dict[str, float]) -> None:
    for key, value in values.items():
        live.log_metric(f"{prefix}/{key}", float(value), plot=False)


def evaluate_cls(model, meta, members, volumes: VolumeSource, out_dir, params: ClsEvalParams, live) -> dict[str, Any]:
    train_labels = None
    curves, results = {}, {}
    for split in SPLITS:
        data = load_split(volumes, members[split], meta["params"]["downsample"], progress=False)
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
    """Probabilities at ``shape`` (the stored grid), always (N, regions, D, H, W) (1 region for ``wt``)."""
    prob = torch.from_numpy(predict(model, data, torch.device("cpu"), 2))
    prob = prob[:, None] if prob.ndim == 4 else prob
    if tuple(prob.shape[-3:]) != tuple(shape):
        prob = F.interpolate(prob, size=shape, mode="trilinear", align_corners=False)
    return prob.numpy()


#: Per-patient metrics averaged (with bootstrap intervals) per region; lesion counts are summed instead.
SEG_MEAN_KEYS = ("dice", "hd95_mm", "precision", "recall", "specificity", "lesionwise_dice", "lesionwise_hd95_mm")
SEG_COUNT_KEYS = ("lesionwise_tp", "lesionwise_fn", "lesionwise_fp")


def summarise_regions(per_patient: dict[str, list[dict[str, float]]], bootstrap: int, seed: int) -> dict[str, Any]:
    """Mean of each metric over patients with 95% bootstrap intervals, and lesion counts, per region.

    ``per_patient`` maps region -> rows of :func:`~brats_llm.metrics.segmentation.region_metrics`.
    WT (or the only region) sits at the top level; other regions under their name (``tc``, ``et``).
    """
    out: dict[str, Any] = {}
    for region, rows in per_patient.items():
        table = np.array([[row[k] for k in SEG_MEAN_KEYS] for row in rows], dtype=float)

        def mean_of(index, table=table):
            return dict(zip(SEG_MEAN_KEYS, table[index].mean(axis=0)))

        summary = with_intervals(mean_of(np.arange(len(table))), bootstrap_ci(len(table), mean_of, resamples=bootstrap, seed=seed))
        summary.update({key: int(sum(row[key] for row in rows)) for key in SEG_COUNT_KEYS})
        if region == "wt":
            out.update(summary)
        else:
            out[region] = summary
    return out


def log_nested(live, prefix: str, values: dict[str, Any]) -> None:
    """dvclive metrics ``prefix/key`` (and ``prefix/region/key`` for nested regions)."""
    for key, value in values.items():
        if isinstance(value, dict):
            log_nested(live, f"{prefix}/{key}", value)
        else:
            live.log_metric(f"{prefix}/{key}", float(value) if not isinstance(value, int) else value, plot=False)


def per_patient_csv_rows(patient_ids: list[str], per_patient: dict[str, list[dict[str, float]]]) -> list[dict[str, Any]]:
    """One row per patient: WT columns unprefixed, other regions prefixed (``tc_dice``, ``et_hd95_mm``...)."""
    rows = []
    for i, pid in enumerate(patient_ids):
        row: dict[str, Any] = {"patient_id": pid}
        for region, values in per_patient.items():
            prefix = "" if region == "wt" else f"{region}_"
            row.update({f"{prefix}{k}": (f"{values[i][k]:.6f}" if k in SEG_MEAN_KEYS else int(values[i][k]))
                        for k in (*SEG_MEAN_KEYS, *SEG_COUNT_KEYS)})
        rows.append(row)
    return rows


#: Patients held in memory at once by evaluate_seg (predict's batch of 2: the same batches as a whole split).
SEG_CHUNK = 2


def _seg_chunks(model, volumes: VolumeSource, patients: list[str], factor: int, target: str):
    """(full-size data, truths (n, regions, D, H, W) bool, probabilities at the stored grid) per
    :data:`SEG_CHUNK` patients of one split, in order: memory is flat in the number of patients."""
    for start in range(0, len(patients), SEG_CHUNK):
        chunk = patients[start:start + SEG_CHUNK]
        full = load_split(volumes, chunk, 1, progress=False, target=target)
        inputs = full if factor == 1 else full.downsampled(factor)  # one read per chunk
        truths = full.masks.numpy().astype(bool)
        if truths.ndim == 4:  # one region: (n, 1, D, H, W) from here on
            truths = truths[:, None]
        yield full, truths, _upsampled_probabilities(model, inputs, truths.shape[-3:])


def evaluate_seg(model, meta, members, volumes: VolumeSource, out_dir, params: SegEvalParams, live) -> dict[str, Any]:
    """Segmentation metrics per split, streamed :data:`SEG_CHUNK` patients at a time.

    First pass, on validation (train when there is none): Dice of every patient and region at every
    candidate threshold; only these numbers are kept, and the best mean picks the threshold. Second
    pass, every split: per-patient metrics at that threshold, the constant baselines and overlays.
    """
    factor = meta["params"]["downsample"]
    target = meta["params"].get("target", "wt")
    regions = REGION_NAMES if target == "regions" else ("wt",)
    splits = [split for split in SPLITS if members[split]]
    tuning = "validation" if "validation" in splits else "train"
    dices: dict[float, list[float]] = {t: [] for t in params.thresholds}  # patient-major, region-minor
    for _, truths, probs in _seg_chunks(model, volumes, members[tuning], factor, target):
        for p, m in zip(probs.reshape(-1, *probs.shape[2:]), truths.reshape(-1, *truths.shape[2:])):
            for t in params.thresholds:
                dices[t].append(dice(p >= t, m))
    mean_dice = {t: float(np.mean(dices[t])) for t in params.thresholds}
    threshold = max(params.thresholds, key=lambda t: (mean_dice[t], -abs(t - 0.5)))
    live.log_metric("threshold", threshold, plot=False)
    results, distributions = {"threshold": threshold, "threshold_tuned_on": tuning, "target": target}, {}
    options = {"dilation": params.lesion_dilation, "min_volume_mm3": params.lesion_min_volume_mm3}
    overlays = []
    for split in splits:
        per_patient: dict[str, list[dict[str, float]]] = {region: [] for region in regions}
        baselines: dict[tuple[str, str], list[dict[str, float]]] = {
            (region, name): [] for region in regions for name in ("all_background", "all_foreground")}
        seen = 0
        for data, truths, probs in _seg_chunks(model, volumes, members[split], factor, target):
            for i, (p, m, s) in enumerate(zip(probs, truths, data.spacing_mm)):
                for r, region in enumerate(regions):
                    per_patient[region].append(region_metrics(p[r] >= threshold, m[r], s, **options))
                    for name, constant in (("all_background", False), ("all_foreground", True)):
                        baselines[region, name].append(segmentation_metrics(np.full(m[r].shape, constant), m[r], s))
                if split == "test" and seen + i < params.overlays:
                    k = int(m[0].sum(axis=(1, 2)).argmax())
                    overlays.append((data.patient_ids[i], figures.overlay(data.images[i, 0, k].numpy(), m[0][k],
                                                                          p[0, k] >= threshold)))
            seen += len(data)
        results[split] = summarise_regions(per_patient, params.bootstrap, params.seed)
        log_nested(live, split, results[split])
        for region in regions:
            where = split if region == "wt" else f"{split}/{region}"
            for name in ("all_background", "all_foreground"):
                baseline = baselines[region, name]
                _log(live, f"{where}/baseline_{name}", {k: float(np.mean([b[k] for b in baseline])) for k in baseline[0]})
        distributions[split] = [row["dice"] for row in per_patient[regions[0]]]
        atomic.write_csv(out_dir / "predictions" / f"{split}.csv", per_patient_csv_rows(members[split], per_patient))
    live.log_image("dice_per_patient.png", figures.distribution_figure(distributions, "Dice (WT)"))
    for patient_id, image in overlays:
        live.log_image(f"overlays/{patient_id}.png", image)
    return results


def evaluate_cnn(task: str, volumes: str | os.PathLike, splits_file: str | os.PathLike, model_dir: str | os.PathLike,
                 out_dir: str | os.PathLike, params: ClsEvalParams | SegEvalParams) -> dict[str, Any]:
    """Score the best trained fold on its train / validation / test patients.

    Writes ``out_dir/details.json`` (dvclive's summary: ``<split>/<metric>`` with ``_ci_low``/``_ci_high``
    and baselines), ``out_dir/metrics.json`` (:func:`headline`), ``out_dir/plots/`` (sklearn-style JSON
    and PNG images) and per-patient CSVs under ``out_dir/predictions/``; ``out_dir/provenance.json``
    names the dataset and model.
    """
    from dvclive import Live

    source, model_dir, out_dir = open_volumes(volumes), Path(model_dir), Path(out_dir)
    model, meta = load_best(model_dir)
    if meta["task"] != task:
        raise InputError(f"{model_dir} holds a '{meta['task']}' model, not '{task}'")
    members = fold_patients(splits_file, meta["fold"])
    if members["train"] != meta["train_patients"] or members["validation"] != meta["validation_patients"]:
        raise InputError(f"{splits_file}: fold {meta['fold']} differs from the split the model was trained on")
    provenance = {
        "task": task, "fold": meta["fold"], "best_epoch": meta["best_epoch"], "folds_available": meta["folds_available"],
        "train_params": meta["params"], "eval_params": dataclasses.asdict(params),
        "dataset_at_training": meta["dataset"], "dataset_at_evaluation": source.version,
    }
    with atomic.atomic_dir(out_dir, kind="cnn-evaluation") as staging:
        live = Live(str(staging), save_dvc_exp=False, dvcyaml=None)
        run = evaluate_cls if task == "cls" else evaluate_seg
        results = run(model, meta, members, source, staging, params, live)  # type: ignore[arg-type]
        live.log_metric("selected_fold", meta["fold"], plot=False)
        live.end()
        spread = fold_spread(task, model_dir, source, splits_file, params, meta["folds_available"])
        details = _finite_metrics(staging / METRICS_FILE, test_extra=spread)  # dvclive's summary, replaced here
        write_scores(staging, f"cnn-{task}", headline(task, details, len(members["test"])), details, dvclive_order=True)
        atomic.write_json(staging / "provenance.json", provenance)
    return results


def headline(task: str, details: dict[str, Any], patients: int) -> dict[str, Any]:
    """metrics.json: the test split's ``patients`` (``n_patients``) and :data:`HEADLINE_KEYS` (``None`` without one)."""
    test = details.get("test")
    return {"n_patients": patients if test else None,
            **{key: (test or {}).get(source) for key, source in HEADLINE_KEYS[task].items()}}


def _finite_metrics(path: Path, test_extra: dict[str, float] | None = None) -> dict[str, Any]:
    """dvclive's summary at ``path`` with ``null`` + a note where a value is undefined (NaN), never bare NaN.

    AUC on a one-class split, a majority baseline's AUC and bootstrap bounds undefined in most
    resamples are NaN; dvclive would write them as ``NaN`` tokens or ``"nan"`` strings.
    """
    def number(value):
        return float("nan") if isinstance(value, str) and value.lower() in ("nan", "inf", "-inf") else value

    def walk(value):
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        return number(value)

    metrics = walk(json.loads(path.read_text()))
    if test_extra:  # fold mean / sd of every trained fold beside the selected fold's test metrics
        metrics.setdefault("test", {}).update(test_extra)
    return finite_or_null(metrics)
