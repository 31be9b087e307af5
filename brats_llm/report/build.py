"""The ``report`` stage: one Markdown + HTML report from what the evaluation stages wrote (no model loaded)."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from brats_llm import __version__, atomic
from brats_llm.errors import MissingInputError
from brats_llm.report.differences import differences
from brats_llm.report.render import Figure, html_page, markdown
from brats_llm.report.tables import build_table, consistency_table, paper_numbers

PACKAGE = Path(__file__).resolve().parents[1]
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


def code_version() -> str:
    """Package version and a SHA-256 over the package's source files (stable across machines)."""
    digest = hashlib.sha256()
    for path in sorted(PACKAGE.rglob("*")):
        if path.is_file() and path.suffix in (".py", ".yaml"):
            digest.update(path.relative_to(PACKAGE).as_posix().encode() + b"\0" + path.read_bytes())
    return f"{__version__} (source sha256 {digest.hexdigest()[:12]})"


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


def _figures(models: Path, pattern: str, caption: str, limit: int) -> list[Figure]:
    found = sorted(models.glob(pattern))[:limit]
    return [Figure(path.relative_to(models).as_posix().replace("/", "__"), f"{caption} ({path.stem})", path.read_bytes())
            for path in found]


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
            lines.append(f"CNN {task}: fold {record['fold']}, best epoch {record['best_epoch']}, trained on volumes "
                         f"`{data.get('dvc_md5') or data.get('fingerprint')}`; params {json.dumps(record['train_params'], sort_keys=True)}.")
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

    Reads only evaluation outputs under ``models_dir`` (metrics.json, provenance.json, plots) and the
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
    blocks += [("h2", "Provenance"), ("list", _provenance_lines(records, revision, tags))]
    tables, missing = [], {}
    for spec in paper["tables"]:
        table = build_table(spec, models, params.digits)
        tables.append(table)
        blocks += [("h2", f"Table {table.number}: {table.title}"), ("table", table)]
        notes = [f"Ours from {', '.join(table.sources)}." if table.sources else "No run of ours for this table."]
        if table.missing:
            notes.append(f"Not run: {'; '.join(table.missing)}.")
            missing[table.number] = table.missing
        blocks.append(("p", " ".join(notes)))
    blocks += [("h2", "Consistency test"), ("table", consistency_table(paper, _json(models / "llm_consistency" / "metrics.json")))]
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
    blocks += [("h2", "Differences from the paper"), ("list", differences(records, tags))]
    with atomic.atomic_dir(out_dir, kind="report") as staging:
        atomic.write_text(staging / "report.md", markdown(blocks))
        atomic.write_text(staging / "report.html", html_page(blocks, TITLE))
        for figure in figures:
            atomic.write_bytes(staging / "figures" / figure.name, figure.png)
    return {"tables": [t.number for t in tables], "not_run": missing, "smoke_model": smoke, "synthetic": "synthetic" in tags,
            "figures": len(figures)}
