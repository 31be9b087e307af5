"""Benchmark: the cost of constrained decoding (``llm.decoding: json``) per generated token, tiny Mllama on CPU.

Not a test. Run from the repository root (builds the tiny model in a temporary folder unless ``--model``):

    python benchmarks/bench_decoding.py [--model models/tiny-mllama] [--batch-size 8] [--size 128]
                                        [--json benchmarks/latest_decoding.json]

Per task: ms per decoding step with ``free`` and ``json`` decoding (generate wall time / steps; ``free`` runs the
untrained model to ``max_new_tokens``, ``json`` stops when the answer is complete), and the time the llguidance
logits processor itself takes per step for the whole batch. Random images of ``--size`` pixels, one thread.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from brats_llm.conversations.prompts import prompt
from brats_llm.llm import decoding
from brats_llm.llm.infer import generate
from brats_llm.llm.model import load_model
from brats_llm.llm.tiny import TinyModelParams, build_tiny_model

TOKENS = {"cls": 64, "center": 24, "bbox": 64, "polygon": 200}


def measure(model, processor, task: str, batch_size: int, size: int) -> dict[str, float]:
    """ms per step of free and json decoding, and of the logits processor alone, for one ``task``."""
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (size, size), dtype=np.uint8)).convert("RGB")
              for _ in range(batch_size)]
    text = prompt(task, "axial", size, size)
    turns = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]
    prompts = [processor.apply_chat_template(turns, add_generation_prompt=True)] * batch_size
    masking, calls = decoding.JsonSchemaLogitsProcessor.__call__, []

    def timed(self, input_ids, scores):
        start = time.perf_counter()
        out = masking(self, input_ids, scores)
        calls.append(time.perf_counter() - start)
        return out

    result = {}
    decoding.JsonSchemaLogitsProcessor.__call__ = timed
    try:
        for mode in ("free", "json"):
            calls.clear()
            start = time.perf_counter()
            generate(model, processor, images, prompts, max_new_tokens=TOKENS[task], decoding=mode, task=task)
            steps = len(calls) if mode == "json" else TOKENS[task]
            result[f"{mode}_ms_per_step"] = round(1000 * (time.perf_counter() - start) / steps, 2)
        result["processor_ms_per_step"] = round(1000 * sum(calls) / len(calls), 2)
        result["json_steps"] = len(calls)
    finally:
        decoding.JsonSchemaLogitsProcessor.__call__ = masking
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as folder:
        model_dir = args.model or build_tiny_model(Path(folder) / "tiny", TinyModelParams())
        model, processor = load_model(str(model_dir))
    start = time.perf_counter()
    decoding.ll_tokenizer(processor.tokenizer)
    result = {"model": args.model or "tiny (built)", "batch_size": args.batch_size, "size": args.size,
              "ll_tokenizer_s": round(time.perf_counter() - start, 2), "threads": torch.get_num_threads(),
              "machine": platform.machine()}
    measure(model, processor, "center", 2, args.size)  # warm-up
    result["tasks"] = {task: measure(model, processor, task, args.batch_size, args.size) for task in TOKENS}
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
