"""Lesion-wise Dice and HD95 with the BraTS 2023 challenge rules, on our resampled voxel grid.

The rules (BraTS 2023 glioma task, ``BraTS-2023-Metrics`` by Saluja et al., the script the challenge ranked
with; re-implemented here with numpy / scipy because the packaged ``brats-evaluation`` 0.0.10 and its
``panoptica`` 2.1.7 pin numpy<2.3, pandas<3 and rich<14, which would downgrade this environment):

1. Per region (WT, TC, ET) the masks are binary; lesions are 26-connected components.
2. The ground truth is dilated ``dilation`` times with the 18-neighbourhood (``generate_binary_structure(3, 2)``;
   3 for gliomas); ground-truth components that fall into one dilated component are one lesion.
3. A predicted component that touches a lesion's dilated extent is matched to it (it may match several).
   Each lesion scores Dice and HD95 against the union of its matched predicted components; a lesion
   with no match scores Dice 0 and HD95 :data:`LESION_MISS_HD95_MM` (374).
4. Lesions of ``volume <= min_volume_mm3`` (50 mm^3 for gliomas; volume = voxels x voxel volume) are left
   out of the mean (and out of the TP / FN counts), whether matched or not.
5. Predicted components matched to no lesion (false positives) add one entry each: Dice 0, HD95 374.
6. Per case: the mean over the kept lesions and false positives; with neither, Dice 1 and HD95 0.

Our volumes are resampled (``spacing_mm`` per patient, about 1 x 1.875 x 1.875 mm for a 240 x 240 BraTS
slice stored at 128 px): the volume threshold is applied in mm^3 through each case's voxel volume
(50 mm^3 is about 14 voxels of 3.5 mm^3), and the dilation counts voxels of our grid (3 voxels reach
3 mm across slices and about 5.6 mm in-plane, instead of 3 mm on the 1 mm grid).

Each lesion's HD95 is the challenge script's: DeepMind ``surface-distance`` 0.1 (``compute_surface_distances``
+ ``compute_robust_hausdorff(..., 95)``: surface elements on the voxel-corner grid weighted by their area),
computed by :func:`brats_llm.metrics.surface.robust_hausdorff`; Dice, HD95 and the TP / FN / FP counts equal
the challenge script's on the pairs in ``tests/fixtures/lesionwise_reference.json``.

Not the ``brats-evaluation`` / ``panoptica`` definition (one-to-one matching, no dilation, no size threshold,
mean over matched pairs only), which scores differently by design.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from brats_llm.metrics.surface import robust_hausdorff

#: Penalty for a missed lesion or a false-positive component (the challenge script's value; the
#: whole-volume HD95 uses :data:`~brats_llm.metrics.segmentation.HD95_ONE_EMPTY_MM`, 373.13).
LESION_MISS_HD95_MM = 374.0
#: BraTS 2023 glioma parameters.
GLIOMA_DILATION = 3
GLIOMA_MIN_VOLUME_MM3 = 50.0

_CONNECTIVITY_26 = ndimage.generate_binary_structure(3, 3)
_DILATION_18 = ndimage.generate_binary_structure(3, 2)


@dataclass(frozen=True)
class LesionScores:
    """One case and region: the lesion-wise means and the lesion counts behind them."""

    dice: float
    hd95_mm: float
    tp: int  #: kept ground-truth lesions with at least one matched predicted component
    fn: int  #: kept ground-truth lesions with none
    fp: int  #: predicted components matched to no ground-truth lesion (any size)
    ignored: int  #: ground-truth lesions at or under the volume threshold

    def as_dict(self, prefix: str = "lesionwise_") -> dict[str, float]:
        return {f"{prefix}dice": self.dice, f"{prefix}hd95_mm": self.hd95_mm, f"{prefix}tp": float(self.tp),
                f"{prefix}fn": float(self.fn), f"{prefix}fp": float(self.fp)}


def _dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice of two masks, not both empty."""
    return 2.0 * int(np.count_nonzero(pred & truth)) / (int(np.count_nonzero(pred)) + int(np.count_nonzero(truth)))


def lesion_wise(pred: np.ndarray, truth: np.ndarray, spacing: Sequence[float] | None = None, *,
                dilation: int = GLIOMA_DILATION, min_volume_mm3: float = GLIOMA_MIN_VOLUME_MM3) -> LesionScores:
    """Lesion-wise Dice and HD95 (mm) of one binary 3D region, with the rules of the module docstring.

    Args:
        pred, truth: binary masks of the same 3D shape.
        spacing: voxel size per axis in mm (1 mm when omitted).
        dilation: 18-neighbourhood dilations of the ground truth used for grouping and matching (0 = none).
        min_volume_mm3: lesions of at most this volume are ignored.
    """
    pred, truth = np.asarray(pred).astype(bool), np.asarray(truth).astype(bool)
    if pred.shape != truth.shape or pred.ndim != 3:
        raise ValueError(f"need two 3D masks of one shape, got {pred.shape} and {truth.shape}")
    spacing_array = np.ones(3) if spacing is None else np.asarray(spacing, dtype=float)
    voxel_mm3 = float(np.prod(spacing_array))
    if not (pred.any() or truth.any()):
        return LesionScores(1.0, 0.0, 0, 0, 0, 0)
    # Work in the box of both masks grown by the dilation reach (the array edge clips as before): same result.
    reach = dilation + 1
    box = ndimage.find_objects((pred | truth).astype(np.uint8))[0]
    box = tuple(slice(max(s.start - reach, 0), min(s.stop + reach, n)) for s, n in zip(box, pred.shape))
    pred, truth = pred[box], truth[box]
    pred_cc, n_pred = ndimage.label(pred, structure=_CONNECTIVITY_26)
    # A dilated component equals the dilation of the ground-truth voxels inside it, so one dilation of
    # the whole mask gives both the lesion grouping and each lesion's matching extent.
    extent = ndimage.binary_dilation(truth, structure=_DILATION_18, iterations=dilation) if dilation else truth
    extent_cc, n_lesions = ndimage.label(extent, structure=_CONNECTIVITY_26)
    both = (extent_cc > 0) & (pred_cc > 0)
    pairs = np.unique(np.stack([extent_cc[both], pred_cc[both]]), axis=1) if both.any() else np.empty((2, 0), int)
    lesion_cc = np.where(truth, extent_cc, 0)
    sizes = np.bincount(lesion_cc.ravel(), minlength=n_lesions + 1)
    boxes, pred_boxes = ndimage.find_objects(extent_cc), ndimage.find_objects(pred_cc)
    dices, distances, tp, fn, ignored = [], [], 0, 0, 0
    for lesion in range(1, n_lesions + 1):
        matched = pairs[1, pairs[0] == lesion]
        if sizes[lesion] * voxel_mm3 <= min_volume_mm3:
            ignored += 1
            continue
        if matched.size == 0:
            fn += 1
            dices.append(0.0)
            distances.append(LESION_MISS_HD95_MM)
            continue
        tp += 1
        # Matched components may reach outside the lesion's extent: work in the box holding all of them.
        parts = [boxes[lesion - 1]] + [pred_boxes[m - 1] for m in matched]
        box = tuple(slice(min(b[a].start for b in parts), max(b[a].stop for b in parts)) for a in range(3))
        lesion_mask = lesion_cc[box] == lesion
        pred_mask = np.isin(pred_cc[box], matched)
        dices.append(_dice(pred_mask, lesion_mask))
        distances.append(robust_hausdorff(pred_mask, lesion_mask, spacing_array, 95.0))
    fp = n_pred - len(np.unique(pairs[1]))
    entries = len(dices) + fp
    if entries == 0:
        return LesionScores(1.0, 0.0, tp, fn, fp, ignored)
    return LesionScores(
        dice=float(np.sum(dices) / entries),
        hd95_mm=float((np.sum(distances) + fp * LESION_MISS_HD95_MM) / entries),
        tp=tp, fn=fn, fp=fp, ignored=ignored,
    )
