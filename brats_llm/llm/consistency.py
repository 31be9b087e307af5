"""Generation of the ``llm-consistency`` stage: one slice and prompt asked N times (scored in evaluate/)."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

from tqdm.auto import tqdm

from brats_llm.config import at_least, between
from brats_llm.conversations.prompts import PROMPT_VERSION
from brats_llm.llm.decoding import check_decoding
from brats_llm.llm.infer import generate, prompt_texts
from brats_llm.llm.model import is_smoke_model, load_model, read_revision
from brats_llm.llm.shard import ranks as shard_ranks


@dataclass(frozen=True)
class ConsistencyParams:
    """``llm_consistency`` section of params.yaml.

    Attributes:
        repeats: times each image + prompt is asked (paper: 95).
        do_sample: sample answers (the paper's setting: answers varied); greedy decoding gives N identical
            answers by construction, which the output then says.
        temperature, top_p: sampling settings (Llama 3.2 Vision's generation_config: 0.6, 0.9).
        max_new_tokens: answer length limit.
        batch_size: repeats per generate call.
        seed: sampling seed.
        split: conversation split the two images come from.
        decoding: ``free`` (the paper) or ``json``: answers constrained to the cls JSON schema (as ``llm.decoding``).
    """

    repeats: int = 95
    do_sample: bool = True
    temperature: float = 0.6
    top_p: float = 0.9
    max_new_tokens: int = 64
    batch_size: int = 32
    seed: int = 2020
    split: str = "test"
    decoding: str = "free"

    def __post_init__(self) -> None:
        check_decoding(self.decoding)
        at_least(self, 1, "repeats", "max_new_tokens", "batch_size")
        at_least(self, 0, "seed")
        between(self, 0.0, 1.0, "top_p")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")


def pick_slices(meta: list[dict[str, Any]]) -> dict[str, int]:
    """Row index of one HGG and one LGG image: the middle axial slice of the first patient of each grade."""
    chosen = {}
    for grade in ("HGG", "LGG"):
        patient = next((r["patient_id"] for r in meta if r["grade"] == grade and r["plane"] == "axial"), None)
        if patient is None:
            continue
        rows = [i for i, r in enumerate(meta) if r["patient_id"] == patient and r["plane"] == "axial"]
        chosen[grade] = rows[len(rows) // 2]
    if not chosen:
        raise ValueError("no axial HGG or LGG slice to test consistency on")
    return chosen


@dataclass(frozen=True)
class RepeatedAnswers:
    """What :func:`ask_repeatedly` generated, on every rank (the ranks' answers gathered).

    Attributes:
        images: ``(grade, patient_id, slice_index)`` of each image asked about, in order.
        texts: variant -> per image (same order), the ``repeats`` answers in repeat order.
        record: provenance of the generation (model, adapters, decoding, prompt version, params, revision).
        ranks: this process's rank (``main`` writes; the others wait at ``barrier``).
    """

    images: list[tuple[str, str, int]]
    texts: dict[str, list[list[str]]]
    record: dict[str, Any]
    ranks: Any


def ask_repeatedly(revision_file: str | os.PathLike, model_id: str, params: ConsistencyParams, *,
                   adapters: dict[str, str | os.PathLike | None], progress: bool = True) -> RepeatedAnswers:
    """Ask the classification prompt ``repeats`` times about one HGG and one LGG image, per model variant.

    Args:
        adapters: variant name -> adapter folder (None = the general, zero-shot model).

    Under ``torchrun`` the generate calls (variant, image, batch of repeats) are shared between the
    ranks; seeds depend on the image and batch only, so every rank returns the single-process answers.
    Scoring and writing are :func:`brats_llm.evaluate.consistency.consistency`'s.
    """
    from brats_llm.publish.pinned import load_published

    ranks = shard_ranks()  # before anything starts CUDA: pins this rank's GPU
    revision = read_revision(revision_file)
    rows = load_published(revision_file, "conversations-cls")[params.split]
    meta = list(rows.select_columns(["patient_id", "grade", "plane", "slice_index"]))
    chosen = list(pick_slices(meta).items())
    starts = range(0, params.repeats, params.batch_size)
    # One unit = one generate call; rank r answers units i with i % world == r.
    units = [(variant, number, start) for variant in adapters for number in range(len(chosen)) for start in starts]
    answered = _answer_units([units[i] for i in ranks.share(len(units))], rows, [i for _, i in chosen], model_id,
                             params, adapters, progress=progress and ranks.main)
    for share in ranks.all_gather(answered):
        answered.update(share)
    texts = {variant: [[text for start in starts for text in answered[variant, number, start]]
                       for number in range(len(chosen))] for variant in adapters}
    decoding = (f"sampled (temperature {params.temperature}, top_p {params.top_p})" if params.do_sample
                else "greedy: every repeat is identical by construction")
    if params.decoding == "json":
        decoding += "; constrained to the cls JSON schema"
    record = {"model": model_id, "smoke_model": is_smoke_model(model_id),
              "adapters": {k: str(v) if v else None for k, v in adapters.items()}, "decoding": decoding,
              "prompt_version": PROMPT_VERSION, "params": asdict(params), "dataset_revision": revision["revision"]}
    images = [(grade, meta[index]["patient_id"], meta[index]["slice_index"]) for grade, index in chosen]
    return RepeatedAnswers(images, texts, record, ranks)


def _answer_units(units: list[tuple[str, int, int]], rows: Any, indices: list[int], model_id: str,
                  params: ConsistencyParams, adapters: dict[str, str | os.PathLike | None], *,
                  progress: bool) -> dict[tuple[str, int, int], list[str]]:
    """This rank's generate calls: (variant, image number, first repeat) -> the batch's answers.

    ``indices``: the row of each image number in ``rows``; each variant's model is loaded once.
    """
    answered: dict[tuple[str, int, int], list[str]] = {}
    for variant, adapter in adapters.items():
        todo = [unit for unit in units if unit[0] == variant]
        if not todo:
            continue
        model, processor = load_model(model_id, adapter)
        inputs = {}
        for _, number, start in tqdm(todo, desc=f"consistency {variant}", disable=not progress, leave=False):
            if number not in inputs:
                row = rows[indices[number]]
                inputs[number] = row["images"][0].convert("RGB"), prompt_texts(processor, [row["messages"]])[0]
            image, prompt = inputs[number]
            n = min(params.batch_size, params.repeats - start)
            answered[variant, number, start] = generate(
                model, processor, [image] * n, [prompt] * n, max_new_tokens=params.max_new_tokens,
                do_sample=params.do_sample, temperature=params.temperature, top_p=params.top_p,
                seed=params.seed + 1000 * number + start, decoding=params.decoding, task="cls")
    return answered
