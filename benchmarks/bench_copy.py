"""Benchmark: does the tiny model copy box corners? Teacher-forced accuracy per coordinate of the box answer.

Not a test. Run from the repository root (builds its own tiny model; no pipeline outputs needed):

    python benchmarks/bench_copy.py --steps 150 [--init aligned] [--json benchmarks/latest_copy.json]

A box answer ``{"bbox": [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]}`` holds four new coordinates (x0, y0, x1, y1:
read from the image) and four copies of them (the corners repeat each one). Trains the random tiny Mllama on
generic-shape box chats only (the general model's data and loop, ``--steps`` at batch 8), then reports on held-out
shape chats the argmax accuracy at each coordinate under teacher forcing (copies: the later occurrence) and the
greedy answers' parse rate. ``--init aligned`` starts the output layer as a copy of the input embedding (an identity
path from a token to its own logit) instead of an independent random matrix.
"""

from __future__ import annotations

import argparse
import collections
import json
import tempfile
import time
from pathlib import Path

#: Answer positions (index among the labelled tokens) of the box's coordinates, and what each one is.
COORDINATES = {4: "x0", 7: "y0", 10: "x1", 13: "y0 (copy)", 16: "x1 (copy)", 19: "y1", 22: "x0 (copy)", 25: "y1 (copy)"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--init", choices=["random", "aligned"], default="random")
    parser.add_argument("--check", type=int, default=32, help="held-out box chats")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    import torch

    from brats_llm.conversations.parse import parse_answer
    from brats_llm.determinism import configure
    from brats_llm.llm.infer import generate, prompt_texts
    from brats_llm.llm.model import load_model, model_family
    from brats_llm.llm.tiny import TinyModelParams, build_tiny_model
    from brats_llm.train.general.shapes import shape_chats
    from brats_llm.train.general.stage import GeneralParams, _dataset, _fit
    from brats_llm.train.llm.collator import IGNORE_INDEX, VisionChatCollator

    params = GeneralParams(steps=args.steps)
    figures = {"date": time.strftime("%Y-%m-%d"), "steps": args.steps, "batch_size": params.batch_size, "lr": params.lr,
               "init": args.init}
    with tempfile.TemporaryDirectory() as work:
        model_dir = build_tiny_model(Path(work) / "tiny", TinyModelParams())
        configure(params.threads, params.seed)
        model, processor = load_model(str(model_dir), for_training=True)
        if args.init == "aligned":
            with torch.no_grad():
                head = model.lm_head.weight
                head.copy_(model.get_input_embeddings().weight[: head.shape[0]])
        rows = [row for row in shape_chats(params.rows_per_task, params.size, params.seed) if row["task"] == "bbox"]
        start = time.perf_counter()
        trainer = _fit(model, processor, _dataset(rows), params, str(Path(work) / "fit"))
        figures["train_s"] = round(time.perf_counter() - start, 1)
        losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
        figures["loss_last_10"] = round(sum(losses[-10:]) / max(len(losses[-10:]), 1), 4)
        model.eval()
        collator = VisionChatCollator(processor, model_family(str(model_dir)))
        held = [row for row in shape_chats(8 * args.check, params.size, params.seed + 1) if row["task"] == "bbox"][: args.check]
        right = collections.Counter()
        for i in range(0, len(held), 8):
            batch = collator(held[i : i + 8])
            labels = batch.pop("labels")[:, 1:]
            with torch.no_grad():
                predicted = model(**batch, use_cache=False).logits[:, :-1].argmax(-1)
            for b in range(labels.shape[0]):
                positions = (labels[b] != IGNORE_INDEX).nonzero().squeeze(1).tolist()
                for k, name in COORDINATES.items():
                    right[name] += int(predicted[b, positions[k]] == labels[b, positions[k]])
        figures["teacher_forced_accuracy"] = {name: round(right[name] / len(held), 3) for name in COORDINATES.values()}
        answers = generate(model, processor, [row["images"][0] for row in held],
                           prompt_texts(processor, [row["messages"] for row in held]), max_new_tokens=72)
    parsed = [parse_answer("bbox", text, (params.size, params.size)) for text in answers]
    figures["parse_rate"] = sum(p.status == "ok" for p in parsed) / len(parsed)
    figures["failures"] = dict(collections.Counter(p.detail for p in parsed if p.status != "ok"))
    figures["answers"] = answers[:3]
    print(json.dumps(figures, indent=1))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
