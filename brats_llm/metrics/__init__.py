"""Metrics shared by every model (CNN and LLM): classification, segmentation, bootstrap intervals."""
