"""The LLM half on the tiny Qwen2.5-VL, end to end through the CLI: inspect, fine-tune, infer, evaluate, consistency.

The same commands and params as the Mllama default (``llm.model`` is the only switch); the family is read from
the model folder. Small params keep it under a minute or two on 2 cores.
"""

import json

import pytest
from click.testing import CliRunner

from brats_llm.cli import main
from brats_llm.llm.families.qwen_vl import IM_END_ID, IMAGE_PAD_ID, VISION_END_ID, VISION_START_ID
from brats_llm.llm.tiny import TinyModelParams

IGNORE = -100
PARAMS = """
llm: {model: MODEL, batch_size: 4, max_rows: 4, max_new_tokens: {cls: 24, center: 16, bbox: 32, polygon: 48}}
llm_finetune: {max_steps: {cls: 3, center: 3, bbox: 3, polygon: 3}, eval_steps: 3, eval_rows: 2, warmup_steps: 0}
llm_consistency: {repeats: 2, max_new_tokens: 24, batch_size: 4}
evaluate_llm: {bootstrap: 20}
"""


@pytest.fixture(scope="module")
def qwen(tmp_path_factory):
    root = tmp_path_factory.mktemp("qwen")
    result = CliRunner().invoke(main, ["tiny-model", "--family", "qwen2_5_vl", str(root / "tiny-qwen")])
    assert result.exit_code == 0, result.output
    (root / "params.yaml").write_text(PARAMS.replace("MODEL", str(root / "tiny-qwen")))
    return root


def run(args, root, monkeypatch):
    monkeypatch.chdir(root)  # params.yaml here names the Qwen model: no --model anywhere
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return result


def test_inspect_shows_qwen_ids_and_mask(qwen, published, monkeypatch):
    result = run(["llm-inspect", "--task", "bbox", str(published), "--rows", "2"], qwen, monkeypatch)
    for record in map(json.loads, result.stdout.splitlines()):
        ids, train_ids, labels = record["input_ids"], record["train_input_ids"], record["train_labels"]
        start, end = ids.index(VISION_START_ID), ids.index(VISION_END_ID)
        assert end - start > 2 and set(ids[start + 1:end]) == {IMAGE_PAD_ID}  # one image, expanded into pads
        assert train_ids[:len(ids)] == ids and all(label == IGNORE for label in labels[:len(ids)])
        kept = [label for label in labels if label != IGNORE]
        assert kept and kept[-1] == IM_END_ID and IMAGE_PAD_ID not in kept  # answer + <|im_end|> only


def test_finetune_infer_evaluate_consistency(qwen, published, monkeypatch):
    run(["llm-finetune", "--task", "cls", str(published), str(qwen / "adapter")], qwen, monkeypatch)
    record = json.loads((qwen / "adapter" / "brats_llm_adapter.json").read_text())
    assert record["base_model"] == str(qwen / "tiny-qwen") and "lm_head" in record["modules_to_save"]
    for name, extra in (("zeroshot", []), ("finetuned", ["--adapter", str(qwen / "adapter")])):
        run(["llm-infer", "--task", "cls", *extra, str(published), str(qwen / name)], qwen, monkeypatch)
        run_record = json.loads((qwen / name / "run.json").read_text())
        assert run_record["architecture"] == "Qwen2.5-VL" and run_record["rows"] == 4
        run(["evaluate-llm", "--task", "cls", str(qwen / name), str(published), str(qwen / f"ev_{name}")], qwen, monkeypatch)
        slices = json.loads((qwen / f"ev_{name}" / "details.json").read_text())["test"]["slices"]
        assert slices["ok"] + slices["format_error"] + slices["invalid_value"] == slices["n"] > 0
    run(["llm-consistency", "--adapter", str(qwen / "adapter"), str(published), str(qwen / "consistency")], qwen, monkeypatch)
    answers = (qwen / "consistency" / "answers.jsonl").read_text().splitlines()
    assert len(answers) == 2 * 2 * 2  # 2 images x 2 repeats x (general, fine-tuned)
