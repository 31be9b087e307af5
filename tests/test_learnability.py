"""The tiny model can learn: a short fine-tune on a handful of real-format chats, then its greedy answers parse."""

import numpy as np
import pytest
from PIL import Image

from brats_llm.conversations.build import conversation, keywords
from brats_llm.conversations.parse import parse_answer
from brats_llm.conversations.prompts import TASKS, answer_text
from brats_llm.determinism import configure
from brats_llm.llm.infer import generate, prompt_texts
from brats_llm.llm.model import load_model
from brats_llm.train.llm.finetune import lora_model
from brats_llm.train.llm.params import FinetuneParams
from brats_llm.train.llm.trainer import fit

SIZE = 64
#: Measured: loss 12.4 -> 0.12 in 40 steps and 4/4 answers in format (with the head frozen: none).
STEPS, LR = 40, 0.03
MAX_NEW_TOKENS = {"cls": 64, "center": 24}


def _row(task: str, seed: int, size: int = SIZE) -> dict:
    """One chat as the conversations stage writes it: a slice with a bright disc, its prompt, its answer."""
    rng = np.random.default_rng(seed)
    low, high = (size * 5 // 16, size * 11 // 16)  # 20, 44 of 64
    cy, cx, radius = (int(v) for v in (rng.integers(low, high), rng.integers(low, high), rng.integers(6, 12)))
    yy, xx = np.mgrid[:size, :size]
    mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2
    image = Image.fromarray(np.where(mask, 220, 60).astype(np.uint8)).convert("RGB")
    label = seed % 2
    value = (label, keywords(label, mask)) if task == "cls" else (cx, cy)
    return {"task": task, **conversation(task, image, answer_text(task, value))}


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return [_row(task, seed) for task in MAX_NEW_TOKENS for seed in range(2)]


def check_learns(model_dir, rows: list[dict], tmp_path, size: int = SIZE) -> None:
    """Fine-tune ``model_dir`` on ``rows`` (LoRA + the smoke model's head) for :data:`STEPS` steps at
    :data:`LR`, load the adapter as llm-infer does, and require >= 90 % of its greedy answers to parse."""
    from datasets import Dataset

    configure(2, 2020)
    params = FinetuneParams(batch_size=dict.fromkeys(TASKS, 2), lr=dict.fromkeys(TASKS, LR),
                            max_steps=dict.fromkeys(TASKS, STEPS), warmup_steps=0)
    model, processor = lora_model(str(model_dir), params)  # modules_to_save: auto (the smoke model's head)
    train = Dataset.from_list([{"images": r["images"], "messages": r["messages"]} for r in rows])
    trainer = fit(model, processor, train, None, "cls", params, str(tmp_path / "work"), cuda=False, optim="adamw_torch")
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    model.save_pretrained(tmp_path / "adapter")
    tuned, processor = load_model(str(model_dir), tmp_path / "adapter")  # as llm-infer loads it
    answers = []
    for task, max_new_tokens in MAX_NEW_TOKENS.items():
        chosen = [r for r in rows if r["task"] == task]
        texts = generate(tuned, processor, [r["images"][0] for r in chosen],
                         prompt_texts(processor, [r["messages"] for r in chosen]), max_new_tokens=max_new_tokens)
        answers += [(task, text) for text in texts]
    parsed = [parse_answer(task, text, (size, size)).status for task, text in answers]
    rate = parsed.count("ok") / len(parsed)
    assert rate >= 0.9, f"parse rate {rate:.2f} after {STEPS} steps (loss {losses[0]:.2f} -> {losses[-1]:.2f}): {answers}"


def test_a_short_finetune_answers_in_format(tiny_model, rows, tmp_path):
    check_learns(tiny_model, rows, tmp_path)
