"""Deterministic training: pinned CPU kernels, a fixed thread count, the same bytes under load."""

import hashlib
import os
import platform
import subprocess
import sys

import pytest
import torch

from brats_llm.determinism import CPU_KERNEL_PINS, configure
from brats_llm.train.cnn.trainer import CnnTrainParams, train_cnn

X86 = platform.machine().lower() in ("x86_64", "amd64")
HAS_AVX512 = X86 and "avx512f" in open("/proc/cpuinfo").read()
CLEAN_ENV = {k: v for k, v in os.environ.items() if k not in CPU_KERNEL_PINS}

#: One training step of the paper's classifier in a fresh process; prints the loss bits after 3 steps.
STEP = """
import sys
{prelude}
import torch
from brats_llm.train.cnn.models import build_model
torch.manual_seed(0); torch.set_num_threads(2)
x = torch.rand(4, 4, 12, 16, 16); y = torch.tensor([0., 1., 1., 0.])
model = build_model("cls", (4, 12, 16, 16)); opt = torch.optim.Adam(model.parameters(), 1e-3)
for _ in range(3):
    opt.zero_grad(); loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x), y); loss.backward(); opt.step()
print(torch.backends.cpu.get_cpu_capability(), repr(float(loss)))
"""


#: torch picks its kernels before brats_llm is imported (as a script importing torch first would).
UNPINNED = ("import torch; torch.nn.functional.conv3d(torch.rand(1, 1, 4, 4, 4), torch.rand(1, 1, 3, 3, 3)); "
            "torch.rand(8, 8) @ torch.rand(8, 8)")


def _step(prelude: str, env: dict[str, str]) -> str:
    result = subprocess.run([sys.executable, "-c", STEP.format(prelude=prelude)], env=env, capture_output=True,
                            text=True, timeout=120, check=True)
    return result.stdout.strip()


@pytest.mark.skipif(not X86, reason="kernel pins concern x86-64 CPUs")
def test_importing_brats_llm_pins_the_cpu_kernels():
    capability, _ = _step("import brats_llm", CLEAN_ENV).split()
    assert capability == "AVX2"


@pytest.mark.skipif(not HAS_AVX512, reason="needs an AVX-512 CPU to show that the kernel choice changes the bits")
def test_unpinned_kernels_give_other_bits_on_this_cpu():
    """The cause of the irreproducible demo training: AVX-512 and AVX2 kernels sum in another order."""
    pinned = _step("import brats_llm", CLEAN_ENV)
    unpinned = _step(UNPINNED, CLEAN_ENV)
    assert pinned != unpinned
    assert pinned == _step("import brats_llm", {**CLEAN_ENV, "OMP_NUM_THREADS": "2"})


def test_configure_fixes_threads_and_rejects_nonsense():
    before = torch.get_num_threads()
    try:
        configure(1, 0)
        assert torch.get_num_threads() == 1 and torch.are_deterministic_algorithms_enabled()
    finally:
        torch.set_num_threads(before)
        torch.use_deterministic_algorithms(False)
    with pytest.raises(ValueError, match="threads"):
        configure(0, 0)
    with pytest.raises(ValueError, match="threads"):
        CnnTrainParams(threads=0)


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("fold0/*"))}


@pytest.mark.parametrize("task", ["cls", "seg"])
def test_training_twice_under_load_gives_the_same_bytes(prepared, tmp_path, task):
    """Two CPU-bound processes keep both cores busy while the same model is trained twice."""
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        params = CnnTrainParams(epochs=3, batch_size=2, downsample=2, checkpoint_every=1, threads=2)
        runs = []
        for run in ("a", "b"):
            train_cnn(task, prepared / "volumes", prepared / "splits.csv", tmp_path / run, params, progress=False)
            runs.append(_digest(tmp_path / run))
    finally:
        for hog in hogs:
            hog.kill()
    assert {"best.pt", "last.pt", "train_summary.json"} <= set(runs[0])
    assert runs[0] == runs[1]
