"""The ``llm_finetune`` section of params.yaml: LoRA and trainer settings, per task where the paper varies them."""

from __future__ import annotations

from dataclasses import dataclass, field

from brats_llm.conversations.prompts import TASKS

BACKENDS = ("hf", "unsloth")


def _per_task(cls: float, center: float, bbox: float, polygon: float) -> dict[str, float]:
    return {"cls": cls, "center": center, "bbox": bbox, "polygon": polygon}


@dataclass(frozen=True)
class FinetuneParams:
    """LoRA fine-tuning settings (demo preset in params.yaml; the paper's in brats_llm/presets/paper.yaml).

    Attributes:
        backend: ``hf`` (transformers + PEFT + TRL, CPU or GPU) or ``unsloth`` (FastVisionModel, CUDA only).
        lora_rank, lora_alpha, lora_dropout: LoRA shape (paper: 16, 16, 0).
        finetune_vision_layers: also adapt the vision tower (Unsloth's ``finetune_vision_layers``).
        gradient_checkpointing: recompute activations (memory for time).
        gradient_accumulation: micro-batches per optimizer step (paper: 4).
        batch_size: micro-batch per task (paper: 16; polygon 4).
        lr: learning rate per task (paper: 2e-6 for classification).
        max_steps: optimizer steps per task (paper: 100 cls, 100 centre, 200 bbox, 150 polygon).
        epochs: per task, 0 = stop at ``max_steps``; N > 0 = N full passes over the training rows instead
            (the paper's "full epoch" classification fine-tune, Table 3: ``-S llm_finetune.epochs.cls=1``).
        warmup_steps: linear warm-up.
        eval_steps: validation loss every N steps (the paper logged none).
        eval_rows: validation rows used for the loss (0 = all).
        load_in_4bit: unsloth backend only: 4-bit base weights (QLoRA).
        seed: data order and LoRA init.
        push_to_hub: adapter repo id to upload to after training ("" = local only).
        threads: intra-op CPU threads; fixed (not taken from the machine) so a run is byte-reproducible.

    The defaults are the demo preset (params.yaml); a test keeps them equal.
    """

    backend: str = "hf"
    lora_rank: int = 16
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    finetune_vision_layers: bool = False
    gradient_checkpointing: bool = True
    gradient_accumulation: int = 1
    batch_size: dict[str, int] = field(default_factory=lambda: _per_task(2, 2, 2, 2))
    lr: dict[str, float] = field(default_factory=lambda: _per_task(0.01, 0.01, 0.01, 0.01))
    max_steps: dict[str, int] = field(default_factory=lambda: _per_task(40, 40, 40, 40))
    epochs: dict[str, float] = field(default_factory=lambda: _per_task(0, 0, 0, 0))
    warmup_steps: int = 5
    eval_steps: int = 20
    eval_rows: int = 16
    load_in_4bit: bool = False
    seed: int = 2020
    push_to_hub: str = ""
    threads: int = 2

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        if any(value < 0 for value in self.epochs.values()):
            raise ValueError(f"epochs must be >= 0 (0 = use max_steps), got {self.epochs}")
        for name in ("batch_size", "lr", "max_steps", "epochs"):
            missing = set(TASKS) - set(getattr(self, name))
            if missing:
                raise ValueError(f"{name} needs a value for every task; missing {sorted(missing)}")
