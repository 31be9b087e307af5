"""The answer-outcomes table: format failures, invalid values and the score among answered slices, per LLM run."""

import dataclasses
import json

from brats_llm.llm.infer import InferParams

from brats_llm.report.outcomes import HEADER, MODES, TASKS, outcomes_table


def _run(root, mode, task, slices, decoding="free"):
    folder = root / "evaluate_llm" / mode / task
    folder.mkdir(parents=True)
    (folder / "details.json").write_text(json.dumps({"test": {"slices": slices}}))
    return {"inference": {"task": task, "params": {"decoding": decoding}}}


def test_format_failures_stand_apart_from_wrong_answers(tmp_path):
    records = {
        "evaluate_llm/zeroshot/cls": _run(tmp_path, "zeroshot", "cls", {"n": 10.0, "ok": 4.0, "format_error": 5.0,
                                                                         "invalid_value": 1.0, "answered_accuracy": 0.25}),
        "evaluate_llm/finetuned/bbox": _run(tmp_path, "finetuned", "bbox", {"n": 8.0, "ok": 0.0, "format_error": 0.0,
                                                                            "invalid_value": 8.0, "answered_dice": None},
                                            decoding="json"),
    }
    table = outcomes_table(tmp_path, records)
    assert table.header == HEADER and len(table.rows) == len(MODES) * len(TASKS)
    rows = {(row[0], row[1]): row for row in table.rows}
    assert rows["general", "cls"][2:] == ["free", "10", "5 (0.500)", "1 (0.100)", "4 (0.400)", "0.250",
                                          "label accuracy (share)"]
    assert rows["fine-tuned", "bbox"][2:8] == ["json", "8", "0 (0.000)", "8 (1.000)", "0 (0.000)", "n/a (none answered)"]
    assert rows["general", "polygon"][2] == "not run"  # no output: said, not zero


def test_the_report_shows_the_table(tmp_path):
    from brats_llm.report.build import ReportParams, build_report

    records = {"evaluate_llm/finetuned/center": _run(tmp_path, "finetuned", "center",
                                                     {"n": 4.0, "ok": 3.0, "format_error": 1.0, "invalid_value": 0.0,
                                                      "answered_in_box": 2 / 3})}
    run = records["evaluate_llm/finetuned/center"]["inference"]
    run.update(params=dataclasses.asdict(InferParams()), model="m", smoke_model=False, prompt_version="v", adapter=None,
               adapter_record=None, rows=4, dataset={"revision": "r", "split": "test"}, status={"ok": 3, "format_error": 1, "invalid_value": 0})
    (tmp_path / "evaluate_llm" / "finetuned" / "center" / "provenance.json").write_text(json.dumps({"task": "center", "inference": run}))
    build_report(tmp_path, tmp_path / "r", ReportParams())
    text = (tmp_path / "r" / "report.md").read_text()
    section = text.split("## Answer outcomes")[1].split("\n## ")[0]
    assert "| fine-tuned | center | free | 4 | 1 (0.250) | 0 (0.000) | 3 (0.750) | 0.667 |" in section
