"""Benchmark of the prepare stage: throughput vs MONAI, and peak memory for 8 vs 64 cases.

Not a test. Run from the repository root after `pip install -e .[bench]`:

    python benchmarks/bench_prepare.py [--cases 16] [--small 8] [--large 64] [--work benchmarks/.work]

Targets (issue #2): >= 2x MONAI's throughput on 2 cores; RSS(64)/RSS(8) <= 1.2.
Throughput is timed in this process for both contenders (imports paid once, worker start-up
included). Peak RSS is the largest sum of resident memory over the prepare process and its workers,
sampled every 20 ms while `brats-llm prepare` runs as a subprocess.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil

from brats_llm.constants import IMAGE_SIZE, MODALITIES, N_SLICES
from brats_llm.ingest.demo import DemoParams, generate_demo
from brats_llm.ingest.layout import discover
from brats_llm.preprocess.volumes import PrepareParams, prepare


def cohort(work: Path, patients: int) -> Path:
    out = work / f"demo{patients}"
    if not (out / "name_mapping.csv").is_file():
        generate_demo(out, DemoParams(patients=patients, seed=99), progress=False)
    return out


def run_prepare(raw: Path, out: Path, workers: int) -> tuple[float, int]:
    """Seconds and peak tree RSS (bytes) of one `brats-llm prepare` subprocess."""
    shutil.rmtree(out, ignore_errors=True)
    exe = Path(sys.executable).parent / "brats-llm"
    start = time.perf_counter()
    process = psutil.Popen([str(exe), "prepare", str(raw), str(out), "--workers", str(workers)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = 0
    while process.poll() is None:
        try:
            tree = [process, *process.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.02)
    elapsed = time.perf_counter() - start
    if process.returncode != 0:
        raise RuntimeError(f"prepare failed with exit code {process.returncode}")
    return elapsed, peak


def time_prepare(raw: Path, out: Path, workers: int) -> float:
    """Seconds for `prepare` called in this process (imports already paid, as for MONAI)."""
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    prepare(raw, out, PrepareParams(), workers=workers, progress=False)
    return time.perf_counter() - start


def run_monai(raw: Path, workers: int) -> float:
    """Seconds for MONAI LoadImaged + EnsureChannelFirstd + ScaleIntensityd + Resized, all cases."""
    import torch
    from monai.data import DataLoader, Dataset
    from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, Resized, ScaleIntensityd

    torch.set_num_threads(1 if workers else os.cpu_count())
    keys = [*MODALITIES, "seg"]
    items = [dict(zip(keys, (*map(str, case.images), str(case.mask)))) for case in discover(raw).cases]
    transform = Compose([
        LoadImaged(keys=keys, image_only=True),
        EnsureChannelFirstd(keys=keys),
        ScaleIntensityd(keys=list(MODALITIES), minv=0.0, maxv=255.0),
        Resized(keys=list(MODALITIES), spatial_size=(IMAGE_SIZE, IMAGE_SIZE, N_SLICES), mode="area"),
        Resized(keys=["seg"], spatial_size=(IMAGE_SIZE, IMAGE_SIZE, N_SLICES), mode="nearest"),
    ])
    loader = DataLoader(Dataset(items, transform), batch_size=1, num_workers=workers)
    start = time.perf_counter()
    for batch in loader:
        assert batch["flair"].shape[-3:] == (IMAGE_SIZE, IMAGE_SIZE, N_SLICES)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=16, help="cases for the throughput comparison")
    parser.add_argument("--small", type=int, default=8)
    parser.add_argument("--large", type=int, default=64)
    parser.add_argument("--work", type=Path, default=Path("benchmarks/.work"))
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    cores = os.cpu_count()

    raw = cohort(args.work, args.cases)
    time_prepare(raw, args.work / "out", workers=1)  # warm the page cache for both contenders
    ours_1 = time_prepare(raw, args.work / "out", workers=1)
    ours = time_prepare(raw, args.work / "out", workers=0)
    monai_0 = run_monai(raw, workers=0)
    monai_n = run_monai(raw, workers=cores)
    figures = {
        "cores": cores,
        "cases": args.cases,
        "ours_cases_per_s": args.cases / ours,
        "ours_1_worker_cases_per_s": args.cases / ours_1,
        "monai_cases_per_s": args.cases / monai_0,
        "monai_workers_cases_per_s": args.cases / monai_n,
    }
    figures["speedup_vs_monai_same_workers"] = figures["ours_cases_per_s"] / figures["monai_workers_cases_per_s"]
    figures["speedup_vs_monai_single"] = figures["ours_cases_per_s"] / figures["monai_cases_per_s"]

    _, rss_small = run_prepare(cohort(args.work, args.small), args.work / "out", workers=0)
    _, rss_large = run_prepare(cohort(args.work, args.large), args.work / "out", workers=0)
    figures.update(rss_small_mib=rss_small / 2**20, rss_large_mib=rss_large / 2**20, rss_ratio=rss_large / rss_small)
    shutil.rmtree(args.work / "out", ignore_errors=True)

    print(f"prepare, {args.cases} cases on {cores} cores (incl. worker start-up and writing the dataset):")
    print(f"  brats-llm prepare ({cores} workers): {figures['ours_cases_per_s']:.2f} cases/s"
          f"  (1 worker: {figures['ours_1_worker_cases_per_s']:.2f})")
    print(f"  MONAI DataLoader ({cores} workers):  {figures['monai_workers_cases_per_s']:.2f} cases/s"
          f"  (0 workers: {figures['monai_cases_per_s']:.2f})")
    print(f"  speed-up vs MONAI, same workers: {figures['speedup_vs_monai_same_workers']:.2f}x (target >= 2x)")
    print(f"peak RSS, {args.small} vs {args.large} cases: {figures['rss_small_mib']:.0f} MiB vs "
          f"{figures['rss_large_mib']:.0f} MiB, ratio {figures['rss_ratio']:.2f} (target <= 1.2)")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
