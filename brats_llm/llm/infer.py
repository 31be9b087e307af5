"""The ``llm-infer`` stage: batched generation on a conversation split, parsed, one row per slice."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from brats_llm import atomic
from brats_llm.conversations.parse import parse_answer
from brats_llm.conversations.prompts import CLASS_ANSWERS, PROMPT_VERSION, TASKS
from brats_llm.llm.model import adapter_record, is_smoke_model, load_model

log = logging.getLogger(__name__)

#: Classification answers start with this text (the prompt's JSON format); label probabilities are
#: P(label | image, prompt, prefix) of the two grade labels, renormalised over LGG-0 and HGG-1.
LABEL_PREFIX = '{"label": "'
PREDICTIONS_FILE, RUN_FILE = "predictions.jsonl", "run.json"


def _default_tokens() -> dict[str, int]:
    return {"cls": 64, "center": 24, "bbox": 64, "polygon": 200}


@dataclass(frozen=True)
class InferParams:
    """``llm`` section of params.yaml: the model and how it decodes.

    Attributes:
        model: Hub id or local folder (embedded default: the tiny model; paper: unsloth/Llama-3.2-11B-Vision-Instruct).
        batch_size: slices per generate call (left padding).
        max_new_tokens: per task; answers cut at this length usually fail to parse (counted, not dropped).
        do_sample: greedy decoding when false (default; deterministic).
        temperature, top_p: used only with ``do_sample`` (Llama 3.2 Vision's generation_config: 0.6, 0.9).
        seed: sampling seed, set before every batch.
        split: conversation split to run on.
        max_rows: 0 = every row; N = the first N rows (quick checks).
    """

    model: str = "models/tiny-mllama"
    batch_size: int = 16
    max_new_tokens: dict[str, int] = field(default_factory=_default_tokens)
    do_sample: bool = False
    temperature: float = 0.6
    top_p: float = 0.9
    seed: int = 2020
    split: str = "test"
    max_rows: int = 0

    def __post_init__(self) -> None:
        missing = set(TASKS) - set(self.max_new_tokens)
        if missing:
            raise ValueError(f"max_new_tokens needs a value for every task; missing {sorted(missing)}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")


def user_messages(messages: list[dict]) -> list[dict]:
    """The conversation up to (not including) the first assistant turn."""
    turns = []
    for message in messages:
        if message["role"] == "assistant":
            break
        turns.append({"role": message["role"],
                      "content": [{k: v for k, v in part.items() if v is not None} for part in message["content"]]})
    return turns


def prompt_texts(processor, rows_messages: list[list[dict]]) -> list[str]:
    return [processor.apply_chat_template(user_messages(m), add_generation_prompt=True) for m in rows_messages]


def generate(model, processor, images: list, prompts: list[str], *, max_new_tokens: int, do_sample: bool = False,
             temperature: float = 1.0, top_p: float = 1.0, seed: int = 0) -> list[str]:
    """Decode answers for one batch (one image per prompt); greedy unless ``do_sample``."""
    import torch

    processor.tokenizer.padding_side = "left"
    inputs = processor(images=[[image] for image in images], text=prompts, padding=True, return_tensors="pt")
    inputs = inputs.to(model.device)
    options: dict[str, Any] = {"max_new_tokens": max_new_tokens, "do_sample": do_sample,
                               "pad_token_id": processor.tokenizer.pad_token_id}
    if do_sample:
        torch.manual_seed(seed)
        options.update(temperature=temperature, top_p=top_p)
    else:
        options.update(temperature=None, top_p=None, top_k=None)
    with torch.inference_mode():
        output = model.generate(**inputs, **options)
    return processor.batch_decode(output[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)


def label_probabilities(model, processor, images: list, prompts: list[str]) -> np.ndarray:
    """P(HGG) per slice from the log-likelihood of the two label continuations after :data:`LABEL_PREFIX`.

    Both answers ("...LGG-0", "...HGG-1") are scored in one forward pass (teacher forcing) from the
    first token where their tokenisations differ (Llama 3's pre-tokenizer may merge the quote with
    the label), so both are conditioned on the same context. The probability is renormalised over
    the two labels; "NG-2" and free text do not enter it.
    """
    import torch

    tokenizer = processor.tokenizer
    labels = [CLASS_ANSWERS[0], CLASS_ANSWERS[1]]
    texts, starts = [], []
    for prompt in prompts:
        ids = [tokenizer(prompt + LABEL_PREFIX + label, add_special_tokens=False)["input_ids"] for label in labels]
        common = next((i for i, (a, b) in enumerate(zip(*ids)) if a != b), min(map(len, ids)))
        for label in labels:
            texts.append(prompt + LABEL_PREFIX + label)
            starts.append(common)
    tokenizer.padding_side = "right"
    inputs = processor(images=[[image] for image in images for _ in labels], text=texts, padding=True,
                       return_tensors="pt", add_special_tokens=False).to(model.device)
    with torch.inference_mode():
        logits = model(**inputs).logits.float()
    log_probs = torch.log_softmax(logits[:, :-1], dim=-1)
    ids = inputs["input_ids"][:, 1:].clamp(max=logits.shape[-1] - 1)  # <|image|> lies past the vocabulary
    token_lp = log_probs.gather(-1, ids.unsqueeze(-1)).squeeze(-1)
    positions = torch.arange(ids.shape[1], device=ids.device).unsqueeze(0)
    start = torch.tensor(starts, device=ids.device).unsqueeze(1) - 1
    keep = (positions >= start) & (inputs["attention_mask"][:, 1:] == 1)
    scores = (token_lp * keep).sum(dim=1).view(len(prompts), len(labels))
    return torch.softmax(scores, dim=1)[:, 1].cpu().numpy().astype(float)


def _load_rows(revision_file: str | os.PathLike, task: str, split: str, max_rows: int):
    from brats_llm.publish.hub import load_published

    config = f"conversations-{task}"
    splits = load_published(revision_file, config)
    if split not in splits:
        raise KeyError(f"{revision_file}: config {config} has no split {split!r} (has {sorted(splits)})")
    rows = splits[split]
    return rows.select(range(min(max_rows, len(rows)))) if max_rows else rows


def infer(task: str, revision_file: str | os.PathLike, out_dir: str | os.PathLike, params: InferParams, *,
          adapter: str | os.PathLike | None = None, progress: bool = True) -> dict[str, Any]:
    """Run ``task`` on the pinned conversation split; write ``predictions.jsonl`` and ``run.json``.

    Every slice gets a row: raw response, parse status (ok / format_error / invalid_value),
    parsed prediction; classification rows also get ``p_hgg`` from the label probabilities.

    Returns:
        The run record (counts per parse status, model, adapter, dataset revision).
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; tasks are {TASKS}")
    rows = _load_rows(revision_file, task, params.split, params.max_rows)
    model, processor = load_model(params.model, adapter)
    records: list[dict[str, Any]] = []
    meta = rows.remove_columns(["images", "messages"])
    batches = range(0, len(rows), params.batch_size)
    for start in tqdm(batches, desc=f"llm-infer {task}", unit="batch", disable=not progress):
        batch = rows[start:start + params.batch_size]
        images = [row_images[0].convert("RGB") for row_images in batch["images"]]
        prompts = prompt_texts(processor, batch["messages"])
        answers = generate(model, processor, images, prompts, max_new_tokens=params.max_new_tokens[task],
                           do_sample=params.do_sample, temperature=params.temperature, top_p=params.top_p,
                           seed=params.seed + start)
        p_hgg = label_probabilities(model, processor, images, prompts) if task == "cls" else [None] * len(answers)
        for offset, (answer, probability) in enumerate(zip(answers, p_hgg)):
            row = meta[start + offset]
            parsed = parse_answer(task, answer)
            record = {"index": start + offset, "patient_id": row["patient_id"], "grade": row["grade"],
                      "plane": row["plane"], "slice_index": row["slice_index"], "target": json.loads(row["target"]),
                      "response": answer, "status": parsed.status, "prediction": parsed.value,
                      "detail": parsed.detail}
            if task == "cls":
                record["p_hgg"] = round(float(probability), 6)
            records.append(record)
    statuses = {status: sum(1 for r in records if r["status"] == status) for status in ("ok", "format_error", "invalid_value")}
    revision = json.loads(Path(revision_file).read_text())
    run = {"task": task, "model": params.model, "smoke_model": is_smoke_model(params.model),
           "adapter": str(adapter) if adapter else None, "adapter_record": adapter_record(adapter),
           "dataset": {"repo_id": revision.get("repo_id"), "revision": revision["revision"],
                       "config": f"conversations-{task}", "split": params.split},
           "prompt_version": PROMPT_VERSION, "params": asdict(params), "rows": len(records), "status": statuses}
    with atomic.atomic_dir(out_dir) as staging:
        text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records)
        atomic.write_text(staging / PREDICTIONS_FILE, text)
        atomic.write_json(staging / RUN_FILE, run)
    log.info("%s: %d rows, %s", task, len(records), statuses)
    return run


def read_predictions(run_dir: str | os.PathLike) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows of ``predictions.jsonl`` and the ``run.json`` record of one inference run."""
    run_dir = Path(run_dir)
    rows = [json.loads(line) for line in (run_dir / PREDICTIONS_FILE).read_text().splitlines() if line.strip()]
    return rows, json.loads((run_dir / RUN_FILE).read_text())
