"""`dvc metrics show` fits a terminal: the metrics files hold a few flat, documented headline keys; details are outs."""

import json
import re
from pathlib import Path

import yaml

from brats_llm.evaluate.cnn import ClsEvalParams, SegEvalParams, evaluate_cnn
from brats_llm.evaluate.consistency import consistency
from brats_llm.evaluate.llm import LlmEvalParams, evaluate_llm
from brats_llm.evaluate.write import HEADLINE_KEYS
from brats_llm.llm.consistency import ConsistencyParams
from brats_llm.publish.pinned import load_published
from brats_llm.split.splits import SplitParams, details_file, split_volumes
from brats_llm.train.cnn.trainer import CnnTrainParams, train_cnn

ROOT = Path(__file__).resolve().parents[1]
#: DVC's table has one column per distinct key over all metrics files: at most this many (names say what they
#: measure, so stages that measure different things use different columns: docs/metrics.md).
MAX_KEYS = 17


def llm_predictions(published, folder, task):
    """Every test slice answered with its own truth, in llm-infer's layout."""
    rows = [g for g in load_published(published, "geometry")["train"].remove_columns("image") if g["split"] == "test"]
    folder.mkdir(parents=True)
    answers = [{"patient_id": g["patient_id"], "grade": g["grade"], "slice_index": g["slice_index"], "plane": "axial",
                "status": "ok", "prediction": g["label"] if task == "cls" else g[task], "target": g["label"], "p_hgg": None}
               for g in rows]
    (folder / "predictions.jsonl").write_text("".join(json.dumps(a) + "\n" for a in answers))
    (folder / "run.json").write_text(json.dumps({"task": task, "dataset": {"split": "test"}, "model": "m"}))


def documented_keys() -> list[str]:
    """The keys of docs/metrics.md's key table, in order (the file table's rows name paths, never match)."""
    return re.findall(r"^\| `(\w+)` \|", (ROOT / "docs" / "metrics.md").read_text(), flags=re.MULTILINE)


def test_every_headline_key_is_documented_once():
    keys = documented_keys()
    assert len(keys) == len(set(keys)), sorted(k for k in keys if keys.count(k) > 1)
    written = {key for keys in HEADLINE_KEYS.values() for key in keys} | {"n", "n_trainval"}  # + split's headline
    assert set(keys) == written, sorted(set(keys) ^ written)


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
    assert keys <= set(documented_keys()), sorted(keys - set(documented_keys()))


def test_details_are_uncached_outs_beside_each_metrics_file():
    """dvc.yaml: details.json beside every metrics file is an out with cache: false, never a metric."""
    for name, definition in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"].items():
        stage = definition.get("do", definition)  # foreach stages: their template
        metrics = [next(iter(entry)) for entry in stage.get("metrics", [])]
        outs = {next(iter(entry)): entry[next(iter(entry))] for entry in stage.get("outs", []) if isinstance(entry, dict)}
        for path in metrics:
            details = str(details_file(path) if name == "split" else Path(path).with_name("details.json"))
            assert outs.get(details) == {"cache": False}, (name, details)
            assert not any("details" in other for other in metrics), name
