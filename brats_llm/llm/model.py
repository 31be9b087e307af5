"""Load a vision-LLM (Hub id or local folder) with its processor, optionally with a LoRA adapter on top."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: The paper's model; the default for real runs (``llm.model`` in params.yaml).
PAPER_MODEL = "unsloth/Llama-3.2-11B-Vision-Instruct"
#: The embedded default: built offline by ``brats-llm tiny-model`` (the ``tiny_model`` stage).
TINY_MODEL_DIR = "models/tiny-mllama"
#: Written next to every adapter: which base model and dataset revision it was trained on.
ADAPTER_RECORD = "brats_llm_adapter.json"


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


def load_model(model_id: str, adapter: str | Path | None = None, *, for_training: bool = False) -> tuple[Any, Any]:
    """Model and processor from ``model_id``; ``adapter`` (a PEFT folder) is applied on top.

    No remote code is ever trusted. On CUDA the weights load in bfloat16, else in float32.

    Raises:
        FileNotFoundError: a local ``model_id`` or ``adapter`` path does not exist.
    """
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    local = Path(model_id)
    if (model_id.startswith((".", "/")) or local.exists() or model_id.startswith("models/")) and not local.is_dir():
        raise FileNotFoundError(f"model folder {model_id} does not exist (build the tiny model: brats-llm tiny-model {model_id})")
    where = device()
    dtype = torch.bfloat16 if where == "cuda" else torch.float32
    processor = AutoProcessor.from_pretrained(model_id)
    model = AutoModelForImageTextToText.from_pretrained(model_id, dtype=dtype,
                                                        device_map="auto" if where == "cuda" else None)
    if adapter:
        adapter = Path(adapter)
        if not (adapter / "adapter_config.json").is_file():
            raise FileNotFoundError(f"{adapter}: not a LoRA adapter folder (no adapter_config.json)")
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter), is_trainable=for_training)
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
