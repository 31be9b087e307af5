"""BraTS 2023 lesion-wise Dice / HD95: against the challenge's own script, and on cases worked out by hand.

The reference values (tests/fixtures/lesionwise_reference.json) were computed by the BraTS 2023 scoring script
(tests/fixtures/make_lesionwise_reference.py) on the pairs of tests/fixtures/lesionwise_pairs.py.

Hand-worked cases: cubes of 4 x 4 x 4 voxels (64 voxels, 56 of them on the surface: 64 minus the 2 x 2 x 2
interior) at 1 mm unless stated. Distances between parallel cubes that share their (y, z) extent are differences
in x. The values below are worked out with surface voxels; the area-weighted surface (voxel corners, see
brats_llm.metrics.surface) gives the same values on these axis-aligned cubes (the reference test checks the
definition itself).
"""

import time

import numpy as np
import pytest

from brats_llm.metrics.lesionwise import LESION_MISS_HD95_MM, lesion_wise
from brats_llm.metrics.segmentation import REGION_NAMES, region_masks, region_metrics
from tests.conftest import SAMPLE_DIR
from tests.fixtures.lesionwise_pairs import all_pairs, reference, synthetic_pairs

#: Tolerance of lesion-wise HD95 against the challenge script (mm).
HD95_TOLERANCE_MM = 0.01


def assert_matches_reference(pairs):
    expected = reference()["pairs"]
    for name, pred, truth, spacing in pairs:
        assert list(spacing) == expected[name]["spacing"], name
        for region, p, t in zip(REGION_NAMES, region_masks(pred), region_masks(truth)):
            ours, theirs = lesion_wise(p, t, spacing), expected[name][region]
            where = f"{name} {region}"
            assert (ours.tp, ours.fn, ours.fp) == (theirs["tp"], theirs["fn"], theirs["fp"]), where
            assert ours.dice == pytest.approx(theirs["lesionwise_dice"], abs=1e-9), where
            assert ours.hd95_mm == pytest.approx(theirs["lesionwise_hd95_mm"], abs=HD95_TOLERANCE_MM), where


def test_matches_the_challenge_script_on_synthetic_pairs():
    pairs = all_pairs(None)
    assert len(pairs) == len(synthetic_pairs()) == 3
    assert_matches_reference(pairs)


@pytest.mark.skipif(not SAMPLE_DIR.is_dir(), reason="the BraTS 2018 sample (../shared) is absent")
def test_matches_the_challenge_script_on_real_mask_pairs():
    pairs = [p for p in all_pairs(SAMPLE_DIR) if p[0].startswith("real")]
    assert len(pairs) == 21  # 3 cases x 7 edits (eroded, dilated, shifted, blob, dropped ET, split, empty)
    # all edits of the first case (1 mm), two of the anisotropic second: the fixture holds all 21 (time)
    kept = [p for p in pairs if p[0].startswith("real0") or p[0] in ("real1_shifted", "real1_split_slab")]
    assert_matches_reference(kept)

SHAPE = (40, 16, 16)


def cube(mask, x, size=4, y=4, z=4):
    mask[x : x + size, y : y + size, z : z + size] = True
    return mask


def empty():
    return np.zeros(SHAPE, bool)


def test_found_missed_and_false_positive():
    truth = cube(cube(empty(), 2), 30)  # lesions A (x 2-5) and B (x 30-33), far apart
    pred = cube(empty(), 2)  # A exactly; B missed
    pred[18:20, 4:6, 4:6] = True  # a false-positive component of 8 voxels, far from both
    scores = lesion_wise(pred, truth)
    # entries: A (Dice 1, HD95 0), B missed (0, 374), the false positive (0, 374)
    assert scores.dice == pytest.approx(1 / 3)
    assert scores.hd95_mm == pytest.approx((0 + 374 + 374) / 3)
    assert (scores.tp, scores.fn, scores.fp, scores.ignored) == (1, 1, 1, 0)
    assert LESION_MISS_HD95_MM == 374.0


def test_small_lesions_are_ignored_by_volume_in_mm3():
    truth = cube(empty(), 2)
    truth[30:32, 4:9, 4:9] = True  # 2 x 5 x 5 = 50 voxels: at 1 mm, 50 mm^3 <= 50, ignored
    pred = truth.copy()
    pred[30:32, 4:9, 4:9] = False  # the small lesion missed: no penalty, it is not counted
    scores = lesion_wise(pred, truth)
    assert (scores.dice, scores.hd95_mm, scores.tp, scores.fn, scores.fp, scores.ignored) == (1.0, 0.0, 1, 0, 0, 1)
    # at 1.1 mm isotropic the same lesion holds 50 x 1.331 = 66.6 mm^3 > 50: now a missed lesion counts
    scores = lesion_wise(pred, truth, (1.1, 1.1, 1.1))
    assert scores.dice == pytest.approx(0.5) and scores.hd95_mm == pytest.approx(187.0) and scores.fn == 1
    # a predicted component on an ignored lesion is matched to it, so it is no false positive either
    scores = lesion_wise(truth, truth)
    assert (scores.dice, scores.fp, scores.ignored) == (1.0, 0, 1)


def test_dilation_groups_nearby_components_into_one_lesion():
    truth = cube(cube(empty(), 0), 8)  # A x 0-3, B x 8-11: a gap of 4 voxels, within 3 + 3 dilations
    pred = cube(empty(), 0)  # A only
    scores = lesion_wise(pred, truth)
    # one lesion A+B (128 voxels) against A (64): Dice 2*64/192 = 2/3.
    # HD95: pred -> truth surfaces all 0. truth -> pred: A's 56 surface voxels 0; B's 56 by layer x = 8, 9, 10,
    # 11: 16 at 5 mm (8 - 3), 12 at 6, 12 at 7, 16 at 8. Sorted 112 values: index 0.95 * 111 = 105.45 falls in
    # the last 16 (indices 96-111): 8 mm.
    assert scores.dice == pytest.approx(2 / 3)
    assert scores.hd95_mm == pytest.approx(8.0)
    assert (scores.tp, scores.fn, scores.fp) == (1, 0, 0)
    # without dilation: two lesions, A perfect and B missed
    scores = lesion_wise(pred, truth, dilation=0)
    assert scores.dice == pytest.approx(0.5) and scores.hd95_mm == pytest.approx(187.0)


def test_a_prediction_near_but_not_on_the_lesion_is_matched_not_a_false_positive():
    truth = cube(empty(), 0)  # x 0-3
    pred = cube(empty(), 6)  # x 6-9: no overlap, a gap of 2 voxels (inside the 3-voxel dilation)
    scores = lesion_wise(pred, truth)
    # Dice 0. HD95: pred layers x = 6, 7, 8, 9 hold 16, 12, 12, 16 surface voxels at 3, 4, 5, 6 mm from
    # truth's x = 3 face; 56 sorted values, index 0.95 * 55 = 52.25 in the last 16: 6 mm; symmetric.
    assert scores.dice == 0.0 and scores.hd95_mm == pytest.approx(6.0)
    assert (scores.tp, scores.fn, scores.fp) == (1, 0, 0)
    far = cube(empty(), 11)  # gap of 7: outside the dilation, a miss plus a false positive
    scores = lesion_wise(far, truth)
    assert scores.dice == 0.0 and scores.hd95_mm == 374.0 and (scores.fn, scores.fp) == (1, 1)


def test_anisotropic_spacing_and_empty_cases():
    truth = cube(empty(), 2)
    pred = cube(empty(), 3)  # shifted one voxel along x (2 mm at this spacing)
    scores = lesion_wise(pred, truth, (2.0, 1.0, 1.0))
    # overlap 3 x 4 x 4 = 48 of 64 + 64: Dice 96/128 = 0.75. HD95: truth's x = 2 face (16 of its 56 surface
    # voxels, more than 5%) lies 2 mm from pred's x = 3 face and no surface voxel is farther (the side faces
    # coincide, the 4 inner voxels of the x = 5 face are 1 mm from a side face): 2 mm; pred -> truth alike.
    assert scores.dice == pytest.approx(0.75) and scores.hd95_mm == pytest.approx(2.0)
    assert lesion_wise(empty(), empty()).dice == 1.0 and lesion_wise(empty(), empty()).hd95_mm == 0.0
    nothing = lesion_wise(empty(), truth)
    assert (nothing.dice, nothing.hd95_mm) == (0.0, 374.0)
    only_fp = lesion_wise(truth, empty())
    assert (only_fp.dice, only_fp.hd95_mm, only_fp.fp) == (0.0, 374.0, 1)
    with pytest.raises(ValueError, match="3D"):
        lesion_wise(np.zeros((4, 4)), np.zeros((4, 4)))


def test_regions_follow_brats_2023_labels_and_metrics_never_nan():
    labels = np.zeros(SHAPE, np.uint8)
    labels[2:10, 2:10, 2:10] = 2  # oedema
    labels[4:8, 4:8, 4:8] = 1  # core
    labels[5:7, 5:7, 5:7] = 3  # enhancing
    wt, tc, et = region_masks(labels)
    assert REGION_NAMES == ("wt", "tc", "et")
    assert (wt.sum(), tc.sum(), et.sum()) == (512, 64, 8)
    for name, mask in zip(REGION_NAMES, (wt, tc, et)):
        row = region_metrics(mask, mask, (1.0, 1.0, 1.0))
        assert row["dice"] == 1.0 and row["hd95_mm"] == 0.0 and row["lesionwise_hd95_mm"] == 0.0
        assert all(np.isfinite(v) for v in row.values())
    # ET of 8 mm^3 is under the threshold: lesion-wise ignores it, the legacy Dice does not
    row = region_metrics(np.zeros(SHAPE, bool), et, (1.0, 1.0, 1.0))
    assert row["dice"] == 0.0 and row["lesionwise_dice"] == 1.0 and row["lesionwise_hd95_mm"] == 0.0


def test_fast_on_a_stored_volume():
    rng = np.random.default_rng(0)
    truth = np.zeros((95, 128, 128), bool)
    truth[30:60, 40:80, 50:90] = True
    truth[70:75, 100:110, 20:30] = True
    pred = np.roll(truth, 2, axis=1) & (rng.random(truth.shape) > 0.05)
    start = time.perf_counter()
    lesion_wise(pred, truth, (1.0, 1.875, 1.875))
    assert time.perf_counter() - start < 2.0  # measured ~0.3 s on 2 shared cores


def naive_brats_2023(pred, truth, spacing, dilation=3, min_volume=50.0):
    """The challenge script's procedure step by step on whole arrays (one dilation per lesion, as it does)."""
    from scipy import ndimage

    from brats_llm.metrics.segmentation import dice, hd95

    full, dil = ndimage.generate_binary_structure(3, 3), ndimage.generate_binary_structure(3, 2)
    gt_cc, _ = ndimage.label(truth, full)
    pred_cc, n_pred = ndimage.label(pred, full)
    grown_cc, n_grown = ndimage.label(ndimage.binary_dilation(truth, dil, iterations=dilation), full)
    lesions = np.zeros_like(gt_cc)
    for comp in range(1, n_grown + 1):  # ground-truth components combined by dilation
        lesions[(grown_cc == comp) & (gt_cc > 0)] = comp
    matched_all, rows = set(), []
    for comp in range(1, n_grown + 1):
        lesion = lesions == comp
        reach = ndimage.binary_dilation(lesion, dil, iterations=dilation)
        hits = set(np.unique(pred_cc[reach]).tolist()) - {0}
        matched_all |= hits
        pred_part = np.isin(pred_cc, list(hits))
        volume = lesion.sum() * np.prod(spacing)
        score = (dice(pred_part, lesion), hd95(pred_part, lesion, spacing) if hits else 374.0)
        rows.append((volume, *score))
    kept = [r for r in rows if r[0] > min_volume]
    fp = n_pred - len(matched_all)
    if len(kept) + fp == 0:
        return 1.0, 0.0
    return (sum(r[1] for r in kept) / (len(kept) + fp), (sum(r[2] for r in kept) + 374.0 * fp) / (len(kept) + fp))


@pytest.mark.parametrize("seed", range(6))
def test_matches_the_step_by_step_procedure_on_random_blobs(seed):
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    shape = (16, 24, 24)

    def blobs():
        noise = ndimage.gaussian_filter(rng.random(shape), sigma=1.5)
        return noise > np.quantile(noise, rng.uniform(0.85, 0.97))

    pred, truth = blobs(), blobs()
    spacing = (1.0, 1.875, 1.875) if seed % 2 else (1.0, 1.0, 1.0)
    scores = lesion_wise(pred, truth, spacing, min_volume_mm3=20.0)
    expected = naive_brats_2023(pred, truth, np.asarray(spacing), min_volume=20.0)
    assert (scores.dice, scores.hd95_mm) == pytest.approx(expected)
