"""Load a vision-LLM (Hub id or local folder) with its processor, optionally with a LoRA adapter on top."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from brats_llm.errors import BratsLlmError, MissingInputError
from brats_llm.llm.families import Family, UnknownFamily, family_for, family_of
from brats_llm.provenance import read_revision  # noqa: F401  (re-exported for the LLM stages)

log = logging.getLogger(__name__)

#: The embedded default: built offline by ``brats-llm tiny-model`` (the ``tiny_model`` stage).
TINY_MODEL_DIR = "models/tiny-mllama"
#: The default ``llm.model``: the tiny model instruction-tuned on generic shapes (the ``general_model`` stage).
GENERAL_MODEL_DIR = "models/tiny-mllama-general"
#: Written next to every adapter: which base model and dataset revision it was trained on.
ADAPTER_RECORD = "brats_llm_adapter.json"


class BackendUnavailable(BratsLlmError, RuntimeError):
    """What was asked for cannot run here (no CUDA for Unsloth or 4-bit, or a GPU extra is not installed)."""


def device() -> str:
    """``cuda`` when a GPU is visible, else ``cpu``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def is_smoke_model(model_id: str) -> bool:
    """True for the tiny random model: its metrics test plumbing, not science."""
    path = Path(model_id)
    config = path / "config.json"
    if not config.is_file():
        return False
    return bool(json.loads(config.read_text()).get("brats_llm_smoke_model", False))


def model_note(model_id: str) -> str | None:
    """What a local model was trained on, when its ``config.json`` says (the general model's stage writes it)."""
    config = Path(model_id) / "config.json"
    if not config.is_file():
        return None
    return json.loads(config.read_text()).get("brats_llm_general_training")


def check_model_id(model_id: str) -> None:
    """A local ``model_id`` (a path) must be a folder.

    Raises:
        MissingInputError: it looks like a local path and is not a folder.
    """
    local = Path(model_id)
    if (model_id.startswith((".", "/")) or local.exists() or model_id.startswith("models/")) and not local.is_dir():
        raise MissingInputError(f"model folder {model_id} does not exist (build the tiny model: brats-llm tiny-model {model_id})")


def check_adapter(adapter: str | Path) -> Path:
    """``adapter`` as a Path, after checking it is a PEFT adapter folder.

    Raises:
        MissingInputError: no ``adapter_config.json`` in it.
    """
    adapter = Path(adapter)
    if not (adapter / "adapter_config.json").is_file():
        raise MissingInputError(f"{adapter}: not a LoRA adapter folder (no adapter_config.json)")
    return adapter


def model_family(model_id: str) -> Family:
    """The family of a local folder or Hub id; a Hub id not in the cache yet has its ``config.json`` fetched.

    Raises:
        UnknownFamily: the ``model_type`` has no family module, or a local folder has no readable one.
    """
    try:
        return family_for(model_id)
    except UnknownFamily:
        if Path(model_id).exists():
            raise
        from transformers import AutoConfig

        return family_of(AutoConfig.from_pretrained(model_id).model_type, model_id)


def load_processor(model_id: str):
    """The processor (tokenizer + image processor + chat template) of ``model_id``, as :func:`load_model` loads it.

    The model's family says how (``Family.load_processor``: ``AutoProcessor`` unless the family needs more).
    """
    check_model_id(model_id)
    return model_family(model_id).load_processor(model_id)


def quantization_config(load_in_4bit: bool):
    """``BitsAndBytesConfig`` for 4-bit NF4 weights (bfloat16 compute), or None when not asked.

    Raises:
        BackendUnavailable: 4-bit asked for without CUDA, or without bitsandbytes (the ``gpu`` extra).
    """
    if not load_in_4bit:
        return None
    if device() != "cuda":
        raise BackendUnavailable("load_in_4bit needs a CUDA GPU (bitsandbytes 4-bit weights); this machine has none. "
                                 "Set load_in_4bit: false (params llm / llm_finetune) to load full-precision weights")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as error:
        raise BackendUnavailable(f"load_in_4bit needs bitsandbytes: pip install -e '.[gpu]' ({error})") from error
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=torch.bfloat16)


def load_model(model_id: str, adapter: str | Path | None = None, *, for_training: bool = False,
               load_in_4bit: bool = False) -> tuple[Any, Any]:
    """Model and processor from ``model_id``; ``adapter`` (a PEFT folder) is applied on top.

    No remote code is ever trusted. On CUDA the weights load in bfloat16 (or 4-bit NF4 with
    ``load_in_4bit``), else in float32. For inference (not ``for_training``, not 4-bit) the adapter is
    merged into the weights (``merge_and_unload``): the same model, fewer ops per token.

    Raises:
        MissingInputError: a local ``model_id`` or ``adapter`` path does not exist.
        BackendUnavailable: ``load_in_4bit`` without CUDA or bitsandbytes.
        UnknownFamily: the model's ``model_type`` has no family module (:mod:`brats_llm.llm.families`).
    """
    import torch
    from transformers import AutoModelForImageTextToText

    check_model_id(model_id)
    quantization = quantization_config(load_in_4bit)
    where = device()
    dtype = torch.bfloat16 if where == "cuda" else torch.float32
    processor = load_processor(model_id)
    options: dict[str, Any] = {"quantization_config": quantization} if quantization is not None else {}
    model = AutoModelForImageTextToText.from_pretrained(model_id, dtype=dtype,
                                                        device_map="auto" if where == "cuda" else None, **options)
    family_for(model)  # every later step asks the family: an unknown one fails here, by name
    if adapter:
        adapter = check_adapter(adapter)
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter), is_trainable=for_training)
        if not for_training and not load_in_4bit:
            # inference: fold LoRA into the weights (and the saved modules into the model): a generation step
            # then runs the base model's ops only, not three extra ones per adapted projection
            model = model.merge_and_unload()
        log.info("loaded adapter %s on %s", adapter, model_id)
    if not for_training:
        model.eval()
    return model, processor


def adapter_record(adapter: str | Path | None) -> dict[str, Any] | None:
    """The provenance record saved with an adapter (base model, dataset revision, steps), if any."""
    if not adapter:
        return None
    path = Path(adapter) / ADAPTER_RECORD
    return json.loads(path.read_text()) if path.is_file() else None
