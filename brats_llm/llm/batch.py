"""One batch of conversation rows in and out, for every inference backend: chat-templated prompts and their
token ids, and the ``predictions.jsonl`` records of the answers."""

from __future__ import annotations

import json
from typing import Any

from brats_llm.conversations.parse import parse_answer
from brats_llm.errors import InputError

#: Classification answers start with this text (the prompt's JSON format); label probabilities are
#: P(label | image, prompt, prefix) of the two grade labels, renormalised over LGG-0 and HGG-1.
LABEL_PREFIX = '{"label": "'


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
    """Chat-templated prompts (they start with the family's start tokens), ending with the assistant header."""
    return [processor.apply_chat_template(user_messages(m), add_generation_prompt=True) for m in rows_messages]


def prompt_ids(processor, prompt: str) -> list[int]:
    """Token ids of one chat-templated prompt, exactly as :func:`brats_llm.llm.infer.encode` tokenises it (no padding)."""
    return processor.tokenizer(prompt, add_special_tokens=False)["input_ids"]


def first_difference(first: list[int], second: list[int]) -> int:
    """Index of the first token where two tokenisations differ (the shorter length when one is a prefix of the
    other): the label continuations are scored from there."""
    return next((i for i, (a, b) in enumerate(zip(first, second)) if a != b), min(len(first), len(second)))


def batch_inputs(processor, rows, start: int, batch_size: int) -> tuple[list, list[str]]:
    """RGB images and chat-templated prompts of the batch of rows starting at ``start`` (every backend's input)."""
    batch = rows[start:start + batch_size]
    return [row_images[0].convert("RGB") for row_images in batch["images"]], prompt_texts(processor, batch["messages"])


def batch_records(task: str, meta, start: int, images: list, answers: list[str],
                  p_hgg: list[float] | None) -> list[dict[str, Any]]:
    """The ``predictions.jsonl`` records of one batch: answers parsed against each slice's size, with the
    row's metadata from ``meta``; ``p_hgg`` (cls only, else None) rounded to 6 decimals."""
    records = []
    for offset, answer in enumerate(answers):
        row = meta[start + offset]
        parsed = parse_answer(task, answer, images[offset].size[::-1])  # (height, width) of the slice shown
        record = {"index": start + offset, "patient_id": row["patient_id"], "grade": row["grade"],
                  "plane": row["plane"], "slice_index": row["slice_index"], "target": json.loads(row["target"]),
                  "response": answer, "status": parsed.status, "prediction": parsed.value,
                  "detail": parsed.detail}
        if p_hgg is not None:
            record["p_hgg"] = round(float(p_hgg[offset]), 6)
        records.append(record)
    return records


def batch_image_size(images: list) -> tuple[int, int]:
    """(height, width) shared by every PIL image of a batch; an InputError when they differ."""
    sizes = {image.size[::-1] for image in images}
    if len(sizes) != 1:
        raise InputError(f"constrained decoding bounds coordinates by one image size per batch; got {sorted(sizes)}")
    return sizes.pop()
