"""Preprocess: raw cases to fixed-shape uint8 volumes in a Hugging Face dataset."""
