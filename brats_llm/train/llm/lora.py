"""Which modules LoRA adapts: language attention + MLP, optionally the vision tower too."""

from __future__ import annotations

#: Language-model projections (attention + MLP). Plain names would also hit the vision tower.
LANGUAGE_TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
#: Vision-tower attention + MLP (Mllama's vision encoder uses fc1 / fc2).
VISION_TARGETS = r".*vision_model.*\.(q_proj|k_proj|v_proj|o_proj|fc1|fc2)"


def target_modules(finetune_vision_layers: bool) -> str:
    """PEFT ``target_modules`` regex for the language model, plus the vision tower when asked."""
    if finetune_vision_layers:
        return f"({LANGUAGE_TARGETS})|({VISION_TARGETS})"
    return LANGUAGE_TARGETS


def lora_config(rank: int, alpha: int, dropout: float, finetune_vision_layers: bool):
    """A PEFT ``LoraConfig`` for causal-LM training."""
    from peft import LoraConfig

    return LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, bias="none", task_type="CAUSAL_LM",
                      target_modules=target_modules(finetune_vision_layers))
