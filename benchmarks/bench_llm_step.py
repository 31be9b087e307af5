"""Benchmark: one LoRA fine-tune step and one inference batch of the tiny Mllama on CPU, with its breakdown.

Not a test. Run from the repository root (no pipeline data needed: the tiny model and the chats are built here):

    python benchmarks/bench_llm_step.py [--threads 2] [--steps 6] [--json benchmarks/latest_llm_step.json]

A step (batch 2, the demo preset) is timed in its parts: collate (``VisionChatCollator``), forward (the loss),
backward, optimizer (AdamW). Configurations:

- ``trl_loss``: TRL ``SFTTrainer.compute_loss`` as it was used before (its fused head scores every position
  on CPU and computes entropy and token accuracy over the 128k-token vocabulary), head frozen;
- ``trl_loss_checkpointing``: the same with gradient checkpointing (the old demo default);
- ``answer_loss``: :func:`brats_llm.train.llm.trainer.answer_loss` (logits only where labels are), lm_head and
  final norm trained (``modules_to_save: auto``), no checkpointing (the new demo default);
- ``answer_loss_checkpointing``: the same with gradient checkpointing.

``fit`` then runs a short real fine-tune (Trainer overhead included). Inference: one batch of 16 greedy
generations with the adapter unmerged (PEFT) and merged (``load_model`` for inference). Wall and process CPU
seconds are reported (median over steps after one warm-up); on a shared machine the wall time depends on load,
which is recorded (1-minute load average before and after).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from brats_llm.conversations.build import conversation, keywords
from brats_llm.conversations.prompts import TASKS, answer_text
from brats_llm.determinism import configure
from brats_llm.llm.families import family_for
from brats_llm.llm.infer import generate, prompt_texts
from brats_llm.llm.model import load_model
from brats_llm.llm.tiny import TinyModelParams, build_tiny_model
from brats_llm.train.llm.collator import VisionChatCollator
from brats_llm.train.llm.finetune import lora_model
from brats_llm.train.llm.params import FinetuneParams
from brats_llm.train.llm.trainer import answer_loss, fit, sft_config

SIZE = 128
NEW_TOKENS = {"cls": 64, "center": 24, "bbox": 64, "polygon": 200}


def chat(task: str, seed: int) -> dict:
    """A chat shaped like the demo's: a 128 px slice with a disc, the task's prompt and a true answer."""
    rng = np.random.default_rng(seed)
    cy, cx, radius = (int(v) for v in (rng.integers(40, 88), rng.integers(40, 88), rng.integers(8, 30)))
    yy, xx = np.mgrid[:SIZE, :SIZE]
    mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2
    image = Image.fromarray(np.where(mask, 220, 60).astype(np.uint8)).convert("RGB")
    angles = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    value = {"cls": (seed % 2, keywords(seed % 2, mask)), "center": (cx, cy),
             "bbox": [(cx - radius, cy - radius), (cx + radius, cy - radius), (cx + radius, cy + radius),
                      (cx - radius, cy + radius)],
             "polygon": [(int(cx + radius * np.sin(a)), int(cy - radius * np.cos(a))) for a in angles]}[task]
    return conversation(task, image, answer_text(task, value))


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 4)


def prepare(model, checkpointing: bool):
    """``model`` in training mode (checkpointed if asked) and an AdamW over its trainable parameters."""
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    model.train()
    return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3, weight_decay=0.0)


def one_step(model, collator, optimizer, loss_fn, rows: list[dict], parts: dict[str, list[float]]) -> dict:
    """One step, timed in its parts (wall and process CPU seconds appended to ``parts``); returns the batch."""
    clock = [(time.perf_counter(), time.process_time())]
    batch = collator(rows)
    clock.append((time.perf_counter(), time.process_time()))
    loss = loss_fn(model, batch)
    clock.append((time.perf_counter(), time.process_time()))
    loss.backward()
    clock.append((time.perf_counter(), time.process_time()))
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    clock.append((time.perf_counter(), time.process_time()))
    for i, name in enumerate(("collate", "forward", "backward", "optimizer")):
        parts.setdefault(f"{name}_wall_s", []).append(clock[i + 1][0] - clock[i][0])
        parts.setdefault(f"{name}_cpu_s", []).append(clock[i + 1][1] - clock[i][1])
    parts.setdefault("step_wall_s", []).append(clock[-1][0] - clock[0][0])
    parts.setdefault("step_cpu_s", []).append(clock[-1][1] - clock[0][1])
    return batch


def trl_loss(model, processor, params: FinetuneParams, workdir: str):
    """TRL SFTTrainer's own ``compute_loss`` (what the stage used before), bound to a trainer over ``model``."""
    from datasets import Dataset
    from trl import SFTTrainer

    trainer = SFTTrainer(model=model, args=sft_config("polygon", params, workdir, cuda=False, optim="adamw_torch",
                                                      has_eval=False),
                         train_dataset=Dataset.from_list([chat("cls", 0)]), processing_class=processor, data_collator=VisionChatCollator(processor, family_for(model)))
    return lambda model_, batch: trainer.compute_loss(model_, batch)


def load_average() -> float:
    """The 1-minute load average (other processes on a shared machine stretch wall times)."""
    return round(os.getloadavg()[0], 2)


def bench_steps(model_dir: str, task: str, steps: int, configs: list[str]) -> dict:
    """Median step parts per configuration; the configurations take turns step by step (the same load for all)."""
    rows = [chat(task, seed) for seed in range(2 * (steps + 1))]
    runs, workdirs = {}, []
    for name in configs:
        trl = name.startswith("trl_loss")
        params = FinetuneParams(modules_to_save=() if trl else "auto")
        model, processor = lora_model(model_dir, params)
        workdirs.append(tempfile.TemporaryDirectory())
        loss_fn = trl_loss(model, processor, params, workdirs[-1].name) if trl else answer_loss
        runs[name] = (model, VisionChatCollator(processor, family_for(model)), prepare(model, name.endswith("checkpointing")), loss_fn)
    parts: dict[str, dict[str, list[float]]] = {name: {} for name in configs}
    batch = None
    for step in range(steps + 1):  # step 0 warms up (allocations, AdamW state) and is not counted
        for name, (model, collator, optimizer, loss_fn) in runs.items():
            batch = one_step(model, collator, optimizer, loss_fn, rows[2 * step:2 * step + 2],
                             parts[name] if step else {})
    for workdir in workdirs:
        workdir.cleanup()
    return {"labelled_tokens": int((batch["labels"] != -100).sum()), "sequence_length": int(batch["input_ids"].shape[1]),
            **{name: {key: _median(values) for key, values in parts[name].items()} for name in configs}}


def bench_fit(model_dir: str, task: str, steps: int) -> dict:
    from datasets import Dataset

    rows = [chat(task, seed) for seed in range(16)]
    params = FinetuneParams(max_steps=dict.fromkeys(TASKS, steps), warmup_steps=0)
    model, processor = lora_model(model_dir, params)
    start, cpu = time.perf_counter(), time.process_time()
    with tempfile.TemporaryDirectory() as workdir:
        fit(model, processor, Dataset.from_list(rows), None, task, params, workdir, cuda=False, optim="adamw_torch")
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"steps": steps, "wall_s_per_step": round(wall / steps, 4), "cpu_s_per_step": round(cpu / steps, 4)}


def bench_infer(model_dir: str, task: str, rows: int) -> dict:
    """One batch of ``rows`` greedy generations: base model, adapter unmerged (PEFT) and merged."""
    chats = [chat(task, seed) for seed in range(rows)]
    images = [c["images"][0] for c in chats]
    model, processor = lora_model(model_dir, FinetuneParams())
    with tempfile.TemporaryDirectory() as adapter:
        model.save_pretrained(adapter)
        contenders = {"base": load_model(model_dir)[0], "adapter_unmerged": model.eval(),
                      "adapter_merged": load_model(model_dir, adapter)[0]}
        prompts = prompt_texts(processor, [c["messages"] for c in chats])
        result = {}
        for name, contender in contenders.items():
            generate(contender, processor, images[:2], prompts[:2], max_new_tokens=2)  # warm-up
            start, cpu = time.perf_counter(), time.process_time()
            answers = generate(contender, processor, images, prompts, max_new_tokens=NEW_TOKENS[task])
            result[name] = {"wall_s": round(time.perf_counter() - start, 3),
                            "cpu_s": round(time.process_time() - cpu, 3), "answers": answers}
    same = result["adapter_unmerged"].pop("answers") == result["adapter_merged"]["answers"]
    result["adapter_merged"].pop("answers"), result["base"].pop("answers")
    return {"rows": rows, "task": task, "max_new_tokens": NEW_TOKENS[task], "merged_equals_unmerged": same, **result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=6, help="timed steps per configuration (after one warm-up)")
    parser.add_argument("--fit-steps", type=int, default=20)
    parser.add_argument("--tasks", default="cls,polygon")
    parser.add_argument("--configs", default="trl_loss,trl_loss_checkpointing,answer_loss,answer_loss_checkpointing")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    configure(args.threads, 2020)
    result: dict = {"threads": args.threads, "machine": platform.machine(), "cpus": os.cpu_count(),
                    "torch": torch.__version__, "batch_size": 2, "load_average_start": load_average(),
                    "target": "<= 0.5 s per step at batch 2 on 2 threads"}
    with tempfile.TemporaryDirectory() as folder:
        model_dir = str(build_tiny_model(Path(folder) / "tiny", TinyModelParams()))
        for task in args.tasks.split(","):
            result[f"load_average_{task}"] = load_average()
            result[f"step_{task}"] = bench_steps(model_dir, task, args.steps, args.configs.split(","))
            print(task, json.dumps(result[f"step_{task}"], indent=1), flush=True)
            result[f"fit_{task}"] = bench_fit(model_dir, task, args.fit_steps)
            print(task, "fit", result[f"fit_{task}"], flush=True)
        result["infer"] = bench_infer(model_dir, "center", 16)
        print("infer", result["infer"], flush=True)
    result["load_average_end"] = load_average()
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
