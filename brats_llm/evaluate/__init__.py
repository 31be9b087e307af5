"""Evaluate: score trained models per split with the shared metrics, write DVC metrics and plots."""
