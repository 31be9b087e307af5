"""Geometry invariants on synthetic shapes and on the real BraTS sample; the frame round trip."""

import cv2
import numpy as np
import pytest
from shapely.geometry import LinearRing, Polygon

from brats_llm.geometry.shapes import (
    MAX_POLYGON_POINTS,
    MIN_POLYGON_POINTS,
    rasterize_box,
    rasterize_polygon,
    slice_geometry,
)


def check_invariants(mask, min_iou):
    geometry = slice_geometry(mask)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    kept = labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    box = rasterize_box(geometry.bbox, mask.shape)
    assert box[mask].all()  # every tumour pixel of the slice (all components) lies in the box (the paper's box)
    ys, xs = np.nonzero(mask)
    assert geometry.bbox[0] == [xs.min(), ys.min()] and geometry.bbox[2] == [xs.max(), ys.max()]
    assert geometry.center == [(xs.min() + xs.max()) / 2, (ys.min() + ys.max()) / 2]
    (xmin, ymin), (xmax, ymax) = geometry.bbox[0], geometry.bbox[2]
    assert geometry.bbox[1] == [xmax, ymin] and geometry.bbox[3] == [xmin, ymax]
    x, y = geometry.center
    assert xmin <= x <= xmax and ymin <= y <= ymax
    assert box[int(np.floor(y)), int(np.floor(x))]
    polygon = geometry.polygon
    assert MIN_POLYGON_POINTS <= len(polygon) <= MAX_POLYGON_POINTS
    assert Polygon(polygon).is_valid
    assert LinearRing(polygon).is_ccw  # counter-clockwise with y down = clockwise on screen
    ys = [p[1] for p in polygon]
    assert polygon[0][1] == min(ys) and polygon[0][0] == min(p[0] for p in polygon if p[1] == min(ys))
    iou = np.logical_and(rasterize_polygon(polygon, mask.shape), kept).sum() / np.logical_or(
        rasterize_polygon(polygon, mask.shape), kept).sum()
    assert geometry.polygon_iou == pytest.approx(iou) and iou >= min_iou
    assert geometry.components == count - 1 and geometry.area == kept.sum()
    return geometry


def test_rectangle_round_trip():
    mask = np.zeros((128, 128), bool)
    mask[30:50, 70:100] = True  # rows 30..49 = y, cols 70..99 = x
    geometry = check_invariants(mask, 0.9)
    assert geometry.bbox == [[70, 30], [99, 30], [99, 49], [70, 49]]
    assert geometry.center == [84.5, 39.5]
    assert rasterize_box(geometry.bbox, mask.shape).sum() == mask.sum()


@pytest.mark.parametrize("seed", range(10))
def test_random_blobs(seed):
    rng = np.random.default_rng(seed)
    mask = np.zeros((128, 128), np.uint8)
    centre = rng.integers(30, 98, 2)
    cv2.ellipse(mask, tuple(int(c) for c in centre), (int(rng.integers(5, 25)), int(rng.integers(5, 25))),
                float(rng.uniform(0, 180)), 0, 360, 1, -1)
    for _ in range(3):  # bumps make it irregular
        offset = rng.integers(-12, 12, 2)
        cv2.circle(mask, tuple(int(c) for c in centre + offset), int(rng.integers(3, 8)), 1, -1)
    check_invariants(mask.astype(bool), 0.75)


def test_larger_and_irregular_tumours_get_more_points():
    small = np.zeros((128, 128), np.uint8)
    cv2.circle(small, (64, 64), 4, 1, -1)
    large = np.zeros((128, 128), np.uint8)
    cv2.circle(large, (64, 64), 30, 1, -1)
    for angle in range(0, 360, 40):  # a star-like outline
        point = (int(64 + 36 * np.cos(np.radians(angle))), int(64 + 36 * np.sin(np.radians(angle))))
        cv2.line(large, (64, 64), point, 1, 7)
    assert len(slice_geometry(small).polygon) == MIN_POLYGON_POINTS
    assert len(slice_geometry(large).polygon) >= 13


def test_components_and_tiny_tumours():
    mask = np.zeros((64, 64), bool)
    mask[5:15, 5:15] = True
    mask[40, 40] = True  # a second, single-pixel component
    geometry = check_invariants(mask, 0.8)
    assert geometry.components == 2 and geometry.total_area == 101 and geometry.area == 100
    assert geometry.bbox == [[5, 5], [40, 5], [40, 40], [5, 40]] and geometry.center == [22.5, 22.5]  # all pixels
    assert geometry.polygon_iou == 1.0  # the polygon traces the largest component
    single = np.zeros((64, 64), bool)
    single[10, 20] = True
    tiny = slice_geometry(single)
    assert tiny.bbox == [[20, 10], [20, 10], [20, 10], [20, 10]] and len(tiny.polygon) == MIN_POLYGON_POINTS
    with pytest.raises(ValueError, match="no tumour"):
        slice_geometry(np.zeros((8, 8), bool))


@pytest.mark.parametrize("x, y", [(20, 10), (21, 10), (20, 11), (21, 11), (0, 0), (127, 127), (0, 127)])
def test_one_pixel_tumour_rasterises_to_its_pixel_whatever_the_parity(x, y):
    """Vertices are not rounded half-to-even: a 1-pixel polygon scored 1.0, 0.33 or 0.11 by parity before."""
    from brats_llm.conversations.parse import parse_answer
    from brats_llm.conversations.prompts import answer_text
    from brats_llm.evaluate.llm import region_mask

    mask = np.zeros((128, 128), bool)
    mask[y, x] = True
    geometry = slice_geometry(mask)
    assert geometry.polygon_iou == 1.0
    assert np.array_equal(rasterize_polygon(geometry.polygon, mask.shape), mask)
    for task, value in (("polygon", geometry.polygon), ("bbox", geometry.bbox)):  # a perfect answer, scored like a model's
        parsed = parse_answer(task, answer_text(task, value), mask.shape)
        assert parsed.status == "ok" and np.array_equal(region_mask(task, parsed.value, mask.shape), mask), task


def test_rasterising_uses_pixel_centres_inside_or_on_the_shape():
    square = [[9.5, 9.5], [12.5, 9.5], [12.5, 11.5], [9.5, 11.5]]
    assert np.argwhere(rasterize_polygon(square, (32, 32))).tolist() == [[y, x] for y in (10, 11) for x in (10, 11, 12)]
    assert rasterize_box([[2.5, 3], [4.4, 3], [4.4, 5], [2.5, 5]], (16, 16)).sum() == 2 * 3  # x 3..4, y 3..5
    assert rasterize_polygon([[0, 0], [4, 0], [4, 4], [0, 4]], (16, 16)).sum() == 25  # the boundary counts
    assert not rasterize_polygon([[200, 200], [210, 200], [205, 210]], (16, 16)).any()


def test_real_sample_invariants(sample_dir, tmp_path):
    """Real BraTS: box and centre cover all tumour pixels; no stored polygon IoU below 0.5 on any tumour slice."""
    from brats_llm.preprocess.volumes import PrepareParams, load_volumes, prepare

    prepare(sample_dir, tmp_path / "volumes", PrepareParams(), workers=1, progress=False)
    ious, multi = [], 0
    for row in load_volumes(tmp_path / "volumes"):
        for k in np.flatnonzero(row["mask"].any(axis=(1, 2))):
            geometry = check_invariants(row["mask"][k].astype(bool), 0.5)
            ious.append(geometry.polygon_iou)
            multi += geometry.components > 1
    assert len(ious) > 300 and min(ious) >= 0.5 and np.median(ious) > 0.85
    assert multi > 0.1 * len(ious)  # several components are common on real slices
