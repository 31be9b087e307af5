"""Vision-LLM models: the tiny offline Mllama, loading base + adapter, batched inference, consistency."""
