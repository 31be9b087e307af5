"""Metrics files hold valid JSON only: undefined numbers become ``null`` with a ``<key>_note`` saying why."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

#: Note for a point value without a reason of its own.
UNDEFINED_NOTE = "undefined"
#: Note for interval bounds that were undefined (NaN) in most bootstrap resamples.
CI_NOTE = "interval undefined: the statistic was undefined in most bootstrap resamples"


def _bad(value: Any) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def finite_or_null(metrics: Any, reasons: Mapping[str, str] | None = None) -> Any:
    """A copy of ``metrics`` (nested dicts / lists) with every NaN or infinite float replaced by ``None``.

    Beside each replaced value ``key`` a ``key_note`` holds ``reasons[key]`` (or :data:`UNDEFINED_NOTE`);
    a replaced interval bound ``metric_ci_low`` / ``metric_ci_high`` gets one ``metric_ci_note``.
    The result serialises with ``json.dumps(..., allow_nan=False)``.
    """
    reasons = reasons or {}
    if isinstance(metrics, Mapping):
        out: dict[str, Any] = {}
        notes: dict[str, str] = {}
        for key, value in metrics.items():
            if _bad(value):
                out[key] = None
                for suffix in ("_ci_low", "_ci_high"):
                    if key.endswith(suffix):
                        base = key[: -len(suffix)]
                        notes[f"{base}_ci_note"] = reasons.get(f"{base}_ci", CI_NOTE)
                        break
                else:
                    notes[f"{key}_note"] = reasons.get(key, UNDEFINED_NOTE)
            else:
                out[key] = finite_or_null(value, reasons)
        for key, note in notes.items():
            out.setdefault(key, note)
        return out
    if isinstance(metrics, (list, tuple)):
        return [None if _bad(v) else finite_or_null(v, reasons) for v in metrics]
    return metrics
