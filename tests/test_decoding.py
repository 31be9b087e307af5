"""Constrained decoding: each task's schema admits the ground-truth answers only, and really steers the tiny model."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from brats_llm.conversations.build import keywords
from brats_llm.conversations.parse import OK, parse_answer
from brats_llm.conversations.prompts import answer_text, prompt
from brats_llm.geometry.shapes import MAX_POLYGON_POINTS, MIN_POLYGON_POINTS
from brats_llm.llm import decoding
from brats_llm.llm.consistency import ConsistencyParams
from brats_llm.llm.decoding import accepts, allowed, json_schema
from brats_llm.llm.infer import InferParams, generate
from brats_llm.llm.tiny import build_tokenizer

SIZE = (24, 32)  # (height, width): not square, so a swapped bound shows


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


def truths(task: str, rng: np.random.Generator, n: int = 20) -> list:
    """Random ground-truth values of ``task`` on a SIZE image, as the conversations stage holds them."""
    height, width = SIZE
    values = []
    for _ in range(n):
        if task == "cls":
            label, mask = int(rng.integers(3)), rng.random(SIZE) < rng.uniform(0.05, 0.9)
            values.append((label, keywords(label, mask, str(rng.choice(["axial", "coronal", "sagittal"])))))
        elif task == "center":
            values.append((rng.integers(0, 2 * width - 1) / 2, rng.integers(0, 2 * height - 1) / 2))
        elif task == "bbox":
            (x0, x1), (y0, y1) = np.sort(rng.integers(0, width, 2)), np.sort(rng.integers(0, height, 2))
            values.append([(x0, y0), (x1, y0), (x1, y1), (x0, y1)])
        else:
            count = rng.integers(MIN_POLYGON_POINTS, MAX_POLYGON_POINTS + 1)
            values.append([(round(rng.uniform(0, width - 1), 1), round(rng.uniform(0, height - 1), 1))
                           for _ in range(count)])
    return values


@pytest.mark.parametrize("task", ["cls", "center", "bbox", "polygon"])
def test_schema_accepts_every_ground_truth_answer(tokenizer, task):
    schema = json_schema(task, SIZE)
    texts = [answer_text(task, value) for value in truths(task, np.random.default_rng(0))]
    assert all(accepts(tokenizer, schema, text) for text in texts), texts
    assert all(accepts(tokenizer, json_schema(task), text) for text in texts)  # unbounded: a superset


@pytest.mark.parametrize("task, text", [
    ("cls", '{"label": "GBM-3", "reason": "x"}'),                # not a class answer
    ("cls", '{"label": "HGG-1"}'),                               # reason missing
    ("cls", '{"label": "HGG-1", "reason": "' + "a" * 201 + '"}'),  # reason over REASON_MAX_CHARS
    ("center", '{"center": [32, 5]}'),                           # x = width: one past the right edge
    ("center", '{"center": [5, 24]}'),                           # y = height
    ("center", '{"center": [-1, 5]}'),
    ("center", '{"center": [1.25, 5]}'),                         # answer_text writes one decimal
    ("center", '{"centre": [5, 5]}'),                            # wrong key
    ("center", '{"center": [5, 5], "note": "x"}'),               # extra key
    ("center", '{"center": [5, 5, 5]}'),
    ("bbox", '{"bbox": [[1, 1], [5, 1], [5, 5]]}'),              # three corners
    ("polygon", json.dumps({"polygon": [[i, i] for i in range(MIN_POLYGON_POINTS - 1)]})),
    ("polygon", json.dumps({"polygon": [[i, i] for i in range(MAX_POLYGON_POINTS + 1)]})),
])
def test_schema_rejects_what_the_parser_refuses(tokenizer, task, text):
    assert not accepts(tokenizer, json_schema(task, SIZE), text)


def test_schema_bounds_follow_the_size(tokenizer):
    assert accepts(tokenizer, json_schema("center", SIZE), '{"center": [31, 23]}')
    assert not accepts(tokenizer, json_schema("center", (SIZE[1], SIZE[0])), '{"center": [31, 23]}')
    with pytest.raises(ValueError, match="unknown task 'seg'.*cls"):
        json_schema("seg")


def test_bitmask_is_unpacked_to_the_model_vocabulary():
    bitmask = torch.tensor([[0b101, -1]], dtype=torch.int32)  # tokens 0, 2, then 32..63
    assert allowed(bitmask, 3).tolist() == [[True, False, True]]  # a narrower model: cut
    wide = allowed(bitmask, 70)  # a wider model: tokens past the bitmask are not allowed
    assert wide[0, 32:64].all() and not wide[0, 64:].any() and wide.shape == (1, 70)


def test_unknown_decoding_is_refused_naming_the_choices():
    with pytest.raises(ValueError, match=r"decoding must be one of \('free', 'json'\), got 'regex'"):
        InferParams(decoding="regex")
    with pytest.raises(ValueError, match="decoding must be one of"):
        ConsistencyParams(decoding="JSON")


@pytest.fixture(scope="module")
def loaded(tiny_model):
    from brats_llm.llm.model import load_model

    return load_model(str(tiny_model))


def batch(processor, task: str, n: int = 3, sizes=None):
    """``n`` random images (of ``sizes``, default SIZE) with ``task``'s chat-templated prompts; the planes differ,
    so the prompts have different lengths and the batch is left-padded."""
    rng = np.random.default_rng(1)
    sizes = sizes or [SIZE] * n
    images = [Image.fromarray(rng.integers(0, 255, size, dtype=np.uint8)).convert("RGB") for size in sizes]
    planes = ["axial", "coronal", "sagittal"] * n
    turns = [[{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt(task, plane, *SIZE)}]}]
             for plane in planes[:len(images)]]
    return images, [processor.apply_chat_template(turn, add_generation_prompt=True) for turn in turns]


@pytest.mark.parametrize("task, tokens", [("cls", 64), ("center", 24), ("bbox", 64)])
def test_json_decoding_makes_the_random_model_answer_in_format(loaded, task, tokens):
    model, processor = loaded
    images, prompts = batch(processor, task)
    free = generate(model, processor, images, prompts, max_new_tokens=tokens, decoding="free", task=task)
    assert all(parse_answer(task, text, SIZE).status == "format_error" for text in free), free
    constrained = generate(model, processor, images, prompts, max_new_tokens=tokens, decoding="json", task=task)
    statuses = [parse_answer(task, text, SIZE).status for text in constrained]
    assert all(accepts(processor.tokenizer, json_schema(task, SIZE), text) for text in constrained), constrained
    if task == "bbox":  # corners of one box: beyond a schema, so invalid_value remains possible
        assert "format_error" not in statuses, constrained
    else:
        assert statuses == [OK] * 3, constrained


def test_json_decoding_needs_one_image_size_and_the_task(loaded):
    model, processor = loaded
    images, prompts = batch(processor, "center", sizes=[SIZE, (SIZE[0], SIZE[0])])
    with pytest.raises(Exception, match="one image size per batch"):
        generate(model, processor, images, prompts, max_new_tokens=4, decoding="json", task="center")
    with pytest.raises(ValueError, match="needs the task"):
        generate(model, processor, images[:1], prompts[:1], max_new_tokens=4, decoding="json")


def test_matcher_errors_raise(tokenizer):
    processor = decoding.JsonSchemaLogitsProcessor(tokenizer, json_schema("center", SIZE), prompt_length=2)
    scores = torch.zeros(1, 128256)
    processor(torch.tensor([[1, 2]]), scores)
    wrong = tokenizer("x", add_special_tokens=False)["input_ids"]  # an answer starts with "{"
    with pytest.raises(RuntimeError, match="constrained decoding"):
        processor(torch.tensor([[1, 2, *wrong]]), scores)


def test_infer_records_the_decoding_and_has_no_format_errors(published, tiny_model, tmp_path):
    from brats_llm.llm.infer import infer

    params = InferParams(model=str(tiny_model), batch_size=2, max_rows=3, decoding="json")
    run = infer("center", published, tmp_path / "center", params, progress=False)
    assert run["params"]["decoding"] == "json" and run["status"]["format_error"] == 0 and run["rows"] == 3


def test_consistency_answers_parse_under_json_decoding(published, tiny_model, tmp_path):
    from brats_llm.evaluate.consistency import consistency

    params = ConsistencyParams(repeats=2, batch_size=2, max_new_tokens=64, decoding="json")
    metrics = consistency(published, tmp_path, str(tiny_model), params, adapters={"general": None}, progress=False)
    assert all(image["unparsable"] == 0 and image["parsed"] == 2 for image in metrics["general"].values()), metrics
    record = json.loads((tmp_path / "provenance.json").read_text())
    assert record["decoding"].endswith("constrained to the cls JSON schema") and record["params"]["decoding"] == "json"
