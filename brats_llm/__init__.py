"""brats-llm: reproducible CNN vs vision-LLM experiments on BraTS glioma MRI."""

from brats_llm.determinism import pin_cpu_kernels

__version__ = "0.1.0"

# Before torch is imported anywhere: the same kernels on every x86-64 CPU (see brats_llm.determinism).
pin_cpu_kernels()
