"""Figures that open offline: PNG overlays (ground truth blue, prediction red), ROC, confusion, curves."""

from __future__ import annotations

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

GT_COLOUR_BGR = (255, 0, 0)  # blue, as in the paper's figures
PRED_COLOUR_BGR = (0, 0, 255)  # red


def overlay(image: np.ndarray, truth: np.ndarray, pred: np.ndarray, scale: int = 3) -> np.ndarray:
    """RGB uint8 picture of a grey slice with the ground-truth outline in blue and the prediction in red."""
    grey = cv2.resize(image.astype(np.uint8), None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    canvas = cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
    for mask, colour in ((truth, GT_COLOUR_BGR), (pred, PRED_COLOUR_BGR)):
        big = cv2.resize(mask.astype(np.uint8), None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
        contours, _ = cv2.findContours(big, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(canvas, contours, -1, colour, 1)
    return cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB)


def _figure_to_rgb(fig: plt.Figure) -> np.ndarray:
    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return rgb


def roc_figure(curves: dict[str, tuple[np.ndarray, np.ndarray, float]]) -> np.ndarray:
    """ROC curves per split: name -> (fpr, tpr, auc)."""
    fig, ax = plt.subplots(figsize=(4, 4), dpi=100)
    for name, (fpr, tpr, auc) in curves.items():
        ax.step(fpr, tpr, where="post", label=f"{name} (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], ":", color="grey", label="chance")
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title="ROC (HGG positive)")
    ax.legend(loc="lower right", fontsize=7)
    return _figure_to_rgb(fig)


def confusion_figure(counts: dict[str, float], title: str) -> np.ndarray:
    """2x2 confusion matrix (rows: truth LGG/HGG; columns: prediction)."""
    matrix = np.array([[counts["tn"], counts["fp"]], [counts["fn"], counts["tp"]]])
    fig, ax = plt.subplots(figsize=(3, 3), dpi=100)
    ax.imshow(matrix, cmap="Blues")
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, f"{int(value)}", ha="center", va="center")
    ax.set(xticks=[0, 1], yticks=[0, 1], xticklabels=["LGG", "HGG"], yticklabels=["LGG", "HGG"],
           xlabel="predicted", ylabel="true", title=title)
    return _figure_to_rgb(fig)


def distribution_figure(values: dict[str, list[float]], metric: str) -> np.ndarray:
    """Per-patient metric values per split (strip plot with the mean)."""
    fig, ax = plt.subplots(figsize=(4, 3), dpi=100)
    for i, (name, vals) in enumerate(values.items()):
        jitter = np.random.default_rng(i).uniform(-0.15, 0.15, len(vals))
        ax.scatter(np.full(len(vals), i) + jitter, vals, s=10)
        if vals:
            ax.hlines(np.mean(vals), i - 0.3, i + 0.3, color="black")
    ax.set(xticks=range(len(values)), xticklabels=list(values), ylabel=metric, title=f"per-patient {metric}")
    return _figure_to_rgb(fig)
