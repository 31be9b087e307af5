"""The ``Family`` contract: what one vision-LLM architecture needs that the rest of the pipeline does not know."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


def auto_processor(model_id: str):
    """``AutoProcessor.from_pretrained(model_id)``: how a family's processor loads unless it says otherwise."""
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(model_id)


@dataclass(frozen=True)
class Family:
    """What differs between model families; one module per family under ``brats_llm/llm/families/`` holds one.

    Common to every family, so no field: the chat template writes every special token, start tokens
    included (``infer.encode`` never adds any: Mllama's tokenizer would prepend a second BOS; Qwen2.5-VL
    has no BOS at all), and models load with ``AutoModelForImageTextToText`` (processors: ``load_processor``).
    Not here until code reads them: Unsloth loader arguments (every family loads with the same
    ``FastVisionModel`` call today).

    Attributes:
        model_type: ``config.json``'s ``model_type``, the registry key (``mllama``; Qwen2.5-VL: ``qwen2_5_vl``).
        architecture: the architecture's name in model cards and reports (``Mllama (Llama 3.2 Vision)``).
        image_token: what the chat template writes for an image; the training loss masks every token
            with its id (Mllama: ``<|image|>``; Qwen2.5-VL: ``<|image_pad|>``).
        expands_image: the processor repeats ``image_token`` once per image patch (Qwen2.5-VL) instead of
            keeping one token per image (Mllama, whose cross-attention reads the image).
        language_targets: PEFT ``target_modules`` regex of the language model's attention + MLP projections
            (bare projection names would also hit the vision tower).
        vision_targets: the same for the vision tower (``finetune_vision_layers``).
        smoke_modules_to_save: what ``llm_finetune.modules_to_save: auto`` trains whole on the tiny smoke
            model (PEFT name suffixes: its lm_head and final norm), besides LoRA.
        build_tokenizer: the tiny model's tokenizer (the real model's vocabulary and special ids), offline.
        build_tiny: ``build_tiny(out_dir, params)`` saves the tiny random model + processor; returns the folder.
        vllm: vLLM serves this architecture (``llm.backend: vllm``); False for Mllama, which vLLM dropped
            after v0.11.
        load_processor: ``load_processor(model_id)`` returns the processor of a folder or Hub id; default
            :func:`auto_processor` (``AutoProcessor.from_pretrained``). Qwen2.5-VL's picks an image-only
            processor where torchvision (its video processor's dependency) is missing.
    """

    model_type: str
    architecture: str
    image_token: str
    expands_image: bool
    language_targets: str
    vision_targets: str
    smoke_modules_to_save: tuple[str, ...]
    build_tokenizer: Callable[[], Any]
    build_tiny: Callable[..., Any]
    vllm: bool = False
    load_processor: Callable[[str], Any] = auto_processor

    def __post_init__(self) -> None:
        if not (self.model_type and self.architecture and self.image_token and self.language_targets and self.vision_targets):
            raise ValueError(f"family {self.model_type!r}: model_type, architecture, image_token and the LoRA targets must be set")
