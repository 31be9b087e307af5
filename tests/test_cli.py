"""The command line: help that teaches, params + overrides, exit codes."""

import json

import pytest
from click.testing import CliRunner
import yaml

from brats_llm.cli import main


@pytest.mark.parametrize("command, phrase", [
    ([], "Pipeline"),
    (["demo"], "synthetic BraTS 2020-layout cohort"),
    (["prepare"], "name_mapping.csv"),
    (["split"], "stratified by grade"),
    (["train-cnn"], "ConvTranspose3d"),
    (["evaluate-cnn"], "373.13 mm"),
    (["tiny-model"], "<|image|>"),
    (["llm-infer"], "format_error"),
    (["llm-finetune"], "CUDA only"),
    (["llm-consistency"], "95 repeats"),
    (["evaluate-llm"], "GLDR"),
])
def test_help(command, phrase):
    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0 and phrase in result.output
    assert "--params" in result.output or not command


def test_pipeline_through_cli(tmp_path, case_factory):
    params = tmp_path / "params.yaml"
    params.write_text(
        "demo: {patients: 6, seed: 3, lgg_fraction: 0.5, shape: [48, 48, 40]}\n"
        "prepare: {raw_dir: ignored, slices: 20, size: 24}\n"
        "split: {test_fraction: 0.3, folds: 2, seed: 1}\n"
    )
    runner = CliRunner()
    raw, volumes = tmp_path / "raw", tmp_path / "volumes"
    result = runner.invoke(main, ["demo", str(raw), "--params", str(params), "--patients", "6", "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert len(list(raw.glob("BraTS20_Training_*"))) == 6
    report = tmp_path / "report.json"
    result = runner.invoke(main, ["prepare", str(raw), str(volumes), "--report", str(report), "--params", str(params), "--workers", "1"])
    assert result.exit_code == 0, result.output
    data = json.loads(report.read_text())
    assert data["params"]["raw_dir"] == str(raw) and data["params"]["slices"] == 20
    splits = tmp_path / "splits.csv"
    result = runner.invoke(main, ["split", str(volumes), str(splits), "--params", str(params), "--folds", "2"])
    assert result.exit_code == 0, result.output
    assert len(splits.read_text().splitlines()) == 7

    # An excluded case: exit 0 by default, 1 with --strict; outputs still written.
    case_factory(raw, "BraTS20_Training_007")  # not in name_mapping.csv
    result = runner.invoke(main, ["prepare", str(raw), str(volumes), "--params", str(params), "--workers", "1"])
    assert result.exit_code == 0 and "excluded BraTS20_Training_007" in result.output
    result = runner.invoke(main, ["prepare", str(raw), str(volumes), "--params", str(params), "--strict", "--workers", "1"])
    assert result.exit_code == 1 and "--strict: 1 case(s) excluded" in result.output


def test_bad_params_and_empty_input(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("prepare: {slicez: 3}\n")
    (tmp_path / "raw").mkdir()
    runner = CliRunner()
    result = runner.invoke(main, ["prepare", str(tmp_path / "raw"), str(tmp_path / "out"), "--params", str(params)])
    assert result.exit_code == 2 and "slicez" in result.output
    result = runner.invoke(main, ["prepare", str(tmp_path / "raw"), str(tmp_path / "out")])
    assert result.exit_code == 1 and "no usable case" in result.output


def test_llm_commands_end_to_end(published, tmp_path):
    runner = CliRunner()
    params = tmp_path / "params.yaml"
    params.write_text("tiny_model:\n  seed: 3\nllm:\n  batch_size: 2\nevaluate_llm:\n  bootstrap: 10\n")
    model = tmp_path / "tiny"
    result = runner.invoke(main, ["tiny-model", str(model), "--params", str(params)])
    assert result.exit_code == 0, result.output
    pred = tmp_path / "pred"
    result = runner.invoke(main, ["llm-infer", "--task", "center", "--model", str(model), "--max-rows", "3",
                                  str(published), str(pred), "--params", str(params)])
    assert result.exit_code == 0, result.output
    assert json.loads((pred / "run.json").read_text())["params"]["batch_size"] == 2
    result = runner.invoke(main, ["evaluate-llm", "--task", "center", str(pred), str(published), str(tmp_path / "ev"),
                                  "--params", str(params)])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "ev" / "details.json").read_text())
    assert metrics["test"]["slices"]["n"] == 3
    result = runner.invoke(main, ["llm-finetune", "--task", "cls", "--model", str(model), "--backend", "unsloth",
                                  str(published), str(tmp_path / "adapter")])
    assert result.exit_code == 1 and "CUDA" in result.output


def _split_fixture(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("split: {test_fraction: 0.3, folds: 2, seed: 1}\n")
    volumes = tmp_path / "volumes"
    volumes.mkdir()
    return params, volumes


def test_a_bug_shows_its_traceback_not_one_line(tmp_path, monkeypatch):
    """KeyError/ValueError/RuntimeError from a bug were turned into one line; now only our own errors are."""
    import brats_llm.split.splits as splits

    def buggy(*args, **kwargs):
        return {}["missing key"]  # a KeyError from a bug, not from bad input

    monkeypatch.setattr(splits, "split_volumes", buggy)
    params, volumes = _split_fixture(tmp_path)
    result = CliRunner().invoke(main, ["split", str(volumes), str(tmp_path / "s.csv"), "--params", str(params)])
    assert result.exit_code == 1
    assert isinstance(result.exception, KeyError)  # unhandled: Click prints the traceback


def test_own_errors_are_one_line_and_traceback_with_verbose(tmp_path, monkeypatch):
    import brats_llm.split.splits as splits
    from brats_llm.errors import InputError

    def bad_input(volumes_dir, *args, **kwargs):
        raise InputError(f"{volumes_dir}: not a volumes dataset")

    monkeypatch.setattr(splits, "split_volumes", bad_input)
    params, volumes = _split_fixture(tmp_path)
    args = ["split", str(volumes), str(tmp_path / "s.csv"), "--params", str(params)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert f"Error: {volumes}: not a volumes dataset" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(main, ["-v", *args])
    assert result.exit_code == 1 and isinstance(result.exception, InputError)


def test_report_without_evaluation_outputs_fails(tmp_path):
    empty = tmp_path / "modles"  # a mistyped or empty models folder
    empty.mkdir()
    result = CliRunner().invoke(main, ["report", str(empty), str(tmp_path / "report")])
    assert result.exit_code == 1
    assert "no evaluation output" in result.output and "evaluate_cls/provenance.json" in result.output
    assert not (tmp_path / "report").exists()


@pytest.mark.parametrize("command, options", [
    ("slices", ["--modalities", "--planes", "--tumour-range-only"]),
    ("geometry", ["--modality", "--min-tumour-pixels"]),
    ("conversations", ["--fold", "--seed", "--oversample-lgg"]),
    ("evaluate-cnn", ["--bootstrap", "--seed"]),
    ("evaluate-llm", ["--bootstrap", "--seed", "--tie"]),
    ("report", ["--examples", "--digits"]),
    ("tiny-model", ["--seed"]),
])
def test_every_stage_takes_overrides_for_its_params(command, options):
    text = CliRunner().invoke(main, [command, "--help"]).output
    for option in options:
        assert option in text, (command, option)
    assert "[params: " in text


def test_overrides_reach_the_params(tmp_path, monkeypatch):
    import brats_llm.geometry.stage as stage

    seen = {}
    monkeypatch.setattr(stage, "build_geometry", lambda slices_dir, out_dir, params: seen.setdefault("p", params) and 0)
    (tmp_path / "slices").mkdir()
    result = CliRunner().invoke(main, ["geometry", str(tmp_path / "slices"), str(tmp_path / "g"), "--min-tumour-pixels", "7"])
    assert result.exit_code == 0, result.output
    assert seen["p"].min_tumour_pixels == 7


def test_no_usable_case_says_where_to_look_without_a_report(tmp_path):
    (tmp_path / "raw").mkdir()
    result = CliRunner().invoke(main, ["prepare", str(tmp_path / "raw"), str(tmp_path / "out")])
    assert result.exit_code == 1 and "--report" in result.output and "see the report" not in result.output


@pytest.mark.parametrize("section, text, phrase", [
    ("prepare", "prepare: {slices: 95.7}\n", "prepare.slices = 95.7 is not valid: expected an integer"),
    ("prepare", "prepare: {slices: ninety}\n", "prepare.slices = 'ninety' is not valid: expected an integer"),
    ("publish", "publish: {repo_id: ../../etc}\n", "publish.repo_id '../../etc' is not a valid Hub repo id"),
])
def test_bad_param_values_are_refused_before_any_work(tmp_path, section, text, phrase):
    params = tmp_path / "params.yaml"
    params.write_text(text)
    inputs = [tmp_path / name for name in ("raw", "volumes", "slices", "geometry", "conversations")]
    for folder in inputs:
        folder.mkdir()
    out = tmp_path / "out"
    args = ([str(inputs[0]), str(out)] if section == "prepare"
            else [*map(str, inputs[1:]), str(out), str(tmp_path / "revision.json")])
    result = CliRunner().invoke(main, [section, *args, "--params", str(params)])
    assert result.exit_code == 2 and phrase in " ".join(result.output.split())
    assert not out.exists() and not (tmp_path / "revision.json").exists()


@pytest.mark.parametrize("section, key, value", [("llm", "split", 3), ("llm", "model", ["a"]),
                                                 ("llm_finetune", "backend", True)])
def test_keys_read_outside_a_stage_are_type_checked(tmp_path, section, key, value):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({section: {key: value}}))
    revision = tmp_path / "revision.json"
    revision.write_text("{}")
    result = CliRunner().invoke(main, ["llm-inspect", "--task", "cls", str(revision), "--params", str(params)])
    assert result.exit_code == 2, result.output
    assert f"{section}.{key} = {value!r} is not valid" in result.output


@pytest.mark.parametrize("rank", ["0", "1"])
def test_only_rank_zero_prints_the_summary(tmp_path, monkeypatch, rank):
    """Under torchrun every rank runs the command; llm-infer, llm-consistency and train-cnn report once."""
    import brats_llm.evaluate.consistency as consistency
    import brats_llm.llm.infer as infer
    import brats_llm.train.cnn.trainer as trainer

    for name, value in {"WORLD_SIZE": "2", "RANK": rank, "LOCAL_RANK": rank, "LOCAL_WORLD_SIZE": "2"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)  # no params.yaml: the embedded defaults
    monkeypatch.setattr(infer, "infer", lambda *a, **k: {"rows": 7, "status": {"ok": 7}})
    counts = {"HGG": 3, "LGG": 1, "NG": 0, "unparsable": 1}
    monkeypatch.setattr(consistency, "consistency", lambda *a, **k: {"general": {"HGG_image": counts}})
    summary = {"fold": 0, "best_epoch": 2, "best_validation_metric": 0.5, "data_s": 1.0, "compute_s": 3.0}
    monkeypatch.setattr(trainer, "train_cnn", lambda *a, **k: [summary])
    (tmp_path / "model").mkdir()
    (tmp_path / "splits.csv").write_text("patient_id,fold\n")
    revision = tmp_path / "revision.json"
    revision.write_text(json.dumps({"revision": "abc", "path": str(tmp_path / "hub")}))
    runner, model = CliRunner(), ["--model", str(tmp_path / "model")]
    outputs = [runner.invoke(main, args) for args in (
        ["llm-infer", "--task", "cls", *model, str(revision), str(tmp_path / "pred")],
        ["llm-consistency", *model, str(revision), str(tmp_path / "consistency")],
        ["train-cnn", "--task", "cls", str(revision), str(tmp_path / "splits.csv"), str(tmp_path / "cnn")])]
    assert [result.exit_code for result in outputs] == [0, 0, 0], [result.output for result in outputs]
    printed = ["7 rows" in outputs[0].output, "HGG_image: HGG 3 LGG 1 other 1" in outputs[1].output,
               "fold 0: best epoch 2" in outputs[2].output]
    assert printed == [rank == "0"] * 3


def test_a_command_reads_its_params_file_once(tmp_path, monkeypatch):
    """llm-finetune reads llm.model twice and its own section: one parse per invocation, none kept across them."""
    import brats_llm.config as config
    import brats_llm.train.llm.finetune as finetune

    parses, seen, read = [], {}, config.read_params
    monkeypatch.setattr(config, "read_params", lambda path: parses.append(path) or read(path))
    monkeypatch.setattr(finetune, "finetune", lambda task, revision, out, model, params, live_dir=None:
                        seen.update(model=model, params=params) or {"final_loss": 0.5})
    params = tmp_path / "params.yaml"
    params.write_text("llm: {model: lab/model}\nllm_finetune: {backend: hf}\n")
    revision = tmp_path / "revision.json"
    revision.write_text("{}")
    args = ["llm-finetune", "--task", "cls", str(revision), str(tmp_path / "adapter"), "--params", str(params),
            "--max-steps", "2"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert parses == [params]
    assert seen["model"] == "lab/model" and seen["params"].max_steps["cls"] == 2
    params.write_text("llm: {model: lab/other}\n")
    assert CliRunner().invoke(main, args).exit_code == 0
    assert parses == [params, params] and seen["model"] == "lab/other"
