"""The general-model stage: every weight trained on shape chats, saved as a loadable base model with its record."""

import json

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from brats_llm.cli import main
from brats_llm.errors import InputError
from brats_llm.llm.model import is_smoke_model
from brats_llm.train.general.stage import CONFIG_KEY, GENERAL_RECORD, GeneralParams, build_general_model

SMALL = GeneralParams(rows_per_task=2, steps=2, batch_size=2, warmup_steps=0, check_rows=1, size=64)


@pytest.fixture(scope="module")
def general(tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("general") / "tiny-general"
    record = build_general_model(tiny_model, out, SMALL)
    return out, record


def test_every_weight_moves_and_the_folder_says_what_it_was_trained_on(tiny_model, general):
    out, record = general
    before, after = load_file(tiny_model / "model.safetensors"), load_file(out / "model.safetensors")
    assert before.keys() == after.keys()
    moved = {name for name in before if not torch.equal(before[name], after[name])}
    head = [name for name in before if "lm_head" in name or "embed_tokens" in name]
    assert head and set(head) <= moved  # a base model, not an adapter: head and embeddings train too
    config = json.loads((out / "config.json").read_text())
    assert "never on brain images" in config[CONFIG_KEY] and is_smoke_model(str(out))
    saved = json.loads((out / GENERAL_RECORD).read_text())
    assert saved["trained_on"] == config[CONFIG_KEY] and set(saved["held_out_parse_rate"]) == {"cls", "center", "bbox", "polygon"}
    assert saved == json.loads(json.dumps(record))
    assert "knows nothing of brains or gliomas" in (out / "README.md").read_text()


def test_only_the_embedded_model_is_instruction_tuned_here(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "config.json").write_text("{}")
    with pytest.raises(InputError, match="not the embedded tiny model"):
        build_general_model(tmp_path / "real", tmp_path / "out", SMALL)
    assert not (tmp_path / "out").exists()


def test_params_out_of_range_are_refused():
    with pytest.raises(ValueError, match="steps"):
        GeneralParams(steps=0)


def test_cli_help_teaches():
    result = CliRunner().invoke(main, ["general-model", "--help"])
    assert result.exit_code == 0 and "never on brain images" in result.output and "--steps" in result.output


def test_a_qwen_general_model_names_its_architecture(tmp_path):
    """The stage runs for every family's tiny model (dvc.yaml builds both); the card names the architecture."""
    result = CliRunner().invoke(main, ["tiny-model", "--family", "qwen2_5_vl", str(tmp_path / "tiny-qwen")])
    assert result.exit_code == 0, result.output
    record = build_general_model(tmp_path / "tiny-qwen", tmp_path / "general", SMALL)
    assert json.loads((tmp_path / "general" / "config.json").read_text())["model_type"] == "qwen2_5_vl"
    assert record["architecture"] == "Qwen2.5-VL" and "A tiny Qwen2.5-VL " in (tmp_path / "general" / "README.md").read_text()


def test_the_mllama_card_names_mllama(general):
    out, record = general
    assert record["architecture"] == "Mllama (Llama 3.2 Vision)" and "A tiny Mllama (Llama 3.2 Vision) " in (out / "README.md").read_text()
