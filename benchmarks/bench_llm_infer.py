"""Benchmark: batched vs one-at-a-time greedy generation with the tiny Mllama on CPU.

Not a test. Run from the repository root after `dvc repro publish tiny_model`:

    python benchmarks/bench_llm_infer.py [--model models/tiny-mllama] [--rows 64] [--batch-size 16]

Target (issue #5): batched inference >= 3x the throughput of batch size 1. Both runs decode the
same slices with the same settings; the answers are checked to be identical, so the speed-up is
not bought with different outputs.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from brats_llm.llm.infer import generate, prompt_texts
from brats_llm.llm.model import load_model
from brats_llm.publish.pinned import load_published


def timed(model, processor, images, prompts, batch_size: int, max_new_tokens: int) -> tuple[float, list[str]]:
    answers: list[str] = []
    start = time.perf_counter()
    for i in range(0, len(images), batch_size):
        answers += generate(model, processor, images[i:i + batch_size], prompts[i:i + batch_size],
                            max_new_tokens=max_new_tokens)
    return time.perf_counter() - start, answers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="models/tiny-mllama")
    parser.add_argument("--revision-file", type=Path, default=Path("data/hub_revision.json"))
    parser.add_argument("--task", default="bbox")
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.manual_seed(0)
    rows = load_published(args.revision_file, f"conversations-{args.task}")["test"]
    rows = rows.select(range(min(args.rows, len(rows))))
    model, processor = load_model(args.model)
    images = [r[0].convert("RGB") for r in rows["images"]]
    prompts = prompt_texts(processor, rows["messages"])
    timed(model, processor, images[:2], prompts[:2], 2, 4)  # warm-up
    single_s, single = timed(model, processor, images, prompts, 1, args.max_new_tokens)
    batched_s, batched = timed(model, processor, images, prompts, args.batch_size, args.max_new_tokens)
    speedup = single_s / batched_s
    result = {"model": args.model, "task": args.task, "rows": len(images), "max_new_tokens": args.max_new_tokens,
              "batch_size": args.batch_size, "single_rows_per_s": round(len(images) / single_s, 2),
              "batched_rows_per_s": round(len(images) / batched_s, 2), "speedup": round(speedup, 2),
              "same_answers": single == batched, "threads": torch.get_num_threads(), "machine": platform.machine(),
              "target": ">= 3x"}
    print(f"{len(images)} {args.task} slices, {args.max_new_tokens} new tokens: batch 1 {result['single_rows_per_s']}/s, "
          f"batch {args.batch_size} {result['batched_rows_per_s']}/s = {speedup:.1f}x (target >= 3x); "
          f"identical answers: {result['same_answers']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
