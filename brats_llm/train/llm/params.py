"""The ``llm_finetune`` section of params.yaml: LoRA and trainer settings, per task where the paper varies them."""

from __future__ import annotations

from dataclasses import dataclass, field

from brats_llm.config import at_least, between
from brats_llm.conversations.prompts import TASKS

BACKENDS = ("hf", "unsloth")
#: ``modules_to_save`` value that picks the modules by the base model (see :func:`~brats_llm.train.llm.lora.modules_to_save`).
AUTO = "auto"


def _per_task(cls: float, center: float, bbox: float, polygon: float) -> dict[str, float]:
    return {"cls": cls, "center": center, "bbox": bbox, "polygon": polygon}


@dataclass(frozen=True)
class FinetuneParams:
    """LoRA fine-tuning settings (demo preset in params.yaml; the paper's in brats_llm/presets/paper.yaml).

    Attributes:
        backend: ``hf`` (transformers + PEFT + TRL, CPU or GPU) or ``unsloth`` (FastVisionModel, CUDA only).
        lora_rank, lora_alpha, lora_dropout: LoRA shape (paper: 16, 16, 0).
        finetune_vision_layers: also adapt the vision tower (Unsloth's ``finetune_vision_layers``).
        modules_to_save: whole modules trained beside LoRA and saved in the adapter (PEFT ``modules_to_save``,
            module-name suffixes): ``auto`` = the model family's ``smoke_modules_to_save`` (the lm_head and
            the language model's final norm) on the tiny smoke model, none on a real model; or an explicit
            list; ``[]`` = none.
        gradient_checkpointing: recompute activations (memory for time; it costs time and saves nothing
            worth having on the tiny model).
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
    modules_to_save: str | tuple[str, ...] = "auto"
    gradient_checkpointing: bool = False
    gradient_accumulation: int = 1
    batch_size: dict[str, int] = field(default_factory=lambda: _per_task(2, 2, 2, 2))
    lr: dict[str, float] = field(default_factory=lambda: _per_task(0.01, 0.01, 0.01, 0.01))
    max_steps: dict[str, int] = field(default_factory=lambda: _per_task(50, 100, 100, 100))
    epochs: dict[str, float] = field(default_factory=lambda: _per_task(0, 0, 0, 0))
    warmup_steps: int = 5
    eval_steps: int = 20
    eval_rows: int = 16
    load_in_4bit: bool = False
    seed: int = 2020
    push_to_hub: str = ""
    threads: int = 2

    def __post_init__(self) -> None:
        if isinstance(self.modules_to_save, str):
            if self.modules_to_save != AUTO:
                raise ValueError(f"modules_to_save must be {AUTO!r} or a list of module names, got {self.modules_to_save!r}")
        else:
            names = tuple(self.modules_to_save)
            if not all(isinstance(name, str) and name for name in names):
                raise ValueError(f"modules_to_save must be {AUTO!r} or a list of module names, got {self.modules_to_save!r}")
            object.__setattr__(self, "modules_to_save", names)
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        at_least(self, 1, "lora_rank", "lora_alpha", "gradient_accumulation", "batch_size", "max_steps", "eval_steps",
                 "threads")
        at_least(self, 0, "warmup_steps", "eval_rows", "seed", "epochs")  # epochs 0 = use max_steps
        between(self, 0.0, 0.99, "lora_dropout")
        if not all(value > 0 for value in self.lr.values()):
            raise ValueError(f"lr must be > 0 for every task, got {self.lr}")
        if self.push_to_hub:  # huggingface_hub's rule, as publish.hub.check_repo_id (not imported: no publish code dep)
            from huggingface_hub.utils import HFValidationError, validate_repo_id

            try:
                validate_repo_id(self.push_to_hub)
            except HFValidationError as error:
                raise ValueError(f"push_to_hub {self.push_to_hub!r} is not a valid Hub repo id ('name' or "
                                 f"'namespace/name'): {str(error).split(':')[0]}") from error
        for name in ("batch_size", "lr", "max_steps", "epochs"):
            missing = set(TASKS) - set(getattr(self, name))
            if missing:
                raise ValueError(f"{name} needs a value for every task; missing {sorted(missing)}")
