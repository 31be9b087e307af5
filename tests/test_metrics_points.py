"""Centre-point metrics against shapely distances and numpy percentiles."""

import numpy as np
import pytest
from shapely.geometry import Point, box as shapely_box

from brats_llm.metrics.points import distance_to_box, in_box, no_point_distance, point_metrics

BOX = [[10, 20], [30, 20], [30, 40], [10, 40]]


@pytest.mark.parametrize("point", [(0, 0), (10, 20), (20, 30), (35.5, 30), (20, 45), (50, 60), (30, 40.1)])
def test_box_distance_matches_shapely(point):
    reference = shapely_box(10, 20, 30, 40)
    assert distance_to_box(point, BOX) == pytest.approx(reference.distance(Point(point)), abs=1e-12)
    assert in_box(point, BOX) == reference.intersects(Point(point))


def test_point_metrics_match_numpy():
    rng = np.random.default_rng(0)
    points = [tuple(p) for p in rng.uniform(0, 127, size=(50, 2))]
    boxes = [BOX] * 50
    centers = [(20, 30)] * 50
    result = point_metrics(points, boxes, centers, (128, 128))
    reference = shapely_box(10, 20, 30, 40)
    to_box = [reference.distance(Point(p)) for p in points]
    to_center = [np.hypot(x - 20, y - 30) for x, y in points]
    assert result["in_box"] == pytest.approx(np.mean([reference.intersects(Point(p)) for p in points]))
    assert result["p95_box_distance"] == pytest.approx(np.percentile(to_box, 95))
    assert result["p95_center_distance"] == pytest.approx(np.percentile(to_center, 95))
    assert result["p95_center_distance_norm"] == pytest.approx(result["p95_center_distance"] / 128)


@pytest.mark.parametrize("shape", [(128, 128), (224, 224), (96, 96)])
def test_missing_points_count_as_worst_case(shape):
    """A missing point is charged the diagonal of its own slice; distances are normalised by that slice's size."""
    result = point_metrics([None, (20, 30)], [BOX, BOX], [(20, 30), (20, 30)], shape)
    assert result["in_box"] == 0.5
    assert no_point_distance(shape) == pytest.approx(np.sqrt(2) * shape[0])
    assert result["p95_center_distance"] == pytest.approx(np.percentile([np.sqrt(2) * shape[0], 0.0], 95))
    assert result["p95_center_distance_norm"] == pytest.approx(result["p95_center_distance"] / shape[0])
    with pytest.raises(ValueError, match="4 corners"):
        distance_to_box((0, 0), [[0, 0], [1, 1]])
