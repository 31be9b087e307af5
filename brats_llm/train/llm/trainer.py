"""The one training loop of the vision-LLMs: TRL ``SFTTrainer``, our collator, the loss on answer tokens only."""

from __future__ import annotations

from typing import Any

from brats_llm.llm.families import family_for
from brats_llm.train.llm.collator import IGNORE_INDEX, VisionChatCollator
from brats_llm.train.llm.params import FinetuneParams

__all__ = ["answer_loss", "fit", "sft_config", "trainer_class"]


def sft_config(task: str, params: FinetuneParams, output_dir: str, *, cuda: bool, optim: str, has_eval: bool,
               checkpointing: bool | None = None):
    """TRL ``SFTConfig`` shared by both backends (raw rows go to the collator untouched).

    ``checkpointing`` overrides ``params.gradient_checkpointing`` (Unsloth checkpoints inside the model).
    Evaluation asks for the loss only (``prediction_loss_only``): no logits are kept for metrics.
    """
    from trl import SFTConfig

    checkpointing = params.gradient_checkpointing if checkpointing is None else checkpointing
    return SFTConfig(
        output_dir=output_dir, per_device_train_batch_size=params.batch_size[task],
        per_device_eval_batch_size=params.batch_size[task], gradient_accumulation_steps=params.gradient_accumulation,
        learning_rate=params.lr[task], warmup_steps=params.warmup_steps,
        **({"num_train_epochs": params.epochs[task], "max_steps": -1} if params.epochs[task] else
           {"max_steps": params.max_steps[task]}),
        lr_scheduler_type="linear", optim=optim, weight_decay=0.0, seed=params.seed, data_seed=params.seed,
        logging_steps=1, eval_strategy="steps" if has_eval else "no", eval_steps=params.eval_steps,
        prediction_loss_only=True, save_strategy="no", report_to="none", disable_tqdm=False,
        gradient_checkpointing=checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False} if checkpointing else None,
        bf16=cuda, fp16=False, use_cpu=not cuda, max_length=None,  # never truncate image tokens
        remove_unused_columns=False, dataset_kwargs={"skip_prepare_dataset": True},
        dataloader_num_workers=0,
    )


def _keeps_masked_logits() -> bool:
    """Whether this transformers takes a boolean ``(batch, length)`` ``logits_to_keep`` (5.2x: ``slice_logits_to_keep``)."""
    from transformers import modeling_utils

    return hasattr(modeling_utils, "slice_logits_to_keep")


def answer_loss(model, inputs: dict[str, Any], num_items_in_batch=None):
    """Next-token cross-entropy on the labelled (answer) tokens, with logits computed only where labels are.

    The forward gets ``logits_to_keep``: the boolean mask of positions whose next token is labelled
    (transformers with ``slice_logits_to_keep``), else the union of those positions over the batch.
    The 128k-token ``lm_head`` then runs on the answers only, not on the prompt, image token and
    padding. The loss is summed and divided by ``num_items_in_batch`` (labelled tokens of the whole
    accumulated batch, as the Trainer counts them) or, without it, by this batch's labelled tokens.
    """
    import torch
    import torch.nn.functional as F

    labels = inputs["labels"]
    labelled = torch.zeros_like(labels, dtype=torch.bool)
    labelled[:, :-1] = labels[:, 1:] != IGNORE_INDEX  # position t predicts token t + 1
    targets = labels[:, 1:][labelled[:, :-1]]
    forward = {key: value for key, value in inputs.items() if key != "labels"}
    if _keeps_masked_logits():
        logits = model(**forward, use_cache=False, logits_to_keep=labelled).logits
    else:
        positions = labelled.any(dim=0).nonzero().squeeze(1)
        logits = model(**forward, use_cache=False, logits_to_keep=positions).logits[labelled[:, positions]]
    if logits.shape[0] != len(targets):
        raise RuntimeError(f"the model returned logits of shape {tuple(logits.shape)} for {len(targets)} labelled "
                           f"positions: its forward does not honour logits_to_keep")
    loss = F.cross_entropy(logits.float(), targets, reduction="sum")
    count = num_items_in_batch if num_items_in_batch is not None else max(len(targets), 1)
    return loss / torch.as_tensor(count, device=loss.device)


def trainer_class():
    """``SFTTrainer`` with :func:`answer_loss` as its loss (built on call: Unsloth patches TRL when imported).

    TRL's own ``compute_loss`` also computes entropy and token accuracy over the full vocabulary at
    every position on CPU (its fused head scores only labelled positions on Triton devices); they are
    not computed here. ``model_loss=True`` uses the model's own loss instead (Unsloth's fused
    cross-entropy, which returns no logits in training), with the same labels.
    """
    from trl import SFTTrainer

    class AnswerOnlySFTTrainer(SFTTrainer):
        model_loss = False

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if self.model_loss:
                extra = {} if num_items_in_batch is None else {"num_items_in_batch": num_items_in_batch}
                outputs = model(**inputs, use_cache=False, **extra)
                return (outputs.loss, outputs) if return_outputs else outputs.loss
            if return_outputs:
                raise ValueError("the answer-only loss keeps no logits; evaluate with prediction_loss_only")
            return answer_loss(model, inputs, num_items_in_batch)

    return AnswerOnlySFTTrainer


def fit(model, processor, train, validation, task: str, params: FinetuneParams, workdir: str, *, cuda: bool,
        optim: str, checkpointing: bool | None = None, model_loss: bool = False):
    """Train an already-built ``model`` (PEFT-wrapped or plain) on chat rows; return the finished trainer.

    Args:
        model: the model to train; every parameter with ``requires_grad`` is trained (LoRA + saved
            modules of a PEFT model, or all weights of a plain one).
        processor: its processor; :class:`VisionChatCollator` tokenises with it (loss on the answer
            and its end-of-turn token only; image tokens by the model's family).
        train, validation: ``datasets.Dataset`` with ``images`` + ``messages`` columns (validation may
            be None: no evaluation).
        task: which per-task values of ``params`` apply (batch size, lr, max steps, epochs).
        params: trainer settings (``llm_finetune``); ``seed`` orders the data.
        workdir: scratch folder for the Trainer (nothing is saved there: ``save_strategy="no"``).
        cuda: bf16 on GPU; CPU otherwise.
        optim: Trainer optimizer name (``adamw_torch``, ``adamw_8bit``).
        checkpointing: overrides ``params.gradient_checkpointing``.
        model_loss: take the model's own loss (Unsloth) instead of :func:`answer_loss`.

    Returns:
        The trainer after ``train()``: ``trainer.state.log_history`` holds the losses, ``trainer.model``
        the trained model.
    """
    trainer = trainer_class()(model=model, args=sft_config(task, params, workdir, cuda=cuda, optim=optim,
                                                           has_eval=validation is not None,
                                                           checkpointing=checkpointing),
                              train_dataset=train, eval_dataset=validation, processing_class=processor,
                              data_collator=VisionChatCollator(processor, family_for(model)))
    trainer.model_loss = model_loss
    trainer.train()
    return trainer
