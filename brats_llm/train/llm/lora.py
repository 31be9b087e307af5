"""Which modules LoRA adapts (language attention + MLP, optionally the vision tower) and which it trains whole."""

from __future__ import annotations

from collections.abc import Sequence

from brats_llm.train.llm.params import AUTO

#: Language-model projections (attention + MLP). Plain names would also hit the vision tower.
LANGUAGE_TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
#: Vision-tower attention + MLP (Mllama's vision encoder uses fc1 / fc2).
VISION_TARGETS = r".*vision_model.*\.(q_proj|k_proj|v_proj|o_proj|fc1|fc2)"
#: Trained whole on the tiny smoke model (``modules_to_save: auto``). PEFT matches these as name suffixes:
#: ``lm_head`` and ``model.language_model.norm`` (the decoder's final RMSNorm), not the per-layer or vision
#: norms. With hidden size 32 and these frozen, the reachable logits stay near uniform over 128k tokens
#: (max logit ~6.4 vs log-sum-exp ~12): LoRA alone plateaus at 7.7-8.5 nats/token and never fits an answer.
SMOKE_MODULES_TO_SAVE = ("lm_head", "language_model.norm")


def target_modules(finetune_vision_layers: bool) -> str:
    """PEFT ``target_modules`` regex for the language model, plus the vision tower when asked."""
    if finetune_vision_layers:
        return f"({LANGUAGE_TARGETS})|({VISION_TARGETS})"
    return LANGUAGE_TARGETS


def modules_to_save(setting: str | Sequence[str], smoke_model: bool) -> list[str] | None:
    """PEFT ``modules_to_save`` for ``llm_finetune.modules_to_save``: ``auto`` resolves by the base model
    (:data:`SMOKE_MODULES_TO_SAVE` on the smoke model, none on a real one); a list is taken as given.

    Returns:
        Module-name suffixes, or None for none (PEFT's "nothing beyond LoRA").
    """
    names = (list(SMOKE_MODULES_TO_SAVE) if smoke_model else []) if setting == AUTO else list(setting)
    return names or None


def lora_config(rank: int, alpha: int, dropout: float, finetune_vision_layers: bool,
                save_modules: Sequence[str] | None = None):
    """A PEFT ``LoraConfig`` for causal-LM training; ``save_modules`` are trained whole and saved in the adapter."""
    from peft import LoraConfig

    return LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, bias="none", task_type="CAUSAL_LM",
                      target_modules=target_modules(finetune_vision_layers),
                      modules_to_save=list(save_modules) if save_modules else None)
