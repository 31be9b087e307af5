"""Batched inference on the tiny model: one parsed row per slice, label probabilities checked by hand."""

import json

import numpy as np
import pytest
import torch

from brats_llm.llm.infer import (LABEL_PREFIX, InferParams, generate, infer, label_probabilities, prompt_texts,
                                 read_predictions, user_messages)
from brats_llm.llm.model import load_model
from brats_llm.publish.hub import load_published


@pytest.fixture(scope="module")
def test_rows(published):
    return load_published(published, "conversations-cls")["test"].select(range(4))


def test_prompt_stops_before_the_answer(test_rows):
    messages = test_rows[0]["messages"]
    turns = user_messages(messages)
    assert [t["role"] for t in turns] == ["user"]
    assert turns[0]["content"][0] == {"type": "image"}  # Arrow's None fields dropped


@pytest.mark.parametrize("task", ["cls", "bbox"])
def test_every_slice_gets_a_row(published, tiny_model, tmp_path, task):
    params = InferParams(model=str(tiny_model), batch_size=3, max_rows=5)
    run = infer(task, published, tmp_path / task, params, progress=False)
    rows, record = read_predictions(tmp_path / task)
    assert len(rows) == run["rows"] == 5 and sum(run["status"].values()) == 5
    assert record["smoke_model"] is True and record["dataset"]["revision"] == json.loads(published.read_text())["revision"]
    assert {r["status"] for r in rows} <= {"ok", "format_error", "invalid_value"}
    assert all(isinstance(r["response"], str) for r in rows)
    if task == "cls":
        assert all(0.0 <= r["p_hgg"] <= 1.0 for r in rows) and len({r["p_hgg"] for r in rows}) > 1
    again = infer(task, published, tmp_path / "again", params, progress=False)
    assert again == run and (tmp_path / "again" / "predictions.jsonl").read_bytes() == (tmp_path / task / "predictions.jsonl").read_bytes()


def test_batched_generation_matches_one_at_a_time(tiny_model, test_rows):
    model, processor = load_model(str(tiny_model))
    images = [row[0].convert("RGB") for row in test_rows["images"]]
    prompts = prompt_texts(processor, test_rows["messages"])
    batched = generate(model, processor, images, prompts, max_new_tokens=8)
    single = [generate(model, processor, [i], [p], max_new_tokens=8)[0] for i, p in zip(images, prompts)]
    assert batched == single


def test_label_probabilities_match_a_manual_forward_pass(tiny_model, test_rows):
    model, processor = load_model(str(tiny_model))
    images = [row[0].convert("RGB") for row in test_rows["images"]]
    prompts = prompt_texts(processor, test_rows["messages"])
    p_hgg = label_probabilities(model, processor, images, prompts)
    tokenizer = processor.tokenizer
    for image, prompt, probability in zip(images, prompts, p_hgg):
        scores = []
        full = [tokenizer(prompt + LABEL_PREFIX + label, add_special_tokens=False)["input_ids"] for label in ("LGG-0", "HGG-1")]
        head = len(tokenizer(prompt + LABEL_PREFIX, add_special_tokens=False)["input_ids"])
        assert full[0][:head] == full[1][:head] and full[0][head] != full[1][head]  # they part at the label
        for label in ("LGG-0", "HGG-1"):
            inputs = processor(images=[[image]], text=[prompt + LABEL_PREFIX + label], return_tensors="pt",
                               add_special_tokens=False)
            ids = inputs["input_ids"][0]
            with torch.inference_mode():
                log_probs = torch.log_softmax(model(**inputs).logits[0].float(), dim=-1)
            scores.append(sum(float(log_probs[t - 1, ids[t]]) for t in range(head, len(ids))))
        expected = np.exp(scores[1]) / (np.exp(scores[0]) + np.exp(scores[1]))
        assert probability == pytest.approx(expected, rel=1e-4, abs=1e-6)


def test_bad_split_and_task_are_clear(published, tiny_model, tmp_path):
    with pytest.raises(KeyError, match="no split 'nope'"):
        infer("cls", published, tmp_path / "x", InferParams(model=str(tiny_model), split="nope"), progress=False)
    with pytest.raises(ValueError, match="unknown task"):
        infer("mask", published, tmp_path / "x", InferParams(model=str(tiny_model)), progress=False)
    with pytest.raises(ValueError, match="every task"):
        InferParams(max_new_tokens={"cls": 4})
