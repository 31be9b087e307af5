"""``llm.backend: vllm``: bulk ``llm-infer`` on vLLM's offline engine, with the HF path's prompts, records and P(HGG)."""

# ``params`` below is an ``InferParams`` (brats_llm.llm.infer, which imports this module, so it is not imported here).

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from brats_llm.conversations.prompts import CLASS_ANSWERS
from brats_llm.errors import InputError
from brats_llm.llm.batch import (LABEL_PREFIX, batch_image_size, batch_inputs, batch_records, first_difference,
                                 prompt_ids)
from brats_llm.llm.decoding import json_schema
from brats_llm.llm.families import Family
from brats_llm.llm.model import BackendUnavailable, check_adapter, load_processor

#: ``max_lora_rank`` values vLLM accepts; an adapter's rank is rounded up to the next one.
LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)


@dataclass(frozen=True)
class Engine:
    """A loaded ``vllm.LLM`` and the ``LoRARequest`` every call carries (None without an adapter)."""

    llm: Any
    lora: Any = None


def _adapter_config(adapter: str | Path) -> dict[str, Any]:
    """``adapter_config.json`` of a PEFT adapter folder."""
    return json.loads((check_adapter(adapter) / "adapter_config.json").read_text())


def check_vllm(family: Family, model_id: str, adapter: str | Path | None = None, *, world: int = 1) -> None:
    """Refuse, before anything loads, what the vLLM backend cannot run.

    Raises:
        BackendUnavailable: the family is not served by vLLM (``Family.vllm``), vLLM is not importable,
            or the adapter has whole modules (``modules_to_save``) or vision-tower LoRA, which vLLM's
            LoRA support does not apply.
        InputError: launched under torchrun (vLLM shards inside one process).
    """
    if not family.vllm:
        raise BackendUnavailable(f"vLLM does not serve {family.model_type} ({model_id}); use llm.backend: hf")
    if world > 1:
        raise InputError(f"llm.backend: vllm runs in one process (vLLM batches and shards itself); got {world} "
                         f"ranks: launch llm-infer without torchrun")
    try:
        import vllm  # noqa: F401
    except ImportError as error:
        raise BackendUnavailable(f"llm.backend: vllm needs vLLM: pip install vllm on a CUDA machine ({error})") from error
    if adapter:
        config = _adapter_config(adapter)
        if config.get("modules_to_save"):
            raise BackendUnavailable(f"{adapter}: vLLM applies LoRA weights only, not the whole modules this adapter "
                                     f"saves ({config['modules_to_save']}); use llm.backend: hf")
        if family.vision_targets in str(config.get("target_modules", "")):
            raise BackendUnavailable(f"{adapter}: vision-tower LoRA (finetune_vision_layers) is not applied by vLLM; "
                                     f"use llm.backend: hf")


def lora_rank(adapter: str | Path) -> int:
    """vLLM's ``max_lora_rank`` for ``adapter``: its LoRA rank ``r`` rounded up to a value vLLM accepts."""
    rank = int(_adapter_config(adapter)["r"])
    return next((slot for slot in LORA_RANKS if slot >= rank), rank)


def lora_request(adapter: str | Path):
    """The ``LoRARequest`` that applies ``adapter`` (one adapter per run: id 1, named by its folder)."""
    from vllm.lora.request import LoRARequest

    path = Path(adapter).resolve()
    return LoRARequest(path.name, 1, str(path))


def load_engine(params, adapter: str | Path | None = None) -> tuple[Engine, Any]:
    """The vLLM engine for ``params.model`` (seeded with ``params.seed``; LoRA enabled for ``adapter``) and the
    HF processor that writes the prompts (the chat template and token ids of the HF path)."""
    from vllm import LLM

    processor = load_processor(params.model)
    options: dict[str, Any] = {"model": params.model, "seed": params.seed, "limit_mm_per_prompt": {"image": 1}}
    if params.load_in_4bit:
        options["quantization"] = "bitsandbytes"  # vLLM's in-flight 4-bit weights
    if adapter:
        options.update(enable_lora=True, max_lora_rank=lora_rank(adapter), max_loras=1)
    return Engine(LLM(**options), lora_request(adapter) if adapter else None), processor


def structured_outputs(schema: Mapping[str, Any]) -> dict[str, Any]:
    """``SamplingParams`` keywords constraining the answer to the JSON ``schema``: the one version-dependent
    vLLM import (``StructuredOutputsParams`` since v0.12; ``GuidedDecodingParams`` before)."""
    try:
        from vllm.sampling_params import StructuredOutputsParams
    except ImportError:
        from vllm.sampling_params import GuidedDecodingParams

        return {"guided_decoding": GuidedDecodingParams(json=dict(schema))}
    return {"structured_outputs": StructuredOutputsParams(json=dict(schema))}


def sampling_kwargs(params, task: str, seed: int,
                    schema: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``SamplingParams`` keywords equivalent to :func:`brats_llm.llm.infer.generate`'s options.

    Greedy is temperature 0 (vLLM ignores top_p then); sampling uses ``temperature`` / ``top_p`` and
    ``seed`` (the caller passes the HF path's per-batch ``params.seed + start``). Special tokens are
    dropped from the text, as the HF path decodes with ``skip_special_tokens``. ``schema``: JSON-constrained
    answers (:func:`structured_outputs`; imports vLLM).
    """
    kwargs: dict[str, Any] = {"max_tokens": params.max_new_tokens[task], "skip_special_tokens": True}
    if params.do_sample:
        kwargs.update(temperature=params.temperature, top_p=params.top_p, seed=seed)
    else:
        kwargs.update(temperature=0.0)
    if schema is not None:
        kwargs.update(structured_outputs(schema))
    return kwargs


def requests(processor, prompts: list[str], images: list) -> list[dict[str, Any]]:
    """vLLM prompt dicts of one batch: the HF path's token ids (:func:`~brats_llm.llm.infer.prompt_ids`) and one image.

    Token ids, not text: vLLM tokenises a text prompt with the tokenizer's special tokens, so Mllama's
    post-processor would put a second ``<|begin_of_text|>`` before the one the chat template writes. Given
    ``prompt_token_ids`` vLLM tokenises nothing; it only expands the image placeholder where the family
    does (Qwen2.5-VL's ``<|image_pad|>``), as the HF processor does.
    """
    return [{"prompt_token_ids": prompt_ids(processor, prompt), "multi_modal_data": {"image": image}}
            for prompt, image in zip(prompts, images, strict=True)]


def answers_from(outputs: Sequence[Any]) -> list[str]:
    """Answer texts of ``LLM.generate``'s outputs, in request order."""
    return [output.outputs[0].text for output in outputs]


def label_requests(processor, prompts: list[str], images: list) -> tuple[list[dict[str, Any]], list[list[int]]]:
    """Two scoring requests per prompt (prompt + :data:`LABEL_PREFIX` + LGG-0, then HGG-1) and the token ids
    each is scored on: its continuation from the first token where the two tokenisations differ."""
    labels = [CLASS_ANSWERS[0], CLASS_ANSWERS[1]]
    items, tails = [], []
    for prompt, image in zip(prompts, images, strict=True):
        ids = [prompt_ids(processor, prompt + LABEL_PREFIX + label) for label in labels]
        common = first_difference(*ids)
        for label_ids in ids:
            items.append({"prompt_token_ids": label_ids, "multi_modal_data": {"image": image}})
            tails.append(label_ids[common:])
    return items, tails


def tail_logprob(token_ids: Sequence[int], prompt_logprobs: Sequence[Mapping[int, Any] | None],
                 tail: Sequence[int]) -> float:
    """Sum of the log-probabilities of the last ``len(tail)`` prompt tokens, which must be ``tail``.

    ``prompt_logprobs[i]`` maps token ids to a ``Logprob`` (or a float) for position ``i`` (None at 0), as
    ``RequestOutput.prompt_logprobs``. Counted from the end, so an expanded image placeholder before the
    answer (more prompt tokens in vLLM than in the request) does not shift the positions.
    """
    first = len(token_ids) - len(tail)
    if first < 1 or list(token_ids[first:]) != list(tail):
        raise ValueError(f"the prompt does not end with the scored tokens {list(tail)}")
    total = 0.0
    for position in range(first, len(token_ids)):
        entry = prompt_logprobs[position][token_ids[position]]
        total += float(getattr(entry, "logprob", entry))
    return total


def label_probabilities_from(outputs: Sequence[Any], tails: list[list[int]]) -> np.ndarray:
    """P(HGG) per prompt from the outputs of :func:`label_requests` (LGG, HGG alternating): the softmax of the
    two continuations' summed log-probabilities, as :func:`brats_llm.llm.infer.label_probabilities`."""
    scores = [tail_logprob(output.prompt_token_ids, output.prompt_logprobs, tail)
              for output, tail in zip(outputs, tails, strict=True)]
    pairs = np.array(scores, dtype=float).reshape(-1, 2)
    return np.exp(pairs[:, 1] - np.logaddexp(pairs[:, 0], pairs[:, 1]))


def answer_batch_vllm(task: str, engine: Engine, processor, rows, meta, start: int,
                      params) -> list[dict[str, Any]]:
    """Generate, parse and (cls) score the batch of rows starting at ``start`` with vLLM: the same records as
    the HF path's ``_answer_batch`` (:func:`~brats_llm.llm.infer.batch_records`); ``decoding: json`` uses
    vLLM's structured outputs with the HF path's schema (:func:`~brats_llm.llm.decoding.json_schema`)."""
    from vllm import SamplingParams

    images, prompts = batch_inputs(processor, rows, start, params.batch_size)
    schema = json_schema(task, batch_image_size(images)) if params.decoding == "json" else None
    outputs = engine.llm.generate(requests(processor, prompts, images),
                                  SamplingParams(**sampling_kwargs(params, task, params.seed + start, schema)),
                                  use_tqdm=False, lora_request=engine.lora)
    p_hgg = None
    if task == "cls":
        items, tails = label_requests(processor, prompts, images)
        scored = engine.llm.generate(items, SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=1),
                                     use_tqdm=False, lora_request=engine.lora)
        p_hgg = label_probabilities_from(scored, tails)
    return batch_records(task, meta, start, images, answers_from(outputs), p_hgg)
