"""The ``llm-consistency`` stage: one slice and prompt asked N times; the distribution of answers."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from typing import Any

from tqdm.auto import tqdm

from brats_llm import atomic
from brats_llm.config import at_least, between
from brats_llm.conversations.parse import parse_answer
from brats_llm.conversations.prompts import CLASS_ANSWERS, PROMPT_VERSION
from brats_llm.evaluate.consistency_metrics import answer_summary, headline
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
    """

    repeats: int = 95
    do_sample: bool = True
    temperature: float = 0.6
    top_p: float = 0.9
    max_new_tokens: int = 64
    batch_size: int = 32
    seed: int = 2020
    split: str = "test"

    def __post_init__(self) -> None:
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


def answer_label(text: str) -> str:
    parsed = parse_answer("cls", text)
    return CLASS_ANSWERS[parsed.value].split("-")[0] if parsed.status == "ok" else "unparsable"


def consistency(revision_file: str | os.PathLike, out_dir: str | os.PathLike, model_id: str, params: ConsistencyParams, *,
                adapters: dict[str, str | os.PathLike | None], progress: bool = True) -> dict[str, Any]:
    """Ask the classification prompt ``repeats`` times per image, for each model variant in ``adapters``.

    Args:
        adapters: variant name -> adapter folder (None = the general, zero-shot model).

    Writes ``answers.jsonl`` (every answer), ``details.json`` (per image: counts per label,
    parse rate, majority label and agreement = share of the majority label among *parsed* answers,
    :func:`~brats_llm.evaluate.consistency_metrics.answer_summary`), ``metrics.json`` (the same pooled over
    variants and images, :func:`~brats_llm.evaluate.consistency_metrics.headline`) and
    ``plots/images/consistency_<variant>.png`` under ``out_dir``.

    Under ``torchrun`` the generate calls (variant, image, batch of repeats) are shared between the
    ranks; seeds depend on the image and batch only, so every output is the single-process one.
    """
    from brats_llm.plots import bars_figure, write_png
    from brats_llm.publish.pinned import load_published

    ranks = shard_ranks()  # before anything starts CUDA: pins this rank's GPU
    revision = read_revision(revision_file)
    rows = load_published(revision_file, "conversations-cls")[params.split]
    meta = list(rows.select_columns(["patient_id", "grade", "plane", "slice_index"]))
    chosen = list(pick_slices(meta).items())
    answers, metrics, pictures = [], {}, {}
    decoding = (f"sampled (temperature {params.temperature}, top_p {params.top_p})" if params.do_sample
                else "greedy: every repeat is identical by construction")
    # One unit = one generate call; rank r answers units i with i % world == r.
    units = [(variant, number, start) for variant in adapters for number in range(len(chosen))
             for start in range(0, params.repeats, params.batch_size)]
    mine = [units[i] for i in ranks.share(len(units))]
    answered: dict[tuple[str, int, int], list[str]] = {}
    for variant, adapter in adapters.items():
        todo = [unit for unit in mine if unit[0] == variant]
        if not todo:
            continue
        model, processor = load_model(model_id, adapter)
        inputs = {}
        for _, number, start in tqdm(todo, desc=f"consistency {variant}", disable=not progress or not ranks.main,
                                     leave=False):
            if number not in inputs:
                row = rows[chosen[number][1]]
                inputs[number] = row["images"][0].convert("RGB"), prompt_texts(processor, [row["messages"]])[0]
            image, prompt = inputs[number]
            n = min(params.batch_size, params.repeats - start)
            answered[variant, number, start] = generate(
                model, processor, [image] * n, [prompt] * n, max_new_tokens=params.max_new_tokens,
                do_sample=params.do_sample, temperature=params.temperature, top_p=params.top_p,
                seed=params.seed + 1000 * number + start)
    for share in ranks.all_gather(answered):
        answered.update(share)
    for variant in adapters:
        metrics[variant] = {}
        for number, (grade, index) in enumerate(chosen):
            texts = [text for start in range(0, params.repeats, params.batch_size)
                     for text in answered[variant, number, start]]
            labels = [answer_label(t) for t in texts]
            metrics[variant][f"{grade}_image"] = {"patient_id": meta[index]["patient_id"],
                                                  "slice_index": meta[index]["slice_index"],
                                                  **answer_summary(labels),
                                                  "distinct_answers": len(set(texts))}
            answers += [{"variant": variant, "grade": grade, "repeat": i, "response": t, "label": lab}
                        for i, (t, lab) in enumerate(zip(texts, labels))]
        if ranks.main:
            pictures[variant] = bars_figure({k: {a: v[a] for a in ("HGG", "LGG", "NG", "unparsable")}
                                             for k, v in metrics[variant].items()}, f"{params.repeats} answers ({variant})")
    if not ranks.main:
        ranks.barrier()  # rank 0 has written out_dir
        return metrics
    record = {"model": model_id, "smoke_model": is_smoke_model(model_id), "adapters": {k: str(v) if v else None for k, v in adapters.items()},
              "decoding": decoding, "prompt_version": PROMPT_VERSION, "params": asdict(params),
              "dataset_revision": revision["revision"]}
    with atomic.atomic_dir(out_dir, kind="consistency") as staging:
        atomic.write_text(staging / "answers.jsonl", "".join(json.dumps(a, sort_keys=True) + "\n" for a in answers))
        atomic.write_json(staging / "details.json", metrics)
        atomic.write_json(staging / "metrics.json", headline(metrics))
        atomic.write_json(staging / "provenance.json", record)
        for variant, rgb in pictures.items():
            write_png(staging / "plots" / "images" / f"consistency_{variant}.png", rgb)
    ranks.barrier()
    return metrics
