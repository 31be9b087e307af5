"""The report: every paper number from the data file, ours with intervals, labels, offline HTML, same bytes."""

import dataclasses
import json
import re
import shutil
import subprocess

import cv2
import numpy as np
import pytest

from brats_llm.llm.infer import InferParams
from brats_llm.report.build import ReportParams, build_report
from brats_llm.report.tables import SOURCES, paper_numbers
from brats_llm.train.cnn.trainer import CnnTrainParams
from brats_llm.train.llm.params import FinetuneParams

CLS = ["accuracy", "balanced_accuracy", "precision", "recall", "specificity", "f1", "mcc", "auc"]


def block(rng, keys, baselines=()):
    values = {}
    for key in keys:
        value = float(rng.uniform(0.1, 0.9))
        values.update({key: value, f"{key}_ci_low": value - 0.05, f"{key}_ci_high": value + 0.05})
    for name in baselines:
        values[name] = {key: 0.5 for key in keys}
    return values


def write(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def png(path, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((8, 8, 3), value, np.uint8))


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    rng = np.random.default_rng(0)
    seg_keys = ["dice", "hd95_mm", "precision", "recall", "specificity"]
    write(root / "evaluate_cls" / "details.json", {s: block(rng, CLS, ["baseline_majority"]) for s in ("train", "validation", "test")})
    write(root / "evaluate_seg" / "details.json", {s: block(rng, seg_keys, ["baseline_all_background"]) for s in ("train", "validation", "test")})
    for task in ("cls", "seg"):
        write(root / f"evaluate_{task}" / "provenance.json", {
            "task": task, "fold": 0, "best_epoch": 3, "train_params": dataclasses.asdict(CnnTrainParams(epochs=5)),
            "dataset_at_training": {"config": "volumes", "config_revision": "5c34e51f", "repo_id": "lab/brats"} if task == "seg"
            else {"path": "data/volumes", "fingerprint": "abc123"}})
    tune = dataclasses.asdict(FinetuneParams(backend="hf", max_steps=dict.fromkeys(("cls", "center", "bbox", "polygon"), 7)))
    for mode in ("zeroshot", "finetuned"):
        for task, keys, bases in (("cls", CLS, ["baseline_majority"]),
                                  ("center", ["in_box", "p95_box_distance", "p95_center_distance"], ["baseline_image_center"]),
                                  ("bbox", ["dice", "hd95", "precision", "recall", "specificity"], ["baseline_mean_train_box"]),
                                  ("polygon", ["dice", "hd95", "precision", "recall", "specificity"], ["baseline_mean_train_box"])):
            folder = root / "evaluate_llm" / mode / task
            metrics = {"test": {**block(rng, keys, bases), "n": 11.0, "slices": {"n": 321.0}}}
            if task == "cls":  # glioma-only scoring (Table 3) with its own values, and a null AUC with its reason
                metrics["test_glioma"] = {**block(rng, keys, bases), "n": 10.0, "slices": {"n": 222.0},
                                          "auc_label_probability": None, "auc_label_probability_note": "one class only"}
            else:
                metrics["test"]["oracle"] = {key: 0.777 for key in keys}
                metrics["test"]["truth"] = {"slices": 321.0, "patients": 11.0, "multi_component_share": 0.46}
            write(folder / "details.json", metrics)
            run = {"task": task, "model": "models/tiny-mllama", "smoke_model": True, "prompt_version": "v",
                   "adapter": f"models/llm_adapters/{task}" if mode == "finetuned" else None,
                   "adapter_record": {"task": task, "backend": "hf", "params": tune, "optimizer": "adamw_torch",
                                      "dataset": {"revision": "rev1"}} if mode == "finetuned" else None,
                   "dataset": {"revision": "rev1", "split": "test"}, "params": dataclasses.asdict(InferParams()),
                   "rows": 10, "status": {"ok": 8, "format_error": 2, "invalid_value": 0}}
            write(folder / "provenance.json", {"task": task, "inference": run})
            png(folder / "plots" / "images" / ("gldr_axial.png" if task == "cls" else "examples/p_1.png"), 10)
    counts = {"HGG": 3, "LGG": 1, "NG": 0, "unparsable": 1, "agreement": 0.6}  # agreement as stored before: recomputed
    write(root / "llm_consistency" / "details.json", {v: {"HGG_image": counts, "LGG_image": counts} for v in ("general", "finetuned")})
    write(root / "llm_consistency" / "provenance.json", {"params": {"repeats": 5}, "decoding": "greedy"})
    png(root / "evaluate_seg" / "plots" / "images" / "overlays" / "p.png", 200)
    card = root / "card.md"
    card.write_text("---\ntags:\n- synthetic\n---\n# card\n\n| config | split | rows | LGG | HGG |\n|---|---|---|---|---|\n"
                    "| `volumes` | train | 50 | 10 | 40 |\n\n```yaml\nprepare:\n  centre_on: tumour\nslices:\n"
                    "  tumour_range_only: true\nsplit:\n  folds: 5\n  test_fraction: 0.15\n```\n")
    return root


def test_every_paper_number_comes_from_the_data_file(models, tmp_path):
    summary = build_report(models, tmp_path / "r", ReportParams(), card=models / "card.md")
    text = (tmp_path / "r" / "report.md").read_text()
    paper = paper_numbers()
    assert summary["tables"] == list(range(1, 11)) == [t["table"] for t in paper["tables"]]
    for spec in paper["tables"]:
        section = text.split(f"## Table {spec['table']}:")[1].split("\n## ")[0]
        rows = {line.split("|")[1].strip().split(" ")[0]: line for line in section.splitlines() if line.startswith("| ") and "paper" not in line}
        for column, values in spec["columns"].items():
            for metric, value in values.items():
                assert f"| {value:.4f} |" in rows[metric], (spec["table"], column, metric)
    for image in ("HGG image", "LGG image"):
        assert f"| general | {image} | {paper['consistency']['general'][image.replace(' ', '_')]['HGG']} / " in text


def test_ours_with_intervals_baselines_and_gaps(models, tmp_path):
    build_report(models, tmp_path / "r", ReportParams(), card=models / "card.md")
    text = (tmp_path / "r" / "report.md").read_text()
    ours = json.loads((models / "evaluate_cls" / "details.json").read_text())["test"]
    value = ours["accuracy"]
    assert f"{value:.3f} [{value - 0.05:.3f}, {value + 0.05:.3f}]" in text
    assert "baseline: majority" in text and "baseline: mean train box" in text and "hd95 (pixels)" in text and "hd95 (mm)" in text
    assert "fine-tuned full epoch (not in the default pipeline" in text and "no 'test_coronal'" in text
    assert "PLUMBING RUN, NOT SCIENCE" in text and "synthetic BraTS-layout cohort" in text and "smoke-test model" in text
    differences = text.split("## Differences from the paper")[1]
    assert "epochs 5 (paper preset 200)" in differences and "max_steps 7 (paper preset 200)" in differences
    assert "greedy" in differences and "pixels" in differences
    assert SOURCES[3]["fine-tuned full epoch"] is None


def test_html_is_offline_and_bytes_are_stable(models, tmp_path):
    build_report(models, tmp_path / "a", ReportParams(), card=models / "card.md")
    build_report(models, tmp_path / "b", ReportParams(), card=models / "card.md")
    for name in ("report.md", "report.html"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    page = (tmp_path / "a" / "report.html").read_text()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # nothing fetched from the network
    assert page.count("data:image/png;base64,") == len(list((tmp_path / "a" / "figures").iterdir())) >= 4
    assert "<table>" in page and "Table 10" in page
    plain = build_report(models, tmp_path / "c", ReportParams(), card=None)
    assert not plain["synthetic"] and plain["smoke_model"]


@pytest.mark.skipif(not (shutil.which("chromium") or shutil.which("chromium-browser")), reason="headless Chromium not installed")
def test_headless_chromium_renders_the_page(models, tmp_path):
    build_report(models, tmp_path / "r", ReportParams(), card=models / "card.md")
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    shot = tmp_path / "shot.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1200,2000",
                    f"--screenshot={shot}", (tmp_path / "r" / "report.html").as_uri()],
                   check=True, capture_output=True, timeout=120)
    image = cv2.imread(str(shot))
    assert image is not None and image.shape[:2] == (2000, 1200)
    assert image.std() > 10  # not a blank page: text, tables and the banner are drawn


def section(text, number):
    return text.split(f"## Table {number}:")[1].split("\n## ")[0]


def test_table_3_is_glioma_only_and_every_table_states_n(models, tmp_path):
    build_report(models, tmp_path / "r", ReportParams(), card=models / "card.md")
    text = (tmp_path / "r" / "report.md").read_text()
    for mode in ("zeroshot", "finetuned"):
        metrics = json.loads((models / "evaluate_llm" / mode / "cls" / "details.json").read_text())
        glioma, every = metrics["test_glioma"]["accuracy"], metrics["test"]["accuracy"]
        assert f"{glioma:.3f} [" in section(text, 3) and f"{every:.3f} [" not in section(text, 3)
    assert "[test_glioma]" in section(text, 3) and "| n (slices) | n/a | 222 |" in section(text, 3)
    for number in range(1, 11):
        assert "| n (patients) |" in section(text, number), number
    assert "| n (patients) | 55 | 11 |" in section(text, 7) and "| n (slices) | n/a | 321 |" in section(text, 7)
    assert "auc_label_probability (mean label-token" in section(text, 2) and "auc (tally: GLDR" in section(text, 3)
    assert "| auc_label_probability (mean label-token P(HGG) per patient) | n/a | n/a |" in section(text, 3)


def test_oracle_settings_summary_and_differences(models, tmp_path):
    build_report(models, tmp_path / "r", ReportParams(), card=models / "card.md")
    text = (tmp_path / "r" / "report.md").read_text()
    for number in (7, 8, 9, 10):
        assert "oracle (truth answered perfectly)" in section(text, number) and "| 0.777 |" in section(text, number)
    assert "46.0% of the 321 scored test slices" in section(text, 7)
    assert "## Table 1: 3D CNN classifier (paper: lr 4e-7, 200 epochs, batch 16; ours: lr 0.001, 5 epochs" in text
    assert ("## Table 8: Fine-tuned LLM bounding box (paper: LoRA 200 steps, batch 16; ours: `models/tiny-mllama` + "
            "LoRA r16, 7 steps") in text
    assert "(lr 4e-7, 200 epochs)" not in text.split("## Table 1:")[1].split("\n")[0].split("(paper:")[0]
    assert text.index("## Summary") < text.index("<details><summary>Provenance") < text.index("## Table 1:")
    assert "CNN seg: fold 0, best epoch 3, trained on published volumes `5c34e51f` of lab/brats;" in text
    assert "CNN cls: fold 0, best epoch 3, trained on volumes folder `data/volumes` (fingerprint `abc123`)" in text
    summary = text.split("## Summary")[1].split("<details>")[0]
    assert "50 patients: 40 HGG, 10 LGG" in summary and "majority-class" in summary and "oracle" in summary
    differences = text.split("## Differences from the paper")[1]
    for phrase in ("50 patients, 40 HGG / 10 LGG", "5 folds", "test n:", "Row sampling",
                   "Ground-truth-guided inputs", "centred on the tumour"):
        assert phrase in differences, phrase


def test_consistency_counts_parsed_answers_apart(models, tmp_path):
    build_report(models, tmp_path / "r", ReportParams(), card=models / "card.md")
    text = (tmp_path / "r" / "report.md").read_text()
    consistency = text.split("## Consistency test")[1].split("\n## ")[0]
    assert "| 3 / 1 / 0 | 1 | 4 of 5 (0.800) | 0.750 (HGG) |" in consistency
    assert "0.600" not in consistency


def test_full_epoch_adapter_is_titled_by_epochs_not_steps():
    from brats_llm.report.build import _adapter_setting

    params = {"lora_rank": 16, "max_steps": {"cls": 100}, "batch_size": {"cls": 16}, "lr": {"cls": 2e-6}, "epochs": {"cls": 1}}
    records = {"evaluate_llm/finetuned/cls": {"inference": {"adapter_record": {"params": params, "backend": "unsloth"}}}}
    assert "1 epoch(s)" in _adapter_setting(records, "cls") and "100 steps" not in _adapter_setting(records, "cls")
    params["epochs"]["cls"] = 0
    assert "100 steps" in _adapter_setting(records, "cls")


def test_model_lines_say_what_each_model_is():
    from brats_llm.report.build import model_lines

    general = {"model": "models/g", "smoke_model": True, "model_trained_on": "instruction-tuned on shapes",
               "architecture": "Qwen2.5-VL"}
    tuned = {"model": "models/g", "adapter": "a", "adapter_record": {"params": {"lora_rank": 16}, "modules_to_save": ["lm_head"]}}
    lines = model_lines({"zeroshot/cls": general, "finetuned/cls": tuned})
    assert lines[0] == "General LLM: `models/g`, a tiny Qwen2.5-VL with random initial weights, instruction-tuned on shapes."
    assert "LoRA adapter per task (r16 plus whole lm_head)" in lines[1]
    assert model_lines({"zeroshot/cls": {"model": "m", "smoke_model": False}}) == ["General LLM: `m`, the model as published."]


def test_settings_name_decoding_and_backend(models, tmp_path):
    """Constrained decoding and the vLLM backend show in the table headers; the paper's free HF decoding adds nothing."""
    build_report(models, tmp_path / "free", ReportParams(), card=models / "card.md")
    free = (tmp_path / "free" / "report.md").read_text()
    assert "constrained decoding" not in free and "vllm inference" not in free
    provenance = models / "evaluate_llm" / "zeroshot" / "bbox" / "provenance.json"
    record = json.loads(provenance.read_text())
    changed = json.loads(json.dumps(record))
    changed["inference"]["params"].update(decoding="json", backend="vllm")
    try:
        write(provenance, changed)
        build_report(models, tmp_path / "json", ReportParams(), card=models / "card.md")
        text = (tmp_path / "json" / "report.md").read_text()
    finally:
        write(provenance, record)
    header = section(text, 7).splitlines()[0]
    assert "greedy, json-constrained decoding, vllm inference" in header
    assert "constrained decoding" not in section(text, 9).splitlines()[0]


def test_table_7_says_how_invalid_shapes_were_scored(models, tmp_path):
    """The note follows the evaluations' invalid_shapes: drawn, empty, or a mix; fixtures without it say nothing."""
    build_report(models, tmp_path / "none", ReportParams(), card=models / "card.md")
    silent = section((tmp_path / "none" / "report.md").read_text(), 7)
    assert "no valid shape" not in silent and "invalid shapes" not in silent
    paths = sorted(models.glob("evaluate_llm/*/*/provenance.json"))
    records = {path: json.loads(path.read_text()) for path in paths}
    texts = {}
    try:
        for rule in ("drawn", "empty", "mixed"):
            for i, (path, record) in enumerate(records.items()):
                chosen = ("drawn", "empty")[i % 2] if rule == "mixed" else rule
                write(path, {**record, "eval_params": {"invalid_shapes": chosen}})
            build_report(models, tmp_path / rule, ReportParams(), card=models / "card.md")
            texts[rule] = section((tmp_path / rule / "report.md").read_text(), 7)
    finally:
        for path, record in records.items():
            write(path, record)
    assert "are scored as the region they draw" in texts["drawn"] and "invalid_shapes: drawn" in texts["drawn"]
    assert "score as no answer (Dice 0" in texts["empty"] and "region they draw" not in texts["empty"]
    assert "scored invalid shapes differently" in texts["mixed"]
