"""The ``general-model`` stage: instruction-tune the random tiny model on generic shapes into the "general" model."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from brats_llm import atomic
from brats_llm.config import at_least
from brats_llm.conversations.parse import parse_answer
from brats_llm.conversations.prompts import TASKS
from brats_llm.determinism import configure
from brats_llm.errors import InputError
from brats_llm.llm.families import family_for
from brats_llm.llm.model import is_smoke_model
from brats_llm.train.general.shapes import describe, shape_chats

log = logging.getLogger(__name__)

#: Written next to the general model: what it was trained on, its losses and its held-out answer check.
GENERAL_RECORD = "brats_llm_general.json"
#: The config.json key that says what the general model was trained on (read by the report).
CONFIG_KEY = "brats_llm_general_training"


@dataclass(frozen=True)
class GeneralParams:
    """``general_model`` section of params.yaml: the instruction-tuning of the tiny random model.

    Attributes:
        seed: shape pictures and data order.
        rows_per_task: generic chats per task (cls, center, bbox, polygon), mixed into one training set.
        size: picture edge in pixels (the demo slices' size, so prompts state the same frame).
        steps: optimizer steps; every weight is trained (no LoRA: this builds a base model).
        batch_size: chats per step.
        lr: peak learning rate (linear decay after ``warmup_steps``).
        warmup_steps: linear warm-up.
        check_rows: held-out chats per task answered after training (parse rate in the record and card).
        threads: intra-op CPU threads; fixed, so the same machine type gives the same bytes.
    """

    seed: int = 2020
    rows_per_task: int = 1000
    size: int = 128
    steps: int = 300
    batch_size: int = 8
    lr: float = 0.01
    warmup_steps: int = 20
    check_rows: int = 8
    threads: int = 2

    def __post_init__(self) -> None:
        at_least(self, 1, "rows_per_task", "steps", "batch_size", "threads")
        at_least(self, 0, "seed", "warmup_steps", "check_rows")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.size < 16:
            raise ValueError(f"size must be >= 16 pixels, got {self.size}")


def _dataset(rows: list[dict]):
    """The chats as a ``datasets.Dataset`` with the conversations' columns (images decode to PIL)."""
    from datasets import Dataset, Features, Image, List, Value

    part = {"type": Value("string"), "text": Value("string")}
    features = Features({"images": List(Image()), "messages": List({"role": Value("string"), "content": List(part)})})
    return Dataset.from_list([{"images": r["images"], "messages": r["messages"]} for r in rows], features=features)


def _fit(model, processor, train, params: GeneralParams, workdir: str):
    """Train every weight of ``model`` on ``train`` with the fine-tune's loop (answer-only loss); returns the trainer."""
    from brats_llm.train.llm.params import FinetuneParams
    from brats_llm.train.llm.trainer import fit

    def every_task(value):
        return dict.fromkeys(TASKS, value)

    settings = FinetuneParams(batch_size=every_task(params.batch_size), lr=every_task(params.lr),
                              max_steps=every_task(params.steps), epochs=every_task(0), warmup_steps=params.warmup_steps,
                              gradient_checkpointing=False, eval_rows=0, seed=params.seed, threads=params.threads)
    return fit(model, processor, train, None, TASKS[0], settings, workdir, cuda=False, optim="adamw_torch")


def check_answers(model, processor, rows: list[dict], size: int) -> dict[str, float]:
    """Greedy answers to held-out ``rows``: parse rate per task (the general model must answer in format)."""
    from brats_llm.llm.infer import generate, prompt_texts

    rates = {}
    for task in TASKS:
        chosen = [row for row in rows if row["task"] == task]
        answers = generate(model, processor, [row["images"][0] for row in chosen],
                           prompt_texts(processor, [row["messages"] for row in chosen]),
                           max_new_tokens=220 if task == "polygon" else 72)
        rates[task] = sum(parse_answer(task, text, (size, size)).status == "ok" for text in answers) / max(len(chosen), 1)
    return rates


def model_card(description: str, record: dict[str, Any]) -> str:
    """README.md of the general model folder: what it is, what it was trained on, what it is not."""
    checks = ", ".join(f"{task} {rate:.2f}" for task, rate in record["held_out_parse_rate"].items())
    return (f"# Tiny general vision-LLM (embedded default, plumbing not science)\n\n"
            f"A tiny {record['architecture']} (real tokenizer) with random initial weights, "
            f"{description}. It plays the role of the paper's general (zero-shot) model: it follows the four "
            f"tasks' instructions and answer formats but knows nothing of brains or gliomas.\n\n"
            f"- base: `{record['base_model']}`\n- steps: {record['params']['steps']} x batch "
            f"{record['params']['batch_size']}, all weights trained, lr {record['params']['lr']}\n"
            f"- final training loss: {record['final_loss']:.4f}\n"
            f"- held-out shape chats answered in format (parse rate per task): {checks}\n")


def build_general_model(base_dir: str | os.PathLike, out_dir: str | os.PathLike, params: GeneralParams) -> dict[str, Any]:
    """Train every weight of the tiny model at ``base_dir`` on generic shape chats; save the model to ``out_dir``.

    Raises:
        InputError: ``base_dir`` is not the embedded smoke model (a real model needs no such step).
    """
    from transformers import set_seed

    from brats_llm.llm.model import load_model

    if not is_smoke_model(str(base_dir)):
        raise InputError(f"{base_dir}: not the embedded tiny model (config.json has no brats_llm_smoke_model); "
                         f"a real model is already instruction-tuned")
    configure(params.threads, params.seed)
    rows = shape_chats(params.rows_per_task, params.size, params.seed)
    held_out = shape_chats(params.check_rows, params.size, params.seed + 1)
    model, processor = load_model(str(base_dir), for_training=True)
    set_seed(params.seed)
    with tempfile.TemporaryDirectory(prefix="brats-llm-general-") as workdir:
        trainer = _fit(model, processor, _dataset(rows), params, workdir)
    model.eval()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    description = describe(params.rows_per_task, params.size)
    record = {"base_model": str(base_dir), "architecture": family_for(model).architecture,
              "trained_on": description, "params": asdict(params),
              "final_loss": float(losses[-1]) if losses else float("nan"), "losses": [round(float(v), 6) for v in losses],
              "held_out_parse_rate": check_answers(model, processor, held_out, params.size)}
    setattr(model.config, CONFIG_KEY, description)
    with atomic.atomic_dir(out_dir, kind="general-model") as staging:
        model.save_pretrained(staging)
        processor.save_pretrained(staging)
        atomic.write_json(staging / GENERAL_RECORD, record)
        atomic.write_text(staging / "README.md", model_card(description, record))
    log.info("general model -> %s (%s)", out_dir, json.dumps(record["held_out_parse_rate"]))
    return record
