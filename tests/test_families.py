"""Model families: chosen by config.json's model_type, the only place Mllama names appear, the same tokens as before."""

import ast
import json
import re
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from brats_llm.llm.families import FAMILIES, Family, UnknownFamily, family_for, family_of
from brats_llm.llm.families.mllama import MLLAMA
from brats_llm.llm.model import load_processor
from brats_llm.llm.tiny import BOS_ID, EOT_ID, IMAGE_ID, build_tiny_model, build_tokenizer
from brats_llm.publish.pinned import load_published
from brats_llm.train.llm.collator import IGNORE_INDEX, VisionChatCollator
from brats_llm.train.llm.finetune import collator_for

PACKAGE = Path(__file__).resolve().parents[1] / "brats_llm"
#: Where a family's names may appear in code: the family modules (and the tiny Mllama that mllama.py builds).
ALLOWED = (PACKAGE / "llm" / "families", PACKAGE / "llm" / "tiny.py")
#: Mllama specifics in code (names and strings): its transformers classes, model_type, special tokens and ids,
#: module names (LoRA targets) and Hub ids. Prose may name the paper's model: docstrings, comments and strings
#: with spaces (help text, messages, report sentences).
MLLAMA_NAMES = re.compile(r"Mllama|^mllama$|<\|image\|>|<\|begin_of_text\|>|<\|eot_id\|>|\blanguage_model\b|"
                          r"\bvision_model\b|cross_attn|\b12825[67]\b|\b128000\b|unsloth/Llama")


def test_family_of_mllama():
    assert family_of("mllama") is MLLAMA and FAMILIES["mllama"] is MLLAMA
    assert (MLLAMA.image_token, MLLAMA.expands_image) == ("<|image|>", False)
    assert MLLAMA.smoke_modules_to_save == ("lm_head", "language_model.norm")
    assert MLLAMA.build_tiny is build_tiny_model and MLLAMA.build_tokenizer is build_tokenizer
    assert all(isinstance(family, Family) and key == family.model_type for key, family in FAMILIES.items())


def test_family_for_reads_config_json_or_a_loaded_model(tiny_model):
    assert family_for(str(tiny_model)) is MLLAMA and family_for(tiny_model) is MLLAMA
    assert family_for(SimpleNamespace(config=SimpleNamespace(model_type="mllama"))) is MLLAMA  # a model or PEFT wrapper


def test_unknown_model_type_names_the_file_and_the_known_families(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gemma3"}))
    with pytest.raises(UnknownFamily, match=re.escape(f"{tmp_path / 'config.json'}: model_type 'gemma3'")) as error:
        family_for(tmp_path)
    assert "['mllama', 'qwen2_5_vl']" in str(error.value)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(UnknownFamily, match="no model_type"):
        family_for(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UnknownFamily, match="config.json: no such file"):
        family_for(tmp_path / "empty")
    with pytest.raises(UnknownFamily, match="not in the Hub cache"):
        family_for("no-such-owner/no-such-model-xyz")
    with pytest.raises(UnknownFamily, match="model_type 'gemma3' has no model family"):
        family_for(SimpleNamespace(config=SimpleNamespace(model_type="gemma3")))


def code_strings(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, text) of every identifier and string in ``tree`` but prose (docstrings, text with spaces)."""
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings \
                and " " not in node.value:
            found.append((node.lineno, node.value))
        elif isinstance(node, ast.Name):
            found.append((node.lineno, node.id))
        elif isinstance(node, ast.Attribute):
            found.append((node.lineno, node.attr))
        elif isinstance(node, ast.alias):
            found.append((node.lineno, node.name))
    return found


#: Qwen2.5-VL specifics in code: its transformers classes, model_type, special tokens and ids, vision-tower
#: module names and Hub ids.
QWEN_NAMES = re.compile(r"Qwen2|^qwen2_5_vl$|<\|im_(start|end)\|>|<\|image_pad\|>|<\|vision_(start|end)\|>|"
                        r"\b1516(4[3-9]|5\d|6[0-4])\b|^visual$|qwen_tokenizer|Qwen/")


def family_names(path: Path, names: re.Pattern = MLLAMA_NAMES) -> list[str]:
    tree = ast.parse(path.read_text())
    return [f"{path.relative_to(PACKAGE.parent)}:{line}: {text!r}" for line, text in code_strings(tree)
            if names.search(text)]


@pytest.mark.parametrize("names, module", [(MLLAMA_NAMES, "mllama.py"), (QWEN_NAMES, "qwen_vl.py")],
                         ids=["mllama", "qwen2_5_vl"])
def test_the_pipeline_names_no_family_specifics_outside_the_families(names, module):
    files = [path for path in sorted(PACKAGE.rglob("*.py")) if not any(path.is_relative_to(a) for a in ALLOWED)]
    assert len(files) > 50
    assert [hit for path in files for hit in family_names(path, names)] == []
    assert family_names(PACKAGE / "llm" / "families" / module, names)  # the check sees them where they are


def test_collated_ids_and_mask_are_the_mllama_ones(published, tiny_model):
    """The family's collator builds what the hard-coded Mllama collator built: one BOS at 0, one <|image|>
    (128256), padding + image + prompt masked, the answer and <|eot_id|> trained."""
    processor = load_processor(str(tiny_model))
    rows = list(load_published(published, "conversations-bbox")["train"].select(range(3)))
    batch = collator_for("hf", processor, family_for(str(tiny_model)))(rows)
    collator = VisionChatCollator(processor, MLLAMA)
    assert collator.image_token_id == IMAGE_ID
    expected = batch["input_ids"].clone()  # the Mllama-only collator's mask, recomputed with its constants
    expected[(batch["attention_mask"] == 0) | (expected == IMAGE_ID)] = IGNORE_INDEX
    for i, row in enumerate(rows):
        ids = batch["input_ids"][i][batch["attention_mask"][i] == 1].tolist()
        assert ids[0] == BOS_ID and ids.count(BOS_ID) == 1 and ids.count(IMAGE_ID) == 1
        expected[i, :len(collator.prompt_ids(row["messages"]))] = IGNORE_INDEX
        kept = batch["labels"][i][batch["labels"][i] != IGNORE_INDEX]
        assert processor.tokenizer.decode(kept) == row["messages"][1]["content"][0]["text"] + "<|eot_id|>"
    assert (batch["labels"] == expected).all()


def test_the_collator_fails_on_a_token_the_family_does_not_place(published, tiny_model):
    processor = load_processor(str(tiny_model))
    rows = list(load_published(published, "conversations-cls")["train"].select(range(1)))
    with pytest.raises(ValueError, match="tokens for 1 images"):  # <|eot_id|> ends every turn: more than one
        VisionChatCollator(processor, replace(MLLAMA, image_token="<|eot_id|>"))(rows)
    expanding = VisionChatCollator(processor, replace(MLLAMA, image_token="<|eot_id|>", expands_image=True))(rows)
    assert not (expanding["labels"] == EOT_ID).any() and (expanding["labels"] != IGNORE_INDEX).any()  # masked, accepted
    with pytest.raises(ValueError, match="has no <|no_such_token|> token"):
        VisionChatCollator(processor, replace(MLLAMA, image_token="<|no_such_token|>"))


def test_dvc_builds_a_tiny_and_a_general_model_per_family():
    """One param switches the LLM half (llm.model): every family's tiny and general model is a stage output."""
    import yaml

    stages = yaml.safe_load((PACKAGE.parent / "dvc.yaml").read_text())["stages"]
    for stage in ("tiny_model", "general_model"):
        assert sorted(stages[stage]["foreach"]) == sorted(FAMILIES), stage
    for stage in ("llm_zeroshot", "llm_finetune", "llm_finetuned"):
        deps = stages[stage]["do"]["deps"]
        assert {f"models/tiny-{name}-general" for name in FAMILIES} <= set(deps), stage


def test_tiny_model_family_option(tmp_path):
    from click.testing import CliRunner

    from brats_llm.cli import main

    result = CliRunner().invoke(main, ["tiny-model", "--family", "gemma3", str(tmp_path / "m")])
    assert result.exit_code != 0 and "'gemma3' has no model family" in result.output and "qwen2_5_vl" in result.output
    assert not (tmp_path / "m").exists()
