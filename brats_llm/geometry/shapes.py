"""Tumour shapes on one slice in the project frame (x = column, y = row, pixel indices, origin top-left).

Coordinates are pixel indices: the centre of the top-left pixel is (0, 0), as in numpy and OpenCV.
Pixels are unit squares around those centres, and every shape is rasterised by one rule: a pixel belongs
to a box or polygon when its centre lies inside or on the boundary (no rounding of vertices, so no
dependence on whether a coordinate is even or odd).

As the paper: the bounding box is xmin..xmax, ymin..ymax of all tumour pixels of the slice and the centre
is that box's centre. The polygon traces the outer pixel edge of the largest 8-connected component
(holes filled; a 10-15 point polygon cannot follow several components); ``components`` counts them all and
``polygon_iou`` is measured against that component. Polygons are clockwise as seen on the displayed image
(y pointing down), start at the north-most point (smallest y, ties smallest x) and have 10-15 points,
more for larger or more irregular tumours.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import shapely
from shapely.geometry import LinearRing, Polygon, box as shapely_box

#: Tolerance (pixels) of "on the boundary" when rasterising: absorbs float rounding of stored vertices.
EDGE_EPS = 1e-6
#: Decimals of stored polygon vertices: those of the answer text, so the stored polygon is what a perfect
#: answer says (and stays a simple polygon after that rounding).
DECIMALS = 1

MIN_POLYGON_POINTS, MAX_POLYGON_POINTS = 10, 15
#: Tumour area (share of the slice) that earns the full 3 extra polygon points: 1,200 pixels of a 128 x 128
#: slice, so the point count does not change with ``prepare.size``.
LARGE_AREA_SHARE = 1200 / 128**2


@dataclass(frozen=True)
class SliceGeometry:
    """Box and centre of all tumour pixels of one slice, polygon of its largest component, quality fields."""

    bbox: list[list[int]]  # [[x, y] TL, TR, BR, BL] of all tumour pixels
    center: list[float]  # [x, y], centre of the box
    polygon: list[list[float]]  # 10-15 [x, y] around the largest component, clockwise on screen, north-most first
    components: int
    area: int  # pixels of the largest component (the one the polygon traces)
    total_area: int  # pixels of all components
    polygon_iou: float  # polygon rasterised (pixel centres inside or on it) vs the largest component


def largest_component(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """The largest 8-connected component of a binary mask (ties: the first in scan order) and the count."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count <= 1:
        raise ValueError("mask has no tumour pixels")
    areas = stats[1:, cv2.CC_STAT_AREA]
    return labels == 1 + int(np.argmax(areas)), count - 1


def bounding_box(mask: np.ndarray) -> list[list[int]]:
    """Corners TL, TR, BR, BL from xmin/xmax/ymin/ymax of the mask's pixels (all components)."""
    ys, xs = np.nonzero(mask)
    xmin, xmax, ymin, ymax = int(xs.min()), int(xs.max()), int(ys.min()), int(ys.max())
    return [[xmin, ymin], [xmax, ymin], [xmax, ymax], [xmin, ymax]]


def box_center(bbox: list[list[int]]) -> list[float]:
    """Centre of a TL, TR, BR, BL box."""
    (xmin, ymin), (xmax, ymax) = bbox[0], bbox[2]
    return [(xmin + xmax) / 2.0, (ymin + ymax) / 2.0]


def target_points(component: np.ndarray, contour: np.ndarray) -> int:
    """10 points for small, compact tumours, up to 15 for large or irregular ones.

    Size adds up to 3 points (area 0 -> :data:`LARGE_AREA_SHARE` of the slice, 1,200+ pixels of a 128 x 128
    one), irregularity up to 2 (solidity 0.9 -> 0.65; pixelated compact shapes sit above 0.9).
    """
    share = float(component.sum()) / component.size  # of the slice: the same tumour at any prepare.size
    hull_area = cv2.contourArea(cv2.convexHull(contour))
    solidity = min(1.0, cv2.contourArea(contour) / hull_area) if hull_area > 0 else 1.0
    extra = min(3.0, 3.0 * share / LARGE_AREA_SHARE) + 2.0 * float(np.clip((0.9 - solidity) / 0.25, 0.0, 1.0))
    return int(np.clip(MIN_POLYGON_POINTS + round(extra), MIN_POLYGON_POINTS, MAX_POLYGON_POINTS))


def _valid_polygon(points: np.ndarray) -> Polygon:
    """A valid polygon from a traced outline (one-pixel necks make raw contours self-touching)."""
    polygon = Polygon(points)
    if polygon.is_valid and polygon.area > 0:
        return polygon
    repaired = shapely.make_valid(polygon)
    parts = [g for g in getattr(repaired, "geoms", [repaired]) if isinstance(g, Polygon) and g.area > 0]
    return Polygon(max(parts, key=lambda g: g.area).exterior) if parts else polygon.convex_hull


def _simple_rounded(coords) -> bool:
    """The ring is still a simple polygon once its vertices are rounded to :data:`DECIMALS`."""
    polygon = Polygon(np.round(np.asarray(coords, dtype=float), DECIMALS))
    return polygon.is_valid and polygon.area > 0


def _drop_to(coords: list[tuple[float, float]], n: int) -> list[tuple[float, float]]:
    """Remove the vertex that changes the area least (keeping the ring simple) until ``n`` remain."""
    while len(coords) > n:
        best_index, best_change = None, None
        area = Polygon(coords).area
        for i in range(len(coords)):
            candidate = coords[:i] + coords[i + 1 :]
            polygon = Polygon(candidate)
            if not polygon.is_valid or polygon.area == 0 or not _simple_rounded(candidate):
                continue
            change = abs(polygon.area - area)
            if best_change is None or change < best_change:
                best_index, best_change = i, change
        if best_index is None:
            break
        coords = coords[:best_index] + coords[best_index + 1 :]
    return coords


def _densify_to(coords: list[tuple[float, float]], n: int) -> list[tuple[float, float]]:
    """Insert midpoints on the longest edge until ``n`` vertices (never creates crossings)."""
    coords = list(coords)
    while len(coords) < n:
        lengths = [np.hypot(coords[(i + 1) % len(coords)][0] - x, coords[(i + 1) % len(coords)][1] - y)
                   for i, (x, y) in enumerate(coords)]
        i = int(np.argmax(lengths))
        (x0, y0), (x1, y1) = coords[i], coords[(i + 1) % len(coords)]
        coords.insert(i + 1, ((x0 + x1) / 2, (y0 + y1) / 2))
    return coords


def pixel_outline(component: np.ndarray) -> Polygon:
    """The outer edge of a component's pixel squares (holes filled), clipped to the grid's centre range.

    Every pixel centre of the component lies inside, at least half a pixel from the edge, and every
    other pixel centre outside, so simplifying by less than half a pixel changes no rasterised pixel.
    Diagonal (8-connected) contacts are bridged (the outline grows by a quarter pixel) so it is one polygon.
    """
    ys, xs = np.nonzero(component)
    if xs.size == 0:
        raise ValueError("mask has no tumour pixels")
    order = np.lexsort((xs, ys))
    xs, ys = xs[order], ys[order]
    breaks = np.flatnonzero((np.diff(ys) != 0) | (np.diff(xs) != 1)) + 1  # horizontal runs
    starts, ends = np.r_[0, breaks], np.r_[breaks, xs.size] - 1
    runs = shapely.box(xs[starts] - 0.5, ys[starts] - 0.5, xs[ends] + 0.5, ys[ends] + 0.5)
    outline = shapely.union_all(runs)
    if not isinstance(outline, Polygon):  # bridge diagonal contacts; centres stay >= 0.25 px from the edge
        outline = outline.buffer(0.25, join_style="mitre")
    height, width = component.shape
    outline = outline.intersection(shapely_box(0, 0, width - 1, height - 1))  # answers stay inside the image
    parts = [g for g in getattr(outline, "geoms", [outline]) if isinstance(g, Polygon) and g.area > 0]
    if not parts:  # a one-pixel line along the image border: keep its (degenerate) rectangle
        return Polygon(shapely_box(xs.min() - 0.5, ys.min() - 0.5, xs.max() + 0.5, ys.max() + 0.5).exterior)
    return Polygon(max(parts, key=lambda g: g.area).exterior)


def trace_polygon(component: np.ndarray) -> list[list[float]]:
    """Outline of a component as 10-15 points: its pixel-edge outline, simplified with shapely."""
    contours, _ = cv2.findContours(component.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    contour = max(contours, key=cv2.contourArea)
    n = target_points(component, contour)
    polygon = _valid_polygon(np.asarray(pixel_outline(component).exterior.coords)[:-1])
    best = list(polygon.exterior.coords)[:-1]
    low, high = 0.0, float(max(component.shape))
    for _ in range(20):  # bisect the tolerance for the largest simplification keeping >= n vertices
        tolerance = (low + high) / 2
        simplified = shapely.simplify(polygon, tolerance, preserve_topology=True)
        coords = list(simplified.exterior.coords)[:-1] if isinstance(simplified, Polygon) else []
        if len(coords) >= n and Polygon(coords).is_valid and _simple_rounded(coords):
            best, low = coords, tolerance
        else:
            high = tolerance
    best = _drop_to(best, n) if len(best) > n else _densify_to(best, n)
    return orient_clockwise_north_first(best)


def orient_clockwise_north_first(points: list[tuple[float, float]] | list[list[float]]) -> list[list[float]]:
    """Clockwise on screen (y down) = counter-clockwise in raw (x, y); rotate to the north-most point."""
    ring = LinearRing(points)
    coords = list(ring.coords)[:-1]
    if not ring.is_ccw:
        coords = coords[::-1]
    start = min(range(len(coords)), key=lambda i: (coords[i][1], coords[i][0]))
    coords = coords[start:] + coords[:start]
    return [[round(float(x), DECIMALS), round(float(y), DECIMALS)] for x, y in coords]


def _grid(xmin: float, ymin: float, xmax: float, ymax: float, shape: tuple[int, int]):
    """Index ranges of the pixel centres inside [xmin, xmax] x [ymin, ymax] (closed), clipped to the grid."""
    height, width = shape
    x0, y0 = max(0, math.ceil(xmin - EDGE_EPS)), max(0, math.ceil(ymin - EDGE_EPS))
    x1, y1 = min(width - 1, math.floor(xmax + EDGE_EPS)), min(height - 1, math.floor(ymax + EDGE_EPS))
    return x0, y0, x1, y1


def rasterize_polygon(polygon: list[list[float]], shape: tuple[int, int]) -> np.ndarray:
    """Pixels whose centre lies inside ``polygon`` (even-odd rule) or on its boundary; vertices are not rounded.

    The ground-truth polygon of a one-pixel tumour rasterises to that pixel wherever it is.
    """
    canvas = np.zeros(shape, bool)
    points = np.asarray(polygon, dtype=float).reshape(-1, 2)
    if not len(points) or not np.isfinite(points).all():
        return canvas
    x0, y0, x1, y1 = _grid(*points.min(axis=0), *points.max(axis=0), shape)
    if x0 > x1 or y0 > y1:
        return canvas
    ys, xs = np.mgrid[y0 : y1 + 1, x0 : x1 + 1].astype(float)
    inside = np.zeros(xs.shape, bool)
    on_edge = np.zeros(xs.shape, bool)
    for (ax, ay), (bx, by) in zip(points, np.roll(points, -1, axis=0)):
        dx, dy = bx - ax, by - ay
        if dy != 0:
            crosses = (ay > ys) != (by > ys)
            inside ^= crosses & (xs < ax + (ys - ay) * dx / dy)
        length2 = dx * dx + dy * dy
        t = np.clip(((xs - ax) * dx + (ys - ay) * dy) / length2, 0.0, 1.0) if length2 else 0.0
        on_edge |= (xs - ax - t * dx) ** 2 + (ys - ay - t * dy) ** 2 <= EDGE_EPS**2
    canvas[y0 : y1 + 1, x0 : x1 + 1] = inside | on_edge
    return canvas


def rasterize_box(bbox: list[list[float]], shape: tuple[int, int]) -> np.ndarray:
    """Pixels whose centre lies inside or on the axis-aligned box spanned by the corners (inclusive)."""
    canvas = np.zeros(shape, bool)
    corners = np.asarray(bbox, dtype=float).reshape(-1, 2)
    if not len(corners) or not np.isfinite(corners).all():
        return canvas
    x0, y0, x1, y1 = _grid(*corners.min(axis=0), *corners.max(axis=0), shape)
    if x0 <= x1 and y0 <= y1:
        canvas[y0 : y1 + 1, x0 : x1 + 1] = True
    return canvas


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def slice_geometry(mask: np.ndarray) -> SliceGeometry:
    """Box and centre of all tumour pixels, polygon of the largest component, and quality fields of a 2D mask.

    Raises:
        ValueError: the slice has no tumour pixels.
    """
    mask = np.asarray(mask).astype(bool)
    if mask.ndim != 2:
        raise ValueError(f"expected a 2D slice, got shape {mask.shape}")
    component, count = largest_component(mask)
    bbox = bounding_box(mask)
    polygon = trace_polygon(component)
    return SliceGeometry(
        bbox=bbox,
        center=box_center(bbox),
        polygon=polygon,
        components=count,
        area=int(component.sum()),
        total_area=int(mask.sum()),
        polygon_iou=iou(rasterize_polygon(polygon, mask.shape), component),
    )
