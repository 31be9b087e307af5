"""Binary segmentation metrics: Dice, HD95 in millimetres (voxel spacing), voxel precision/recall/specificity."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from brats_llm.constants import REGIONS  # BraTS 2023 region convention (labels 1, 2, 3)
from brats_llm.metrics.lesionwise import GLIOMA_DILATION, GLIOMA_MIN_VOLUME_MM3, lesion_wise
from brats_llm.metrics.surface import robust_hausdorff

#: BraTS convention for HD95 when exactly one of prediction and ground truth is empty: the
#: diagonal of the 240 x 240 x 155 mm BraTS volume (as the BraTS 2021+ evaluation reports).
HD95_ONE_EMPTY_MM = float(np.sqrt(240**2 + 240**2 + 155**2))  # 373.13


def _boolean(mask: np.ndarray) -> np.ndarray:
    return np.asarray(mask).astype(bool)


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice coefficient; 1.0 when both masks are empty (BraTS convention), 0.0 when exactly one is."""
    pred, truth = _boolean(pred), _boolean(truth)
    total = int(pred.sum()) + int(truth.sum())
    return 1.0 if total == 0 else 2.0 * int(np.sum(pred & truth)) / total


def hd95(pred: np.ndarray, truth: np.ndarray, spacing: Sequence[float] | None = None) -> float:
    """Area-weighted 95th-percentile Hausdorff distance between mask surfaces, in the units of ``spacing``.

    The BraTS 2023 scoring script's ``Legacy_HD95``: DeepMind ``surface-distance`` 0.1 (surface elements on the
    voxel-corner grid weighted by area; :mod:`brats_llm.metrics.surface`), not MONAI's unweighted percentile of
    boundary-voxel distances. Conventions: both masks empty -> 0.0; exactly one empty ->
    :data:`HD95_ONE_EMPTY_MM` (the BraTS 2021 value; the 2023 script reports 374 there).

    Args:
        pred, truth: binary masks of the same shape (2D or 3D).
        spacing: voxel size per axis (mm); 1 per axis when omitted.
    """
    pred, truth = _boolean(pred), _boolean(truth)
    if pred.shape != truth.shape:
        raise ValueError(f"shapes differ: {pred.shape} vs {truth.shape}")
    has_pred, has_truth = bool(pred.any()), bool(truth.any())
    if not has_pred and not has_truth:
        return 0.0
    if has_pred != has_truth:
        return HD95_ONE_EMPTY_MM
    spacing_array = np.ones(pred.ndim) if spacing is None else np.asarray(spacing, dtype=float)
    if spacing_array.shape != (pred.ndim,):
        raise ValueError(f"spacing needs {pred.ndim} values, got {spacing}")
    return robust_hausdorff(pred, truth, spacing_array, 95.0)


def voxel_rates(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Voxel precision, recall (sensitivity) and specificity over the whole array.

    Empty denominators give 1.0 when there is nothing to get wrong (e.g. precision of an empty
    prediction against an empty truth) and 0.0 otherwise.
    """
    pred, truth = _boolean(pred), _boolean(truth)
    tp = int(np.sum(pred & truth))
    fp = int(np.sum(pred & ~truth))
    fn = int(np.sum(~pred & truth))
    tn = pred.size - tp - fp - fn

    def rate(num: int, den: int, other_errors: int) -> float:
        return num / den if den else (1.0 if other_errors == 0 else 0.0)

    return {
        "precision": rate(tp, tp + fp, fn),
        "recall": rate(tp, tp + fn, fp),
        "specificity": rate(tn, tn + fp, fn),
    }


def segmentation_metrics(pred: np.ndarray, truth: np.ndarray, spacing: Sequence[float] | None = None) -> dict[str, float]:
    """Dice, HD95 (mm when ``spacing`` is in mm), voxel precision, recall and specificity of one case."""
    return {"dice": dice(pred, truth), "hd95_mm": hd95(pred, truth, spacing), **voxel_rates(pred, truth)}


#: Region names in output-channel order of a ``regions`` segmenter.
REGION_NAMES: tuple[str, ...] = ("wt", "tc", "et")


def region_masks(labels: np.ndarray, names: Sequence[str] = REGION_NAMES) -> np.ndarray:
    """Stack the binary masks of ``names`` (constants.REGIONS) from a 0/1/2/3 label map: (len(names), *shape)."""
    labels = np.asarray(labels)
    return np.stack([np.isin(labels, REGIONS[name]) for name in names])


def region_metrics(pred: np.ndarray, truth: np.ndarray, spacing: Sequence[float] | None = None, *,
                   dilation: int = GLIOMA_DILATION, min_volume_mm3: float = GLIOMA_MIN_VOLUME_MM3) -> dict[str, float]:
    """Legacy whole-volume metrics and BraTS 2023 lesion-wise Dice / HD95 of one binary 3D region."""
    lesions = lesion_wise(pred, truth, spacing, dilation=dilation, min_volume_mm3=min_volume_mm3)
    return {**segmentation_metrics(pred, truth, spacing), **lesions.as_dict()}
