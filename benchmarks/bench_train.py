"""Benchmark of one CNN training epoch: time in data loading (batch assembly, augmentation) vs compute.

Not a test. Run from the repository root after `dvc repro prepare split`:

    python benchmarks/bench_train.py [--volumes data/volumes] [--splits data/splits.csv]

Target (issue #4): data loading <= 10% of step time. Reports the demo preset (downsample 4)
and the paper's full-resolution input (downsample 1, batch 16 for cls) for both tasks, plus the
one-off time to load a fold into memory.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from brats_llm.train.cnn.data import fold_patients, load_split
from brats_llm.train.cnn.trainer import CnnTrainParams, train_cnn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--volumes", type=Path, default=Path("data/volumes"))
    parser.add_argument("--splits", type=Path, default=Path("data/splits.csv"))
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    members = fold_patients(args.splits, 0)
    start = time.perf_counter()
    load_split(args.volumes, members["train"] + members["validation"], 1, progress=False)
    load_s = time.perf_counter() - start
    print(f"load fold 0 into memory (full resolution, {len(members['train']) + len(members['validation'])} patients): {load_s:.2f} s")

    figures = {"load_fold_s": load_s, "runs": []}
    # (task, downsample, batch, augment): the demo preset, then the paper's input (no augmentation).
    configs = [("cls", 4, 8, True), ("seg", 4, 4, True), ("cls", 1, 16, False), ("seg", 1, 4, False)]
    for task, factor, batch, augment in configs:
        params = CnnTrainParams(epochs=1, downsample=factor, batch_size=batch, augment=augment)
        with tempfile.TemporaryDirectory() as tmp:
            (summary,) = train_cnn(task, args.volumes, args.splits, tmp, params, progress=False)
        total = summary["data_s"] + summary["compute_s"]
        share = summary["data_s"] / total
        figures["runs"].append({"task": task, "downsample": factor, "batch_size": batch, "augment": augment,
                                **summary, "data_share": share})
        print(f"{task} downsample {factor} batch {batch} augment {augment}: epoch steps {total:.2f} s, data loading "
              f"{summary['data_s']:.3f} s = {100 * share:.1f}% (target <= 10%)")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
