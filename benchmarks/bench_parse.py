"""Benchmark: parse_answer time vs answer length for adversarial shapes (it must stay linear).

Not a test. Run from the repository root (no data needed):

    python benchmarks/bench_parse.py [--max-mb 10] [--json benchmarks/latest_parse.json]

Target (parse totality issue): 1 MB of any shape in well under a second; time per MB roughly constant
from 1 KB to 10 MB (the old parser retried json decoding from every "{" and took minutes on 10 MB).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

from brats_llm.conversations.parse import parse_answer

SHAPES = {
    "open-brace": "{",  # unbalanced "{" runs
    "open-bracket": "{[",  # one object level per array level
    "quote": '{"',  # string boundaries flip on every character
    "mixed": '{["',
    "quote-brace": '"{',  # a "{" inside every string: rescans
    "nest": '{"a":',  # deep, never closed
    "bad-pairs": '{"a"} ',  # many balanced candidates that fail to decode
    "prose+answer": 'lorem ipsum dolor sit amet {x} "y" ',  # realistic junk, answer at the end
}
ANSWER = ('{"polygon": [[10, 10], [20, 10], [30, 15], [35, 25], [30, 35], [20, 40], [10, 35], [5, 25], '
          '[6, 15], [8, 12]]}')


def best_time(text: str, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        parse_answer("polygon", text)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-mb", type=float, default=10.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    sizes = [s for s in (1_000, 10_000, 100_000, 1_000_000, 10_000_000) if s <= args.max_mb * 1_000_000]
    results = {}
    for name, unit in SHAPES.items():
        rows = []
        for size in sizes:
            text = unit * (size // len(unit))
            if name == "prose+answer":
                text += ANSWER
            seconds = best_time(text, repeats=3 if size <= 1_000_000 else 1)
            rows.append({"chars": len(text), "seconds": seconds, "us_per_kchar": seconds / len(text) * 1e9})
            print(f"{name:13s} {len(text):>10,d} chars  {seconds * 1e3:9.2f} ms  "
                  f"{rows[-1]['us_per_kchar']:7.1f} us/1000 chars")
        results[name] = rows
    worst_1mb = max(r["seconds"] for rows in results.values() for r in rows if 1_000_000 <= r["chars"] < 2_000_000)
    print(f"worst 1 MB: {worst_1mb:.3f} s (target well under 1 s)")
    if args.json:
        args.json.write_text(json.dumps({"python": platform.python_version(), "worst_1mb_seconds": worst_1mb,
                                         "shapes": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
