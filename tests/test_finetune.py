"""LoRA fine-tuning: collator masks, target modules, train -> save -> reload -> generate, backend errors."""

import json
import re
import sys
import types
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file

import brats_llm.train.llm.finetune as finetune_module
import brats_llm.train.llm.trainer as trainer_module

from brats_llm.llm.families.mllama import LANGUAGE_TARGETS, MLLAMA
from brats_llm.llm.infer import generate, prompt_texts
from brats_llm.llm.model import ADAPTER_RECORD, load_model
from brats_llm.publish.pinned import load_published
from brats_llm.train.llm.collator import IGNORE_INDEX, VisionChatCollator
from brats_llm.train.llm.finetune import BackendUnavailable, finetune, loss_curves
from brats_llm.train.llm.lora import lora_config, modules_to_save, target_modules
from brats_llm.train.llm.params import FinetuneParams
from brats_llm.train.llm.trainer import fit

TASKS = ("cls", "center", "bbox", "polygon")


def small(**overrides) -> FinetuneParams:
    values = dict(batch_size=dict.fromkeys(TASKS, 2), lr=dict.fromkeys(TASKS, 0.05), max_steps=dict.fromkeys(TASKS, 3),
                  gradient_accumulation=1, warmup_steps=0, eval_steps=2, eval_rows=4)
    return FinetuneParams(**{**values, **overrides})


def test_collator_keeps_only_the_answer_in_the_labels(published, tiny_model):
    _, processor = load_model(str(tiny_model))
    rows = list(load_published(published, "conversations-center")["train"].select(range(3)))
    batch = VisionChatCollator(processor, MLLAMA)(rows)
    tokenizer = processor.tokenizer
    image_id = tokenizer.convert_tokens_to_ids("<|image|>")
    for i, row in enumerate(rows):
        kept = batch["labels"][i][batch["labels"][i] != IGNORE_INDEX]
        assert tokenizer.decode(kept) == row["messages"][1]["content"][0]["text"] + "<|eot_id|>"
        assert image_id in batch["input_ids"][i]
    assert not (batch["labels"] == image_id).any()
    assert (batch["labels"][batch["attention_mask"] == 0] == IGNORE_INDEX).all()
    for i, row in enumerate(rows):  # one BOS at 0, one image, the inference prompt as prefix, all of it masked
        ids = batch["input_ids"][i][batch["attention_mask"][i] == 1].tolist()
        prompt = tokenizer(prompt_texts(processor, [row["messages"]])[0], add_special_tokens=False)["input_ids"]
        assert ids.count(128000) == 1 and ids[0] == 128000 and ids.count(image_id) == 1
        assert ids[:len(prompt)] == prompt and (batch["labels"][i][:len(prompt)] == IGNORE_INDEX).all()


def test_lora_targets_language_only_unless_asked(tiny_model):
    model, _ = load_model(str(tiny_model))
    names = [n for n, _ in model.named_modules()]
    language = [n for n in names if re.fullmatch(LANGUAGE_TARGETS, n)]
    both = [n for n in names if re.fullmatch(target_modules(MLLAMA, True), n)]
    assert language and all("language_model" in n for n in language)
    assert any("cross_attn" in n for n in language)  # the image path of the decoder is adapted too
    assert set(language) < set(both) and any("vision_model" in n for n in both)


def test_modules_to_save_trains_only_the_head_and_the_final_norm(tiny_model):
    from peft import get_peft_model

    assert modules_to_save("auto", MLLAMA, smoke_model=True) == ["lm_head", "language_model.norm"]
    assert modules_to_save("auto", MLLAMA, smoke_model=False) is None
    assert modules_to_save((), MLLAMA, smoke_model=True) is None
    assert modules_to_save(("lm_head",), MLLAMA, smoke_model=False) == ["lm_head"]
    model, _ = load_model(str(tiny_model), for_training=True)
    save = modules_to_save("auto", MLLAMA, smoke_model=True)
    model = get_peft_model(model, lora_config(4, 4, 0.0, MLLAMA, False, save))
    whole = sorted(n for n, p in model.named_parameters() if p.requires_grad and "lora_" not in n)
    assert whole == ["base_model.model.lm_head.modules_to_save.default.weight",  # no vision or per-layer norm
                     "base_model.model.model.language_model.norm.modules_to_save.default.weight"]
    with pytest.raises(ValueError, match="modules_to_save"):
        small(modules_to_save="all")
    assert small(modules_to_save=["lm_head"]).modules_to_save == ("lm_head",)


def test_train_save_reload_generate(published, tiny_model, tmp_path):
    live = tmp_path / "live"
    record = finetune("center", published, tmp_path / "adapter", str(tiny_model), small(), live_dir=live)
    adapter = tmp_path / "adapter"
    saved = json.loads((adapter / ADAPTER_RECORD).read_text())
    assert saved["dataset"]["revision"] == json.loads(published.read_text())["revision"] == record["dataset"]["revision"]
    assert saved["base_model"] == str(tiny_model) and saved["backend"] == "hf" and saved["optimizer"] == "adamw_torch"
    assert (adapter / "adapter_config.json").is_file() and (adapter / "adapter_model.safetensors").is_file()
    train_curve = (live / "plots" / "metrics" / "train" / "loss.tsv").read_text().splitlines()
    assert train_curve[0] == "step\tloss" and len(train_curve) == 4
    assert len((live / "plots" / "metrics" / "validation" / "loss.tsv").read_text().splitlines()) >= 2

    base, processor = load_model(str(tiny_model))
    unmerged, _ = load_model(str(tiny_model), adapter, for_training=True)  # the PEFT model as trained
    tuned, _ = load_model(str(tiny_model), adapter)  # for inference: LoRA merged into the weights
    lora_b = [p for n, p in unmerged.named_parameters() if "lora_B" in n]
    assert lora_b and any(p.abs().sum() > 0 for p in lora_b)  # trained away from PEFT's zero init
    assert not any("lora_" in n for n, _ in tuned.named_parameters())
    # modules_to_save: auto trained the smoke model's lm_head and final norm; the adapter carries them
    assert saved["modules_to_save"] == ["lm_head", "language_model.norm"]
    stored = load_file(adapter / "adapter_model.safetensors")
    for name, module in (("lm_head", tuned.lm_head), ("language_model.norm", tuned.model.language_model.norm)):
        key = next(k for k in stored if k.endswith(f"{name}.weight") and "lora" not in k)
        assert torch.equal(module.weight, stored[key]), name  # reloaded = trained
    assert not torch.equal(tuned.lm_head.weight, base.lm_head.weight)
    assert not torch.equal(tuned.model.language_model.norm.weight, base.model.language_model.norm.weight)
    rows = load_published(published, "conversations-center")["test"].select(range(2))
    images = [r[0].convert("RGB") for r in rows["images"]]
    prompts = prompt_texts(processor, rows["messages"])
    inputs = processor(images=[[i] for i in images], text=prompts, padding=True, return_tensors="pt")
    unmerged.eval()
    with torch.inference_mode():
        assert not torch.allclose(base(**inputs).logits, tuned(**inputs).logits)
        torch.testing.assert_close(tuned(**inputs).logits, unmerged(**inputs).logits, rtol=1e-4, atol=1e-4)
    first = generate(tuned, processor, images, prompts, max_new_tokens=12)
    reloaded, _ = load_model(str(tiny_model), adapter)
    assert generate(reloaded, processor, images, prompts, max_new_tokens=12) == first


def test_same_seed_same_adapter_bytes(published, tiny_model, tmp_path):
    params = small(max_steps=dict.fromkeys(TASKS, 3))
    for name in ("a", "b"):
        finetune("cls", published, tmp_path / name, str(tiny_model), params)
    weights = [(tmp_path / name / "adapter_model.safetensors").read_bytes() for name in ("a", "b")]
    assert weights[0] == weights[1]


def test_unsloth_backend_says_why_it_cannot_run(published, tiny_model, tmp_path):
    with pytest.raises(BackendUnavailable, match="CUDA"):
        finetune("cls", published, tmp_path / "a", str(tiny_model), small(backend="unsloth"))
    assert not (tmp_path / "a").exists()


def test_4bit_training_without_cuda_is_a_clear_error(published, tiny_model, tmp_path):
    from brats_llm.errors import BratsLlmError

    with pytest.raises(BratsLlmError, match="load_in_4bit needs a CUDA GPU"):
        finetune("cls", published, tmp_path / "a", str(tiny_model), small(load_in_4bit=True))
    assert not (tmp_path / "a").exists()


class _Stop(Exception):
    pass


def _fake_unsloth(monkeypatch, calls: dict) -> None:
    """A stand-in ``unsloth`` (the real one needs CUDA): FastVisionModel loads the model with our loader and
    records what ``get_peft_model`` was asked for (keyword names as in unsloth 2026.8's signature)."""
    class FastVisionModel:
        @staticmethod
        def from_pretrained(model_id, load_in_4bit=False, use_gradient_checkpointing=False, **kwargs):
            calls["from_pretrained"] = {"model_id": model_id, "load_in_4bit": load_in_4bit}
            return load_model(model_id, for_training=True)

        @staticmethod
        def get_peft_model(model, **kwargs):
            calls["get_peft_model"] = kwargs
            return model

        @staticmethod
        def for_training(model):
            calls["for_training"] = True
            return model

    unsloth = types.ModuleType("unsloth")
    unsloth.FastVisionModel = FastVisionModel
    monkeypatch.setitem(sys.modules, "unsloth", unsloth)


def _fit_arguments(monkeypatch, task, published, tiny_model, tmp_path, backend) -> dict:
    """What ``backend`` hands to :func:`brats_llm.train.llm.trainer.fit` (captured; training is not run)."""
    import inspect

    seen: dict = {}
    signature = inspect.signature(fit)

    def fake_fit(*args, **kwargs):
        seen.update(signature.bind(*args, **kwargs).arguments)
        raise _Stop

    monkeypatch.setattr(trainer_module, "fit", fake_fit)
    with pytest.raises(_Stop):
        finetune(task, published, tmp_path / backend, str(tiny_model), small(backend=backend))
    return seen


@pytest.mark.parametrize("task", TASKS)
def test_unsloth_backend_trains_like_hf(published, tiny_model, tmp_path, monkeypatch, task):
    calls: dict = {}
    _fake_unsloth(monkeypatch, calls)
    hf = _fit_arguments(monkeypatch, task, published, tiny_model, tmp_path, "hf")
    monkeypatch.setattr(finetune_module, "device", lambda: "cuda")  # Unsloth's path is CUDA-only
    unsloth = _fit_arguments(monkeypatch, task, published, tiny_model, tmp_path, "unsloth")
    assert calls["from_pretrained"] == {"model_id": str(tiny_model), "load_in_4bit": False} and calls["for_training"]
    # the smoke model's head and final norm are trained on both backends (modules_to_save: auto)
    assert calls["get_peft_model"]["modules_to_save"] == ["lm_head", "language_model.norm"]
    assert hf["model"].peft_config["default"].modules_to_save == ["lm_head", "language_model.norm"]
    assert unsloth["optim"] == "adamw_8bit" and unsloth["model_loss"] and unsloth["checkpointing"] is False
    assert hf["optim"] == "adamw_torch" and not hf.get("model_loss", False)
    assert unsloth["task"] == hf["task"] == task and replace(unsloth["params"], backend="hf") == hf["params"]
    n = 3
    rows = [[fitted["train"][i] for i in range(n)] for fitted in (hf, unsloth)]
    assert rows[0] == rows[1]
    hf_batch = VisionChatCollator(hf["processor"], MLLAMA)(rows[0])  # fit's collator, from each backend's processor
    unsloth_batch = VisionChatCollator(unsloth["processor"], MLLAMA)(rows[1])
    for name in ("input_ids", "labels", "pixel_values", "aspect_ratio_ids", "aspect_ratio_mask", "cross_attention_mask"):
        assert torch.equal(unsloth_batch[name], hf_batch[name]), name
    labels = hf_batch["labels"]
    assert ((labels != IGNORE_INDEX).sum(dim=1) > 0).all()
    assert (labels[:, :5] == IGNORE_INDEX).all()  # the prompt (BOS, header, image ...) carries no loss
    if unsloth["validation"] is not None:
        assert len(unsloth["validation"]) == len(hf["validation"])


def test_params_and_curves():
    with pytest.raises(ValueError, match="backend"):
        FinetuneParams(backend="deepspeed")
    with pytest.raises(ValueError, match="every task"):
        FinetuneParams(lr={"cls": 1e-4})
    history = [{"loss": 2.0, "step": 1}, {"eval_loss": 1.5, "step": 1}, {"loss": 1.0, "step": 2}, {"train_runtime": 1}]
    assert loss_curves(history) == {"train": [(1, 2.0), (2, 1.0)], "validation": [(1, 1.5)]}


def test_adapter_is_pushed_privately_to_the_datasets_hub(published, tiny_model, tmp_path, monkeypatch):
    from tests.hub_server import HubServer

    token = "hf_testADAPTERtoken0123"
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setenv("HF_TOKEN", token)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_DISABLE_XET", True, raising=False)
    with HubServer() as hub:
        revision = {**json.loads(published.read_text()), "endpoint": hub.endpoint}
        (tmp_path / "revision.json").write_text(json.dumps(revision))
        record = finetune("bbox", tmp_path / "revision.json", tmp_path / "adapter", str(tiny_model),
                          small(push_to_hub="lab/bbox-adapter", max_steps=dict.fromkeys(TASKS, 1)))
        repo = hub.state.repos["lab/bbox-adapter"]
        sha, files = hub.state.files("lab/bbox-adapter", "main")
    assert repo["private"] and record["pushed_to"] == {"repo_id": "lab/bbox-adapter", "commit": sha}
    assert files["adapter_model.safetensors"] == (tmp_path / "adapter" / "adapter_model.safetensors").read_bytes()
    assert ADAPTER_RECORD in files and token.encode() not in files[ADAPTER_RECORD]


def test_full_epoch_finetune_replaces_max_steps(tmp_path):
    """Table 3's 'full epoch' column: llm_finetune.epochs > 0 trains full passes instead of max_steps."""
    from brats_llm.train.llm.trainer import sft_config

    by_steps = sft_config("cls", small(), str(tmp_path), cuda=False, optim="adamw_torch", has_eval=False)
    assert by_steps.max_steps == 3
    by_epochs = sft_config("cls", small(epochs={**dict.fromkeys(TASKS, 0), "cls": 1}), str(tmp_path), cuda=False,
                           optim="adamw_torch", has_eval=False)
    assert by_epochs.max_steps == -1 and by_epochs.num_train_epochs == 1
    with pytest.raises(ValueError, match="epochs"):
        small(epochs={**dict.fromkeys(TASKS, 0), "cls": -1})
