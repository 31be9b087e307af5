"""Deterministic compute: a fixed intra-op thread count, deterministic kernels and every seed set."""

from __future__ import annotations

import os
import platform
import random

#: CUDA's cuBLAS needs a fixed workspace to be deterministic (set before the first cuBLAS call).
CUBLAS_WORKSPACE = ":4096:8"

#: x86-64 CPU kernels pinned to AVX2. oneDNN (convolutions), MKL (matrix products) and ATen pick their
#: kernels by the CPU's instruction set, and an AVX-512 kernel sums in another order than an AVX2 one:
#: the same commit trained other bits on an AVX-512 machine than on an AVX2-only one of the same
#: machine type (first-epoch loss 0.7035948974745614 vs 0.7035948889596122; the difference grew
#: into another model). Pinned, every AVX2-capable x86-64 CPU runs the same kernels. A variable
#: already set in the environment wins.
CPU_KERNEL_PINS = {"ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}


def pin_cpu_kernels() -> dict[str, str]:
    """Set :data:`CPU_KERNEL_PINS` (x86-64 only) unless already set; must run before torch computes anything.

    Returns:
        The variables in force (empty on other architectures).
    """
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return {}
    for name, value in CPU_KERNEL_PINS.items():
        os.environ.setdefault(name, value)
    return {name: os.environ[name] for name in CPU_KERNEL_PINS}


def configure(threads: int, seed: int) -> None:
    """Make the training that follows repeatable on this machine, whatever else it is doing.

    The thread count is a parameter, never read from the machine: float sums are split between
    threads, so another count gives other (equally valid) bits. Deterministic algorithms are
    required (warn-only on CUDA, where a few kernels have no deterministic version); Python, NumPy
    and torch are seeded.

    Args:
        threads: intra-op threads for torch (the same value gives the same bytes).
        seed: seed for ``random``, NumPy's global generator and torch (CPU and CUDA).
    """
    import numpy as np
    import torch

    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=torch.cuda.is_available())
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
