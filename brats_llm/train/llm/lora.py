"""Which modules LoRA adapts (by the model family: language, optionally vision) and which it trains whole."""

from __future__ import annotations

from collections.abc import Sequence

from brats_llm.llm.families import Family
from brats_llm.train.llm.params import AUTO


def target_modules(family: Family, finetune_vision_layers: bool) -> str:
    """PEFT ``target_modules`` regex for the family's language model, plus its vision tower when asked."""
    if finetune_vision_layers:
        return f"({family.language_targets})|({family.vision_targets})"
    return family.language_targets


def modules_to_save(setting: str | Sequence[str], family: Family, *, smoke_model: bool) -> list[str] | None:
    """PEFT ``modules_to_save`` for ``llm_finetune.modules_to_save``: ``auto`` resolves by the base model
    (the family's ``smoke_modules_to_save`` on the smoke model, none on a real one); a list is taken as given.

    Returns:
        Module-name suffixes, or None for none (PEFT's "nothing beyond LoRA").
    """
    names = (list(family.smoke_modules_to_save) if smoke_model else []) if setting == AUTO else list(setting)
    return names or None


def lora_config(rank: int, alpha: int, dropout: float, family: Family, finetune_vision_layers: bool,
                save_modules: Sequence[str] | None = None):
    """A PEFT ``LoraConfig`` for causal-LM training; ``save_modules`` are trained whole and saved in the adapter."""
    from peft import LoraConfig

    return LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, bias="none", task_type="CAUSAL_LM",
                      target_modules=target_modules(family, finetune_vision_layers),
                      modules_to_save=list(save_modules) if save_modules else None)
