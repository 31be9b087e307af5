"""A wheel built from the checkout carries every file the package reads and runs the data chain outside the repo."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(ROOT)], check=True, capture_output=True, timeout=600)
    (built,) = out.glob("brats_llm-*.whl")
    return built


def test_every_package_file_is_in_the_wheel(wheel):
    package = ROOT / "brats_llm"
    expected = {p.relative_to(ROOT).as_posix() for p in package.rglob("*")
                if (p.is_file() or p.is_symlink()) and "__pycache__" not in p.parts and p.suffix != ".pyc"}
    shipped = set(zipfile.ZipFile(wheel).namelist())
    assert expected - shipped == set()
    assert any(name.endswith("publish/dataset_card.md") for name in shipped)


def test_installed_wheel_runs_the_data_chain_from_an_empty_folder(wheel, tmp_path):
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    work = tmp_path / "empty"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}

    def run(*args):
        result = subprocess.run([sys.executable, "-m", "brats_llm", *args], cwd=work, env=env, capture_output=True,
                                text=True, timeout=600)
        assert result.returncode == 0, f"{args[0]}: {result.stderr[-2000:]}"
        return result

    origin = subprocess.run([sys.executable, "-c", "import brats_llm; print(brats_llm.__file__)"], cwd=work, env=env,
                            capture_output=True, text=True, check=True).stdout
    assert origin.startswith(str(site))  # the wheel's copy, not the checkout
    run("demo", "raw", "--patients", "6", "--lgg-fraction", "0.5", "--shape", "48", "48", "40", "--workers", "1")
    run("prepare", "raw", "volumes", "--slices", "20", "--size", "24", "--workers", "1")
    run("split", "volumes", "splits.csv", "--test-fraction", "0.3", "--folds", "2")
    run("slices", "volumes", "splits.csv", "slices")
    run("geometry", "slices", "geometry")
    run("conversations", "slices", "geometry", "conversations")
    run("publish", "volumes", "slices", "geometry", "conversations", "hub", "hub_revision.json")
    card = (work / "hub" / "README.md").read_text()
    assert "BraTS" in card and (work / "hub" / "conversations-bbox").is_dir()
