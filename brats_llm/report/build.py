"""The ``report`` stage: one Markdown + HTML report from what the evaluation stages wrote (no model loaded)."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from brats_llm import atomic
from brats_llm.errors import MissingInputError
from brats_llm.provenance import code_version
from brats_llm.report.differences import differences
from brats_llm.report.outcomes import outcomes_table
from brats_llm.report.render import Figure, html_page, markdown
from brats_llm.report.tables import build_table, consistency_table, count_text, paper_numbers, read_metrics

TITLE = "brats-llm reproduction report"
#: What the report reads under MODELS_DIR (it needs at least one of them).
EXPECTED = ("evaluate_cls/provenance.json", "evaluate_seg/provenance.json", "llm_consistency/provenance.json",
            "evaluate_llm/<mode>/<task>/provenance.json")


@dataclass(frozen=True)
class ReportParams:
    """``report`` section of params.yaml.

    Attributes:
        examples: figures per group (overlays, shapes) taken from the evaluation plots.
        digits: decimals of our numbers.
    """

    examples: int = 2
    digits: int = 3

    def __post_init__(self) -> None:
        for name in ("examples", "digits"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


def _json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def card_tags(card: Path | None) -> list[str]:
    """Tags of the published dataset card (``synthetic`` marks the demo cohort)."""
    if card is None or not card.is_file():
        return []
    text = card.read_text(encoding="utf-8")
    if not text.startswith("---"):
        return []
    meta = yaml.safe_load(text.split("---", 2)[1]) or {}
    return list(meta.get("tags") or [])


def card_facts(card: Path | None) -> dict[str, Any]:
    """Cohort counts and upstream params from the published dataset card (empty when there is no card).

    ``cohort``: patients, HGG, LGG of the ``volumes`` config; ``params``: the prepare / split / slices /
    geometry / conversations sections the card records.
    """
    if card is None or not card.is_file():
        return {}
    text = card.read_text(encoding="utf-8")
    facts: dict[str, Any] = {}
    found = re.search(r"^\|\s*`volumes`\s*\|\s*\w+\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|", text, re.M)
    if found:
        facts["cohort"] = {"patients": int(found[1]), "LGG": int(found[2]), "HGG": int(found[3])}
    block = re.search(r"```yaml\n(.*?)\n```", text, re.S)
    if block:
        try:
            params = yaml.safe_load(block[1])
        except yaml.YAMLError:
            params = None
        if isinstance(params, dict):
            facts["params"] = params
    return facts


def _figures(models: Path, pattern: str, caption: str, limit: int) -> list[Figure]:
    from brats_llm.plots import NO_ANSWER_SUFFIX

    found = sorted(models.glob(pattern))[:limit]
    figures = []
    for path in found:
        if path.stem.endswith(NO_ANSWER_SUFFIX):  # nothing red was drawn: say so instead of the colour legend
            text = f"{caption} ({path.stem[: -len(NO_ANSWER_SUFFIX)]}; no usable answer, only the truth is drawn)"
        else:
            text = f"{caption} ({path.stem})"
        figures.append(Figure(path.relative_to(models).as_posix().replace("/", "__"), text, path.read_bytes()))
    return figures


def _fmt(value: Any, digits: int = 3) -> str:
    return "n/a" if not isinstance(value, (int, float)) else f"{value:.{digits}f}"


def _adapter_setting(records: dict[str, Any], task: str) -> str | None:
    record = records.get(f"evaluate_llm/finetuned/{task}") or {}
    adapter = (record.get("inference") or {}).get("adapter_record") or {}
    params = adapter.get("params")
    if not params:
        return None
    epochs = (params.get("epochs") or {}).get(task)  # full passes replace max_steps (Table 3's full-epoch run)
    length = f"{epochs:g} epoch(s)" if epochs else f"{params['max_steps'][task]} steps"
    run = record.get("inference") or {}
    base = f"`{run['model']}` + " if run.get("model") else ""
    return (f"{base}LoRA r{params.get('lora_rank')}, {length}, batch {params['batch_size'][task]}, "
            f"lr {params['lr'][task]:g}, {adapter.get('backend', params.get('backend', '?'))} backend"
            f"{_decoding(run.get('params') or {})}")


def _decoding(params: dict[str, Any]) -> str:
    """How answers were decoded: greedy or sampled, free (the paper) or constrained to the task's JSON schema."""
    text = ", greedy" if not params.get("do_sample") else f", sampled (T {params.get('temperature')})"
    if params.get("decoding", "free") != "free":
        text += f", {params['decoding']}-constrained decoding"
    if params.get("backend", "hf") != "hf":
        text += f", {params['backend']} inference"
    return text


def _general_setting(records: dict[str, Any], task: str) -> str | None:
    record = records.get(f"evaluate_llm/zeroshot/{task}") or {}
    run = record.get("inference")
    if not run:
        return None
    params = run.get("params") or {}
    text = f"`{run['model']}`" + (" (smoke model)" if run.get("smoke_model") else "") + ", zero-shot"
    text += _decoding(params)
    if params.get("max_rows"):
        text += f", {params['max_rows']} rows sampled across patients"
    return text


def our_setting(number: int, records: dict[str, Any]) -> str:
    """Our training / model setting for a paper table, from the run records ("not run" when absent)."""
    if number in (1, 4):
        record = records.get("evaluate_cls" if number == 1 else "evaluate_seg")
        if not record:
            return "not run"
        params = record["train_params"]
        text = f"lr {params['lr']:g}, {params['epochs']} epochs, batch {params['batch_size']}, fold {record['fold']}"
        if params.get("downsample", 1) != 1:
            text += f", input pooled x{params['downsample']}"
        return text
    task = {2: "cls", 3: "cls", 5: "center", 6: "center", 7: "bbox", 8: "bbox", 9: "polygon", 10: "polygon"}[number]
    if number == 3:
        parts = [_general_setting(records, task), _adapter_setting(records, task)]
        return "; ".join(p for p in parts if p) or "not run"
    setting = _general_setting(records, task) if number in (2, 5, 7, 9) else _adapter_setting(records, task)
    return setting or "not run"


def model_lines(runs: dict[str, Any]) -> list[str]:
    """One sentence per model: what the general (zero-shot) and the fine-tuned LLM are, from their run records."""
    lines = []
    general = next((r for k, r in sorted(runs.items()) if k.startswith("zeroshot/")), None)
    if general:
        what = general.get("model_trained_on")
        kind = (f"a tiny {general.get('architecture') or 'vision-LLM'} with random initial weights, " + what) if what else (
            "a tiny random smoke-test model" if general.get("smoke_model") else "the model as published")
        lines.append(f"General LLM: `{general['model']}`, {kind}.")
    tuned = next((r for k, r in sorted(runs.items()) if k.startswith("finetuned/") and r.get("adapter_record")), None)
    if tuned:
        record = tuned["adapter_record"]
        params = record.get("params") or {}
        saved = record.get("modules_to_save") or []
        extra = f" plus whole {', '.join(saved)}" if saved else ""
        lines.append(f"Fine-tuned LLM: the general LLM with one LoRA adapter per task (r{params.get('lora_rank')}{extra}), "
                     f"trained on this dataset's training conversations.")
    return lines


def summary_paragraph(models: Path, records: dict[str, Any], facts: dict[str, Any], tags: list[str]) -> str:
    """What data, what model, which runs, and the headline numbers beside their baselines."""
    cohort = facts.get("cohort")
    data = "a synthetic BraTS-layout cohort" if "synthetic" in tags else "BraTS"
    if cohort:
        data += f" ({cohort['patients']} patients: {cohort['HGG']} HGG, {cohort['LGG']} LGG)"
    parts = [f"Data: {data}."]
    runs = {k.split("/", 1)[1]: r["inference"] for k, r in records.items() if k.startswith("evaluate_llm/") and r}
    models_used = sorted({r["model"] for r in runs.values()})
    ran = []
    for task, name in (("cls", "CNN classifier"), ("seg", "CNN segmenter")):
        if records.get(f"evaluate_{task}"):
            ran.append(f"{name} (fold {records[f'evaluate_{task}']['fold']})")
    for mode, label in (("zeroshot", "general"), ("finetuned", "fine-tuned")):
        tasks = [k.split("/")[1] for k in runs if k.startswith(mode + "/")]
        if tasks:
            ran.append(f"{label} LLM on {', '.join(tasks)}")
    if models_used:
        parts.append(f"LLM: {', '.join(f'`{m}`' for m in models_used)}.")
        parts += model_lines(runs)
    if ran:
        parts.append("Runs: " + "; ".join(ran) + ".")
    headline = []
    cls = (read_metrics(models, "evaluate_cls") or {}).get("test")
    if cls:
        headline.append(f"CNN classifier test accuracy {_fmt(cls.get('accuracy'))} (balanced {_fmt(cls.get('balanced_accuracy'))}, "
                        f"n={count_text(cls.get('n'))}) vs majority-class {_fmt((cls.get('baseline_majority') or {}).get('accuracy'))}")
    seg = (read_metrics(models, "evaluate_seg") or {}).get("test")
    if seg:
        base = (seg.get("baseline_all_background") or {}).get("dice")
        headline.append(f"CNN segmenter test Dice {_fmt(seg.get('dice'))}" + (f" vs all-background {_fmt(base)}" if base is not None else ""))
    for mode, label in (("zeroshot", "general"), ("finetuned", "fine-tuned")):
        block = (read_metrics(models, f"evaluate_llm/{mode}/cls") or {}).get("test_glioma")
        if block:
            headline.append(f"{label} LLM accuracy on glioma slices {_fmt(block.get('accuracy'))} (balanced "
                            f"{_fmt(block.get('balanced_accuracy'))}, n={count_text(block.get('n'))} patients) vs majority-class "
                            f"{_fmt((block.get('baseline_majority') or {}).get('accuracy'))}")
    for mode, label in (("zeroshot", "general"), ("finetuned", "fine-tuned")):
        block = (read_metrics(models, f"evaluate_llm/{mode}/bbox") or {}).get("test")
        if block:
            headline.append(f"{label} LLM box Dice {_fmt(block.get('dice'))} vs mean training box "
                            f"{_fmt((block.get('baseline_mean_train_box') or {}).get('dice'))} and oracle "
                            f"{_fmt((block.get('oracle') or {}).get('dice'))}")
    if headline:
        parts.append("Headline (test cohort): " + "; ".join(headline) + ".")
    return " ".join(parts)


def geometry_note(models: Path, records: dict[str, Any]) -> str | None:
    """Share of scored test slices with several tumour components, what the targets describe, and how invalid
    shapes were scored (from the evaluations' ``records``, :func:`collect`)."""
    for task in ("bbox", "polygon", "center"):
        for mode in ("zeroshot", "finetuned"):
            truth = ((read_metrics(models, f"evaluate_llm/{mode}/{task}") or {}).get("test") or {}).get("truth")
            if truth and truth.get("multi_component_share") is not None:
                return (f"Ground truth: {truth['multi_component_share']:.1%} of the {int(truth['slices']):,} scored test slices "
                        f"({int(truth['patients'])} patients) hold more than one tumour component. As in the paper, box and "
                        "centre describe all tumour pixels of the slice; the polygon traces the largest component only. "
                        "The oracle column scores the ground-truth answer like the model's, against the whole-slice mask: "
                        "the ceiling of each answer format." + invalid_shapes_note(records))
    return None


def invalid_shapes_note(records: dict[str, Any]) -> str:
    """How the box and polygon runs scored answers that parsed to points but are no valid shape."""
    found = {(record or {}).get("eval_params", {}).get("invalid_shapes") for key, record in records.items()
             if key.startswith("evaluate_llm/") and key.endswith(("/bbox", "/polygon"))} - {None}  # None: older records
    if found == {"drawn"}:
        return (" Box and polygon answers that parse but are no valid shape (corners not of one box, a self-intersecting "
                "polygon) are scored as the region they draw (the box the corners span; the polygon filled even-odd), "
                "as the paper scored its LLM's star-shaped polygons (evaluate_llm.invalid_shapes: drawn); the answer "
                "outcomes table counts them as invalid values.")
    if found == {"empty"}:
        return (" Box and polygon answers that parse but are no valid shape score as no answer (Dice 0; "
                "evaluate_llm.invalid_shapes: empty; the paper scored its star-shaped polygons as drawn).")
    if found:
        return (" The box and polygon runs scored invalid shapes differently: see evaluate_llm.invalid_shapes in each "
                "run's provenance.json.")
    return ""


def collect(models: Path) -> dict[str, Any]:
    """Every provenance record the evaluation stages wrote, by folder."""
    records = {}
    for folder in ("evaluate_cls", "evaluate_seg", "llm_consistency"):
        records[folder] = _json(models / folder / "provenance.json")
    for path in sorted(models.glob("evaluate_llm/*/*/provenance.json")):
        records[path.parent.relative_to(models).as_posix()] = _json(path)
    return records


def _provenance_lines(records: dict[str, Any], revision: str | None, tags: list[str]) -> list[str]:
    lines = [f"Code: brats-llm {code_version()}.",
             f"Dataset revision: `{revision or 'unknown'}`" + (" (synthetic cohort)" if "synthetic" in tags else "") + "."]
    for task in ("cls", "seg"):
        record = records.get(f"evaluate_{task}")
        if record:
            data = record["dataset_at_training"]
            named = (f"published volumes `{data['config_revision']}`" + (f" of {data['repo_id']}" if data.get("repo_id") else "")
                     if "config_revision" in data else
                     f"volumes folder `{data.get('path')}` (fingerprint `{data.get('fingerprint')}`)")
            lines.append(f"CNN {task}: fold {record['fold']}, best epoch {record['best_epoch']}, trained on {named}; "
                         f"params {json.dumps(record['train_params'], sort_keys=True)}.")
    for key, record in records.items():
        if key.startswith("evaluate_llm/") and record:
            run = record["inference"]
            adapter = run.get("adapter_record") or {}
            text = f"LLM {key.split('/', 1)[1]}: model `{run['model']}`" + (" (smoke model)" if run.get("smoke_model") else "")
            if run.get("adapter"):
                text += (f" + adapter `{run['adapter']}` ({adapter.get('backend', '?')} backend, "
                         f"trained on revision `{(adapter.get('dataset') or {}).get('revision', '?')}`)")
            text += f", prompts {run['prompt_version']}, {run['rows']} slices, parse status {json.dumps(run['status'], sort_keys=True)}."
            lines.append(text)
    return lines


def build_report(models_dir: str | os.PathLike, out_dir: str | os.PathLike, params: ReportParams, *,
                 card: str | os.PathLike | None = None) -> dict[str, Any]:
    """Write ``out_dir/report.md`` (+ ``figures/``) and ``out_dir/report.html`` (self-contained).

    Reads only evaluation outputs under ``models_dir`` (details.json, provenance.json, plots) and the
    dataset card (for the synthetic tag); the same inputs give the same bytes.

    Returns:
        A summary: tables built, columns not run, smoke / synthetic flags.

    Raises:
        MissingInputError: ``models_dir`` holds no evaluation output at all.
    """
    models = Path(models_dir)
    paper = paper_numbers()
    records = collect(models)
    if not any(records.values()):
        raise MissingInputError(f"{models}: no evaluation output to report on (looked for {', '.join(EXPECTED)}); "
                                "run the evaluate stages first (dvc repro) or pass the folder that holds them")
    tags = card_tags(Path(card) if card else None)
    facts = card_facts(Path(card) if card else None)
    runs = [r["inference"] for k, r in records.items() if k.startswith("evaluate_llm/") and r]
    smoke = any(run.get("smoke_model") for run in runs)
    revision = next((run["dataset"]["revision"] for run in runs), None)
    blocks: list[tuple] = [("h1", TITLE), ("p", paper["citation"])]
    if "synthetic" in tags or smoke:
        what = []
        if "synthetic" in tags:
            what.append("the data are a synthetic BraTS-layout cohort generated by this project, not patients")
        if smoke:
            what.append("the LLM numbers come from a tiny random smoke-test model, not LLaMA 3.2 Vision")
        blocks.append(("banner", "PLUMBING RUN, NOT SCIENCE: " + "; ".join(what) + ". Compare with the paper only on real BraTS with the real model."))
    blocks += [("h2", "Summary"), ("p", summary_paragraph(models, records, facts, tags)),
               ("details", ("Provenance (code, data revision, models, params)", _provenance_lines(records, revision, tags)))]
    tables, missing = [], {}
    geometry = geometry_note(models, records)
    for spec in paper["tables"]:
        table = build_table(spec, models, params.digits)
        tables.append(table)
        title = f"Table {table.number}: {table.title} (paper: {table.paper_setting}; ours: {our_setting(table.number, records)})"
        blocks += [("h2", title), ("table", table)]
        notes = [f"Ours from {', '.join(table.sources)}." if table.sources else "No run of ours for this table."]
        if table.number == 3:
            notes.append("Both columns are scored on glioma slices only (slices without tumour, answer NG-2, left out); "
                         "Table 2's axial column scores every slice of the window.")
        if table.number == 7 and geometry:
            notes.append(geometry)
        elif table.number in (8, 9, 10) and geometry:
            notes.append("Oracle column: the ground-truth answer scored like the model's (see Table 7).")
        if table.missing:
            notes.append(f"Not run: {'; '.join(table.missing)}.")
            missing[table.number] = table.missing
        blocks.append(("p", " ".join(notes)))
    blocks += [("h2", "Answer outcomes (format failures apart from wrong answers)"),
               ("table", outcomes_table(models, records, params.digits)),
               ("p", "Test slices of each LLM run (classification: axial, all slices), both models of a task on the same "
                     "sampled rows. Format failures: no answer in the task's JSON format; invalid values: parsed, but "
                     "impossible (a label not offered, a point off the image, a degenerate box or polygon); the last "
                     "columns score the answered slices only, so a low score there is a wrong answer, not a format "
                     "failure. decoding json (llm.decoding) makes format failures impossible: compare a run with "
                     "dvc exp run -S llm.decoding=json and dvc metrics diff. Baselines: Tables 2-10.")]
    blocks += [("h2", "Consistency test"), ("table", consistency_table(paper, _json(models / "llm_consistency" / "details.json"))),
               ("p", "Agreement is the share of the most frequent label among parsed answers (HGG, LGG or NG); "
                     "unparsable answers are counted apart and never as a label. The paper's counts are out of 95.")]
    n = params.examples
    figure_groups = [  # heading, [(pattern under models/, caption, how many)]
        ("GLDR per patient (general vs fine-tuned)", [("evaluate_llm/zeroshot/cls/plots/images/gldr_*.png", "GLDR, general", 3),
                                                      ("evaluate_llm/finetuned/cls/plots/images/gldr_*.png", "GLDR, fine-tuned", 3)]),
        *((f"{name} over the slice (truth blue, prediction red)",
           [(f"evaluate_llm/{mode}/{task}/plots/images/examples/*.png", f"{name}, {label}", n)
            for mode, label in (("zeroshot", "general"), ("finetuned", "fine-tuned"))])
          for task, name in (("center", "Centre points"), ("bbox", "Bounding boxes"), ("polygon", "Polygons"))),
        ("CNN segmentation (truth blue, prediction red) and per-patient Dice",
         [("evaluate_seg/plots/images/overlays/*.png", "CNN overlay", n), ("evaluate_seg/plots/images/*.png", "CNN segmenter", 4)]),
        ("CNN classifier ROC and confusion", [("evaluate_cls/plots/images/*.png", "CNN classifier", 4)]),
        ("Consistency answers", [("llm_consistency/plots/images/*.png", "consistency", 2)]),
    ]
    figures: list[Figure] = []
    blocks.append(("h2", "Figures"))
    for heading, sources in figure_groups:
        group = [figure for pattern, caption, limit in sources for figure in _figures(models, pattern, caption, limit)]
        if group:
            blocks += [("h3", heading), ("figures", group)]
            figures += group
    blocks += [("h2", "Differences from the paper"), ("list", differences(records, tags, facts, models))]
    with atomic.atomic_dir(out_dir, kind="report") as staging:
        atomic.write_text(staging / "report.md", markdown(blocks))
        atomic.write_text(staging / "report.html", html_page(blocks, TITLE))
        for figure in figures:
            atomic.write_bytes(staging / "figures" / figure.name, figure.png)
    return {"tables": [t.number for t in tables], "not_run": missing, "smoke_model": smoke, "synthetic": "synthetic" in tags,
            "figures": len(figures)}
