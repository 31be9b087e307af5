"""Benchmark: random access to the slices dataset (row read + PNG decode to a numpy array).

Not a test. Run from the repository root after `dvc repro slices`:

    python benchmarks/bench_slices.py [--slices data/slices] [--reads 5000]

Target (issue #3): >= 1,000 random slices per second on this machine.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from brats_llm.slices.slices import load_slices


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slices", type=Path, default=Path("data/slices"))
    parser.add_argument("--reads", type=int, default=5000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    dataset = load_slices(args.slices)
    order = np.random.default_rng(0).integers(0, len(dataset), args.reads)
    dataset[0]  # open the memory map
    start = time.perf_counter()
    pixels = 0
    for index in order:
        row = dataset[int(index)]
        image, mask = np.asarray(row["image"]), np.asarray(row["mask"])
        pixels += image.size + mask.size
    elapsed = time.perf_counter() - start
    rate = args.reads / elapsed
    print(f"{args.reads} random reads of {len(dataset)} slices ({image.shape} image + mask, decoded): "
          f"{rate:.0f} slices/s, {pixels / elapsed / 1e6:.1f} M pixels/s (target >= 1000 slices/s)")
    if args.json:
        args.json.write_text(json.dumps({"reads": args.reads, "rows": len(dataset), "slices_per_s": rate}, indent=2) + "\n")


if __name__ == "__main__":
    main()
