"""Binary classification metrics (positive class = HGG = 1) with explicit zero-division rules."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

#: Value reported when a ratio has an empty denominator (e.g. precision with no positive call).
UNDEFINED = 0.0
#: Confusion counts in a metrics dict: reported as they are; intervals are for rates only.
COUNT_KEYS = frozenset({"tn", "fp", "fn", "tp", "n"})


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator / denominator) if denominator else UNDEFINED


def confusion(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, int]:
    """Counts ``tn, fp, fn, tp`` for 0/1 labels.

    Raises:
        ValueError: labels other than 0/1, or lengths differ.
    """
    y_true, y_pred = np.asarray(y_true).astype(int).ravel(), np.asarray(y_pred).astype(int).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has {y_true.size} values, y_pred {y_pred.size}")
    if not set(np.unique(y_true)) | set(np.unique(y_pred)) <= {0, 1}:
        raise ValueError("labels must be 0 or 1")
    return {
        "tn": int(np.sum((y_true == 0) & (y_pred == 0))),
        "fp": int(np.sum((y_true == 0) & (y_pred == 1))),
        "fn": int(np.sum((y_true == 1) & (y_pred == 0))),
        "tp": int(np.sum((y_true == 1) & (y_pred == 1))),
    }


def roc_auc(y_true: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve from the Mann-Whitney U statistic (ties count one half).

    Returns NaN when only one class is present (AUC is undefined).
    """
    y_true, score = np.asarray(y_true).astype(int).ravel(), np.asarray(score, dtype=float).ravel()
    n_pos, n_neg = int(y_true.sum()), int((1 - y_true).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[y_true == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, score: np.ndarray | None = None) -> dict[str, float]:
    """Accuracy, balanced accuracy, precision, recall (sensitivity), specificity, F1, MCC, AUC and counts.

    Args:
        y_true: true labels (0 LGG, 1 HGG).
        y_pred: predicted labels.
        score: predicted probability of class 1, for AUC (omitted: AUC is NaN).

    Returns:
        Flat dict of floats (counts as floats too), ready for a metrics file.
    """
    c = confusion(y_true, y_pred)
    tn, fp, fn, tp = c["tn"], c["fp"], c["fn"], c["tp"]
    precision = _ratio(tp, tp + fp)
    recall = _ratio(tp, tp + fn)
    specificity = _ratio(tn, tn + fp)
    mcc_denominator = np.sqrt(float(tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return {
        "accuracy": _ratio(tp + tn, tp + tn + fp + fn),
        "balanced_accuracy": (recall + specificity) / 2,
        "precision": precision,
        "recall": recall,
        "specificity": specificity,
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "mcc": float((tp * tn - fp * fn) / mcc_denominator) if mcc_denominator else 0.0,
        "auc": roc_auc(y_true, score) if score is not None else float("nan"),
        **{key: float(value) for key, value in c.items()},
        "n": float(tp + tn + fp + fn),
    }


def rates(values: dict[str, float]) -> dict[str, float]:
    """``values`` without the confusion counts (what bootstrap intervals are computed for)."""
    return {key: value for key, value in values.items() if key not in COUNT_KEYS}


def majority_baseline(y_true: np.ndarray, train_labels: np.ndarray | None = None) -> dict[str, float]:
    """Metrics of always predicting the majority class (of ``train_labels``, else of ``y_true``).

    The constant score gives AUC 0.5. This is the bar any model must clear on an imbalanced cohort
    (BraTS 2020: 79% HGG).
    """
    reference = np.asarray(train_labels if train_labels is not None else y_true).astype(int)
    majority = int(reference.mean() >= 0.5)
    y_true = np.asarray(y_true).astype(int)
    return classification_metrics(y_true, np.full_like(y_true, majority), np.full(y_true.shape, 0.5))
