"""The ``llm-finetune`` stage: LoRA on one task's conversations, validation loss logged, adapter + provenance saved."""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from brats_llm import atomic
from brats_llm.conversations.prompts import PROMPT_VERSION, TASKS
from brats_llm.determinism import configure
from brats_llm.errors import InputError
from brats_llm.llm.families import Family, family_for
from brats_llm.llm.model import ADAPTER_RECORD, BackendUnavailable, device, is_smoke_model
from brats_llm.provenance import read_revision
from brats_llm.train.llm.params import FinetuneParams

__all__ = ["BackendUnavailable", "collator_for", "finetune", "lora_model", "loss_curves"]

log = logging.getLogger(__name__)


def collator_for(backend: str, processor: Any, family: Family):
    """The training collator of ``backend``: :class:`VisionChatCollator` for both ``hf`` and ``unsloth``.

    One collator, one loss mask: the answer and its end-of-turn token only (prompt, padding and the
    family's image tokens are -100). Unsloth's own ``UnslothVisionDataCollator`` on ``messages`` rows would
    train on the prompt too. ``brats-llm llm-inspect`` shows what it builds.
    """
    from brats_llm.train.llm.collator import VisionChatCollator

    if backend not in ("hf", "unsloth"):
        raise InputError(f"unknown backend {backend!r}; backends are hf, unsloth")
    return VisionChatCollator(processor, family)


def _save_modules(params: FinetuneParams, model_id: str, family: Family) -> list[str] | None:
    from brats_llm.train.llm.lora import modules_to_save

    return modules_to_save(params.modules_to_save, family, smoke_model=is_smoke_model(model_id))


def lora_model(model_id: str, params: FinetuneParams):
    """``model_id`` loaded for training and wrapped by PEFT: LoRA on the targets of ``params`` plus its
    ``modules_to_save`` (``auto``: the smoke model's lm_head and final norm), both by the model's family;
    returns (model, processor)."""
    from peft import get_peft_model
    from transformers import set_seed

    from brats_llm.llm.model import load_model
    from brats_llm.train.llm.lora import lora_config

    model, processor = load_model(model_id, for_training=True, load_in_4bit=params.load_in_4bit)
    if params.load_in_4bit:  # QLoRA: cast norms to fp32, enable input grads for checkpointing
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=params.gradient_checkpointing)
    family = family_for(model)
    set_seed(params.seed)  # LoRA's A matrices are drawn here, before the Trainer seeds anything
    model = get_peft_model(model, lora_config(params.lora_rank, params.lora_alpha, params.lora_dropout, family,
                                              params.finetune_vision_layers, _save_modules(params, model_id, family)))
    return model, processor


def _train_hf(task: str, model_id: str, train, validation, params: FinetuneParams, workdir: str):
    """transformers + PEFT (:func:`lora_model`) trained by :func:`~brats_llm.train.llm.trainer.fit` (CPU or GPU)."""
    from brats_llm.train.llm.trainer import fit

    model, processor = lora_model(model_id, params)
    cuda = device() == "cuda"
    optim = "adamw_torch"
    if cuda:
        try:
            import bitsandbytes  # noqa: F401

            optim = "adamw_8bit"  # the paper's optimizer
        except ImportError:
            log.warning("bitsandbytes not installed: plain AdamW instead of the paper's 8-bit AdamW")
    trainer = fit(model, processor, train, validation, task, params, workdir, cuda=cuda, optim=optim)
    return trainer, model, processor, optim


def _train_unsloth(task: str, model_id: str, train, validation, params: FinetuneParams, workdir: str):
    """Unsloth FastVisionModel (the paper's setup) with our collator (answer-only loss); CUDA only.

    Unsloth's fused cross-entropy computes the loss (it returns no logits in training), on our labels.
    """
    if device() != "cuda":
        raise BackendUnavailable("the unsloth backend needs a CUDA GPU (Unsloth's FastVisionModel does not run "
                                 "on CPU); use --backend hf here")
    try:
        from unsloth import FastVisionModel  # must be imported before transformers/trl to patch them
    except ImportError as error:
        raise BackendUnavailable(f"the unsloth backend needs the extra: pip install -e '.[unsloth]' ({error})") from error
    from brats_llm.train.llm.trainer import fit

    model, processor = FastVisionModel.from_pretrained(model_id, load_in_4bit=params.load_in_4bit,
                                                       use_gradient_checkpointing="unsloth" if params.gradient_checkpointing else False)
    model = FastVisionModel.get_peft_model(
        model, finetune_vision_layers=params.finetune_vision_layers, finetune_language_layers=True,
        finetune_attention_modules=True, finetune_mlp_modules=True, r=params.lora_rank,
        lora_alpha=params.lora_alpha, lora_dropout=params.lora_dropout, bias="none", random_state=params.seed,
        modules_to_save=_save_modules(params, model_id, family_for(model)))
    FastVisionModel.for_training(model)
    # TRL-native rows (images + messages) and the hf backend's collator: the same tokens and loss mask
    trainer = fit(model, processor, train, validation, task, params, workdir, cuda=True, optim="adamw_8bit",
                  checkpointing=False, model_loss=True)
    return trainer, model, processor, "adamw_8bit"


def loss_curves(log_history: list[dict[str, Any]]) -> dict[str, list[tuple[int, float]]]:
    """(step, loss) pairs of the training and validation loss from a Trainer's ``log_history``."""
    curves: dict[str, list[tuple[int, float]]] = {"train": [], "validation": []}
    for entry in log_history:
        if "loss" in entry:
            curves["train"].append((int(entry["step"]), float(entry["loss"])))
        if "eval_loss" in entry:
            curves["validation"].append((int(entry["step"]), float(entry["eval_loss"])))
    return curves


def _write_live(live_dir: Path, task: str, curves: dict[str, list[tuple[int, float]]]) -> None:
    for split, points in curves.items():
        text = "step\tloss\n" + "".join(f"{step}\t{loss:.6f}\n" for step, loss in points)
        atomic.write_text(live_dir / "plots" / "metrics" / split / "loss.tsv", text)
    final = {split: points[-1][1] for split, points in curves.items() if points}
    atomic.write_json(live_dir / "metrics.json", {"task": task, "final_loss": final,
                                                  "steps": curves["train"][-1][0] if curves["train"] else 0})


def finetune(task: str, revision_file: str | os.PathLike, out_dir: str | os.PathLike, model_id: str,
             params: FinetuneParams, *, live_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Train a LoRA adapter for ``task`` on the pinned conversations; save it with its provenance.

    ``out_dir`` gets the PEFT adapter (``adapter_config.json``, ``adapter_model.safetensors``),
    the processor, and :data:`ADAPTER_RECORD` (base model, dataset revision, params, losses).

    Raises:
        BackendUnavailable: ``unsloth`` asked for without CUDA or without the extra.
    """
    from brats_llm.publish.pinned import load_published

    if task not in TASKS:
        raise InputError(f"unknown task {task!r}; tasks are {TASKS}")
    revision = read_revision(revision_file)
    configure(params.threads, params.seed)  # fixed threads, deterministic kernels: the same adapter bytes
    splits = load_published(revision_file, f"conversations-{task}")
    keep = ["images", "messages"]
    train = splits["train"].select_columns(keep)
    validation = splits["validation"].select_columns(keep) if "validation" in splits else None
    if validation is not None and params.eval_rows:
        validation = validation.select(range(min(params.eval_rows, len(validation))))
    backend = {"hf": _train_hf, "unsloth": _train_unsloth}[params.backend]
    with tempfile.TemporaryDirectory(prefix="brats-llm-sft-") as workdir:
        trainer, model, processor, optim = backend(task, model_id, train, validation, params, workdir)
    curves = loss_curves(trainer.state.log_history)
    record = {"task": task, "base_model": model_id, "smoke_model": is_smoke_model(model_id), "backend": params.backend,
              "optimizer": optim, "dataset": {"repo_id": revision.get("repo_id"), "revision": revision["revision"],
                                              "config": f"conversations-{task}", "train_rows": len(train)},
              "prompt_version": PROMPT_VERSION, "params": asdict(params),
              "modules_to_save": _save_modules(params, model_id, family_for(model)) or [],
              "final_loss": {split: points[-1][1] if points else None for split, points in curves.items()}}
    with atomic.atomic_dir(out_dir, kind="adapter") as staging:
        model.save_pretrained(staging)
        processor.save_pretrained(staging)
        atomic.write_json(staging / ADAPTER_RECORD, record)
    if live_dir:
        _write_live(Path(live_dir), task, curves)
    if params.push_to_hub:  # to the Hub the dataset came from (its endpoint is in the revision file)
        from brats_llm.publish.hub import upload_to_hub

        record["pushed_to"] = {"repo_id": params.push_to_hub, "commit": upload_to_hub(
            Path(out_dir), params.push_to_hub, repo_type="model", endpoint=revision.get("endpoint"),
            message=f"LoRA adapter for {task} on dataset revision {revision['revision']}")}
    return record
