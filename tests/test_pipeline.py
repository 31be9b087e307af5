"""dvc.yaml matches the stage dataclasses, DVC runs offline, and repro is incremental."""

import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from brats_llm.conversations.build import ConversationParams
from brats_llm.evaluate.cnn import ClsEvalParams, SegEvalParams
from brats_llm.geometry.stage import GeometryParams
from brats_llm.publish.hub import PublishParams
from brats_llm.slices.slices import SlicesParams
from brats_llm.ingest.demo import DemoParams
from brats_llm.preprocess.volumes import PrepareParams
from brats_llm.split.splits import SplitParams
from brats_llm.train.cnn.trainer import CnnTrainParams, SegTrainParams
from brats_llm.evaluate.llm import LlmEvalParams
from brats_llm.llm.consistency import ConsistencyParams
from brats_llm.llm.infer import InferParams
from brats_llm.llm.tiny import TinyModelParams
from brats_llm.train.general.stage import GeneralParams
from brats_llm.train.llm.params import FinetuneParams
from brats_llm.report.build import ReportParams

ROOT = Path(__file__).resolve().parents[1]
#: Sections publish embeds in the dataset card (cli.publish), declared as its params in dvc.yaml.
CARD_SECTIONS = ("prepare", "split", "slices", "geometry", "conversations")
# stage -> (params dataclass, command)
STAGES = {
    "demo": (DemoParams, "demo"),
    "prepare": (PrepareParams, "prepare"),
    "split": (SplitParams, "split"),
    "slices": (SlicesParams, "slices"),
    "geometry": (GeometryParams, "geometry"),
    "conversations": (ConversationParams, "conversations"),
    "publish": (PublishParams, "publish"),
    "train_cls": (CnnTrainParams, "train-cnn --task cls"),
    "train_seg": (SegTrainParams, "train-cnn --task seg"),
    "evaluate_cls": (ClsEvalParams, "evaluate-cnn --task cls"),
    "evaluate_seg": (SegEvalParams, "evaluate-cnn --task seg"),
}
#: section -> the stage that reads it (DVC's name: the CNN stages are foreach over cls/seg).
STAGE_OF = {section: section for section in STAGES} | {
    f"{step}_{task}": f"{step}_cnn@{task}" for step in ("train", "evaluate") for task in ("cls", "seg")}
LLM_TASKS = ("cls", "center", "bbox", "polygon")
# LLM stages: stage -> ({section: dataclass, or the keys passed as arguments}, command); foreach/matrix in dvc.yaml.
LLM_STAGES = {
    "tiny_model": ({"tiny_model": TinyModelParams}, "tiny-model"),
    "general_model": ({"general_model": GeneralParams}, "general-model"),
    "llm_zeroshot": ({"llm": InferParams}, "llm-infer --task ${item}"),
    "llm_finetune": ({"llm_finetune": FinetuneParams, "llm": ["model"]}, "llm-finetune --task ${item}"),
    "llm_finetuned": ({"llm": InferParams}, "llm-infer --task ${item}"),
    "evaluate_llm": ({"evaluate_llm": LlmEvalParams}, "evaluate-llm --task ${item.task}"),
    "llm_consistency": ({"llm_consistency": ConsistencyParams, "llm": ["model"]}, "llm-consistency"),
    "report": ({"report": ReportParams}, "report"),
}
FAMILY_STAGES = [f"{stage}@{family}" for stage in ("tiny_model", "general_model") for family in ("mllama", "qwen2_5_vl")]
LLM_HALF = ["llm_consistency", *(f"{stage}@{task}" for stage in ("llm_zeroshot", "llm_finetune", "llm_finetuned")
                                 for task in LLM_TASKS)]
STAGE_NAMES = [*STAGE_OF.values(), *FAMILY_STAGES, "llm_consistency", "report",
               *(f"{stage}@{task}" for stage in ("llm_zeroshot", "llm_finetune", "llm_finetuned") for task in LLM_TASKS),
               *(f"evaluate_llm@{mode}-{task}" for mode in ("zeroshot", "finetuned") for task in LLM_TASKS)]


def test_llm_stages_list_exactly_what_their_commands_read():
    pipeline = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for stage, (sections, command) in LLM_STAGES.items():
        body = pipeline[stage].get("do", pipeline[stage])
        expected = set()
        for section, source in sections.items():
            if isinstance(source, list):  # some keys of another section
                expected |= {f"{section}.{key}" for key in source}
            else:  # its own section, tracked whole
                expected.add(section)
                assert set(params[section]) == {f.name for f in dataclasses.fields(source)}, section
                source(**params[section])
        assert set(body["params"]) == expected, stage
        assert body["cmd"].startswith(f"brats-llm {command} "), stage
        assert "${llm.model}" in body["cmd"] or stage in ("tiny_model", "general_model", "evaluate_llm", "report"), stage


#: The CNN stages read the volumes config the revision file pins: these keys of it, not the whole file.
CNN_STAGES = ("train_cls", "train_seg", "evaluate_cls", "evaluate_seg")
PINNED_VOLUMES = ["repo_id", "config_revisions.volumes"]


def expanded(pipeline: dict) -> dict:
    """Stage name -> definition as DVC names them: a ``foreach`` over a list gives ``name@item``, ``${item}`` filled."""
    stages = {}
    for name, stage in pipeline.items():
        for item in stage.get("foreach", []):
            stages[f"{name}@{item}"] = yaml.safe_load(yaml.safe_dump(stage["do"]).replace("${item}", item))
        if "foreach" not in stage:
            stages[name] = stage
    return stages


def test_each_stage_tracks_exactly_its_section():
    pipeline = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    stages = expanded(pipeline)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert set(pipeline) == {STAGE_OF[section].split("@")[0] for section in STAGES} | set(LLM_STAGES)
    for section, (cls, command) in STAGES.items():
        stage = stages[STAGE_OF[section]]
        fields = {f.name for f in dataclasses.fields(cls)}
        listed = {p for p in stage["params"] if isinstance(p, str)}
        card = set(CARD_SECTIONS) if section == "publish" else set()  # publish writes them into the dataset card
        assert listed == {section} | card, section  # the whole section: every key the dataclass reads
        other_files = [p for p in stage["params"] if not isinstance(p, str)]
        assert other_files == ([{"data/hub_revision.json": PINNED_VOLUMES}] if section in CNN_STAGES else []), section
        assert set(params[section]) == fields, section
        assert stage["cmd"].startswith(f"brats-llm {command} "), section
        cls(**params[section])  # the shipped values are valid


def test_training_plots_follow_the_trained_fold():
    """The top-level training curves are those of train_<task>.fold (DVC fills it in), never a fixed fold."""
    plots = yaml.safe_load((ROOT / "dvc.yaml").read_text())["plots"]
    ys = [props["y"] for plot in plots if isinstance(plot, dict) for props in plot.values()
          if isinstance(props.get("y"), dict)]
    curves = [path for y in ys for path in y if path.startswith(("models/train_cls/", "models/train_seg/"))]
    assert len(curves) == 6 and all(p.split("/")[2] == f"fold${{{p.split('/')[1]}.fold}}" for p in curves), curves


def test_paper_preset_holds_the_paper_values():
    preset = yaml.safe_load((ROOT / "brats_llm" / "presets" / "paper.yaml").read_text())
    cls, seg = CnnTrainParams(**preset["train_cls"]), SegTrainParams(**preset["train_seg"])
    assert (cls.lr, cls.epochs, cls.batch_size, cls.downsample) == (4e-7, 200, 16, 1)
    assert (seg.lr, seg.epochs, seg.batch_size, seg.downsample) == (5e-5, 100, 16, 1)
    llm, tune = InferParams(**preset["llm"]), FinetuneParams(**preset["llm_finetune"])
    consistency = ConsistencyParams(**preset["llm_consistency"])
    assert llm.model == "unsloth/Llama-3.2-11B-Vision-Instruct" and not llm.do_sample
    assert (tune.backend, tune.lora_rank, tune.lora_alpha, tune.lora_dropout, tune.gradient_accumulation) == ("unsloth", 16, 16, 0.0, 4)
    assert tune.lr["cls"] == 2e-6 and tune.max_steps == {"cls": 100, "center": 100, "bbox": 200, "polygon": 150}
    assert tune.batch_size == {"cls": 16, "center": 16, "bbox": 16, "polygon": 4} and consistency.repeats == 95
    assert tune.modules_to_save == ()  # LoRA only, as the paper (no lm_head or norm trained)


def test_dvc_config_is_offline_with_a_local_remote():
    config = (ROOT / ".dvc" / "config").read_text()
    assert "analytics = false" in config and "check_update = false" in config
    assert "remote = local" in config
    url = config.split('url = ', 1)[1].split()[0]  # relative to .dvc/: outside the working copy, so deleting
    remote = (ROOT / ".dvc" / url).resolve()     # the clone does not delete the backup
    assert ROOT not in remote.parents and remote != ROOT


def dvc(cwd, *args):
    # Stage commands call `brats-llm`: find it next to this interpreter even without an activated venv.
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = {**os.environ, "PATH": path, "DVC_NO_ANALYTICS": "1"}
    result = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.mark.slow
def test_repro_is_incremental(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copy(ROOT / "dvc.yaml", repo)
    shutil.copy(ROOT / ".dvcignore", repo)
    shutil.copytree(ROOT / "cards", repo / "cards")
    (repo / ".gitignore").write_text("/data/raw/\n")
    shutil.copytree(ROOT / "brats_llm", repo / "brats_llm", ignore=shutil.ignore_patterns("__pycache__"))  # code deps
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["demo"].update(patients=6, lgg_fraction=0.5, shape=[48, 48, 40])
    params["prepare"].update(slices=20, size=24)
    params["split"].update(test_fraction=0.3, folds=2)
    for task in ("cls", "seg"):
        params[f"train_{task}"].update(epochs=2, downsample=2)
        params[f"evaluate_{task}"].update(bootstrap=20)
    params["llm"].update(max_rows=6, batch_size=6, max_new_tokens=dict.fromkeys(LLM_TASKS, 6))
    params["llm_finetune"].update(max_steps=dict.fromkeys(LLM_TASKS, 2), gradient_accumulation=1, eval_rows=2, eval_steps=1)
    params["llm_consistency"].update(repeats=3, max_new_tokens=6)
    params["general_model"].update(rows_per_task=2, steps=2, batch_size=2, check_rows=1)
    params["evaluate_llm"].update(bootstrap=20)
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    shutil.copytree(ROOT / ".dvc", repo / ".dvc", ignore=shutil.ignore_patterns("tmp", "cache"))
    dvc(repo, "config", "core.remote", "--unset")

    def git(*args):
        subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)

    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "pipeline, no results yet")
    first = dvc(repo, "repro")
    assert all(f"Running stage '{s}'" in first for s in STAGE_NAMES)
    assert (repo / "data" / "volumes" / "dataset_info.json").is_file()
    for cached in ("data/volumes/data-00000-of-00001.arrow", "models/cnn_cls/fold0/best.pt"):  # one copy on disk:
        assert (repo / cached).stat().st_nlink == 2, f"{cached} is not linked to the DVC cache"  # workspace = cache
    assert "Data and pipelines are up to date" in dvc(repo, "repro")
    # The old commit has no metrics file: the diff still lists the new values.
    diff = dvc(repo, "metrics", "diff", "HEAD", "--md")
    rows = {tuple(cell.strip() for cell in line.split("|")[1:3]) for line in diff.splitlines()[2:] if line.startswith("|")}
    assert {("models/evaluate_cls/metrics.json", "auc_3d"), ("models/evaluate_seg/metrics.json", "hd95_wt_3d_mm"),
            ("models/evaluate_llm/finetuned/bbox/metrics.json", "box_dice_2d"), ("data/split_summary.json", "n"),
            ("models/llm_consistency/metrics.json", "parse_rate_repeats")} <= rows
    assert not [metric for _, metric in rows if "." in metric or "_ci_" in metric], "headline rows only"
    report = (repo / "models" / "report" / "report.md").read_text()
    assert "PLUMBING RUN, NOT SCIENCE" in report and "## Table 10:" in report

    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "results")
    params["train_cls"]["lr"] = 0.01
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    third = dvc(repo, "repro")
    assert "Running stage 'train_cnn@cls'" in third and "Running stage 'evaluate_cnn@cls'" in third
    untouched = ("demo", "prepare", "split", "train_cnn@seg", "evaluate_cnn@seg")
    assert not any(f"Running stage '{s}'" in third for s in untouched)
    assert "train_cls.lr" in dvc(repo, "params", "diff")
    plots = dvc(repo, "plots", "diff", "HEAD", "--json")
    assert "models/evaluate_cls/plots/images/roc.png" in plots
    # A new publication that leaves the volumes config as it was retrains no CNN.
    params["conversations"]["seed"] += 1
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    fourth = dvc(repo, "repro")
    assert "Running stage 'publish'" in fourth and "Running stage 'llm_finetune@cls'" in fourth
    assert not any(f"Running stage '{s}'" in fourth for s in (STAGE_OF[section] for section in CNN_STAGES))
    # One param switches the LLM half to the tiny Qwen2.5-VL: every LLM stage reruns, nothing upstream does.
    params["llm"]["model"] = "models/tiny-qwen2_5_vl-general"
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    fifth = dvc(repo, "repro")
    assert all(f"Running stage '{s}'" in fifth for s in LLM_HALF)
    assert not any(f"Running stage '{s}'" in fifth for s in (*FAMILY_STAGES, "publish", "train_cnn@cls"))
    report = (repo / "models" / "report" / "report.md").read_text()
    assert "`models/tiny-qwen2_5_vl-general`, a tiny Qwen2.5-VL with random initial weights" in report


def _plain(value):
    """Tuples as lists, as YAML reads them."""
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else (
        {k: _plain(v) for k, v in value.items()} if isinstance(value, dict) else value)


def test_one_source_of_defaults():
    """params.yaml is the demo preset; outside the repository the dataclass defaults apply: same values."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    classes = {stage: cls for stage, (cls, _) in STAGES.items()}
    classes |= {section: source for sections, _ in LLM_STAGES.values() for section, source in sections.items()
                if not isinstance(source, list)}
    drift = {}
    for section, cls in classes.items():
        defaults = _plain(dataclasses.asdict(cls()))
        drift |= {f"{section}.{key}": (defaults[key], value) for key, value in params[section].items()
                  if defaults[key] != _plain(value)}
    assert not drift, f"dataclass default vs params.yaml: {drift}"
