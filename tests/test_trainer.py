"""The training entry point: answer-only loss with logits only where labels are, and ``fit`` on any model."""

import pytest
import torch

import brats_llm.train.llm.trainer as trainer_module
from brats_llm.llm.families.mllama import MLLAMA
from brats_llm.llm.model import load_model
from brats_llm.publish.pinned import load_published
from brats_llm.train.llm.collator import IGNORE_INDEX, VisionChatCollator
from brats_llm.train.llm.params import FinetuneParams
from brats_llm.train.llm.trainer import answer_loss, fit

TASKS = ("cls", "center", "bbox", "polygon")


@pytest.fixture(scope="module")
def batch_and_model(published, tiny_model):
    model, processor = load_model(str(tiny_model))
    rows = list(load_published(published, "conversations-polygon")["train"].select(range(2)))
    return VisionChatCollator(processor, MLLAMA)(rows), model


@pytest.mark.parametrize("masked_logits", [True, False])
def test_answer_loss_is_the_models_loss_from_fewer_logits(batch_and_model, monkeypatch, masked_logits):
    batch, model = batch_and_model
    monkeypatch.setattr(trainer_module, "_keeps_masked_logits", lambda: masked_logits)  # both code paths
    rows_projected = []
    hook = model.lm_head.register_forward_hook(lambda module, args, output: rows_projected.append(output.shape))
    try:
        with torch.no_grad():
            full = model(**batch).loss  # transformers' own loss over every position
            ours = answer_loss(model, batch)
    finally:
        hook.remove()
    torch.testing.assert_close(ours, full, rtol=1e-5, atol=1e-5)
    labelled = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
    projected = rows_projected[1][:-1].numel()  # positions the 128k-token head ran on
    assert projected < batch["labels"].numel() and projected >= labelled
    if masked_logits:
        assert projected == labelled
    assert torch.isclose(answer_loss(model, batch, num_items_in_batch=2 * labelled), ours / 2)


def test_fit_trains_every_weight_of_a_plain_model(published, tiny_model, tmp_path):
    """The general model's use: no LoRA, every weight trained, no full-vocabulary metrics logged."""
    model, processor = load_model(str(tiny_model), for_training=True)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    train = load_published(published, "conversations-center")["train"].select_columns(["images", "messages"])
    params = FinetuneParams(batch_size=dict.fromkeys(TASKS, 2), lr=dict.fromkeys(TASKS, 0.01),
                            max_steps=dict.fromkeys(TASKS, 3), warmup_steps=0, eval_steps=2)
    trainer = fit(model, processor, train.select(range(6)), train.select(range(6, 8)), "center", params,
                  str(tmp_path), cuda=False, optim="adamw_torch")
    logs = trainer.state.log_history
    losses = [entry["loss"] for entry in logs if "loss" in entry]
    assert len(losses) == 3 and all(loss > 0 for loss in losses)
    assert not any(key in entry for entry in logs for key in ("entropy", "mean_token_accuracy"))
    changed = {name for name, p in model.named_parameters() if not torch.equal(p.detach(), before[name])}
    assert {"lm_head.weight", "model.language_model.norm.weight"} <= changed
    assert any(name.startswith("model.vision_model") for name in changed)
    assert any("eval_loss" in entry for entry in logs)  # validation loss only (prediction_loss_only)
