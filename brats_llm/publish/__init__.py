"""Publish: the datasets as one Hugging Face dataset repo (Hub or local folder), pinned by revision."""
