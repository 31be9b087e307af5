"""vLLM backend without vLLM: refusals, sampling options, requests, label-probability math and records vs the HF path."""

import json
import sys
import types
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

import brats_llm.llm.infer as infer_module
from brats_llm.llm import vllm_backend
from brats_llm.llm.families.mllama import MLLAMA
from brats_llm.llm.infer import InferParams, generation_inputs, infer, label_probabilities, prompt_texts
from brats_llm.llm.model import BackendUnavailable, load_processor

SERVED = replace(MLLAMA, vllm=True)  # a family vLLM serves (Qwen2.5-VL's role), with the tiny model's tokenizer
MESSAGES = [[{"role": "user", "content": [{"type": "image", "text": None}, {"type": "text", "text": f"Grade {i}?"}]},
             {"role": "assistant", "content": [{"type": "text", "text": '{"label": "HGG-1"}'}]}] for i in range(3)]


@pytest.fixture(scope="module")
def processor(tiny_model):
    return load_processor(str(tiny_model))


@pytest.fixture
def fake_vllm(monkeypatch):
    """A stand-in ``vllm`` package: SamplingParams and LoRARequest record their arguments."""
    package = types.ModuleType("vllm")
    package.SamplingParams = lambda **kwargs: dict(kwargs)
    lora = types.ModuleType("vllm.lora")
    request = types.ModuleType("vllm.lora.request")
    request.LoRARequest = lambda *args: ("LoRARequest", *args)
    sampling = types.ModuleType("vllm.sampling_params")
    sampling.StructuredOutputsParams = lambda **kwargs: ("StructuredOutputsParams", kwargs)
    for name, module in {"vllm": package, "vllm.lora": lora, "vllm.lora.request": request,
                         "vllm.sampling_params": sampling}.items():
        monkeypatch.setitem(sys.modules, name, module)
    return package


def images(n):
    return [Image.new("RGB", (24, 24), (40 * i, 0, 0)) for i in range(n)]


def test_refuses_a_family_vllm_does_not_serve():
    with pytest.raises(BackendUnavailable, match=r"vLLM does not serve mllama \(some/model\); use llm.backend: hf"):
        vllm_backend.check_vllm(MLLAMA, "some/model")


def test_refuses_without_vllm(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm raises ImportError
    with pytest.raises(BackendUnavailable, match="pip install vllm on a CUDA machine"):
        vllm_backend.check_vllm(SERVED, "some/model")


def test_infer_refuses_before_reading_rows(tiny_model, tmp_path):
    revision = tmp_path / "revision.json"
    revision.write_text(json.dumps({"revision": "none"}))  # no dataset behind it: a refusal must come first
    with pytest.raises(BackendUnavailable, match="vLLM does not serve mllama"):
        infer("cls", revision, tmp_path / "out", InferParams(model=str(tiny_model), backend="vllm"), progress=False)
    with pytest.raises(ValueError, match="backend must be one of"):
        InferParams(backend="sglang")


def write_adapter(folder, **config):
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({"r": 16, "target_modules": MLLAMA.language_targets,
                                                            **config}))
    return folder


def test_adapters_become_lora_requests_or_are_refused(fake_vllm, tmp_path):
    plain = write_adapter(tmp_path / "plain", r=12)
    vllm_backend.check_vllm(SERVED, "m", plain)
    assert vllm_backend.lora_rank(plain) == 16  # rounded up to a rank vLLM accepts
    assert vllm_backend.lora_request(plain) == ("LoRARequest", "plain", 1, str(plain.resolve()))
    with pytest.raises(BackendUnavailable, match="whole modules"):
        vllm_backend.check_vllm(SERVED, "m", write_adapter(tmp_path / "saved", modules_to_save=["lm_head"]))
    vision = f"({MLLAMA.language_targets})|({MLLAMA.vision_targets})"
    with pytest.raises(BackendUnavailable, match="vision-tower LoRA"):
        vllm_backend.check_vllm(SERVED, "m", write_adapter(tmp_path / "vision", target_modules=vision))
    with pytest.raises(Exception, match="one process"):
        vllm_backend.check_vllm(SERVED, "m", world=2)


def test_sampling_kwargs_greedy_and_sampling(fake_vllm):
    greedy = InferParams(max_new_tokens={"cls": 7, "center": 24, "bbox": 64, "polygon": 200})
    assert vllm_backend.sampling_kwargs(greedy, "cls", 99) == {"max_tokens": 7, "skip_special_tokens": True,
                                                                "temperature": 0.0}
    sampled = InferParams(do_sample=True, temperature=0.6, top_p=0.9)
    assert vllm_backend.sampling_kwargs(sampled, "polygon", 2036) == {
        "max_tokens": 200, "skip_special_tokens": True, "temperature": 0.6, "top_p": 0.9, "seed": 2036}
    schema = {"type": "object"}
    assert vllm_backend.sampling_kwargs(greedy, "bbox", 0, schema)["structured_outputs"] == (
        "StructuredOutputsParams", {"json": schema})
    del sys.modules["vllm.sampling_params"].StructuredOutputsParams  # before vLLM 0.12
    sys.modules["vllm.sampling_params"].GuidedDecodingParams = lambda **kwargs: ("GuidedDecodingParams", kwargs)
    assert "guided_decoding" in vllm_backend.sampling_kwargs(greedy, "bbox", 0, schema)


def test_requests_carry_the_hf_prompt_ids(processor):
    pictures = images(2)
    prompts = prompt_texts(processor, MESSAGES[:2])
    built = vllm_backend.requests(processor, prompts, pictures)
    for prompt, image, request in zip(prompts, pictures, built):
        hf_ids = generation_inputs(processor, [image], [prompt])["input_ids"][0].tolist()
        assert request["prompt_token_ids"] == hf_ids  # what HF's generate receives for this row alone
        assert hf_ids.count(processor.tokenizer.bos_token_id) == 1
        assert request["multi_modal_data"] == {"image": image}
        assert processor.tokenizer.decode(request["prompt_token_ids"]) == prompt


def fake_output(ids, logprobs):
    """A RequestOutput's scoring fields: token ids and {token: Logprob} per position (None at 0)."""
    return SimpleNamespace(prompt_token_ids=ids, prompt_logprobs=[None] + [
        {token: SimpleNamespace(logprob=lp), 999: SimpleNamespace(logprob=-0.01)} for token, lp in zip(ids[1:], logprobs)])


def test_label_probability_by_hand():
    # LGG = 1 2 3 4 5, HGG = 1 2 3 6 (first difference at index 3); an expanded image adds 2 tokens to LGG's output
    lgg = fake_output([1, 7, 7, 2, 3, 4, 5], [-9.0, -9.0, -0.5, -0.5, -1.0, -0.25])
    hgg = fake_output([1, 2, 3, 6], [-0.5, -0.5, -2.0])
    p = vllm_backend.label_probabilities_from([lgg, hgg], [[4, 5], [6]])
    expected = np.exp(-2.0) / (np.exp(-2.0) + np.exp(-1.25))
    assert p == pytest.approx([expected], abs=1e-12)
    with pytest.raises(ValueError, match="does not end with"):
        vllm_backend.label_probabilities_from([lgg, hgg], [[4, 6], [6]])


class PrefixModel(torch.nn.Module):
    """Logits depend on the sum of the token ids so far (the whole prefix, not its padding on the right): one
    deterministic table for the HF forward pass and for the fake prompt_logprobs."""

    device = "cpu"

    def __init__(self, vocab):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.embed = torch.randn(997, 8, generator=generator)
        self.out = torch.randn(8, vocab, generator=generator)

    def table(self, ids):
        return (self.embed[torch.as_tensor(ids).cumsum(-1) % 997] @ self.out).float()

    def forward(self, input_ids, logits_to_keep=0, **_):
        logits = self.table(input_ids)
        return SimpleNamespace(logits=logits[:, -logits_to_keep:] if logits_to_keep else logits)


def test_label_probabilities_equal_the_hf_definition(processor):
    vocab = len(processor.tokenizer) - 1  # <|image|> lies past the vocabulary, as in the real model (never scored)
    model = PrefixModel(vocab)
    pictures, prompts = images(3), prompt_texts(processor, MESSAGES)
    hf = label_probabilities(model, processor, pictures, prompts)
    items, tails = vllm_backend.label_requests(processor, prompts, pictures)
    assert len(items) == 2 * len(prompts) and all(tails)
    outputs = []
    for item in items:
        ids = item["prompt_token_ids"]
        log_probs = torch.log_softmax(model.table([ids[:-1]])[0], dim=-1)
        outputs.append(fake_output(ids, [log_probs[i, min(token, vocab - 1)].item() for i, token in enumerate(ids[1:])]))
    assert vllm_backend.label_probabilities_from(outputs, tails) == pytest.approx(hf, abs=1e-5)
    assert not np.allclose(hf, hf[0])  # the prompts differ, so must the probabilities


class Rows:
    """Just enough of a datasets.Dataset: a slice gives columns."""

    def __init__(self, rows):
        self.rows = rows

    def __getitem__(self, index):
        chunk = self.rows[index]
        return {key: [row[key] for row in chunk] for key in chunk[0]}


def test_records_equal_the_hf_path(processor, fake_vllm, monkeypatch):
    pictures = images(3)
    rows = Rows([{"images": [image], "messages": messages} for image, messages in zip(pictures, MESSAGES)])
    meta = [{"patient_id": f"P{i}", "grade": "HGG", "plane": "axial", "slice_index": i, "target": '{"label": "HGG-1"}'}
            for i in range(3)]
    answers = ['{"label": "HGG-1"}', 'no json', '{"label": "LGG-0"}']
    p_hgg = [0.25, 0.5, 0.875]
    calls = []

    class Engine:
        def generate(self, items, sampling, use_tqdm, lora_request):
            calls.append((items, sampling))
            if "prompt_logprobs" not in sampling:
                return [SimpleNamespace(outputs=[SimpleNamespace(text=answers[1 + i])]) for i in range(len(items))]
            outputs = []  # LGG, HGG alternating: the last token scores log(1 - p) resp. log(p), the rest 0
            for i, item in enumerate(items):
                ids, p = item["prompt_token_ids"], p_hgg[1 + i // 2]
                outputs.append(fake_output(ids, [0.0] * (len(ids) - 2) + [np.log(p if i % 2 else 1 - p)]))
            return outputs

    params = InferParams(batch_size=2)
    engine = vllm_backend.Engine(Engine())
    got = vllm_backend.answer_batch_vllm("cls", engine, processor, rows, meta, 1, params)
    assert [len(items) for items, _ in calls] == [2, 4]  # two answers, then two label requests per row
    assert calls[0][1] == {"max_tokens": 64, "skip_special_tokens": True, "temperature": 0.0}
    monkeypatch.setattr(infer_module, "generate", lambda *args, **kwargs: answers[1:3])
    monkeypatch.setattr(infer_module, "label_probabilities", lambda *args: p_hgg[1:3])
    expected = infer_module._answer_batch("cls", None, processor, rows, meta, 1, params)
    assert got == expected
    assert [r["index"] for r in got] == [1, 2] and [r["status"] for r in got] == ["format_error", "ok"]
    assert [r["p_hgg"] for r in got] == [0.5, 0.875]
