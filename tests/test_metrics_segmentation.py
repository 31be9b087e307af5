"""Segmentation metrics against MONAI (DiceMetric, HausdorffDistanceMetric with spacing) and by hand."""

import numpy as np
import pytest
import torch
from monai.metrics import DiceMetric, HausdorffDistanceMetric
from scipy import ndimage

from brats_llm.metrics.segmentation import HD95_ONE_EMPTY_MM, dice, hd95, segmentation_metrics, voxel_rates


def blob(rng, shape):
    noise = ndimage.gaussian_filter(rng.random(shape), sigma=rng.uniform(1.0, 2.5))
    return noise > np.quantile(noise, rng.uniform(0.8, 0.98))


def monai_values(pred, truth, spacing):
    p = torch.as_tensor(pred[None, None].astype(np.float32))
    t = torch.as_tensor(truth[None, None].astype(np.float32))
    d = DiceMetric(include_background=True, reduction="none")(p, t).item()
    h = HausdorffDistanceMetric(include_background=True, percentile=95, reduction="none")(p, t, spacing=list(spacing)).item()
    return d, h


@pytest.mark.parametrize("seed", range(12))
def test_against_monai_3d_with_spacing(seed):
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(8, 20)), int(rng.integers(12, 28)), int(rng.integers(12, 28)))
    pred, truth = blob(rng, shape), blob(rng, shape)
    spacing = tuple(np.round(rng.uniform(0.5, 2.5, 3), 3))
    monai_dice, monai_hd = monai_values(pred, truth, spacing)
    assert dice(pred, truth) == pytest.approx(monai_dice, abs=1e-6)
    assert hd95(pred, truth, spacing) == pytest.approx(monai_hd, rel=1e-6, abs=1e-5)


@pytest.mark.parametrize("seed", range(6))
def test_against_monai_2d(seed):
    rng = np.random.default_rng(100 + seed)
    pred, truth = blob(rng, (40, 40)), blob(rng, (40, 40))
    monai_dice, monai_hd = monai_values(pred, truth, (1.875, 1.875))
    assert dice(pred, truth) == pytest.approx(monai_dice, abs=1e-6)
    assert hd95(pred, truth, (1.875, 1.875)) == pytest.approx(monai_hd, rel=1e-6, abs=1e-5)


def test_single_voxels_and_touching_the_border():
    pred, truth = np.zeros((10, 10, 10), bool), np.zeros((10, 10, 10), bool)
    pred[0, 0, 0], truth[3, 4, 0] = True, True
    spacing = (1.0, 2.0, 3.0)
    assert hd95(pred, truth, spacing) == pytest.approx(np.hypot(3 * 1.0, 4 * 2.0))
    assert hd95(pred, truth, spacing) == pytest.approx(monai_values(pred, truth, spacing)[1], rel=1e-6)
    assert dice(pred, truth) == 0.0 and dice(pred, pred) == 1.0


def test_empty_mask_conventions():
    empty, full = np.zeros((6, 6, 6), bool), np.zeros((6, 6, 6), bool)
    full[2:4, 2:4, 2:4] = True
    assert dice(empty, empty) == 1.0 and hd95(empty, empty) == 0.0  # both empty: perfect
    assert dice(full, empty) == 0.0 and hd95(full, empty) == HD95_ONE_EMPTY_MM == pytest.approx(373.13, abs=0.01)
    assert hd95(empty, full) == HD95_ONE_EMPTY_MM
    assert voxel_rates(empty, empty) == {"precision": 1.0, "recall": 1.0, "specificity": 1.0}
    assert voxel_rates(empty, full)["recall"] == 0.0 and voxel_rates(empty, full)["precision"] == 0.0


def test_voxel_rates_by_counting():
    rng = np.random.default_rng(3)
    pred, truth = rng.random((20, 20)) > 0.6, rng.random((20, 20)) > 0.5
    tp, fp = np.sum(pred & truth), np.sum(pred & ~truth)
    fn, tn = np.sum(~pred & truth), np.sum(~pred & ~truth)
    metrics = segmentation_metrics(pred, truth)
    assert metrics["precision"] == pytest.approx(tp / (tp + fp))
    assert metrics["recall"] == pytest.approx(tp / (tp + fn))
    assert metrics["specificity"] == pytest.approx(tn / (tn + fp))
    with pytest.raises(ValueError, match="spacing needs 2"):
        hd95(pred, truth, (1.0, 1.0, 1.0))
