"""Train: the paper's 3D CNNs (and, later, LoRA vision-LLMs) against pinned dataset versions."""
