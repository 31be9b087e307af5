"""The ``evaluate-llm`` stage: score saved LLM predictions per slice, then per patient, beside trivial baselines."""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from brats_llm import atomic
from brats_llm import plots as figures
from brats_llm.config import at_least, between
from brats_llm.constants import GRADE_TO_LABEL
from brats_llm.conversations.parse import INVALID_VALUE, OK
from brats_llm.conversations.prompts import answer_text
from brats_llm.errors import InputError
from brats_llm.evaluate.write import write_scores
from brats_llm.geometry.shapes import rasterize_box, rasterize_polygon
from brats_llm.llm.infer import read_predictions
from brats_llm.metrics.bootstrap import bootstrap_ci, with_intervals
from brats_llm.metrics.classification import classification_metrics, majority_baseline, rates, roc_auc
from brats_llm.metrics.finite import finite_or_null
from brats_llm.metrics.points import in_box, no_point_distance, point_metrics
from brats_llm.metrics.segmentation import dice, hd95, voxel_rates

TIES = ("undetermined", "HGG", "LGG")
#: How a box or polygon answer that parsed to points but is no valid shape is scored (``invalid_shapes``).
INVALID_SHAPES = ("drawn", "empty")
#: Classification target of a slice without tumour (answer NG-2).
NO_GLIOMA = 2
#: Suffix of the metrics key scored on glioma slices only (the paper's Table 3 "general" column).
GLIOMA_ONLY = "_glioma"
#: Patient-level label when the vote is tied and ``tie`` is "undetermined": scored as a wrong answer.
UNDETERMINED = -1
#: metrics.json (the DVC headline) beside ``n_patients`` and ``parse_rate_slices``: headline key -> the test
#: block's key. Patient scores: classification by the majority vote of 2D slices (AUC: GLDR as the score), the
#: others means over each patient's 2D slices.
HEADLINE_KEYS = {"cls": {"accuracy_vote": "accuracy", "balanced_accuracy_vote": "balanced_accuracy", "auc_gldr": "auc"},
                 "center": {"center_in_box_2d": "in_box"}, "bbox": {"box_dice_2d": "dice"},
                 "polygon": {"polygon_dice_2d": "dice"}}


@dataclass(frozen=True)
class LlmEvalParams:
    """``evaluate_llm`` section of params.yaml.

    Attributes:
        bootstrap: resamples of patients for 95% intervals.
        seed: bootstrap seed.
        tie: patient label when HGG and LGG slice votes tie (also 0-0): ``undetermined`` (counted as
            wrong), ``HGG`` or ``LGG``. The paper does not say.
        fixed_box_fraction: side of the fixed centred baseline box as a fraction of the image.
        examples: slices drawn with truth and prediction (segmentation tasks).
        invalid_shapes: a box or polygon answer that parsed to points but is no valid shape (corners not TL,
            TR, BR, BL of one box; a self-intersecting or zero-area polygon, or one of fewer than 10 or more
            than 15 vertices; vertices off the image): ``drawn`` scores the region it draws (a box: the box
            its corners span; a polygon: even-odd fill; both clipped to the image), as the paper scored its
            LLM's "random star shapes"; ``empty`` scores it as no answer (Dice 0). Either way the parse
            status counts it as an invalid value; format failures always score as no answer.
    """

    bootstrap: int = 1000
    seed: int = 2020
    tie: str = "undetermined"
    fixed_box_fraction: float = 0.5
    examples: int = 4
    invalid_shapes: str = "drawn"

    def __post_init__(self) -> None:
        if self.tie not in TIES:
            raise ValueError(f"tie must be one of {TIES}, got {self.tie!r}")
        if self.invalid_shapes not in INVALID_SHAPES:
            raise ValueError(f"invalid_shapes must be one of {INVALID_SHAPES}, got {self.invalid_shapes!r}")
        at_least(self, 1, "bootstrap")
        at_least(self, 0, "seed", "examples")
        between(self, 0.01, 1.0, "fixed_box_fraction")


def patient_votes(rows: list[dict[str, Any]], tie: str) -> list[dict[str, Any]]:
    """Majority vote, GLDR and mean P(HGG) per patient (in order of first appearance).

    Every slice counts in the GLDR denominator, unparsable ones included.
    """
    by_patient: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_patient.setdefault(row["patient_id"], []).append(row)
    out = []
    for pid, slices in by_patient.items():
        votes = Counter(r["prediction"] if r["status"] == "ok" else "failed" for r in slices)
        hgg, lgg = votes.get(1, 0), votes.get(0, 0)
        if hgg != lgg:
            pred = int(hgg > lgg)
        else:
            pred = UNDETERMINED if tie == "undetermined" else GRADE_TO_LABEL[tie]
        probabilities = [r["p_hgg"] for r in slices if r.get("p_hgg") is not None]
        out.append({"patient_id": pid, "grade": slices[0]["grade"], "label": GRADE_TO_LABEL[slices[0]["grade"]],
                    "slices": len(slices), "votes_hgg": hgg, "votes_lgg": lgg, "votes_ng": votes.get(2, 0),
                    "failed": votes.get("failed", 0), "gldr": round(hgg / len(slices), 6),
                    "p_hgg_mean": round(float(np.mean(probabilities)), 6) if probabilities else None,
                    "pred": pred})
    return out


def classification_scores(patients: list[dict[str, Any]], train_labels: np.ndarray, params: LlmEvalParams) -> dict[str, Any]:
    """Patient metrics (an undetermined vote counts as wrong), tally AUC (GLDR) and label-probability AUC."""
    y = np.array([p["label"] for p in patients])
    raw = np.array([p["pred"] for p in patients])
    pred = np.where(raw == UNDETERMINED, 1 - y, raw)
    gldr = np.array([p["gldr"] for p in patients])
    prob = np.array([np.nan if p.get("p_hgg_mean") is None else p["p_hgg_mean"] for p in patients], dtype=float)

    def statistic(index: np.ndarray) -> dict[str, float]:
        values = rates(classification_metrics(y[index], pred[index], gldr[index]))
        values["auc_label_probability"] = roc_auc(y[index], prob[index]) if np.isfinite(prob).all() else float("nan")
        return values

    point = classification_metrics(y, pred, gldr)
    point["auc_label_probability"] = statistic(np.arange(len(y)))["auc_label_probability"]
    point["undetermined"] = float(np.sum(raw == UNDETERMINED))
    result = with_intervals(point, bootstrap_ci(len(y), statistic, resamples=params.bootstrap, seed=params.seed))
    result["baseline_majority"] = majority_baseline(y, train_labels)
    if all("grade" in p for p in patients):
        result["gldr"] = gldr_summary(patients)
    return result


def gldr_summary(patients: list[dict[str, Any]]) -> dict[str, float]:
    """Mean and sample SD of GLDR over HGG and over LGG patients (flat keys, so `dvc metrics diff` shows them move)."""
    out: dict[str, float] = {}
    for grade in ("HGG", "LGG"):
        values = np.array([p["gldr"] for p in patients if p["grade"] == grade], dtype=float)
        key = grade.lower()
        out[f"{key}_patients"] = float(values.size)
        out[f"{key}_mean"] = float(values.mean()) if values.size else float("nan")
        out[f"{key}_sd"] = float(values.std(ddof=1)) if values.size > 1 else float("nan")
    return out


def undefined_reasons(patients: list[dict[str, Any]]) -> dict[str, str]:
    """Why a classification value can be undefined, for the ``*_note`` keys of details.json."""
    grades = {p["grade"] for p in patients}
    reasons = {}
    if len(grades) < 2:
        reasons["auc"] = reasons["auc_label_probability"] = f"one class only ({', '.join(sorted(grades)) or 'no'} patients)"
    elif any(p.get("p_hgg_mean") is None for p in patients):
        reasons["auc_label_probability"] = "no label probabilities (p_hgg) for some patients"
    for grade in ("HGG", "LGG"):
        count = sum(p["grade"] == grade for p in patients)
        reasons[f"{grade.lower()}_mean"] = f"no {grade} patients"
        reasons[f"{grade.lower()}_sd"] = f"{count} {grade} patient(s): an SD needs 2"
    return reasons


def _slice_region_metrics(pred: np.ndarray | None, truth: np.ndarray) -> dict[str, float]:
    """Dice, HD95 (pixels; the slice diagonal when undefined) and voxel rates of one slice."""
    if pred is None or not pred.any():
        empty = np.zeros_like(truth)
        return {"dice": 0.0, "hd95": no_point_distance(truth.shape), **voxel_rates(empty, truth)}
    distance = hd95(pred, truth) if truth.any() else no_point_distance(truth.shape)
    return {"dice": dice(pred, truth), "hd95": distance, **voxel_rates(pred, truth)}


def region_mask(task: str, shape_points: list[list[float]] | None, size: tuple[int, int]) -> np.ndarray | None:
    """Rasterise a predicted box or polygon on a ``size`` (rows, cols) grid (None stays None)."""
    if shape_points is None:
        return None
    if task == "bbox" and len(shape_points) == 4:  # corners are not rounded: pixel centres inside or on the box
        return rasterize_box(shape_points, size)
    return rasterize_polygon(shape_points, size)


def slice_scores(task: str, predictions: list[Any], truth: list[dict[str, Any]]) -> list[dict[str, float]]:
    """Per-slice box or polygon metrics for aligned predictions (None = unusable answer) and truths."""
    return [_slice_region_metrics(region_mask(task, p, t["mask"].shape), t["mask"]) for p, t in zip(predictions, truth)]


def grid_shape(truth: list[dict[str, Any]]) -> tuple[int, int]:
    """The (rows, cols) of the scored slices, from their stored masks (the size travels with the data).

    Raises:
        InputError: no masks, or slices of several sizes (constant baselines need one grid).
    """
    shapes = {tuple(int(v) for v in t["mask"].shape) for t in truth if "mask" in t}
    if len(shapes) != 1:
        raise InputError(f"the scored slices need one size, found {sorted(shapes) or 'no masks'}")
    return shapes.pop()


def reparsed(task: str, rows: list[dict[str, Any]], truth: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows whose raw ``response`` is parsed again against the size of its own slice (``truth`` mask shape).

    Status and prediction of a coordinate task then never depend on the size ``llm-infer`` assumed;
    rows without a response (hand-made) keep theirs.
    """
    from brats_llm.conversations.parse import parse_answer

    out = []
    for row, t in zip(rows, truth):
        if isinstance(row.get("response"), str):
            parsed = parse_answer(task, row["response"], t["mask"].shape)
            row = {**row, "status": parsed.status, "prediction": parsed.value, "detail": parsed.detail}
        out.append(row)
    return out


def per_patient(task: str, patient_ids: list[str], predictions: list[Any], truth: list[dict[str, Any]]) -> tuple[list[str], np.ndarray, list[str]]:
    """Per-patient metric table: centre metrics over the patient's slices; regions: mean of slice metrics.

    Distances are in pixels of the slices' own grid (their mask shape).
    """
    groups: dict[str, list[int]] = {}
    for i, pid in enumerate(patient_ids):
        groups.setdefault(pid, []).append(i)
    order = list(groups)
    rows = []
    for idx in groups.values():
        if task == "center":
            rows.append(point_metrics([predictions[i] for i in idx], [truth[i]["bbox"] for i in idx],
                                      [truth[i]["center"] for i in idx], grid_shape([truth[i] for i in idx])))
        else:
            scores = slice_scores(task, [predictions[i] for i in idx], [truth[i] for i in idx])
            rows.append({k: float(np.mean([s[k] for s in scores])) for k in scores[0]})
    keys = list(rows[0])
    return order, np.array([[r[k] for k in keys] for r in rows]), keys


def baselines(task: str, train_truth: list[dict[str, Any]], fraction: float, shape: tuple[int, int]) -> dict[str, Any]:
    """Constant answers: image-centre point / fixed centred box on the ``shape`` (rows, cols) slice, and the
    mean training centre / box."""
    height, width = shape
    mid_x, mid_y = (width - 1) / 2, (height - 1) / 2
    if task == "center":
        mean_center = np.mean([t["center"] for t in train_truth], axis=0).tolist()
        return {"image_center": [mid_x, mid_y], "mean_train_center": mean_center}
    half_x, half_y = fraction * width / 2, fraction * height / 2
    x_lo, x_hi, y_lo, y_hi = mid_x - half_x + 0.5, mid_x + half_x - 0.5, mid_y - half_y + 0.5, mid_y + half_y - 0.5
    fixed = [[x_lo, y_lo], [x_hi, y_lo], [x_hi, y_hi], [x_lo, y_hi]]
    limits = np.array([[min(x for x, _ in t["bbox"]), min(y for _, y in t["bbox"]), max(x for x, _ in t["bbox"]),
                        max(y for _, y in t["bbox"])] for t in train_truth]).mean(axis=0)
    x0, y0, x1, y1 = limits.tolist()
    return {"fixed_centered_box": fixed, "mean_train_box": [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]}


def scored_answer(task: str, row: dict[str, Any], invalid_shapes: str) -> Any:
    """What a row's answer is scored as: its value when valid, an invalid box or polygon as drawn (when
    ``invalid_shapes`` is "drawn"), else ``None`` (no region, no point)."""
    drawn = row["status"] == INVALID_VALUE and task in ("bbox", "polygon") and invalid_shapes == "drawn"
    return row["prediction"] if row["status"] == OK or drawn else None


def spanned_box(corners: list[list[float]]) -> list[list[float]]:
    """TL, TR, BR, BL of the axis-aligned box that ``corners`` span (what :func:`rasterize_box` fills)."""
    xs, ys = [float(x) for x, _ in corners], [float(y) for _, y in corners]
    return [[min(xs), min(ys)], [max(xs), min(ys)], [max(xs), max(ys)], [min(xs), max(ys)]]


def geometry_scores(task: str, rows: list[dict[str, Any]], truth: list[dict[str, Any]], train_truth: list[dict[str, Any]],
                    params: LlmEvalParams) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Patient-mean metrics with intervals, format-failure counts and the constant baselines.

    Answers are scored as :func:`scored_answer` says (``params.invalid_shapes``); ``drawn`` counts the invalid
    shapes that were scored as drawn.
    """
    patient_ids = [r["patient_id"] for r in rows]
    predictions = [scored_answer(task, r, params.invalid_shapes) for r in rows]
    order, table, keys = per_patient(task, patient_ids, predictions, truth)

    def mean_of(index: np.ndarray) -> dict[str, float]:
        return dict(zip(keys, table[index].mean(axis=0).tolist()))

    result = with_intervals(mean_of(np.arange(len(order))),
                            bootstrap_ci(len(order), mean_of, resamples=params.bootstrap, seed=params.seed))
    for name, constant in baselines(task, train_truth, params.fixed_box_fraction, grid_shape(truth)).items():
        _, base_table, _ = per_patient(task, patient_ids, [constant] * len(rows), truth)
        result[f"baseline_{name}"] = dict(zip(keys, base_table.mean(axis=0).tolist()))
    oracle = oracle_answers(task, truth)
    _, oracle_table, _ = per_patient(task, patient_ids, oracle, truth)
    result["oracle"] = {**dict(zip(keys, oracle_table.mean(axis=0).tolist())),
                        "unparsable": float(sum(o is None for o in oracle))}
    result["n"] = float(len(order))
    result["drawn"] = float(sum(r["status"] != OK and p is not None for r, p in zip(rows, predictions)))
    result["truth"] = truth_summary(truth)
    patient_rows = [{"patient_id": pid, **{k: f"{v:.6f}" for k, v in zip(keys, values)}} for pid, values in zip(order, table)]
    return result, patient_rows


def oracle_answers(task: str, truth: list[dict[str, Any]]) -> list[Any]:
    """The ground-truth target written as the assistant's answer and parsed back, as a model's answer is.

    Scored like the model (against the whole-slice mask), it is the ceiling of the task's answer format:
    a box cannot follow a non-rectangular tumour, and a polygon describes one component only.
    """
    from brats_llm.conversations.parse import parse_answer

    answers = []
    for t in truth:
        parsed = parse_answer(task, answer_text(task, t[task]), t["mask"].shape)
        answers.append(parsed.value if parsed.status == "ok" else None)
    return answers


def truth_summary(truth: list[dict[str, Any]]) -> dict[str, float]:
    """Scored slices and patients, the share of slices whose tumour has more than one component, and the
    slices' size in pixels (``image_height`` x ``image_width``: the grid of every coordinate and distance)."""
    components = [t.get("components") for t in truth if t.get("components") is not None]
    height, width = grid_shape(truth)
    return {"slices": float(len(truth)), "patients": float(len({t["patient_id"] for t in truth})),
            "multi_component_share": float(np.mean([c > 1 for c in components])) if components else float("nan"),
            "image_height": float(height), "image_width": float(width)}


def _truth(revision_file: str | os.PathLike, rows: list[dict[str, Any]], with_masks: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]], np.ndarray]:
    """Ground truth aligned with ``rows`` (box, centre, polygon, mask, image), training boxes and training labels."""
    from brats_llm.publish.pinned import published_folder, read_config

    folder = published_folder(revision_file)  # hashed (or fetched) once for both configs
    geometry = read_config(folder, "geometry")["train"]
    columns = ["patient_id", "slice_index", "split", "label", "bbox", "center", "polygon", "components"]
    keys = geometry.select_columns([c for c in columns if c in geometry.column_names])
    by_key = {(g["patient_id"], g["slice_index"]): g for g in keys}
    train = [g for g in keys if g["split"] == "trainval"]
    labels = {g["patient_id"]: g["label"] for g in train}
    truth = []
    if with_masks:
        slices = read_config(folder, "slices")["train"]
        index = {}
        for i, s in enumerate(slices.select_columns(["patient_id", "plane", "slice_index"])):
            if s["plane"] == "axial":
                index.setdefault((s["patient_id"], s["slice_index"]), i)
        for row in rows:
            key = (row["patient_id"], row["slice_index"])
            if key not in by_key or key not in index:
                raise InputError(f"no ground truth for patient {key[0]} axial slice {key[1]} in {revision_file}")
            item = slices[index[key]]
            truth.append({**by_key[key], "mask": np.asarray(item["mask"]) > 0, "image": np.asarray(item["image"])})
    return truth, train, np.array(list(labels.values()))


def evaluate_llm(task: str, pred_dir: str | os.PathLike, revision_file: str | os.PathLike, out_dir: str | os.PathLike,
                 params: LlmEvalParams) -> dict[str, Any]:
    """Score one ``llm-infer`` run (no model is loaded).

    Writes ``out_dir/details.json`` (``<split>`` -> patient-level metrics with ``_ci_low``/``_ci_high``,
    baselines and parse-status counts; classification on other planes under ``<split>_<plane>``, and each
    plane again on glioma slices only under ``<split>[_<plane>]_glioma`` (the paper's Table 3 general
    column), with a GLDR summary per grade; box / polygon / centre with the ``oracle`` (the ground truth
    answered perfectly, scored like the model) and ``truth`` (slices, patients, multi-component share, and
    ``image_height`` / ``image_width``)). Coordinate answers are parsed again against their own slice's size
    (:func:`reparsed`); every pixel distance and baseline uses that size, read from the stored masks.
    Undefined values are ``null`` with a ``<key>_note`` (never NaN), ``out_dir/metrics.json`` (:func:`headline`),
    ``out_dir/predictions/patients.csv``, ``out_dir/plots/images/*.png`` and ``out_dir/provenance.json``.
    """
    rows, run = read_predictions(pred_dir)
    if run["task"] != task:
        raise InputError(f"{pred_dir} holds '{run['task']}' predictions, not '{task}'")
    if not rows:
        raise InputError(f"{pred_dir}: no predictions to score")
    split = run["dataset"]["split"]
    truth, train_truth, train_labels = _truth(revision_file, rows, with_masks=task != "cls")
    metrics: dict[str, Any] = {}
    images: dict[str, np.ndarray] = {}
    if task == "cls":
        table = []
        for plane in dict.fromkeys(r["plane"] for r in rows):
            plane_rows = [r for r in rows if r["plane"] == plane]
            glioma_rows = [r for r in plane_rows if r.get("target") != NO_GLIOMA]
            key = split if plane == "axial" else f"{split}_{plane}"
            for name, subset, scope in ((key, plane_rows, "all slices"), (key + GLIOMA_ONLY, glioma_rows, "glioma slices")):
                if not subset:
                    continue
                patients = patient_votes(subset, params.tie)
                result = classification_scores(patients, train_labels, params)
                accuracy = float(np.mean([r["status"] == "ok" and r["prediction"] == r["target"] for r in subset]))
                result["slices"] = {**_status_counts(subset), "accuracy": accuracy, **answered_score(task, subset, [])}
                result["scope"] = f"{plane}, {scope}"
                metrics[name] = finite_or_null(result, undefined_reasons(patients))
                table += [{"plane": plane, "scope": scope, **p} for p in patients]
                suffix = "" if subset is plane_rows else GLIOMA_ONLY
                images[f"gldr_{plane}{suffix}.png"] = figures.gldr_figure(
                    [(p["patient_id"], p["grade"], p["gldr"]) for p in patients], f"GLDR per patient ({plane}, {scope})")
    else:
        rows = reparsed(task, rows, truth)
        result, table = geometry_scores(task, rows, truth, train_truth, params)
        result["slices"] = {**_status_counts(rows), **answered_score(task, rows, truth)}
        metrics[split] = finite_or_null(result, {"multi_component_share": "geometry without a components column"})
        for i in _example_indices(truth, params.examples):
            reference = [truth[i]["center"]] if task == "center" else truth[i]["bbox" if task == "bbox" else "polygon"]
            prediction = scored_answer(task, rows[i], params.invalid_shapes)
            if task == "center" and prediction is not None:
                prediction = [prediction]
            if task == "bbox" and prediction is not None:  # draw what was scored: the box the corners span
                prediction = spanned_box(prediction)
            # A slice whose answer was unusable shows the truth only; the name says so (the report's caption too).
            suffix = "" if prediction is not None else figures.NO_ANSWER_SUFFIX
            images[f"examples/{rows[i]['patient_id']}_{rows[i]['slice_index']}{suffix}.png"] = figures.shapes_overlay(
                truth[i]["image"], reference, prediction)
    out = Path(out_dir)
    with atomic.atomic_dir(out, kind="llm-evaluation") as staging:
        write_scores(staging, f"llm-{task}", headline(task, metrics), metrics)
        atomic.write_csv(staging / "predictions" / "patients.csv", table)
        for name, rgb in images.items():
            figures.write_png(staging / "plots" / "images" / name, rgb)
        atomic.write_json(staging / "provenance.json", {"task": task, "predictions": str(pred_dir), "inference": run,
                                                        "eval_params": dataclasses.asdict(params)})
    return metrics


def headline(task: str, metrics: dict[str, Any]) -> dict[str, Any]:
    """The ``test`` block's patients, main scores (:data:`HEADLINE_KEYS`) and parse rate (share of its slices
    answered validly).

    Classification: ``test`` is axial, all slices (the glioma-only Table 3 block stays in details.json).
    All ``None`` when the run scored another split.
    """
    block = metrics.get("test") or {}
    slices = block.get("slices") or {}
    rate = slices["ok"] / slices["n"] if slices.get("n") else None
    patients = int(block["n"]) if block.get("n") is not None else None
    return {"n_patients": patients, **{key: block.get(source) for key, source in HEADLINE_KEYS[task].items()},
            "parse_rate_slices": rate}


#: What :func:`answered_score` reports per task: the headline's slice-level meaning among answered slices only.
ANSWERED_SCORE = {"cls": "answered_accuracy", "center": "answered_in_box", "bbox": "answered_dice",
                  "polygon": "answered_dice"}


def answered_score(task: str, rows: list[dict[str, Any]], truth: list[dict[str, Any]]) -> dict[str, float | None]:
    """The task's slice score over the validly answered slices only (``None`` when none was), so a report can
    tell a model that answers wrongly from one that fails the format: label accuracy (cls), centre inside the
    true box (center), slice Dice (bbox, polygon). ``truth`` aligns with ``rows`` (unused for cls)."""
    answered = [i for i, r in enumerate(rows) if r["status"] == "ok"]
    key = ANSWERED_SCORE[task]
    if not answered:
        return {key: None}
    if task == "cls":
        return {key: float(np.mean([rows[i]["prediction"] == rows[i]["target"] for i in answered]))}
    if task == "center":
        return {key: float(np.mean([in_box(rows[i]["prediction"], truth[i]["bbox"]) for i in answered]))}
    scores = slice_scores(task, [rows[i]["prediction"] for i in answered], [truth[i] for i in answered])
    return {key: float(np.mean([score["dice"] for score in scores]))}


def _status_counts(rows: list[dict[str, Any]]) -> dict[str, float]:
    counts = Counter(r["status"] for r in rows)
    n = len(rows)
    return {"n": float(n), "ok": float(counts["ok"]), "format_error": float(counts["format_error"]),
            "invalid_value": float(counts["invalid_value"]), "format_error_rate": counts["format_error"] / n,
            "invalid_value_rate": counts["invalid_value"] / n}


def _example_indices(truth: list[dict[str, Any]], count: int) -> list[int]:
    """The slice with the largest tumour of the first ``count`` patients."""
    best: dict[str, int] = {}
    for i, t in enumerate(truth):
        pid = t["patient_id"]
        if pid not in best or t["mask"].sum() > truth[best[pid]]["mask"].sum():
            best[pid] = i
    return list(best.values())[:count]
