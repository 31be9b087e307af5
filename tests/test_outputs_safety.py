"""Nothing lost: outputs never overlap inputs, never replace what a stage did not write, one writer at a time."""

import fcntl
import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from brats_llm import atomic
from brats_llm.cli import main
from brats_llm.errors import OutputError
from brats_llm.outputs import check_paths, pinned_folder

DEMO = ["--patients", "1", "--shape", "32", "32", "32", "--workers", "1"]


def tree(folder: Path) -> list:
    """Every path under ``folder`` with its bytes: equal trees mean nothing was touched."""
    return sorted((p.relative_to(folder).as_posix(), None if p.is_dir() else p.read_bytes()) for p in folder.rglob("*"))


def message(result) -> str:
    """The one-line error or, until the CLI formats OutputError itself, the exception text."""
    return result.output + str(result.exception or "")


def run(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


# check_paths


@pytest.mark.parametrize("output, relation", [("raw", "is"), (".", "contains"), ("raw/sub", "lies inside")])
def test_check_paths_refuses_overlaps(tmp_path, output, relation):
    (tmp_path / "raw").mkdir()
    with pytest.raises(OutputError, match=f"output .* {relation} input .*raw"):
        check_paths([tmp_path / "raw"], [tmp_path / output])


def test_check_paths_allows_siblings_and_missing_paths(tmp_path):
    (tmp_path / "raw").mkdir()
    check_paths([tmp_path / "raw", None, "unsloth/Llama-3.2-11B-Vision-Instruct"], [tmp_path / "raw2", tmp_path / "new" / "x", None])


def test_check_paths_resolves_symlinks(tmp_path):
    (tmp_path / "raw").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "raw")
    with pytest.raises(OutputError, match="symbolic links resolved"):
        check_paths([tmp_path / "raw"], [tmp_path / "alias" / "out"])


def test_check_paths_containers_hold_outputs_but_are_not_replaced(tmp_path):
    (tmp_path / "models").mkdir()
    check_paths([], [tmp_path / "models" / "report"], containers=[tmp_path / "models"])
    with pytest.raises(OutputError, match="is input"):
        check_paths([], [tmp_path / "models"], containers=[tmp_path / "models"])


def test_pinned_folder(tmp_path):
    (tmp_path / "rev.json").write_text(json.dumps({"path": "data/hub", "revision": "x"}))
    assert pinned_folder(tmp_path / "rev.json") == Path("data/hub")
    (tmp_path / "bad.json").write_text("{")
    assert pinned_folder(tmp_path / "bad.json") is None and pinned_folder(tmp_path / "none.json") is None


# The cases through the command line


@pytest.fixture
def raw(tmp_path, case_factory) -> Path:
    """A raw release with one case, and an unrelated user file beside it."""
    folder = tmp_path / "work" / "raw"
    case_factory(folder, "BraTS20_Training_001")
    (folder / "name_mapping.csv").write_text("Grade,BraTS_2020_subject_ID\nHGG,BraTS20_Training_001\n")
    (tmp_path / "work" / "thesis.tex").write_text("unrelated")
    return folder


@pytest.mark.parametrize("out", ["raw", ".", "raw/volumes"])
def test_prepare_never_destroys_its_input(raw, out):
    before = tree(raw.parent)
    result = run("prepare", raw, raw.parent / out if out != "." else raw.parent, "--workers", "1")
    assert result.exit_code != 0
    assert str(raw) in message(result) and "nothing was written" in message(result)
    assert tree(raw.parent) == before


@pytest.mark.parametrize("make, phrase", [
    (lambda out: (out.mkdir(), (out / "results").mkdir(), (out / "results" / "a.txt").write_text("mine")), "did not write"),
    (lambda out: out.write_text("a file"), "is a file"),
    (lambda out: (out.mkdir(), (out / atomic.MARKER).write_text('{"kind": "volumes"}')), "'volumes' output"),
])
def test_stage_refuses_an_output_it_did_not_write(tmp_path, make, phrase):
    out = tmp_path / "out"
    make(out)
    before = tree(tmp_path)
    result = run("demo", out, *DEMO)
    assert result.exit_code != 0 and phrase in message(result) and str(out) in message(result)
    assert tree(tmp_path) == before


def test_stage_reruns_over_its_own_output_and_cleans_only_its_leftovers(tmp_path):
    out = tmp_path / "demo"
    assert run("demo", out, *DEMO).exit_code == 0
    first = tree(out)
    assert json.loads((out / atomic.MARKER).read_text()) == {"kind": "demo-cohort"}
    for name in (".demo.partial-abcd1234", ".demo.old-99", ".other.partial-x"):
        (tmp_path / name).mkdir()
    result = run("demo", out, *DEMO)
    assert result.exit_code == 0, message(result)
    assert tree(out) == first
    assert sorted(os.listdir(tmp_path)) == [".other.partial-x", "demo"]


def test_concurrent_writer_is_refused(tmp_path):
    out = tmp_path / "demo"
    with open(tmp_path / ".demo.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # another run is writing OUT_DIR
        result = run("demo", out, *DEMO)
    assert result.exit_code != 0 and "another brats-llm run" in message(result)
    assert not isinstance(result.exception, OSError)
    assert not out.exists()


# Every stage command: its output pointed at its input is refused before any input is read


@pytest.fixture
def dummies(tmp_path) -> Path:
    """Empty stand-ins: folders a b c d, a file s.csv, a params file, a revision file pinning folder hub."""
    for name in ("a", "b", "c", "d", "hub", "cfg"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "keep.txt").write_text(name)
    (tmp_path / "s.csv").write_text("patient_id\n")
    (tmp_path / "cfg" / "params.yaml").write_text("{}\n")
    (tmp_path / "cfg" / "model").mkdir()  # a local model folder named only in params (llm.model)
    (tmp_path / "cfg" / "llm.yaml").write_text(f"llm: {{model: {tmp_path / 'cfg' / 'model'}}}\n")
    (tmp_path / "rev.json").write_text(json.dumps({"path": str(tmp_path / "hub"), "revision": "x", "repo_id": None}))
    return tmp_path


STAGES = [
    ("demo", ["demo", "{cfg}", "--params", "{cfg}/params.yaml"]),
    ("prepare", ["prepare", "{a}", "{a}"]),
    ("prepare --report", ["prepare", "{a}", "{b}", "--report", "{a}/report.json"]),
    ("split", ["split", "{a}", "{a}/splits.csv"]),
    ("split --summary", ["split", "{a}", "{b}/splits.csv", "--summary", "{a}/summary.json"]),
    ("train-cnn", ["train-cnn", "--task", "cls", "{a}", "{s}", "{a}"]),
    ("train-cnn --live", ["train-cnn", "--task", "cls", "{a}", "{s}", "{b}", "--live", "{a}"]),
    ("evaluate-cnn", ["evaluate-cnn", "--task", "cls", "{a}", "{s}", "{b}", "{b}"]),
    ("slices", ["slices", "{a}", "{s}", "{a}"]),
    ("geometry", ["geometry", "{a}", "{a}"]),
    ("conversations", ["conversations", "{a}", "{b}", "{b}"]),
    ("publish", ["publish", "{a}", "{b}", "{c}", "{d}", "{a}", "{rev}"]),
    ("publish REVISION_FILE", ["publish", "{a}", "{b}", "{c}", "{d}", "{hub}", "{a}/rev.json"]),
    ("tiny-model", ["tiny-model", "{cfg}", "--params", "{cfg}/params.yaml"]),
    ("general-model", ["general-model", "{a}", "{a}"]),
    ("llm-infer", ["llm-infer", "--task", "cls", "{rev}", "{hub}"]),
    ("llm-infer --adapter", ["llm-infer", "--task", "cls", "--adapter", "{a}", "{rev}", "{a}"]),
    ("llm-finetune", ["llm-finetune", "--task", "cls", "--model", "{a}", "{rev}", "{a}"]),
    ("llm-finetune --live", ["llm-finetune", "--task", "cls", "{rev}", "{b}", "--live", "{hub}"]),
    ("llm-consistency", ["llm-consistency", "{rev}", "{hub}"]),
    ("evaluate-llm", ["evaluate-llm", "--task", "cls", "{a}", "{rev}", "{a}"]),
    ("report", ["report", "{a}", "{a}"]),
    ("report --card", ["report", "{a}", "{b}", "--card", "{b}/keep.txt"]),
    ("prepare --report in OUT_DIR", ["prepare", "{a}", "{b}", "--report", "{b}/report.json"]),
    ("split --summary = OUT_FILE", ["split", "{a}", "{c}/splits.csv", "--summary", "{c}/splits.csv"]),
    ("train-cnn --live in OUT_DIR", ["train-cnn", "--task", "cls", "{a}", "{s}", "{b}", "--live", "{b}/live"]),
    ("publish REVISION_FILE in OUT_DIR", ["publish", "{a}", "{b}", "{c}", "{d}", "{hub}", "{hub}/rev.json"]),
    ("llm-infer into the params' model", ["llm-infer", "--task", "cls", "{rev}", "{cfg}/model/out", "--params", "{cfg}/llm.yaml"]),
    ("export-nnunet", ["export-nnunet", "{a}", "{s}", "{a}", "--raw-dir", "{b}"]),
    ("export-nnunet --raw-dir", ["export-nnunet", "{a}", "{s}", "{c}", "--raw-dir", "{c}"]),
    ("score-predictions", ["score-predictions", "{a}", "{b}", "{s}", "{a}"]),
]


@pytest.mark.parametrize("args", [a for _, a in STAGES], ids=[name for name, _ in STAGES])
def test_every_stage_refuses_output_over_input(dummies, args):
    paths = {name: dummies / name for name in ("a", "b", "c", "d", "hub", "cfg")} | {"s": dummies / "s.csv", "rev": dummies / "rev.json"}
    before = tree(dummies)
    result = run(*[a.format(**paths) for a in args])
    assert result.exit_code != 0
    assert "nothing was written" in message(result), message(result)
    assert tree(dummies) == before


NOT_STAGES = {"llm-inspect"}  # commands that write nothing


def test_every_stage_command_is_covered():
    covered = {args[0] for _, args in STAGES}
    assert covered == set(main.commands) - NOT_STAGES


# The marker: never published, ignored by loaders


def test_outputs_carry_markers_that_loaders_ignore(built, published):
    from datasets import load_from_disk

    from brats_llm.publish.pinned import load_published

    for name, kind in (("volumes", "volumes"), ("slices", "slices"), ("geometry", "geometry"), ("conversations", "conversations"), ("hub", "hub")):
        assert atomic.output_kind(built / name) == kind
    assert len(load_from_disk(str(built / "geometry"))) > 0
    assert "train" in load_from_disk(str(built / "conversations" / "cls"))
    assert len(load_published(published, "geometry")["train"]) > 0
    assert atomic.MARKER not in (built / "hub" / "README.md").read_text()


def test_marker_is_not_uploaded(built, tmp_path, monkeypatch):
    from brats_llm.publish.hub import PublishParams, publish
    from tests.hub_server import HubServer

    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_DISABLE_XET", True, raising=False)
    with HubServer() as hub:
        publish(built / "volumes", built / "slices", built / "geometry", built / "conversations", tmp_path / "hub",
                tmp_path / "rev.json", PublishParams(repo_id="lab/x", endpoint=hub.endpoint), {}, "md5", synthetic=True)
        _, files = hub.state.repos["lab/x"]["commits"][-1]
    assert (tmp_path / "hub" / atomic.MARKER).is_file()
    assert "README.md" in files and not any(atomic.MARKER in path for path in files)


def test_train_cnn_refuses_a_foreign_fold_folder(built, tmp_path):
    from brats_llm.train.cnn.trainer import CnnTrainParams, train_cnn

    (tmp_path / "fold0").mkdir()
    (tmp_path / "fold0" / "best.pt").write_text("someone else's model")
    before = tree(tmp_path)
    with pytest.raises(OutputError, match="fold0 holds files that brats-llm did not write"):
        train_cnn("cls", built / "volumes", built / "splits.csv", tmp_path, CnnTrainParams(fold=0, epochs=1), progress=False)
    assert tree(tmp_path) == before
