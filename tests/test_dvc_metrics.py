"""`dvc metrics show` fits a terminal: the metrics files hold a few flat, documented headline keys; details are outs."""

import json
import re
from pathlib import Path

import yaml

from brats_llm.evaluate.cnn import ClsEvalParams, SegEvalParams, evaluate_cnn
from brats_llm.evaluate.llm import LlmEvalParams, evaluate_llm
from brats_llm.llm.consistency import ConsistencyParams, consistency
from brats_llm.publish.pinned import load_published
from brats_llm.split.splits import SplitParams, details_file, split_volumes
from brats_llm.train.cnn.trainer import CnnTrainParams, train_cnn

ROOT = Path(__file__).resolve().parents[1]
#: DVC's table has one column per distinct key over all metrics files: at most this many.
MAX_KEYS = 10


def llm_predictions(published, folder, task):
    """Every test slice answered with its own truth, in llm-infer's layout."""
    rows = [g for g in load_published(published, "geometry")["train"].remove_columns("image") if g["split"] == "test"]
    folder.mkdir(parents=True)
    answers = [{"patient_id": g["patient_id"], "grade": g["grade"], "slice_index": g["slice_index"], "plane": "axial",
                "status": "ok", "prediction": g["label"] if task == "cls" else g[task], "target": g["label"], "p_hgg": None}
               for g in rows]
    (folder / "predictions.jsonl").write_text("".join(json.dumps(a) + "\n" for a in answers))
    (folder / "run.json").write_text(json.dumps({"task": task, "dataset": {"split": "test"}, "model": "m"}))


def documented_keys() -> set[str]:
    section = (ROOT / "docs" / "report.md").read_text().split("## Metrics files")[1].split("\n## ")[0]
    return set(re.findall(r"^\| `(\w+)` \|", section, flags=re.MULTILINE))


def test_headline_keys_are_few_flat_and_documented(prepared, published, tiny_model, tmp_path):
    """Every writer of a DVC metrics file run on the tiny cohort: the union of their keys stays small."""
    files = [tmp_path / "split_summary.json"]
    split_volumes(prepared / "volumes", tmp_path / "splits.csv", SplitParams(test_fraction=0.3, folds=2), files[0])
    for task, params in (("cls", ClsEvalParams(bootstrap=10)), ("seg", SegEvalParams(bootstrap=10, overlays=0))):
        train_cnn(task, prepared / "volumes", prepared / "splits.csv", tmp_path / f"cnn_{task}",
                  CnnTrainParams(epochs=1, batch_size=2, downsample=2), progress=False)
        evaluate_cnn(task, prepared / "volumes", prepared / "splits.csv", tmp_path / f"cnn_{task}", tmp_path / task, params)
        files.append(tmp_path / task / "metrics.json")
    for task in ("cls", "center", "bbox", "polygon"):
        llm_predictions(published, tmp_path / "pred" / task, task)
        evaluate_llm(task, tmp_path / "pred" / task, published, tmp_path / "llm" / task, LlmEvalParams(bootstrap=10))
        files.append(tmp_path / "llm" / task / "metrics.json")
    consistency(published, tmp_path / "consistency", str(tiny_model), ConsistencyParams(repeats=2, max_new_tokens=6),
                adapters={"general": None}, progress=False)
    files.append(tmp_path / "consistency" / "metrics.json")
    keys: set[str] = set()
    for path in files:
        headline = json.loads(path.read_text())
        assert all(value is None or isinstance(value, (int, float)) for value in headline.values()), path  # flat numbers
        assert (details_file(path) if path == files[0] else path.with_name("details.json")).is_file(), path
        keys |= set(headline)
    assert len(keys) <= MAX_KEYS, sorted(keys)
    assert keys <= documented_keys(), sorted(keys - documented_keys())


def test_details_are_uncached_outs_beside_each_metrics_file():
    """dvc.yaml: details.json beside every metrics file is an out with cache: false, never a metric."""
    for name, stage in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"].items():
        metrics = [next(iter(entry)) for entry in stage.get("metrics", [])]
        outs = {next(iter(entry)): entry[next(iter(entry))] for entry in stage.get("outs", []) if isinstance(entry, dict)}
        for path in metrics:
            details = str(details_file(path) if name == "split" else Path(path).with_name("details.json"))
            assert outs.get(details) == {"cache": False}, (name, details)
            assert not any("details" in other for other in metrics), name
