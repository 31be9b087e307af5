"""llm-inspect: the exact generation and training tokens; params' llm.model is every LLM command's default."""

import json

import pytest
from click.testing import CliRunner

from brats_llm.cli import main

BOS, IMAGE, EOT, IGNORE = 128000, 128256, 128009, -100
TASKS = ("cls", "center", "bbox", "polygon")


def inspect(args, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no params.yaml here: defaults
    result = CliRunner().invoke(main, ["llm-inspect", *args])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.mark.parametrize("task", TASKS)
def test_one_bos_one_image_prompt_masked_answer_trained(published, tiny_model, tmp_path, monkeypatch, task):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    records = inspect(["--task", task, str(published), "--rows", "3", "--model", str(tiny_model)], tmp_path, monkeypatch)
    assert len(records) == 3
    for record in records:
        ids, train_ids, labels = record["input_ids"], record["train_input_ids"], record["train_labels"]
        assert ids[0] == BOS and ids.count(BOS) == 1 and ids.count(IMAGE) == 1
        assert train_ids.count(BOS) == 1 and train_ids.count(IMAGE) == 1
        assert train_ids[:len(ids)] == ids  # the inference input is a prefix of the training input
        assert len(labels) == len(train_ids) and all(label == IGNORE for label in labels[:len(ids)])  # prompt masked
        kept = [label for label in labels if label != IGNORE]
        assert labels[len(ids):] == kept and kept[-1] == EOT
        assert tokenizer.decode(kept) == record["target"] + "<|eot_id|>"
        assert tokenizer.decode(ids) == record["prompt_text"]
    # --backend unsloth: a CLI smoke check only (both backends share one collator; the Unsloth path itself
    # is compared with hf in tests/test_finetune.py::test_unsloth_backend_masks_exactly_like_hf)
    unsloth = inspect(["--task", task, str(published), "--rows", "3", "--model", str(tiny_model), "--backend", "unsloth"],
                      tmp_path, monkeypatch)
    assert [{**r, "backend": "hf"} for r in unsloth] == records


def test_model_comes_from_params(published, tiny_model, tmp_path, monkeypatch):
    (tmp_path / "params.yaml").write_text(f"llm:\n  model: {tiny_model}\n  split: validation\n")
    records = inspect(["--task", "center", str(published), "--rows", "1"], tmp_path, monkeypatch)
    assert records[0]["model"] == str(tiny_model) and records[0]["split"] == "validation"

    seen = []

    def fake_finetune(task, revision, out, model_id, params, **kwargs):
        seen.append(("finetune", model_id))
        return {"final_loss": {}}

    def fake_consistency(revision, out, model_id, params, **kwargs):
        seen.append(("consistency", model_id))
        return {}

    monkeypatch.setattr("brats_llm.train.llm.finetune.finetune", fake_finetune)
    monkeypatch.setattr("brats_llm.evaluate.consistency.consistency", fake_consistency)
    runner = CliRunner()
    for args in (["llm-finetune", "--task", "cls", str(published), str(tmp_path / "a")],
                 ["llm-consistency", str(published), str(tmp_path / "c")],
                 ["llm-finetune", "--task", "cls", "--model", "org/other-model", str(published), str(tmp_path / "b")]):
        result = runner.invoke(main, args)
        assert result.exit_code == 0, result.output
    assert seen == [("finetune", str(tiny_model)), ("consistency", str(tiny_model)), ("finetune", "org/other-model")]


def test_a_yaml_file_instead_of_the_revision_is_one_clear_line(tiny_model, tmp_path, monkeypatch):
    bad = tmp_path / "params.yaml"
    bad.write_text("llm:\n  batch_size: 2\n")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["llm-inspect", "--task", "cls", str(bad), "--model", str(tiny_model)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"{bad}: not a revision file" in result.output and "Expecting value" not in result.output.splitlines()[0][:40]
