"""`prepare.size` is honoured downstream: parsing, geometry, scoring, baselines and the report use the slice's own size."""

import dataclasses
import json

import numpy as np
import pytest

from brats_llm.conversations.build import keywords
from brats_llm.conversations.parse import INVALID_VALUE, OK, parse_answer
from brats_llm.conversations.prompts import answer_text
from brats_llm.geometry.shapes import rasterize_box, slice_geometry

SIZE = 96  #: the end-to-end cohort's prepare.size (not the paper's 128)
POLYGON_AT_150 = [[150, 40], [160, 45], [165, 55], [165, 65], [160, 75], [150, 80], [140, 75], [135, 65], [135, 55],
                  [140, 45]]


@pytest.mark.parametrize("task, text", [
    ("center", '{"center": [150, 10]}'),
    ("center", '{"center": [10, 150]}'),
    ("bbox", '{"bbox": [[100, 10], [150, 10], [150, 20], [100, 20]]}'),
    ("polygon", json.dumps({"polygon": POLYGON_AT_150})),
])
def test_a_coordinate_of_150_is_valid_on_224_and_invalid_on_128(task, text):
    assert parse_answer(task, text, (224, 224)).status == OK
    assert parse_answer(task, text, (128, 128)).status == INVALID_VALUE


def test_rows_and_columns_are_checked_apart_and_the_size_is_required():
    assert parse_answer("center", '{"center": [127, 94]}', (95, 128)).status == OK  # a 128 wide, 95 high slice
    assert parse_answer("center", '{"center": [94, 127]}', (95, 128)).status == INVALID_VALUE
    assert parse_answer("center", '{"center": [95.5, 3]}', (96, 96)).status == INVALID_VALUE  # past the last pixel
    for task in ("center", "bbox", "polygon"):
        with pytest.raises(ValueError, match="image shape"):
            parse_answer(task, '{"center": [1, 2]}')
    assert parse_answer("cls", '{"label": "HGG-1"}').value == 1  # classification has no coordinates


def test_size_words_and_polygon_points_follow_the_tumour_not_the_grid():
    """The same tumour at twice the size (every pixel a 2 x 2 block) gets the same words and vertex count."""
    small = np.zeros((128, 128), bool)
    small[30:50, 70:90] = True  # 400 pixels: "medium" on 128 x 128
    large = np.kron(small, np.ones((2, 2), bool))  # 1,600 pixels of 256 x 256
    assert keywords(1, small)[3] == keywords(1, large)[3] == "medium"
    assert len(slice_geometry(large).polygon) == len(slice_geometry(small).polygon) == 11


@pytest.fixture(scope="module")
def cohort(tiny_demo, tmp_path_factory):
    """The tiny demo cohort through every data stage at ``SIZE`` x ``SIZE`` and published locally."""
    from brats_llm.conversations.build import ConversationParams, build_conversations
    from brats_llm.geometry.stage import GeometryParams, build_geometry
    from brats_llm.preprocess.volumes import PrepareParams, prepare
    from brats_llm.publish.hub import PublishParams, publish
    from brats_llm.slices.slices import SlicesParams, build_slices
    from brats_llm.split.splits import SplitParams, split_volumes

    root = tmp_path_factory.mktemp(f"size{SIZE}")
    prepare(tiny_demo, root / "volumes", PrepareParams(slices=20, size=SIZE), workers=1, progress=False)
    split_volumes(root / "volumes", root / "splits.csv", SplitParams(test_fraction=0.3, folds=2))
    build_slices(root / "volumes", root / "splits.csv", root / "slices", SlicesParams(planes=("axial",)), progress=False)
    build_geometry(root / "slices", root / "geometry", GeometryParams(), progress=False)
    build_conversations(root / "slices", root / "geometry", root / "conversations", ConversationParams(), progress=False)
    publish(root / "volumes", root / "slices", root / "geometry", root / "conversations", root / "hub",
            root / "revision.json", PublishParams(), {}, "md5-test", synthetic=True)
    return root


def test_geometry_and_prompts_use_the_prepared_size(cohort):
    from brats_llm.conversations.build import load_conversations
    from brats_llm.publish.pinned import load_published

    geometry = load_published(cohort / "revision.json", "geometry")["train"]
    slices = load_published(cohort / "revision.json", "slices")["train"]
    masks = {(s["patient_id"], s["slice_index"]): np.asarray(s["mask"]) > 0 for s in slices.remove_columns("image")}
    assert {m.shape for m in masks.values()} == {(SIZE, SIZE)}
    for g in geometry.remove_columns("image"):
        ys, xs = np.nonzero(masks[(g["patient_id"], g["slice_index"])])
        assert g["bbox"][0] == [xs.min(), ys.min()] and g["bbox"][2] == [xs.max(), ys.max()]
        assert all(0 <= x <= SIZE - 1 and 0 <= y <= SIZE - 1 for x, y in g["polygon"])
    for task in ("center", "bbox", "polygon"):
        test = load_conversations(cohort / "conversations", task)["test"]
        for images, messages in zip(test["images"], test["messages"]):
            assert images[0].size == (SIZE, SIZE)
            assert f"{SIZE} x {SIZE} pixels" in messages[0]["content"][1]["text"]
            answer = messages[1]["content"][0]["text"]
            assert parse_answer(task, answer, (images[0].height, images[0].width)).status == OK


def _run(folder, task, rows):
    """A saved llm-infer run."""
    from brats_llm.llm.infer import InferParams

    folder.mkdir(parents=True)
    (folder / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    run = {"task": task, "model": "models/tiny-mllama", "smoke_model": True, "adapter": None, "adapter_record": None,
           "dataset": {"revision": "r", "split": "test", "config": f"conversations-{task}"}, "prompt_version": "v",
           "params": dataclasses.asdict(InferParams()), "rows": len(rows), "status": {}}
    (folder / "run.json").write_text(json.dumps(run))


def _answers(task, truth_rows):
    """Every slice answered with its truth, except slice 0: its truth moved right to x = 100 (inside the old 128
    grid, outside the 96 one), and slice 1: no answer. Status and prediction as llm-infer recorded them when it
    parsed on the hard-wired 128 grid (slice 0 "ok")."""
    rows = []
    for i, g in enumerate(truth_rows):
        points = np.asarray([g[task]] if task == "center" else g[task], dtype=float)
        if i == 0:
            points[:, 0] += 100 - points[:, 0].max()
        value = points[0].tolist() if task == "center" else points.tolist()
        response = "no idea" if i == 1 else answer_text(task, value)
        status, prediction = ("format_error", None) if i == 1 else ("ok", json.loads(response)[task])
        rows.append({"patient_id": g["patient_id"], "grade": g["grade"], "plane": "axial", "slice_index": g["slice_index"],
                     "response": response, "status": status, "prediction": prediction, "detail": ""})
    return rows


def _patient_mean(truth_rows, per_slice):
    """Mean over patients of the mean over their slices."""
    groups = {}
    for g, value in zip(truth_rows, per_slice):
        groups.setdefault(g["patient_id"], []).append(value)
    return float(np.mean([np.mean(v) for v in groups.values()]))


def test_scoring_baselines_and_report_at_96(cohort, tmp_path):
    from brats_llm.evaluate.llm import LlmEvalParams, evaluate_llm, region_mask
    from brats_llm.metrics.segmentation import hd95
    from brats_llm.publish.pinned import load_published
    from brats_llm.report.build import ReportParams, build_report

    revision = cohort / "revision.json"
    truth_rows = [g for g in load_published(revision, "geometry")["train"].remove_columns("image") if g["split"] == "test"]
    masks = {(s["patient_id"], s["slice_index"]): np.asarray(s["mask"]) > 0
             for s in load_published(revision, "slices")["train"].remove_columns("image")}
    truth_masks = [masks[(g["patient_id"], g["slice_index"])] for g in truth_rows]
    assert len(truth_rows) >= 3
    diagonal = float(np.hypot(SIZE, SIZE))  # what a failed answer costs on the 96 x 96 slice
    models = tmp_path / "models"
    for task in ("center", "bbox", "polygon"):
        rows = _answers(task, truth_rows)
        _run(tmp_path / "pred" / task, task, rows)
        out = models / "evaluate_llm" / "zeroshot" / task
        result = evaluate_llm(task, tmp_path / "pred" / task, revision, out, LlmEvalParams(bootstrap=20, examples=1))["test"]
        assert result["slices"]["invalid_value"] == 1 and result["slices"]["format_error"] == 1  # x = 100: not on 96 x 96
        assert result["slices"]["ok"] == len(rows) - 2 and result["oracle"]["unparsable"] == 0
        assert (result["truth"]["image_height"], result["truth"]["image_width"]) == (SIZE, SIZE)
        if task == "center":  # failed answers cost the diagonal (p95 per patient), normalised by 96
            p95 = {}
            for i, g in enumerate(truth_rows):
                p95.setdefault(g["patient_id"], []).append(diagonal if i < 2 else 0.0)
            expected = float(np.mean([np.percentile(v, 95) for v in p95.values()]))
            assert result["p95_center_distance"] == pytest.approx(expected)
            assert result["p95_center_distance_norm"] == pytest.approx(expected / SIZE)
            inside = [g["bbox"][0][0] <= 47.5 <= g["bbox"][2][0] and g["bbox"][0][1] <= 47.5 <= g["bbox"][2][1] for g in truth_rows]
            assert result["baseline_image_center"]["in_box"] == pytest.approx(_patient_mean(truth_rows, inside))
            continue
        per_slice = [diagonal if i < 2 else hd95(region_mask(task, r["prediction"], m.shape), m)
                     for i, (r, m) in enumerate(zip(rows, truth_masks))]
        assert result["hd95"] == pytest.approx(_patient_mean(truth_rows, per_slice))
        fixed = np.zeros((SIZE, SIZE), bool)
        fixed[24:72, 24:72] = True  # half of each side, centred on the 96 grid
        assert result["baseline_fixed_centered_box"]["hd95"] == pytest.approx(
            _patient_mean(truth_rows, [hd95(fixed, m) for m in truth_masks]))
    build_report(models, tmp_path / "report", ReportParams())
    text = (tmp_path / "report" / "report.md").read_text()
    assert f"Slices are {SIZE} x {SIZE} pixels" in text and "128 x 128 slice" not in text
