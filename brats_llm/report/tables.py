"""Paper tables beside ours: which metrics file answers which paper column, and the table cells."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PAPER_NUMBERS = Path(__file__).with_name("paper_numbers.yaml")

#: Paper table -> paper column -> (our evaluation folder under the models root, key in its metrics.json);
#: None = not part of this pipeline's runs.
SOURCES: dict[int, dict[str, tuple[str, str] | None]] = {
    1: {"train": ("evaluate_cls", "train"), "validation": ("evaluate_cls", "validation"), "test": ("evaluate_cls", "test")},
    2: {"axial": ("evaluate_llm/zeroshot/cls", "test"), "coronal": ("evaluate_llm/zeroshot/cls", "test_coronal"),
        "sagittal": ("evaluate_llm/zeroshot/cls", "test_sagittal")},
    3: {"general": ("evaluate_llm/zeroshot/cls", "test"), "fine-tuned 100 steps": ("evaluate_llm/finetuned/cls", "test"),
        "fine-tuned full epoch": None},
    4: {"train": ("evaluate_seg", "train"), "validation": ("evaluate_seg", "validation"), "test": ("evaluate_seg", "test")},
    5: {"general": ("evaluate_llm/zeroshot/center", "test")},
    6: {"fine-tuned": ("evaluate_llm/finetuned/center", "test")},
    7: {"general": ("evaluate_llm/zeroshot/bbox", "test")},
    8: {"fine-tuned": ("evaluate_llm/finetuned/bbox", "test")},
    9: {"general": ("evaluate_llm/zeroshot/polygon", "test")},
    10: {"fine-tuned": ("evaluate_llm/finetuned/polygon", "test")},
}
#: Our key for a paper metric, where the names differ (CNN HD95 is in mm, LLM HD95 in pixels).
OUR_KEYS = {"hd95": ("hd95_mm", "hd95")}
#: Lower is better for these (the rest: higher is better).
LOWER_IS_BETTER = {"hd95", "p95_box_distance", "p95_center_distance"}


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


def read_metrics(models: Path, folder: str) -> dict[str, Any] | None:
    path = models / folder / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else None


def build_table(spec: dict[str, Any], models: Path, digits: int = 3) -> Table:
    """Paper value, ours with its 95% interval, per paper column; then the baselines of the last column we have."""
    number = spec["table"]
    header = ["metric"]
    columns = []
    sources, missing = [], []
    for name in spec["columns"]:
        source = SOURCES[number].get(name)
        metrics = read_metrics(models, source[0]) if source else None
        block = metrics.get(source[1]) if metrics else None
        if block is None:
            missing.append(f"{name} ({'not part of this pipeline' if source is None else f'no {source[1]!r} in models/{source[0]}/metrics.json'})")
        else:
            sources.append(f"models/{source[0]}/metrics.json [{source[1]}]")
        columns.append((name, block))
        header += [f"{name}: paper", f"{name}: ours [95% CI]"]
    baseline_block = next((block for _, block in reversed(columns) if block), None)
    baseline_names = sorted(k for k in (baseline_block or {}) if k.startswith("baseline_"))
    header += [name.replace("baseline_", "baseline: ").replace("_", " ") for name in baseline_names]
    rows = []
    for metric in spec["metrics"]:
        used = metric
        row = [metric]
        for name, block in columns:
            row.append(_number(spec["columns"][name].get(metric), 4))
            if block is None:
                row.append("not run")
                continue
            value, low, high, used = our_value(block, metric)
            interval = f" [{_number(low, digits)}, {_number(high, digits)}]" if low is not None else ""
            row.append(_number(value, digits) + interval)
        for name in baseline_names:
            row.append(_number(our_value(baseline_block[name], metric)[0], digits))
        if metric in OUR_KEYS and any(block for _, block in columns):
            row[0] = f"{metric} ({'mm' if used.endswith('_mm') else 'pixels'})"
        rows.append(row)
    return Table(number, spec["title"], header, rows, sources, missing)


def consistency_table(paper: dict[str, Any], ours: dict[str, Any] | None) -> Table:
    """Answers per image (HGG / LGG / other) for the general and fine-tuned model, paper beside ours."""
    header = ["model", "image", "paper HGG / LGG (of 95)", "ours HGG / LGG / other", "ours agreement"]
    rows = []
    for paper_name, our_name in (("general", "general"), ("fine-tuned", "finetuned")):
        for image in ("HGG_image", "LGG_image"):
            p = paper["consistency"][paper_name][image]
            o = (ours or {}).get(our_name, {}).get(image)
            mine = "not run" if o is None else f"{o['HGG']} / {o['LGG']} / {o['NG'] + o['unparsable']}"
            rows.append([paper_name, image.replace("_image", " image"), f"{p['HGG']} / {p['LGG']}", mine,
                         "n/a" if o is None else f"{o['agreement']:.3f}"])
    return Table(0, "Consistency test (same image and prompt, repeated)", header, rows)
