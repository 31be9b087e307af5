"""Percentile bootstrap confidence intervals by resampling patients."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def bootstrap_ci(
    n_units: int,
    statistic: Callable[[np.ndarray], dict[str, float]],
    *,
    resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, tuple[float, float]]:
    """Percentile intervals of every value ``statistic`` returns, over patient resamples.

    Args:
        n_units: number of patients (the resampling unit).
        statistic: maps an index array (patients drawn with replacement) to named values.
        resamples: bootstrap replicates.
        seed: random seed (same seed, same intervals).
        level: coverage of the interval.

    Returns:
        name -> (low, high); NaN bounds where the statistic was undefined in most resamples.
    """
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {}
    for _ in range(resamples):
        values = statistic(rng.integers(0, n_units, size=n_units))
        for key, value in values.items():
            draws.setdefault(key, []).append(value)
    alpha = (1.0 - level) / 2.0
    intervals = {}
    for key, values in draws.items():
        array = np.asarray(values, dtype=float)
        array = array[np.isfinite(array)]
        if array.size < resamples / 2:
            intervals[key] = (float("nan"), float("nan"))
        else:
            low, high = np.quantile(array, [alpha, 1.0 - alpha])
            intervals[key] = (float(low), float(high))
    return intervals


def with_intervals(point: dict[str, float], intervals: dict[str, tuple[float, float]]) -> dict[str, float]:
    """Flatten point estimates and intervals as ``name``, ``name_ci_low``, ``name_ci_high``."""
    out = {}
    for key, value in point.items():
        out[key] = value
        if key in intervals:
            out[f"{key}_ci_low"], out[f"{key}_ci_high"] = intervals[key]
    return out
