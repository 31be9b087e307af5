"""brats-llm: reproducible CNN vs vision-LLM experiments on BraTS glioma MRI."""

__version__ = "0.1.0"
