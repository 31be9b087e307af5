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
    write(root / "evaluate_cls" / "metrics.json", {s: block(rng, CLS, ["baseline_majority"]) for s in ("train", "validation", "test")})
    write(root / "evaluate_seg" / "metrics.json", {s: block(rng, seg_keys, ["baseline_all_background"]) for s in ("train", "validation", "test")})
    for task in ("cls", "seg"):
        write(root / f"evaluate_{task}" / "provenance.json", {
            "task": task, "fold": 0, "best_epoch": 3, "train_params": dataclasses.asdict(CnnTrainParams(epochs=5)),
            "dataset_at_training": {"dvc_md5": "abc.dir"}})
    tune = dataclasses.asdict(FinetuneParams(backend="hf", max_steps=dict.fromkeys(("cls", "center", "bbox", "polygon"), 7)))
    for mode in ("zeroshot", "finetuned"):
        for task, keys, bases in (("cls", CLS, ["baseline_majority"]),
                                  ("center", ["in_box", "p95_box_distance", "p95_center_distance"], ["baseline_image_center"]),
                                  ("bbox", ["dice", "hd95", "precision", "recall", "specificity"], ["baseline_mean_train_box"]),
                                  ("polygon", ["dice", "hd95", "precision", "recall", "specificity"], ["baseline_mean_train_box"])):
            folder = root / "evaluate_llm" / mode / task
            write(folder / "metrics.json", {"test": block(rng, keys, bases)})
            run = {"task": task, "model": "models/tiny-mllama", "smoke_model": True, "prompt_version": "v",
                   "adapter": f"models/llm_adapters/{task}" if mode == "finetuned" else None,
                   "adapter_record": {"task": task, "backend": "hf", "params": tune, "optimizer": "adamw_torch",
                                      "dataset": {"revision": "rev1"}} if mode == "finetuned" else None,
                   "dataset": {"revision": "rev1", "split": "test"}, "params": dataclasses.asdict(InferParams()),
                   "rows": 10, "status": {"ok": 8, "format_error": 2, "invalid_value": 0}}
            write(folder / "provenance.json", {"task": task, "inference": run})
            png(folder / "plots" / "images" / ("gldr_axial.png" if task == "cls" else "examples/p_1.png"), 10)
    counts = {"HGG": 3, "LGG": 1, "NG": 0, "unparsable": 1, "agreement": 0.6}
    write(root / "llm_consistency" / "metrics.json", {v: {"HGG_image": counts, "LGG_image": counts} for v in ("general", "finetuned")})
    write(root / "llm_consistency" / "provenance.json", {"params": {"repeats": 5}, "decoding": "greedy"})
    png(root / "evaluate_seg" / "plots" / "images" / "overlays" / "p.png", 200)
    card = root / "card.md"
    card.write_text("---\ntags:\n- synthetic\n---\n# card\n")
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
    ours = json.loads((models / "evaluate_cls" / "metrics.json").read_text())["test"]
    value = ours["accuracy"]
    assert f"{value:.3f} [{value - 0.05:.3f}, {value + 0.05:.3f}]" in text
    assert "baseline: majority" in text and "baseline: mean train box" in text and "hd95 (pixels)" in text and "hd95 (mm)" in text
    assert "fine-tuned full epoch (not part of this pipeline)" in text and "no 'test_coronal'" in text
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
