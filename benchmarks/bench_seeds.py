"""Benchmark: is the demo CNN training robust, or lucky? Train both demo CNNs with several seeds.

Not a test. Run from the repository root after `dvc repro split` (needs data/volumes, data/splits.csv):

    python benchmarks/bench_seeds.py [--seeds 2020 1 2] [--json benchmarks/latest_seeds.json]

Uses the train_cls / train_seg / evaluate_* sections of params.yaml with only the seed changed and
records each seed's test AUC (classifier) and test Dice (segmenter). Goals (safety issue): segmenter
test Dice spread (max - min) <= 0.05 and classifier test AUC >= 0.9 for every seed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import tempfile
import time
from pathlib import Path

from brats_llm.config import load_section
from brats_llm.evaluate.cnn import ClsEvalParams, SegEvalParams, evaluate_cnn
from brats_llm.train.cnn.trainer import CnnTrainParams, SegTrainParams, train_cnn

METRIC = {"cls": "auc", "seg": "dice"}


def run_seed(task: str, seed: int, args: argparse.Namespace) -> dict:
    params = (SegTrainParams if task == "seg" else CnnTrainParams)(**{**load_section(args.params, f"train_{task}"), "seed": seed})
    evaluation = (ClsEvalParams if task == "cls" else SegEvalParams)(
        **{**load_section(args.params, f"evaluate_{task}"), "bootstrap": 10, **({"overlays": 0} if task == "seg" else {})})
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        (summary,) = train_cnn(task, args.volumes, args.splits, Path(tmp) / "model", params, progress=False)
        results = evaluate_cnn(task, args.volumes, args.splits, Path(tmp) / "model", Path(tmp) / "eval", evaluation)
    return {"task": task, "seed": seed, "best_epoch": summary["best_epoch"], "wall_s": round(time.perf_counter() - start, 1),
            "validation": results["validation"][METRIC[task]], "test": results["test"][METRIC[task]],
            **({"threshold": results.get("threshold")} if task == "seg" else {})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--volumes", type=Path, default=Path("data/volumes"))
    parser.add_argument("--splits", type=Path, default=Path("data/splits.csv"))
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[2020, 1, 2])
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    runs = []
    for task in ("cls", "seg"):
        for seed in args.seeds:
            runs.append(run_seed(task, seed, args))
            print(json.dumps(runs[-1]), flush=True)
    tests = {task: [r["test"] for r in runs if r["task"] == task] for task in ("cls", "seg")}
    figures = {
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}", "date": time.strftime("%Y-%m-%d"),
        "params": {task: dataclasses.asdict((SegTrainParams if task == "seg" else CnnTrainParams)(**load_section(args.params, f"train_{task}"))) for task in ("cls", "seg")},
        "runs": runs,
        "cls_test_auc_min": min(tests["cls"]), "seg_test_dice_spread": max(tests["seg"]) - min(tests["seg"]),
        "goals": {"cls_test_auc_min": ">= 0.9", "seg_test_dice_spread": "<= 0.05"},
    }
    figures["goals_met"] = figures["cls_test_auc_min"] >= 0.9 and figures["seg_test_dice_spread"] <= 0.05
    print(f"classifier test AUC per seed {tests['cls']} (min {figures['cls_test_auc_min']:.3f}, goal >= 0.9); "
          f"segmenter test Dice per seed {tests['seg']} (spread {figures['seg_test_dice_spread']:.3f}, goal <= 0.05)")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
