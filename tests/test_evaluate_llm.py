"""Scoring LLM predictions: votes, ties, AUCs against scikit-learn, region metrics, failures kept in denominators."""

import json

import numpy as np
import pytest
from sklearn.metrics import f1_score, roc_auc_score

from brats_llm.evaluate.llm import (HEADLINE_KEYS, UNDETERMINED, LlmEvalParams, baselines, classification_scores,
                                    evaluate_llm, patient_votes, region_mask)
from brats_llm.evaluate.write import HEADLINE_KEYS as WRITTEN
from brats_llm.geometry.shapes import rasterize_box
from brats_llm.publish.pinned import load_published

FAST = LlmEvalParams(bootstrap=50)


def row(pid, grade, prediction, status="ok", p_hgg=None, **extra):
    return {"patient_id": pid, "grade": grade, "prediction": prediction, "status": status, "p_hgg": p_hgg,
            "plane": "axial", **extra}


def test_majority_vote_gldr_and_ties():
    rows = [row("a", "HGG", 1), row("a", "HGG", 1), row("a", "HGG", 0), row("a", "HGG", None, "format_error"),
            row("b", "LGG", 1), row("b", "LGG", 0), row("c", "LGG", 2)]
    votes = {p["patient_id"]: p for p in patient_votes(rows, "undetermined")}
    assert (votes["a"]["pred"], votes["a"]["gldr"], votes["a"]["failed"]) == (1, 0.5, 1)  # failures stay in the denominator
    assert votes["b"]["pred"] == votes["c"]["pred"] == UNDETERMINED
    assert {p["patient_id"]: p["pred"] for p in patient_votes(rows, "LGG")} == {"a": 1, "b": 0, "c": 0}


def test_classification_scores_match_scikit_learn():
    rng = np.random.default_rng(1)
    patients = [{"label": int(label), "pred": int(pred), "gldr": float(g), "p_hgg_mean": float(p)}
                for label, pred, g, p in zip([1, 1, 1, 0, 0, 1, 0, 1], [1, 0, UNDETERMINED, 0, 1, 1, UNDETERMINED, 1],
                                             rng.uniform(size=8), rng.uniform(size=8))]
    result = classification_scores(patients, np.array([1, 1, 0]), FAST)
    y = [p["label"] for p in patients]
    scored = [p["pred"] if p["pred"] != UNDETERMINED else 1 - p["label"] for p in patients]
    assert result["accuracy"] == pytest.approx(np.mean(np.array(scored) == y))
    assert result["f1"] == pytest.approx(f1_score(y, scored))
    assert result["auc"] == pytest.approx(roc_auc_score(y, [p["gldr"] for p in patients]))
    assert result["auc_label_probability"] == pytest.approx(roc_auc_score(y, [p["p_hgg_mean"] for p in patients]))
    assert result["undetermined"] == 2 and result["baseline_majority"]["recall"] == 1.0
    assert result["accuracy_ci_low"] <= result["accuracy"] <= result["accuracy_ci_high"]


def write_predictions(folder, task, rows):
    folder.mkdir(parents=True)
    (folder / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "run.json").write_text(json.dumps({"task": task, "dataset": {"split": "test"}, "model": "m"}))


@pytest.fixture(scope="module")
def truth(published):
    geometry = load_published(published, "geometry")["train"]
    rows = [g for g in geometry.remove_columns("image") if g["split"] == "test"]
    slices = load_published(published, "slices")["train"].remove_columns("image")
    masks = {(s["patient_id"], s["slice_index"]): np.asarray(s["mask"]) > 0 for s in slices if s["plane"] == "axial"}
    return rows, masks


def test_perfect_boxes_score_as_the_rasterised_truth(published, truth, tmp_path):
    rows, masks = truth
    preds = [row(g["patient_id"], g["grade"], g["bbox"], slice_index=g["slice_index"]) for g in rows]
    preds[0] = {**preds[0], "status": "format_error", "prediction": None}
    write_predictions(tmp_path / "pred", "bbox", preds)
    metrics = evaluate_llm("bbox", tmp_path / "pred", published, tmp_path / "out", FAST)["test"]
    expected = {}
    for i, g in enumerate(rows):
        mask = masks[(g["patient_id"], g["slice_index"])]
        pred = rasterize_box(g["bbox"], mask.shape).astype(bool) if i else np.zeros_like(mask)
        expected.setdefault(g["patient_id"], []).append(f1_score(mask.ravel(), pred.ravel(), zero_division=0.0))
    assert metrics["dice"] == pytest.approx(np.mean([np.mean(v) for v in expected.values()]))
    assert metrics["slices"]["format_error"] == 1 and metrics["slices"]["n"] == len(rows)
    assert {"baseline_fixed_centered_box", "baseline_mean_train_box"} <= set(metrics)
    assert metrics["dice"] > metrics["baseline_fixed_centered_box"]["dice"]
    assert (tmp_path / "out" / "predictions" / "patients.csv").read_text().count("\n") == len(expected) + 1
    assert headline_of(tmp_path / "out", "bbox")["parse_rate_slices"] == (len(rows) - 1) / len(rows)
    assert list((tmp_path / "out" / "plots" / "images" / "examples").glob("*.png"))


def test_true_centres_are_inside_their_boxes(published, truth, tmp_path):
    rows, _ = truth
    preds = [row(g["patient_id"], g["grade"], g["center"], slice_index=g["slice_index"]) for g in rows]
    write_predictions(tmp_path / "pred", "center", preds)
    metrics = evaluate_llm("center", tmp_path / "pred", published, tmp_path / "out", FAST)["test"]
    assert metrics["in_box"] == 1.0 and metrics["p95_center_distance"] == 0.0 and metrics["p95_box_distance"] == 0.0
    assert metrics["baseline_image_center"]["p95_center_distance"] > 0
    assert headline_of(tmp_path / "out", "center") == {"n_patients": metrics["n"], "center_in_box_2d": 1.0,
                                                       "parse_rate_slices": 1.0}


def test_classification_end_to_end_and_task_mismatch(published, truth, tmp_path):
    rows, _ = truth
    preds = [row(g["patient_id"], g["grade"], g["label"], p_hgg=0.9 if g["label"] else 0.1, slice_index=g["slice_index"],
                 target=g["label"]) for g in rows]
    write_predictions(tmp_path / "pred", "cls", preds)
    metrics = evaluate_llm("cls", tmp_path / "pred", published, tmp_path / "out", FAST)["test"]
    assert metrics["accuracy"] == 1.0 and metrics["slices"]["accuracy"] == 1.0
    assert headline_of(tmp_path / "out", "cls")["balanced_accuracy_vote"] == 1.0
    assert (tmp_path / "out" / "plots" / "images" / "gldr_axial.png").is_file()
    with pytest.raises(ValueError, match="'cls' predictions, not 'bbox'"):
        evaluate_llm("bbox", tmp_path / "pred", published, tmp_path / "x", FAST)


def test_baselines_and_rasterising():
    train = [{"bbox": [[10, 20], [30, 20], [30, 40], [10, 40]], "center": [20, 30]},
             {"bbox": [[20, 30], [40, 30], [40, 50], [20, 50]], "center": [30, 40]}]
    assert baselines("center", train, 0.5, (128, 128)) == {"image_center": [63.5, 63.5], "mean_train_center": [25.0, 35.0]}
    boxes = baselines("bbox", train, 0.5, (128, 128))
    assert boxes["mean_train_box"] == [[15.0, 25.0], [35.0, 25.0], [35.0, 45.0], [15.0, 45.0]]
    assert region_mask("bbox", boxes["fixed_centered_box"], (128, 128)).sum() == 64 * 64
    # The constants follow the slice's own (rows, cols): centred, half of each side.
    assert baselines("center", train, 0.5, (95, 224))["image_center"] == [111.5, 47.0]
    wide = region_mask("bbox", baselines("bbox", train, 0.5, (96, 224))["fixed_centered_box"], (96, 224))
    rows, cols = np.nonzero(wide)
    assert wide.sum() == 48 * 112 and (rows.min(), rows.max(), cols.min(), cols.max()) == (24, 71, 56, 167)
    assert region_mask("polygon", None, (128, 128)) is None
    with pytest.raises(ValueError, match="tie"):
        LlmEvalParams(tie="coin")


def strict_json(path):
    """Parse a metrics file as strict JSON: bare NaN / Infinity tokens are an error."""
    def refuse(token):
        raise ValueError(f"{path}: not valid JSON: {token}")
    return json.loads(path.read_text(), parse_constant=refuse)


def headline_of(out, task):
    """metrics.json holds only the headline keys, each the number of details.json's ``test`` block it names."""
    headline, test = strict_json(out / "metrics.json"), strict_json(out / "details.json")["test"]
    assert set(headline) == {"n_patients", *HEADLINE_KEYS[task], "parse_rate_slices"} == set(WRITTEN[f"llm-{task}"])
    assert all(headline[key] == test[source] for key, source in HEADLINE_KEYS[task].items())
    assert headline["n_patients"] == test["n"] and isinstance(headline["n_patients"], int)
    assert headline["parse_rate_slices"] == test["slices"]["ok"] / test["slices"]["n"]
    return headline


def test_glioma_only_block_feeds_table_3(published, truth, tmp_path):
    """Slices without tumour (target NG-2) are left out of `<split>_glioma`; the all-slices block keeps them."""
    rows, _ = truth
    preds = [row(g["patient_id"], g["grade"], g["label"], p_hgg=0.9 if g["label"] else 0.1, slice_index=g["slice_index"],
                 target=g["label"]) for g in rows]
    lgg = sorted({g["patient_id"] for g in rows if g["grade"] == "LGG"})
    assert lgg, "the tiny cohort's test split needs an LGG patient"
    per_patient = {pid: sum(g["patient_id"] == pid for g in rows) for pid in lgg}
    for pid, count in per_patient.items():  # tumour-free slices of LGG patients answered HGG, more than their tumour slices
        preds += [row(pid, "LGG", 1, p_hgg=0.9, slice_index=1000 + i, target=2) for i in range(count + 1)]
    write_predictions(tmp_path / "pred", "cls", preds)
    metrics = evaluate_llm("cls", tmp_path / "pred", published, tmp_path / "out", FAST)
    assert metrics["test_glioma"]["accuracy"] == 1.0 and metrics["test_glioma"]["slices"]["n"] == len(rows)
    assert metrics["test"]["accuracy"] < 1.0 and metrics["test"]["slices"]["n"] == len(preds)
    assert headline_of(tmp_path / "out", "cls")["accuracy_vote"] == metrics["test"]["accuracy"]  # all slices, not Table 3's
    gldr = metrics["test_glioma"]["gldr"]
    assert gldr["hgg_mean"] == 1.0 and gldr["lgg_mean"] == 0.0 and gldr["lgg_patients"] == len(lgg)
    assert (tmp_path / "out" / "plots" / "images" / "gldr_axial_glioma.png").is_file()


def test_metrics_files_hold_no_nan(published, truth, tmp_path):
    """One class only and no label probabilities: AUC is null with a reason, never a bare NaN token."""
    rows, _ = truth
    hgg = [g for g in rows if g["grade"] == "HGG"]
    preds = [row(g["patient_id"], g["grade"], 1, slice_index=g["slice_index"], target=g["label"]) for g in hgg]
    write_predictions(tmp_path / "pred", "cls", preds)
    evaluate_llm("cls", tmp_path / "pred", published, tmp_path / "out", FAST)
    metrics = strict_json(tmp_path / "out" / "details.json")
    block = metrics["test"]
    assert block["auc"] is None and "one class" in block["auc_note"]
    assert block["auc_label_probability"] is None and block["auc_label_probability_note"]
    assert block["gldr"]["lgg_mean"] is None and block["gldr"]["lgg_mean_note"] == "no LGG patients"
    assert headline_of(tmp_path / "out", "cls")["auc_gldr"] is None  # null stays null in the headline
    assert "NaN" not in (tmp_path / "out" / "details.json").read_text() + (tmp_path / "out" / "metrics.json").read_text()


@pytest.mark.parametrize("task", ["bbox", "polygon", "center"])
def test_oracle_scores_the_truth_like_the_model(published, truth, tmp_path, task):
    rows, masks = truth
    preds = [row(g["patient_id"], g["grade"], None, "format_error", slice_index=g["slice_index"]) for g in rows]
    write_predictions(tmp_path / "pred", task, preds)
    metrics = evaluate_llm(task, tmp_path / "pred", published, tmp_path / "out", FAST)["test"]
    assert headline_of(tmp_path / "out", task)["parse_rate_slices"] == 0.0
    oracle = metrics["oracle"]
    assert oracle["unparsable"] == 0 and metrics["n"] == len({g["patient_id"] for g in rows})
    assert metrics["truth"]["slices"] == len(rows) and 0 <= metrics["truth"]["multi_component_share"] <= 1
    if task == "center":
        assert oracle["in_box"] == 1.0 and oracle["p95_center_distance"] == 0.0
    else:
        assert 0.5 < oracle["dice"] <= 1.0 and metrics["dice"] == 0.0
    names = [p.name for p in (tmp_path / "out" / "plots" / "images" / "examples").glob("*.png")]
    assert names and all(name.endswith("_no-answer.png") for name in names)  # nothing red drawn: the name says so


def test_answered_score_leaves_format_failures_out():
    from brats_llm.evaluate.llm import answered_score

    rows = [{"status": "ok", "prediction": 1, "target": 1}, {"status": "ok", "prediction": 0, "target": 1},
            {"status": "format_error", "prediction": None, "target": 1}]
    assert answered_score("cls", rows, []) == {"answered_accuracy": 0.5}  # 1 of 2 answered, not 1 of 3
    assert answered_score("cls", rows[2:], []) == {"answered_accuracy": None}
    box = [[2, 2], [5, 2], [5, 5], [2, 5]]
    mask = rasterize_box(box, (8, 8))
    truth = [{"bbox": box, "mask": mask}] * 3
    centres = [{"status": "ok", "prediction": [3, 3]}, {"status": "ok", "prediction": [7, 7]},
               {"status": "invalid_value", "prediction": None}]
    assert answered_score("center", centres, truth) == {"answered_in_box": 0.5}
    boxes = [{"status": "ok", "prediction": box}, {"status": "format_error", "prediction": None}]
    assert answered_score("bbox", boxes, truth[:2]) == {"answered_dice": 1.0}


@pytest.mark.parametrize("invalid_shapes", ["drawn", "empty"])
def test_invalid_boxes_score_as_drawn_or_empty(published, truth, tmp_path, invalid_shapes):
    """Corners listed TR, TL, BL, BR parse as an invalid value; ``drawn`` scores the box they span (the truth's)."""
    rows, _ = truth
    preds = []
    for g in rows:
        (x0, y0), (x1, _), (_, y1), _ = g["bbox"]
        swapped = [[x1, y0], [x0, y0], [x0, y1], [x1, y1]]
        preds.append(row(g["patient_id"], g["grade"], None, "format_error", slice_index=g["slice_index"],
                         response=json.dumps({"bbox": swapped})))
    write_predictions(tmp_path / "pred", "bbox", preds)
    params = LlmEvalParams(bootstrap=50, invalid_shapes=invalid_shapes)
    metrics = evaluate_llm("bbox", tmp_path / "pred", published, tmp_path / "out", params)["test"]
    thin = [g for g in rows if g["bbox"][0][0] == g["bbox"][1][0] or g["bbox"][0][1] == g["bbox"][2][1]]
    assert metrics["slices"]["invalid_value"] == len(rows) - len(thin) and metrics["slices"]["answered_dice"] is not None
    assert headline_of(tmp_path / "out", "bbox")["parse_rate_slices"] == len(thin) / len(rows)
    names = [p.name for p in (tmp_path / "out" / "plots" / "images" / "examples").glob("*.png")]
    if invalid_shapes == "drawn":
        assert metrics["drawn"] == len(rows) - len(thin)
        assert metrics["dice"] == pytest.approx(metrics["oracle"]["dice"])  # the box the corners span is the truth's
        assert names and not any(name.endswith("_no-answer.png") for name in names)
    else:
        assert metrics["drawn"] == 0 and metrics["dice"] < metrics["oracle"]["dice"]


def test_spanned_box_is_what_the_box_rasterises():
    from brats_llm.evaluate.llm import spanned_box

    swapped = [[9, 2], [3, 2], [3, 7], [9, 7]]
    assert spanned_box(swapped) == [[3, 2], [9, 2], [9, 7], [3, 7]]
    assert np.array_equal(rasterize_box(spanned_box(swapped), (12, 12)), rasterize_box(swapped, (12, 12)))
    sliver = [[66, 66], [64, 66], [64, 68], [64, 68]]  # a tiny model's answer: no TL, TR, BR, BL
    assert spanned_box(sliver) == [[64, 66], [66, 66], [66, 68], [64, 68]]


def test_a_star_polygon_scores_its_even_odd_region():
    """A self-intersecting polygon (the paper's "random star shapes") is invalid but drawn with the even-odd rule."""
    from brats_llm.conversations.parse import parse_answer
    from brats_llm.evaluate.llm import scored_answer, slice_scores
    from brats_llm.geometry.shapes import rasterize_polygon

    angles = np.arange(11) * 3 * 2 * np.pi / 11 - np.pi / 2  # an 11-pointed star {11/3}: 11 vertices, walked once
    star = [[round(32 + 25 * np.cos(a)), round(32 + 25 * np.sin(a))] for a in angles]
    parsed = parse_answer("polygon", json.dumps({"polygon": star}), (64, 64))
    assert parsed.status == "invalid_value" and parsed.detail == "not a simple polygon"
    answer = {"status": parsed.status, "prediction": parsed.value}
    mask = rasterize_polygon(star, (64, 64))
    assert 500 < mask.sum() < rasterize_polygon([[7, 7], [57, 7], [57, 57], [7, 57]], (64, 64)).sum()
    assert np.array_equal(scored_answer("polygon", answer, "drawn"), star) and scored_answer("polygon", answer, "empty") is None
    assert scored_answer("center", {"status": "invalid_value", "prediction": [70, 3]}, "drawn") is None
    drawn = slice_scores("polygon", [scored_answer("polygon", answer, "drawn")], [{"mask": mask}])[0]
    assert drawn["dice"] == 1.0


def test_invalid_shapes_param_is_checked():
    with pytest.raises(ValueError, match="invalid_shapes"):
        LlmEvalParams(invalid_shapes="clip")
