"""Shared plotting at the bottom of the house: PNG overlays (truth blue, prediction red), ROC, confusion, curves, bars."""

from __future__ import annotations

import os

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

GT_COLOUR_BGR = (255, 0, 0)  # blue, as in the paper's figures
PRED_COLOUR_BGR = (0, 0, 255)  # red
#: File-name suffix of a shapes overlay whose answer was unusable (only the truth is drawn).
NO_ANSWER_SUFFIX = "_no-answer"


def overlay(image: np.ndarray, truth: np.ndarray, pred: np.ndarray, scale: int = 3) -> np.ndarray:
    """RGB uint8 picture of a grey slice with the ground-truth outline in blue and the prediction in red."""
    grey = cv2.resize(image.astype(np.uint8), None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    canvas = cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
    for mask, colour in ((truth, GT_COLOUR_BGR), (pred, PRED_COLOUR_BGR)):
        big = cv2.resize(mask.astype(np.uint8), None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
        contours, _ = cv2.findContours(big, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(canvas, contours, -1, colour, 1)
    return cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB)


def write_png(path, rgb: np.ndarray) -> None:
    """Write an RGB uint8 array as a PNG file, atomically (same pixels, same bytes)."""
    from brats_llm import atomic

    ok, data = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError(f"cannot encode {path}")
    atomic.write_bytes(path, data.tobytes())


def _figure_to_rgb(fig: plt.Figure) -> np.ndarray:
    fig.tight_layout()  # labels, titles and outside legends stay inside the picture
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
    for (i, j), value in np.ndenumerate(matrix):  # white on the dark cells, so every count stays readable
        ax.text(j, i, f"{int(value)}", ha="center", va="center", color="white" if value > matrix.max() / 2 else "black")
    ax.set(xticks=[0, 1], yticks=[0, 1], xticklabels=["LGG", "HGG"], yticklabels=["LGG", "HGG"],
           xlabel="predicted", ylabel="true", title=title)
    fig.tight_layout()  # keeps the axis labels and the title inside the picture
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


def short_ids(ids: list[str]) -> list[str]:
    """Patient ids without their common prefix and suffix (``Brats18_TCIA_003_1`` -> ``TCIA_003``), if still unique."""
    if len(ids) < 2:
        return list(ids)
    prefix = os.path.commonprefix(ids)
    suffix = os.path.commonprefix([i[::-1] for i in ids])[::-1]
    prefix = prefix[: prefix.rfind("_") + 1] if "_" in prefix else ""
    suffix = suffix[suffix.find("_"):] if "_" in suffix else ""
    short = [i[len(prefix): len(i) - len(suffix)] or i for i in ids]
    return short if len(set(short)) == len(set(ids)) else list(ids)


def gldr_figure(rows: list[tuple[str, str, float]], title: str) -> np.ndarray:
    """GLDR per patient (fraction of slices labelled HGG) as bars coloured by the true grade.

    Every patient also gets a dot at its value, so a GLDR of 0 (e.g. an LGG patient read correctly) is visible.
    """
    fig, ax = plt.subplots(figsize=(max(4, 0.35 * len(rows) + 1.5) + 1.2, 3), dpi=100)
    colours = {"HGG": "tab:red", "LGG": "tab:blue"}
    positions = np.arange(len(rows))
    values = [g for _, _, g in rows]
    grade_colours = [colours.get(grade, "grey") for _, grade, _ in rows]
    ax.bar(positions, values, color=grade_colours)
    ax.scatter(positions, values, color=grade_colours, edgecolors="black", zorder=3, s=18)
    ax.axhline(0.5, ls=":", color="black", lw=1)
    ax.set(ylim=(-0.05, 1.05), ylabel="GLDR (HGG fraction)", title=title, xticks=positions)
    ax.set_xticklabels(short_ids([pid for pid, _, _ in rows]), rotation=90, fontsize=6)
    for grade, colour in colours.items():
        ax.bar([0], [0], color=colour, label=f"true {grade}")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)  # beside the bars, not over them
    fig.tight_layout()
    return _figure_to_rgb(fig)


def shapes_overlay(image: np.ndarray, truth: list[list[float]], pred: list[list[float]] | None, scale: int = 3) -> np.ndarray:
    """A slice with the true shape (blue) and the predicted one (red): one vertex = a point, else a closed outline."""
    grey = cv2.resize(image.astype(np.uint8), None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    canvas = cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
    for points, colour in ((truth, GT_COLOUR_BGR), (pred, PRED_COLOUR_BGR)):
        if not points:
            continue
        pixels = np.round((np.asarray(points, dtype=float) + 0.5) * scale).astype(np.int32)
        if len(pixels) == 1:
            cv2.drawMarker(canvas, tuple(int(v) for v in pixels[0]), colour, cv2.MARKER_CROSS, 9, 2)
        else:
            cv2.polylines(canvas, [pixels.reshape(-1, 1, 2)], True, colour, 1)
    return cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB)


def bars_figure(counts: dict[str, dict[str, int]], title: str) -> np.ndarray:
    """Grouped answer counts, e.g. consistency: image -> answer -> count."""
    answers = sorted({a for c in counts.values() for a in c})
    fig, ax = plt.subplots(figsize=(5.5, 3), dpi=100)
    width = 0.8 / max(len(counts), 1)
    for i, (name, c) in enumerate(counts.items()):
        ax.bar(np.arange(len(answers)) + i * width, [c.get(a, 0) for a in answers], width, label=name)
    ax.set(xticks=np.arange(len(answers)) + 0.4 - width / 2, ylabel="answers", title=title)
    ax.set_xticklabels(answers, fontsize=7)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    return _figure_to_rgb(fig)
