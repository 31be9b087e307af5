"""LoRA fine-tuning of vision-LLMs: the hf (transformers + PEFT + TRL) and unsloth (CUDA) backends."""
