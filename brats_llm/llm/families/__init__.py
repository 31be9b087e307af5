"""Model families by ``config.json``'s ``model_type``: adding one is one import and one entry in ``FAMILIES``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from brats_llm.errors import BratsLlmError
from brats_llm.llm.families.base import Family
from brats_llm.llm.families.mllama import MLLAMA
from brats_llm.llm.families.qwen_vl import QWEN_VL

__all__ = ["FAMILIES", "PAPER_FAMILY", "Family", "UnknownFamily", "family_for", "family_of", "model_type_of"]

#: Every supported family by its ``model_type``.
FAMILIES: dict[str, Family] = {family.model_type: family for family in (MLLAMA, QWEN_VL)}
#: The paper's family (LLaMA 3.2 Vision): ``brats-llm tiny-model`` builds it unless told another.
PAPER_FAMILY = MLLAMA


class UnknownFamily(BratsLlmError, ValueError):
    """A model whose ``model_type`` no family module covers, or whose ``model_type`` cannot be read."""


def family_of(model_type: str, where: str = "the model") -> Family:
    """The family registered for ``model_type``; ``where`` (a file or model id) names the model in the error.

    Raises:
        UnknownFamily: no family for ``model_type``.
    """
    if model_type not in FAMILIES:
        raise UnknownFamily(f"{where}: model_type {model_type!r} has no model family; known: {sorted(FAMILIES)} "
                            f"(add one under brats_llm/llm/families/)")
    return FAMILIES[model_type]


def model_type_of(model_id: str | os.PathLike) -> str:
    """``model_type`` of a local model folder (its ``config.json``) or of a Hub id in the local cache; no weights load.

    Raises:
        UnknownFamily: no ``config.json`` (folder), not in the Hub cache (id), or no ``model_type`` in it.
    """
    config = Path(model_id) / "config.json"
    if config.is_file():
        model_type = json.loads(config.read_text()).get("model_type")
        if not model_type:
            raise UnknownFamily(f"{config}: no model_type")
        return model_type
    if Path(model_id).is_dir():
        raise UnknownFamily(f"{config}: no such file; the model family is read from it")
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(str(model_id), local_files_only=True).model_type
    except OSError as error:
        raise UnknownFamily(f"{model_id}: no local folder and not in the Hub cache, so its model family is unknown "
                            f"(download it first: hf download {model_id} config.json)") from error


def family_for(source: Any) -> Family:
    """The family of a loaded model (its ``config.model_type``; PEFT-wrapped too), or of a model folder / Hub id."""
    config = getattr(source, "config", None)
    if config is not None:
        return family_of(getattr(config, "model_type", None), type(source).__name__)
    config = Path(source) / "config.json"
    return family_of(model_type_of(source), str(config) if config.is_file() else str(source))
