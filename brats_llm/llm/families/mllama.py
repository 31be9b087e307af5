"""The Mllama family (Llama 3.2 Vision): one ``<|image|>`` per image, read by cross-attention layers."""

from __future__ import annotations

from brats_llm.llm import tiny
from brats_llm.llm.families.base import Family

#: The paper's model (``llm.model`` for real runs: brats_llm/presets/paper.yaml).
PAPER_MODEL = "unsloth/Llama-3.2-11B-Vision-Instruct"
#: Language-model projections (attention + MLP); the decoder's cross-attention layers match too.
LANGUAGE_TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
#: Vision-tower attention + MLP (Mllama's vision encoder uses fc1 / fc2).
VISION_TARGETS = r".*vision_model.*\.(q_proj|k_proj|v_proj|o_proj|fc1|fc2)"
#: ``lm_head`` and ``model.language_model.norm`` (the decoder's final RMSNorm), not the per-layer or vision
#: norms. With hidden size 32 and these frozen, the reachable logits stay near uniform over 128k tokens
#: (max logit ~6.4 vs log-sum-exp ~12): LoRA alone plateaus at 7.7-8.5 nats/token and never fits an answer.
SMOKE_MODULES_TO_SAVE = ("lm_head", "language_model.norm")

#: The tiny builder stays in :mod:`brats_llm.llm.tiny` (its params are the ``tiny_model`` section).
MLLAMA = Family(model_type="mllama", architecture="Mllama (Llama 3.2 Vision)", image_token=tiny.IMAGE_TOKEN,
                expands_image=False,
                language_targets=LANGUAGE_TARGETS, vision_targets=VISION_TARGETS,
                smoke_modules_to_save=SMOKE_MODULES_TO_SAVE, build_tokenizer=tiny.build_tokenizer,
                build_tiny=tiny.build_tiny_model)
