"""The answer-outcomes table: format failures apart from wrong answers, per LLM run, on the same scored slices."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from brats_llm.report.tables import Table, count_text, read_metrics

#: (our mode folder, the report's name for it); (task, what the "among answered" score measures, its unit).
MODES = (("zeroshot", "general"), ("finetuned", "fine-tuned"))
TASKS = (("cls", "answered_accuracy", "label accuracy (share)"),
         ("center", "answered_in_box", "centre inside the true box (share)"),
         ("bbox", "answered_dice", "mean slice Dice"),
         ("polygon", "answered_dice", "mean slice Dice"))
HEADER = ["model", "task", "decoding", "slices (n)", "format failures (share)", "invalid values (share)",
          "answered (share)", "score among answered", "the score is"]


def _share(count: Any, n: Any) -> str:
    if not isinstance(count, (int, float)) or not n:
        return "n/a"
    return f"{int(count):,} ({count / n:.3f})"


def outcomes_table(models: Path, records: dict[str, Any], digits: int = 3) -> Table:
    """One row per LLM run: its decoding (free = the paper; json = schema-constrained), the test slices it
    answered (n), how many failed the answer format, how many parsed with an impossible value, how many were
    answered, and the task's score over the answered slices only. A format failure is the model's output
    not being an answer; a low score among answered slices is a wrong answer. Both models of a task answer
    the same sampled rows (``llm.max_rows`` with ``llm.seed``)."""
    rows = []
    for mode, name in MODES:
        for task, key, unit in TASKS:
            folder = f"evaluate_llm/{mode}/{task}"
            run = (records.get(folder) or {}).get("inference") or {}
            slices = ((read_metrics(models, folder) or {}).get("test") or {}).get("slices")
            if not run or not slices:
                rows.append([name, task, "not run", "", "", "", "", "n/a", unit])
                continue
            n = slices.get("n")
            score = slices.get(key)
            rows.append([name, task, (run.get("params") or {}).get("decoding", "free"), count_text(n),
                         _share(slices.get("format_error"), n), _share(slices.get("invalid_value"), n),
                         _share(slices.get("ok"), n),
                         "n/a (none answered)" if score is None else f"{score:.{digits}f}", unit])
    return Table(0, "Answer outcomes: format failures and wrong answers", HEADER, rows)
