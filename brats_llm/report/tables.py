"""Paper tables beside ours: which metrics file answers which paper column, and the table cells."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PAPER_NUMBERS = Path(__file__).with_name("paper_numbers.yaml")

#: Paper table -> paper column -> (our evaluation folder under the models root, key in its details.json);
#: None = not part of this pipeline's runs.
SOURCES: dict[int, dict[str, tuple[str, str] | None]] = {
    1: {"train": ("evaluate_cls", "train"), "validation": ("evaluate_cls", "validation"), "test": ("evaluate_cls", "test")},
    2: {"axial": ("evaluate_llm/zeroshot/cls", "test"), "coronal": ("evaluate_llm/zeroshot/cls", "test_coronal"),
        "sagittal": ("evaluate_llm/zeroshot/cls", "test_sagittal")},
    # Table 3 is glioma slices only: both columns come from the glioma-only scoring of evaluate-llm.
    3: {"general": ("evaluate_llm/zeroshot/cls", "test_glioma"),
        "fine-tuned 100 steps": ("evaluate_llm/finetuned/cls", "test_glioma"), "fine-tuned full epoch": None},
    4: {"train": ("evaluate_seg", "train"), "validation": ("evaluate_seg", "validation"), "test": ("evaluate_seg", "test")},
    5: {"general": ("evaluate_llm/zeroshot/center", "test")},
    6: {"fine-tuned": ("evaluate_llm/finetuned/center", "test")},
    7: {"general": ("evaluate_llm/zeroshot/bbox", "test")},
    8: {"fine-tuned": ("evaluate_llm/finetuned/bbox", "test")},
    9: {"general": ("evaluate_llm/zeroshot/polygon", "test")},
    10: {"fine-tuned": ("evaluate_llm/finetuned/polygon", "test")},
}
#: Why a paper column has no run in the default pipeline, and how to get it.
NOT_IN_PIPELINE = {"fine-tuned full epoch": "not in the default pipeline, which fine-tunes a fixed number of steps: one "
                   "full pass is a second run, dvc exp run -S llm_finetune.epochs.cls=1, compared with dvc metrics diff"}
#: Our key for a paper metric, where the names differ (CNN HD95 is in mm, LLM HD95 in pixels).
OUR_KEYS = {"hd95": ("hd95_mm", "hd95")}
#: Lower is better for these (the rest: higher is better).
LOWER_IS_BETTER = {"hd95", "p95_box_distance", "p95_center_distance"}
#: Row labels where the metric name alone does not say what was measured (the first word stays the key).
ROW_LABELS = {"auc_label_probability": "auc_label_probability (mean label-token P(HGG) per patient)"}
#: Row label of ``auc`` in the LLM classification tables (the paper's tally proxy).
LLM_AUC_LABEL = "auc (tally: GLDR as the score)"
ORACLE_HEADER = "oracle (truth answered perfectly)"


def paper_numbers(path: Path = PAPER_NUMBERS) -> dict[str, Any]:
    """The paper's numbers (one YAML file, cited to the table)."""
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@dataclass
class Table:
    """One paper table with our values: ``rows`` are metrics, ``header`` the column titles."""

    number: int
    title: str
    header: list[str]
    rows: list[list[str]]
    sources: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    paper_setting: str = ""


def _number(value: Any, digits: int) -> str:
    """A fixed-point cell; missing or undefined values (None, NaN, dvclive's "nan" strings) read "n/a"."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "n/a"
    return "n/a" if math.isnan(number) else f"{number:.{digits}f}"


def our_value(metrics: dict[str, Any], metric: str) -> tuple[float | None, float | None, float | None, str]:
    """(value, ci_low, ci_high, key used) of a paper metric in one metrics block."""
    for key in OUR_KEYS.get(metric, (metric,)):
        if key in metrics:
            return metrics[key], metrics.get(f"{key}_ci_low"), metrics.get(f"{key}_ci_high"), key
    return None, None, None, metric


def _cell(block: dict[str, Any], metric: str, digits: int) -> str:
    """Our value with its interval; with per-fold values (``<key>_fold_mean`` / ``_fold_sd``) their mean +- SD too."""
    value, low, high, used = our_value(block, metric)
    text = _number(value, digits)
    if low is not None or high is not None:
        text += f" [{_number(low, digits)}, {_number(high, digits)}]"
    if f"{used}_fold_mean" in block:
        folds = block.get("folds")
        text += (f"; folds {_number(block[f'{used}_fold_mean'], digits)} +- {_number(block.get(f'{used}_fold_sd'), digits)}"
                 + (f" (k={int(folds)})" if isinstance(folds, (int, float)) else ""))
    return text


def patients_n(models: Path, folder: str, key: str, block: dict[str, Any]) -> float | None:
    """Patients behind a metrics block: its ``n`` (or ``truth.patients``), else the rows of predictions/<key>.csv."""
    for value in (block.get("n"), (block.get("truth") or {}).get("patients")):
        if isinstance(value, (int, float)):
            return float(value)
    csv = models / folder / "predictions" / f"{key}.csv"
    if csv.is_file():
        return float(max(0, len(csv.read_text(encoding="utf-8").strip().splitlines()) - 1))
    return None


def read_metrics(models: Path, folder: str) -> dict[str, Any] | None:
    """Everything an evaluation wrote (its details.json; metrics.json is only the DVC headline), None if absent."""
    path = models / folder / "details.json"
    return json.loads(path.read_text()) if path.is_file() else None


def build_table(spec: dict[str, Any], models: Path, digits: int = 3) -> Table:
    """Paper value, ours with its 95% interval, per paper column; then the baselines of the last column we have."""
    number = spec["table"]
    header = ["metric"]
    columns: list[tuple[str, dict[str, Any] | None]] = []
    counts: list[tuple[float | None, float | None]] = []
    sources, missing = [], []
    for name in spec["columns"]:
        source = SOURCES[number].get(name)
        metrics = read_metrics(models, source[0]) if source else None
        block = metrics.get(source[1]) if metrics else None
        if block is None:
            missing.append(f"{name} ({NOT_IN_PIPELINE.get(name, 'not part of this pipeline') if source is None else f'no {source[1]!r} in models/{source[0]}/details.json'})")
        else:
            sources.append(f"models/{source[0]}/details.json [{source[1]}]")
        columns.append((name, block))
        slices = (block.get("slices") or {}).get("n") if block and source and source[0].startswith("evaluate_llm/") else None
        counts.append((patients_n(models, source[0], source[1], block) if block and source else None, slices))
        header += [f"{name}: paper", f"{name}: ours [95% CI]"]
    baseline_block = next((block for _, block in reversed(columns) if block), None)
    baseline_names = sorted(k for k in (baseline_block or {}) if k.startswith("baseline_"))
    header += [name.replace("baseline_", "baseline: ").replace("_", " ") for name in baseline_names]
    oracle = (baseline_block or {}).get("oracle") if isinstance((baseline_block or {}).get("oracle"), dict) else None
    if oracle is not None:
        header.append(ORACLE_HEADER)
    llm = any(source and source[0].startswith("evaluate_llm/") for source in (SOURCES[number].get(n) for n, _ in columns))
    rows = []
    for metric in spec["metrics"]:
        used = metric
        row = [metric]
        for name, block in columns:
            row.append(_number(spec["columns"][name].get(metric), 4))
            if block is None:
                row.append("not run")
                continue
            used = our_value(block, metric)[3]
            row.append(_cell(block, metric, digits))
        for name in baseline_names:
            row.append(_number(our_value(baseline_block[name], metric)[0], digits))
        if oracle is not None:
            row.append(_number(our_value(oracle, metric)[0], digits))
        if metric in OUR_KEYS and any(block for _, block in columns):
            row[0] = f"{metric} ({'mm' if used.endswith('_mm') else 'pixels'})"
        elif metric == "auc" and llm:
            row[0] = LLM_AUC_LABEL
        elif metric in ROW_LABELS:
            row[0] = ROW_LABELS[metric]
        rows.append(row)
    extra = len(baseline_names) + (oracle is not None)
    paper_n = spec.get("paper_n") or {}
    n_row = ["n (patients)"]
    for (name, block), (patients, _) in zip(columns, counts):
        n_row += [str(paper_n.get(name, "n/a")), "not run" if block is None else count_text(patients)]
    rows.append(n_row + [""] * extra)
    if llm:
        s_row = ["n (slices)"]
        for (_, block), (_, slices) in zip(columns, counts):
            s_row += ["n/a", "not run" if block is None else count_text(slices)]
        rows.append(s_row + [""] * extra)
    return Table(number, spec["title"], header, rows, sources, missing, spec.get("paper_setting", ""))


def count_text(value: Any) -> str:
    """A count with thousands separators; "n/a" when it is missing (not a number)."""
    return f"{int(value):,}" if isinstance(value, (int, float)) else "n/a"


def consistency_table(paper: dict[str, Any], ours: dict[str, Any] | None) -> Table:
    """Answers per image for the general and fine-tuned model, paper beside ours.

    Ours: HGG / LGG / NG (parsed answers) and unparsable ones separately; agreement is the share of the most
    frequent label among parsed answers, shown with the parse rate (recomputed from the stored counts).
    """
    from brats_llm.evaluate.consistency_metrics import from_counts

    header = ["model", "image", "paper HGG / LGG (of 95)", "ours HGG / LGG / NG", "ours unparsable",
              "ours parsed (parse rate)", "ours agreement among parsed"]
    rows = []
    for paper_name, our_name in (("general", "general"), ("fine-tuned", "finetuned")):
        for image in ("HGG_image", "LGG_image"):
            p = paper["consistency"][paper_name][image]
            o = (ours or {}).get(our_name, {}).get(image)
            row = [paper_name, image.replace("_image", " image"), f"{p['HGG']} / {p['LGG']}"]
            if o is None:
                rows.append(row + ["not run", "", "", "n/a"])
                continue
            c = from_counts(o)
            rate = "n/a" if c["parse_rate"] is None else f"{c['parse_rate']:.3f}"
            agreement = "n/a (none parsed)" if c["agreement"] is None else f"{c['agreement']:.3f} ({c['majority']})"
            rows.append(row + [f"{c['HGG']} / {c['LGG']} / {c['NG']}", str(c["unparsable"]),
                               f"{c['parsed']} of {c['answers']} ({rate})", agreement])
    return Table(0, "Consistency test (same image and prompt, repeated)", header, rows)
