"""Full-size benchmark: the data stages on a synthetic cohort of BraTS 2020's size, one stage at a time.

Not a test. Run from the repository root (about 17 minutes at 369 patients on 2 cores):

    python benchmarks/bench_scale.py [--patients 369] [--small 20] [--rows 64] [--json benchmarks/latest_scale.json]

Runs demo -> prepare -> split -> slices -> geometry -> conversations -> publish as `brats-llm`
subprocesses in a scratch folder (params.yaml of the repository with demo.patients changed), and
records per stage wall time, CPU time, peak RSS (process tree) and disk. Then evaluate-cnn --task seg
(after a one-epoch segmenter) at --small and at --patients patients, and tiny-model inference rows/s
at 1 and 2 ranks (torchrun). Goals (issue: full BraTS scale): data stages <= 10 minutes wall in all,
every stage's peak RSS <= 2 GB, evaluate-cnn's RSS at 369 patients <= 1.5x its RSS at 20.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import time
from pathlib import Path

import yaml
from measure import disk_mb, run_measured

EXE = str(Path(sys.executable).parent / "brats-llm")
DATA_STAGES = [  # (name, arguments, outputs)
    ("demo", ["demo", "raw"], ["raw"]),
    ("prepare", ["prepare", "raw", "volumes", "--report", "prepare_report.json"], ["volumes"]),
    ("split", ["split", "volumes", "splits.csv"], ["splits.csv"]),
    ("slices", ["slices", "volumes", "splits.csv", "slices"], ["slices"]),
    ("geometry", ["geometry", "slices", "geometry"], ["geometry"]),
    ("conversations", ["conversations", "slices", "geometry", "conversations"], ["conversations"]),
    ("publish", ["publish", "volumes", "slices", "geometry", "conversations", "hub", "hub_revision.json"], ["hub"]),
]


def scratch(root: Path, patients: int, params_file: Path) -> Path:
    """A fresh folder with params.yaml (demo.patients set; one training epoch)."""
    folder = root / f"cohort{patients}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    params = yaml.safe_load(params_file.read_text())
    params["demo"]["patients"] = patients
    # split needs >= folds (5) patients of each grade outside the test set: a small cohort gets
    # enough LGG (7 of 20; a 369-patient cohort keeps params.yaml's fraction).
    params["demo"]["lgg_fraction"] = max(params["demo"]["lgg_fraction"], min(0.5, 7 / patients))
    params["prepare"]["raw_dir"] = "raw"
    params["train_seg"].update(epochs=1, checkpoint_every=1)
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return folder


def stage(folder: Path, name: str, args: list[str], outputs: list[str]) -> dict:
    figures = run_measured([EXE, *args], cwd=folder, log=folder / f"{name}.log")
    figures["disk_mb"] = disk_mb(*(folder / o for o in outputs))
    print(f"  {name}: {json.dumps(figures)}", flush=True)
    return {"stage": name, **figures}


def data_stages(folder: Path, upto: str | None = None) -> list[dict]:
    rows = []
    for name, args, outputs in DATA_STAGES:
        rows.append(stage(folder, name, args, outputs))
        if name == upto:
            break
    return rows


def evaluate_seg(folder: Path) -> dict:
    """Peak RSS of evaluate-cnn --task seg after a one-epoch segmenter."""
    stage(folder, "train_seg", ["train-cnn", "--task", "seg", "volumes", "splits.csv", "cnn_seg"], ["cnn_seg"])
    return stage(folder, "evaluate_seg", ["evaluate-cnn", "--task", "seg", "volumes", "splits.csv", "cnn_seg", "eval_seg"],
                 ["eval_seg"])


def inference(folder: Path, rows: int) -> dict:
    """Tiny-model cls inference rows/s at 1 and 2 ranks (torchrun, gloo)."""
    stage(folder, "tiny_model", ["tiny-model", "tiny"], ["tiny"])
    result = {}
    for ranks in (1, 2):
        out = f"infer{ranks}"
        command = ["infer", "llm-infer", "--task", "cls", "--model", "tiny", "--max-rows", str(rows), "hub_revision.json", out]
        prefix = [] if ranks == 1 else [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(ranks),
                                       "--master_port", "29577"]
        figures = run_measured([*prefix, EXE, *command[1:]], cwd=folder, log=folder / f"{out}.log")
        run = json.loads((folder / out / "run.json").read_text())
        result[f"ranks_{ranks}"] = {**figures, "rows": run["rows"], "rows_per_s": round(run["rows"] / figures["wall_s"], 2),
                                    "world_size": run.get("world_size", 1)}
        print(f"  inference {ranks} rank(s): {json.dumps(result[f'ranks_{ranks}'])}", flush=True)
    same = (folder / "infer1" / "predictions.jsonl").read_bytes() == (folder / "infer2" / "predictions.jsonl").read_bytes()
    result["identical_predictions"] = same
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=369, help="cohort size (BraTS 2020: 369; 2023: 1251)")
    parser.add_argument("--small", type=int, default=20, help="small cohort for the evaluate-cnn RSS ratio")
    parser.add_argument("--rows", type=int, default=64, help="inference rows at 1 and 2 ranks")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--work", type=Path, default=Path("benchmarks/.work/scale"))
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    figures: dict = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, {psutil_cpus()} cores",
                     "patients": args.patients}
    print(f"small cohort ({args.small} patients):", flush=True)
    small = scratch(args.work.resolve(), args.small, args.params)
    data_stages(small, upto="split")
    figures["evaluate_seg_small"] = evaluate_seg(small)
    print(f"full cohort ({args.patients} patients):", flush=True)
    full = scratch(args.work.resolve(), args.patients, args.params)
    figures["stages"] = data_stages(full)
    figures["evaluate_seg_full"] = evaluate_seg(full)
    figures["inference"] = inference(full, args.rows)
    stages = figures["stages"]
    figures["data_stages_wall_s"] = round(sum(s["wall_s"] for s in stages), 1)
    figures["max_stage_rss_mb"] = max(s["peak_rss_mb"] for s in stages + [figures["evaluate_seg_full"]])
    # RSS counts the pages of memory-mapped Arrow files a stage reads (page cache, reclaimable);
    # the anonymous part is the memory the stage itself holds.
    figures["max_stage_anon_mb"] = max(s["peak_anon_mb"] for s in stages + [figures["evaluate_seg_full"]])
    figures["evaluate_seg_rss_ratio"] = round(figures["evaluate_seg_full"]["peak_rss_mb"] / figures["evaluate_seg_small"]["peak_rss_mb"], 2)
    figures["goals"] = {"data_stages_wall_s <= 600": figures["data_stages_wall_s"] <= 600,
                        "max_stage_rss_mb <= 2048": figures["max_stage_rss_mb"] <= 2048,
                        "evaluate_seg_rss_ratio <= 1.5": figures["evaluate_seg_rss_ratio"] <= 1.5}
    print(json.dumps({k: figures[k] for k in ("data_stages_wall_s", "max_stage_rss_mb", "max_stage_anon_mb",
                                              "evaluate_seg_rss_ratio", "goals")}, indent=2))
    print(f"inference: identical predictions at 1 and 2 ranks: {figures['inference']['identical_predictions']}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")


def psutil_cpus() -> int:
    import psutil

    return psutil.cpu_count() or 0


if __name__ == "__main__":
    main()
