"""The embedded default model: a tiny random ``MllamaForConditionalGeneration`` built offline."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from brats_llm import atomic
from brats_llm.conversations.prompts import CLASS_ANSWERS, CLASS_NAMES, PROMPTS, answer_text

#: The Llama 3 special tokens the chat template uses, in the real model's order; ``<|image|>`` comes last.
SPECIAL_TOKENS = ("<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
                  "<|reserved_special_token_1|>", "<|finetune_right_pad_id|>", "<|step_id|>",
                  "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>", "<|python_tag|>")
IMAGE_TOKEN = "<|image|>"
PAD_TOKEN = "<|finetune_right_pad_id|>"

#: Llama 3.2 Vision's chat format, with ``{% generation %}`` markers around assistant text (TRL's
#: ``assistant_only_loss``). Image parts become ``<|image|>``; the image is placed before the text.
CHAT_TEMPLATE = (
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}"
    "{%- if message['content'] is string %}"
    "{%- if message['role'] == 'assistant' %}{% generation %}{{- message['content'] }}{% endgeneration %}"
    "{%- else %}{{- message['content'] }}{%- endif %}"
    "{%- else %}{%- for part in message['content'] %}"
    "{%- if part['type'] == 'image' %}{{- '<|image|>' }}"
    "{%- elif part['type'] == 'text' %}"
    "{%- if message['role'] == 'assistant' %}{% generation %}{{- part['text'] }}{% endgeneration %}"
    "{%- else %}{{- part['text'] }}{%- endif %}"
    "{%- endif %}{%- endfor %}{%- endif %}"
    "{{- '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)


@dataclass(frozen=True)
class TinyModelParams:
    """``tiny_model`` section of params.yaml: sizes of the random smoke-test model.

    Attributes:
        seed: weight initialisation seed (same seed => byte-identical safetensors).
        text_layers: language decoder layers (one of them is a cross-attention layer).
        hidden_size: language model width.
        vision_hidden_size: vision encoder width.
        tile_size: image tile edge in pixels (real model: 560); a 128 px slice becomes up to 4 tiles.
        vocab_size: byte-level BPE vocabulary trained on the prompts and answers (special tokens extra).
        text_init_std: language-model weight init std (wide enough for a LoRA-only fine-tune to fit answers).
    """

    seed: int = 2020
    text_layers: int = 4
    hidden_size: int = 64
    vision_hidden_size: int = 32
    tile_size: int = 56
    vocab_size: int = 512
    text_init_std: float = 0.2


def _corpus() -> list[str]:
    """Text the tokenizer learns merges from: every prompt and a spread of well-formed answers."""
    lines = list(PROMPTS.values())
    lines += [answer_text("cls", (label, ["keyword"] * 10)) for label in CLASS_ANSWERS]
    lines += list(CLASS_NAMES.values())
    for value in range(0, 128, 3):
        lines.append(answer_text("center", (value, 127 - value)))
        lines.append(answer_text("bbox", [(value, value), (value + 1, value), (value + 1, value + 2), (value, value + 2)]))
    lines.append(answer_text("polygon", [(x, (x * 7) % 128) for x in range(0, 128, 9)]))
    return lines


def build_tokenizer(vocab_size: int):
    """A byte-level BPE ``PreTrainedTokenizerFast`` with the Llama 3 special tokens and ``<|image|>`` last."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    backend.train_from_iterator(_corpus(), trainer=trainer)
    backend.add_special_tokens([IMAGE_TOKEN])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<|begin_of_text|>",
                                        eos_token="<|eot_id|>", pad_token=PAD_TOKEN)
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_tiny_model(out_dir: str | os.PathLike, params: TinyModelParams) -> Path:
    """Save a tiny random Mllama (model, tokenizer, image processor, processor) to ``out_dir``.

    The folder loads like a Hub checkpoint: ``AutoProcessor.from_pretrained(out_dir)`` and
    ``AutoModelForImageTextToText.from_pretrained(out_dir)``.

    Returns:
        The output folder.
    """
    import torch
    from transformers import MllamaConfig, MllamaForConditionalGeneration, MllamaProcessor
    from transformers.models.mllama.image_processing_pil_mllama import MllamaImageProcessorPil

    tokenizer = build_tokenizer(params.vocab_size)
    image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    if image_token_id != len(tokenizer) - 1:
        raise RuntimeError(f"{IMAGE_TOKEN} must be the last token, got id {image_token_id} of {len(tokenizer)}")
    vision = {"hidden_size": params.vision_hidden_size, "num_hidden_layers": 2, "num_global_layers": 1,
              "attention_heads": 2, "intermediate_size": 2 * params.vision_hidden_size,
              "intermediate_layers_indices": [0], "vision_output_dim": 2 * params.vision_hidden_size,
              "image_size": params.tile_size, "patch_size": 14, "max_num_tiles": 4,
              "supported_aspect_ratios": [[1, 1], [1, 2], [1, 3], [1, 4], [2, 1], [2, 2], [3, 1], [4, 1]]}
    text = {"vocab_size": image_token_id,  # as in the real model: <|image|> is the first id past the vocabulary
            "hidden_size": params.hidden_size, "num_hidden_layers": params.text_layers,
            "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 2 * params.hidden_size,
            "cross_attention_layers": [1], "max_position_embeddings": 4096,
            # Wider init than the real model's 0.02: with frozen lm_head and norm, 0.02 caps the logits near
            # uniform, so LoRA could never fit the answer format; 0.2 lets a short fine-tune show learning.
            "initializer_range": params.text_init_std,
            "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id}
    config = MllamaConfig(vision_config=vision, text_config=text, image_token_index=image_token_id)
    config.brats_llm_smoke_model = True  # reports label metrics of this model as plumbing, not science
    torch.manual_seed(params.seed)
    model = MllamaForConditionalGeneration(config).eval()
    with torch.no_grad():  # Mllama initialises its tanh gates at 0: the image would have no effect at all
        for name, parameter in model.named_parameters():
            if name.endswith(("cross_attn_attn_gate", "cross_attn_mlp_gate", ".gate_attn", ".gate_ffn", "embedding.gate")):
                parameter.fill_(1.0)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.do_sample = False
    image_processor = MllamaImageProcessorPil(size={"height": params.tile_size, "width": params.tile_size},
                                              max_image_tiles=4)
    processor = MllamaProcessor(image_processor=image_processor, tokenizer=tokenizer, chat_template=CHAT_TEMPLATE)
    with atomic.atomic_dir(out_dir) as staging:
        model.save_pretrained(staging)
        processor.save_pretrained(staging)
    return Path(out_dir)
