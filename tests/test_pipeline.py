"""dvc.yaml matches the stage dataclasses, DVC runs offline, and repro is incremental."""

import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from brats_llm.ingest.demo import DemoParams
from brats_llm.preprocess.volumes import PrepareParams
from brats_llm.split.splits import SplitParams

ROOT = Path(__file__).resolve().parents[1]
STAGES = {"demo": DemoParams, "prepare": PrepareParams, "split": SplitParams}


def test_each_stage_lists_exactly_its_section():
    pipeline = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for stage, cls in STAGES.items():
        fields = {f.name for f in dataclasses.fields(cls)}
        listed = set(pipeline[stage]["params"])
        assert listed == {f"{stage}.{name}" for name in fields}, stage
        assert set(params[stage]) == fields, stage
        assert pipeline[stage]["cmd"].startswith(f"brats-llm {stage} ")
        cls(**params[stage])  # the shipped values are valid


def test_dvc_config_is_offline_with_a_local_remote():
    config = (ROOT / ".dvc" / "config").read_text()
    assert "analytics = false" in config and "check_update = false" in config
    assert "remote = local" in config


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
    shutil.copytree(ROOT / "brats_llm", repo / "brats_llm", ignore=shutil.ignore_patterns("__pycache__"))  # code deps
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["demo"].update(patients=6, lgg_fraction=0.5, shape=[48, 48, 40])
    params["prepare"].update(slices=20, size=24)
    params["split"].update(test_fraction=0.3, folds=2)
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    shutil.copytree(ROOT / ".dvc", repo / ".dvc", ignore=shutil.ignore_patterns("tmp", "cache"))
    dvc(repo, "config", "core.remote", "--unset")

    first = dvc(repo, "repro")
    assert all(f"Running stage '{s}'" in first for s in STAGES)
    assert (repo / "data" / "volumes" / "dataset_info.json").is_file()
    assert "Data and pipelines are up to date" in dvc(repo, "repro")

    params["split"]["seed"] = 99
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    third = dvc(repo, "repro")
    assert "Running stage 'split'" in third
    assert "Running stage 'prepare'" not in third and "Running stage 'demo'" not in third
    assert "split_summary.json" in dvc(repo, "metrics", "show")
