"""``brats-llm llm-inspect``: the exact tokens inference and fine-tuning build for a few rows.

Nothing here re-implements tokenisation: the generation input comes from
:func:`brats_llm.llm.infer.generation_inputs` (what ``llm-infer`` feeds ``generate``), the training
input and labels from the configured backend's collator (:func:`brats_llm.train.llm.finetune.collator_for`),
so what this prints cannot drift from what the stages do.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from brats_llm.conversations.prompts import TASKS
from brats_llm.errors import InputError


def inspect_rows(task: str, revision_file: str | os.PathLike, model_id: str, *, rows: int, split: str,
                 backend: str = "hf", adapter: str | os.PathLike | None = None) -> Iterator[dict[str, Any]]:
    """One record per row of ``split`` (the first ``rows``): prompt, target and token ids.

    Keys: ``index``, ``prompt_text`` (the chat-templated prompt), ``target`` (the assistant answer),
    ``input_ids`` (generation input, unpadded), ``train_input_ids`` and ``train_labels`` (the
    collator's, unpadded; -100 where there is no loss).

    Only the processor and the model's family (from ``config.json``) are loaded (tokens do not depend on
    the weights); an ``adapter`` is checked and recorded, as inference uses the base model's processor with it.
    """
    from brats_llm.llm.families import family_for
    from brats_llm.llm.infer import _load_rows, generation_inputs, prompt_texts
    from brats_llm.llm.model import check_adapter, load_processor
    from brats_llm.provenance import read_revision
    from brats_llm.train.llm.finetune import collator_for

    if task not in TASKS:
        raise InputError(f"unknown task {task!r}; tasks are {TASKS}")
    if rows < 1:
        raise InputError(f"--rows must be >= 1, got {rows}")
    read_revision(revision_file)
    if adapter:
        check_adapter(adapter)
    processor = load_processor(model_id)
    collator = collator_for(backend, processor, family_for(model_id))
    dataset = _load_rows(revision_file, task, split, rows)
    for index in range(len(dataset)):
        row = dataset[index]
        prompt = prompt_texts(processor, [row["messages"]])[0]
        generation = generation_inputs(processor, [row["images"][0].convert("RGB")], [prompt])
        train = collator([row])
        keep = train["attention_mask"][0] == 1
        answer = next(m for m in row["messages"] if m["role"] == "assistant")
        yield {"index": index, "task": task, "split": split, "model": model_id, "backend": backend,
               "adapter": str(adapter) if adapter else None, "prompt_text": prompt,
               "target": "".join(part["text"] or "" for part in answer["content"] if part["type"] == "text"),
               "input_ids": generation["input_ids"][0][generation["attention_mask"][0] == 1].tolist(),
               "train_input_ids": train["input_ids"][0][keep].tolist(),
               "train_labels": train["labels"][0][keep].tolist()}
