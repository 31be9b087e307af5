"""The one writer of every scoring command's pair: ``metrics.json`` (the DVC headline) and ``details.json``."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from brats_llm import atomic

METRICS_FILE = "metrics.json"
DETAILS_FILE = "details.json"
#: Headline keys of each scoring. A name says what it measures and on what unit (3D volume or 2D
#: slice; patients, slices or repeated answers), so one name never means two things across stages; docs/metrics.md
#: explains each once. Values come from the ``test`` block of details.json (score-predictions: its ``--split``).
HEADLINE_KEYS: dict[str, tuple[str, ...]] = {
    "cnn-cls": ("n_patients", "accuracy_3d", "balanced_accuracy_3d", "auc_3d"),
    "cnn-seg": ("n_patients", "dice_wt_3d", "hd95_wt_3d_mm"),
    "llm-cls": ("n_patients", "accuracy_vote", "balanced_accuracy_vote", "auc_gldr", "parse_rate_slices"),
    "llm-center": ("n_patients", "center_in_box_2d", "parse_rate_slices"),
    "llm-bbox": ("n_patients", "box_dice_2d", "parse_rate_slices"),
    "llm-polygon": ("n_patients", "polygon_dice_2d", "parse_rate_slices"),
    "consistency": ("parse_rate_repeats", "agreement_repeats"),
    "predictions": ("n_patients", "dice_wt_3d", "hd95_wt_3d_mm"),
}


def check_headline(scoring: str, headline: Mapping[str, Any]) -> None:
    """Refuse a headline whose keys are not exactly :data:`HEADLINE_KEYS` of ``scoring`` or whose values are not
    finite numbers or ``None`` (`dvc metrics` shows flat numbers; undefined values are ``null``, never NaN).

    Raises:
        ValueError: unknown ``scoring``, missing or extra keys, a value that is not a finite number or None.
    """
    if scoring not in HEADLINE_KEYS:
        raise ValueError(f"unknown scoring {scoring!r}; expected one of {sorted(HEADLINE_KEYS)}")
    expected = HEADLINE_KEYS[scoring]
    if set(headline) != set(expected):
        raise ValueError(f"{scoring} headline keys {sorted(headline)} differ from {sorted(expected)}")
    for key, value in headline.items():
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if value is not None and not (number and math.isfinite(value)):
            raise ValueError(f"{scoring} headline {key} = {value!r}: expected a finite number or null")


def write_scores(folder: str | os.PathLike, scoring: str, headline: Mapping[str, Any], details: Any, *,
                 dvclive_order: bool = False) -> None:
    """Write ``folder/metrics.json`` (``headline``, checked by :func:`check_headline`) and ``folder/details.json``.

    Both are strict JSON (no NaN): indented, keys sorted, as :func:`brats_llm.atomic.write_json` writes;
    ``dvclive_order`` keeps details in the order and 4-space indent of dvclive's summary (evaluate-cnn's
    details.json, so its bytes stay those of earlier runs). Each file is written atomically; write into
    the staging folder of :func:`brats_llm.atomic.atomic_dir` for the pair to appear together.

    Raises:
        ValueError: a bad headline, or a NaN / infinite number in ``details``.
    """
    check_headline(scoring, headline)
    folder = Path(folder)
    if dvclive_order:
        text = json.dumps(details, indent=4, allow_nan=False)
    else:
        text = json.dumps(details, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False)
    atomic.write_text(folder / DETAILS_FILE, text + "\n")
    atomic.write_json(folder / METRICS_FILE, dict(headline))
