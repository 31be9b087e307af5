"""Centre-point metrics of the paper: point in the true box, distance to the box, distance to the true centre."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def no_point_distance(shape: tuple[int, int]) -> float:
    """Distance charged to an answer with no usable point: the diagonal of the (rows, cols) image, in pixels
    (181.02 on a 128 x 128 slice)."""
    return float(np.hypot(shape[0], shape[1]))


def _box_limits(box: Sequence[Sequence[float]]) -> tuple[float, float, float, float]:
    corners = np.asarray(box, dtype=float)
    if corners.shape != (4, 2):
        raise ValueError(f"a box is 4 corners (x, y), got shape {corners.shape}")
    return corners[:, 0].min(), corners[:, 1].min(), corners[:, 0].max(), corners[:, 1].max()


def in_box(point: Sequence[float], box: Sequence[Sequence[float]]) -> bool:
    """True when ``point`` lies inside or on the edge of the axis-aligned ``box``."""
    x0, y0, x1, y1 = _box_limits(box)
    x, y = point
    return bool(x0 <= x <= x1 and y0 <= y <= y1)


def distance_to_box(point: Sequence[float], box: Sequence[Sequence[float]]) -> float:
    """Shortest Euclidean distance from ``point`` to the filled ``box`` (0 inside)."""
    x0, y0, x1, y1 = _box_limits(box)
    x, y = point
    return float(np.hypot(max(x0 - x, 0.0, x - x1), max(y0 - y, 0.0, y - y1)))


def point_metrics(points: Sequence[Sequence[float] | None], boxes: Sequence[Sequence[Sequence[float]]],
                  centers: Sequence[Sequence[float]], shape: tuple[int, int]) -> dict[str, float]:
    """The paper's centre-point metrics over one patient's (or any group of) slices of one ``shape``.

    ``shape`` is (rows, cols) of the slices the points are on. A missing point (``None``: unparsable
    answer) is outside the box at :func:`no_point_distance` (the slice diagonal).

    Returns:
        ``in_box`` (fraction of points inside the true box), ``p95_box_distance`` and
        ``p95_center_distance`` in pixels of the slice, and both divided by the image size (its longer
        side; the paper's 128) (``*_norm``).
    """
    if not (len(points) == len(boxes) == len(centers)) or not points:
        raise ValueError("points, boxes and centers need the same, non-zero length")
    missing, size = no_point_distance(shape), float(max(shape))
    inside = [p is not None and in_box(p, b) for p, b in zip(points, boxes)]
    to_box = [missing if p is None else distance_to_box(p, b) for p, b in zip(points, boxes)]
    to_center = [missing if p is None else float(np.hypot(p[0] - c[0], p[1] - c[1]))
                 for p, c in zip(points, centers)]
    box_p95, center_p95 = float(np.percentile(to_box, 95)), float(np.percentile(to_center, 95))
    return {"in_box": float(np.mean(inside)), "p95_box_distance": box_p95, "p95_center_distance": center_p95,
            "p95_box_distance_norm": box_p95 / size, "p95_center_distance_norm": center_p95 / size}
