"""Benchmark: how well the tiny general model answers in format, by training length and model size.

Not a test. Run from the repository root (no pipeline outputs needed: it builds its own tiny model):

    python benchmarks/bench_general.py --steps 300 --hidden 32 [--json benchmarks/latest_general.json]

Builds the random tiny Mllama with ``tiny_model`` params (``--hidden`` and ``--layers`` changed), instruction-tunes it
as the ``general_model`` stage does (``--steps``, ``--lr``, ``--batch``), then answers ``--check`` held-out shape
chats per task and records the parse rate, the parser's reasons for the failures and a few answers per task.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rows", type=int, default=1000, help="chats per task")
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=2)
    parser.add_argument("--rope-theta", type=float, default=100.0)
    parser.add_argument("--check", type=int, default=32, help="held-out chats per task")
    parser.add_argument("--brain", type=int, default=32, help="demo test chats per task (data/conversations; 0 = none)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    from brats_llm.conversations.parse import parse_answer
    from brats_llm.conversations.prompts import TASKS
    from brats_llm.determinism import configure
    from brats_llm.llm.infer import generate, prompt_texts
    from brats_llm.llm.model import load_model
    from brats_llm.llm.tiny import TinyModelParams, build_tiny_model
    from brats_llm.train.general.shapes import shape_chats
    from brats_llm.train.general.stage import GeneralParams, _dataset, _fit

    params = GeneralParams(steps=args.steps, lr=args.lr, batch_size=args.batch, rows_per_task=args.rows)
    tiny = TinyModelParams(hidden_size=args.hidden, text_layers=args.layers, attention_heads=args.heads,
                           rope_theta=args.rope_theta)
    figures = {"date": time.strftime("%Y-%m-%d"), "general": dataclasses.asdict(params), "tiny": dataclasses.asdict(tiny)}
    with tempfile.TemporaryDirectory() as work:
        build_tiny_model(Path(work) / "tiny", tiny)
        configure(params.threads, params.seed)
        start = time.perf_counter()
        rows = shape_chats(params.rows_per_task, params.size, params.seed)
        figures["data_s"] = round(time.perf_counter() - start, 1)
        model, processor = load_model(str(Path(work) / "tiny"), for_training=True)
        start = time.perf_counter()
        trainer = _fit(model, processor, _dataset(rows), params, str(Path(work) / "fit"))
        figures["train_s"] = round(time.perf_counter() - start, 1)
        figures["losses"] = [round(e["loss"], 4) for e in trainer.state.log_history if "loss" in e]
    model.eval()
    held_out = shape_chats(args.check, params.size, params.seed + 1)
    figures["tasks"] = {}
    for task in TASKS:
        chosen = [row for row in held_out if row["task"] == task]
        answers = generate(model, processor, [row["images"][0] for row in chosen],
                           prompt_texts(processor, [row["messages"] for row in chosen]),
                           max_new_tokens=220 if task == "polygon" else 72)
        parsed = [parse_answer(task, text, (params.size, params.size)) for text in answers]
        figures["tasks"][task] = {"parse_rate": sum(p.status == "ok" for p in parsed) / len(parsed),
                                  "failures": dict(collections.Counter(p.detail for p in parsed if p.status != "ok")),
                                  "answers": answers[:3], "targets": [row["target"] for row in chosen[:3]]}
        print(task, json.dumps(figures["tasks"][task]), flush=True)
    print(json.dumps({task: v["parse_rate"] for task, v in figures["tasks"].items()}), "train_s", figures["train_s"])
    if args.brain:
        figures["brain"] = brain_parse_rates(model, processor, args.brain)
        print("brain", json.dumps({task: v["parse_rate"] for task, v in figures["brain"].items()}))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


def brain_parse_rates(model, processor, rows: int) -> dict:
    """Zero-shot answers to the first ``rows`` demo test chats per task (needs data/conversations from dvc repro)."""
    from datasets import load_from_disk

    from brats_llm.conversations.parse import parse_answer
    from brats_llm.conversations.prompts import TASKS
    from brats_llm.llm.infer import generate, prompt_texts

    found = {}
    for task in TASKS:
        chosen = load_from_disk(f"data/conversations/{task}")["test"].shuffle(seed=0, keep_in_memory=True).select(range(rows), keep_in_memory=True)
        answers = generate(model, processor, [row["images"][0] for row in chosen],
                           prompt_texts(processor, [row["messages"] for row in chosen]),
                           max_new_tokens=220 if task == "polygon" else 72)
        size = chosen[0]["images"][0].size[::-1]
        parsed = [parse_answer(task, text, size) for text in answers]
        found[task] = {"parse_rate": sum(p.status == "ok" for p in parsed) / len(parsed),
                       "failures": dict(collections.Counter(p.detail for p in parsed if p.status != "ok")),
                       "answers": answers[:3]}
    return found


if __name__ == "__main__":
    main()
