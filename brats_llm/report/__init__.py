"""The reproduction report: the paper's tables beside ours, with baselines, intervals, figures and provenance."""
