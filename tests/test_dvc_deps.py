"""dvc.yaml's code deps of each stage equal the import closure of its command (tools/dvc_deps.py; no stale results)."""

import functools
import importlib.util
import re
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DVC_YAML = ROOT / "dvc.yaml"


def _tool():
    """tools/dvc_deps.py, imported by path (tools/ is not a package)."""
    name = "_brats_llm_tools_dvc_deps"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / "dvc_deps.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


dvc_deps = _tool()
STAGES = yaml.safe_load(DVC_YAML.read_text())["stages"]


@functools.cache
def differences() -> dict:
    """Stage -> (missing, stale) code deps of the repository's dvc.yaml, computed once."""
    return dvc_deps.stale(DVC_YAML.read_text())


@pytest.mark.parametrize("stage", list(STAGES))
def test_code_deps_equal_the_import_closure(stage):
    missing, stale = differences().get(stage, ([], []))
    assert missing == [], f"{stage}: modules the command imports but dvc.yaml does not list"
    assert stale == [], f"{stage}: code deps the command never imports"


def test_check_passes_on_the_committed_dvc_yaml(capsys):
    assert dvc_deps.main(["--check"]) == 0, capsys.readouterr().out + "\nrun: python tools/dvc_deps.py --write"


def _edited(tmp_path, stage: str, old: str, new: str) -> Path:
    """dvc.yaml copied to tmp_path with the first match of regex ``old`` in ``stage`` replaced by ``new``."""
    text = DVC_YAML.read_text()
    start = text.index(f"\n  {stage}:\n")
    end = text.index("\n\n", start)
    edited = re.sub(old, new, text[start:end], count=1)
    assert edited != text[start:end], (stage, old)
    copy = tmp_path / "dvc.yaml"
    copy.write_text(text[:start] + edited + text[end:])
    return copy


def test_the_check_sees_a_missing_dep_and_write_restores_it(tmp_path, capsys):
    copy = _edited(tmp_path, "prepare", r"brats_llm/preprocess,\s*", "")
    assert dvc_deps.stale(copy.read_text())["prepare"] == (["brats_llm/preprocess"], [])
    assert dvc_deps.main(["--check", "--dvc-yaml", str(copy)]) == 1
    added = [line for line in capsys.readouterr().out.splitlines() if line.startswith("+ ")]
    assert any("brats_llm/preprocess" in line for line in added)
    assert dvc_deps.main(["--write", "--dvc-yaml", str(copy)]) == 0
    assert copy.read_text() == dvc_deps.rewrite(DVC_YAML.read_text())


def test_the_check_sees_a_stale_dep(tmp_path):
    copy = _edited(tmp_path, "split", r"\[data/volumes,", "[data/volumes, brats_llm/gone.py,")
    assert dvc_deps.stale(copy.read_text())["split"] == ([], ["brats_llm/gone.py"])
    assert dvc_deps.main(["--check", "--dvc-yaml", str(copy)]) == 1


def test_the_check_sees_files_listed_instead_of_their_folder(tmp_path):
    """A complete folder is one entry: listing its files is a difference (the closure is unchanged)."""
    files = ", ".join(sorted(f"brats_llm/split/{p.name}" for p in (ROOT / "brats_llm" / "split").glob("*.py")))
    copy = _edited(tmp_path, "split", r"brats_llm/split\]", files + "]")
    assert dvc_deps.stale(copy.read_text())["split"] == (["brats_llm/split"], files.split(", "))
    assert dvc_deps.check(copy) != ""


def test_write_keeps_everything_but_the_deps_byte_for_byte():
    text = DVC_YAML.read_text()
    scrambled = text.replace("brats_llm/cli, ", "").replace("params: [demo]", "params: [demo]  # kept")
    assert scrambled.count("brats_llm/cli,") < text.count("brats_llm/cli,")
    assert dvc_deps.rewrite(scrambled) == dvc_deps.rewrite(text).replace("params: [demo]", "params: [demo]  # kept")


def test_a_command_imports_its_own_modules_only():
    """The cli package's module-level imports are shared; the imports inside another command's function are not."""
    deps = dvc_deps.code_deps(ROOT, "demo")
    assert "brats_llm/ingest/demo.py" in deps and "brats_llm/cli" in deps
    assert not any(d.startswith("brats_llm/train") for d in deps)
    with pytest.raises(KeyError, match="no command 'no-such-command'"):
        dvc_deps.command_entry(ROOT, "no-such-command")


@pytest.mark.parametrize("command, module, own", [
    ("demo", "data", "brats_llm.ingest.demo"), ("train-cnn", "cnn", "brats_llm.train.cnn.trainer"),
    ("tiny-model", "models", "brats_llm.llm.tiny"), ("llm-inspect", "llm", "brats_llm.train.llm.inspect"),
    ("report", "report", "brats_llm.report.build"),
])
def test_commands_are_found_in_every_module_of_the_cli_package(command, module, own):
    """Each phase module's commands are found; the whole package is shared, its command bodies are not."""
    assert (ROOT / "brats_llm" / "cli" / f"{module}.py").is_file()
    assert dvc_deps.command_entry(ROOT, command) >= {"brats_llm.cli", own}
    shared = dvc_deps.closure(ROOT, {"brats_llm.cli"})
    assert {Path(f"brats_llm/cli/{name}.py") for name in ("__init__", "options", module)} <= shared
    assert dvc_deps.module_file(ROOT, own).relative_to(ROOT) not in shared


def test_a_block_style_deps_list_is_refused():
    text = "stages:\n  demo:\n    cmd: brats-llm demo out\n    deps:\n      - data/x\n"
    with pytest.raises(ValueError, match="flow list"):
        dvc_deps.rewrite(text)
