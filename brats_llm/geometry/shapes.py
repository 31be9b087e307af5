"""Tumour shapes on one slice in the project frame (x = column, y = row, pixel indices, origin top-left).

Coordinates are pixel indices: the centre of the top-left pixel is (0, 0), as in numpy and OpenCV.
Polygons are clockwise as seen on the displayed image (y pointing down), start at the north-most
point (smallest y, ties smallest x) and have 10-15 points, more for larger or more irregular tumours.
Several components: the largest one is described; ``components`` counts them all.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import shapely
from shapely.geometry import LinearRing, Polygon

MIN_POLYGON_POINTS, MAX_POLYGON_POINTS = 10, 15


@dataclass(frozen=True)
class SliceGeometry:
    """Shapes of the largest tumour component of one slice, and quality fields."""

    bbox: list[list[int]]  # [[x, y] TL, TR, BR, BL]
    center: list[float]  # [x, y], centre of the box
    polygon: list[list[float]]  # 10-15 [x, y], clockwise on screen, north-most first
    components: int
    area: int  # pixels of the kept component
    total_area: int  # pixels of all components
    polygon_iou: float  # polygon rasterised with cv2.fillPoly vs the kept component


def largest_component(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """The largest 8-connected component of a binary mask (ties: the first in scan order) and the count."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count <= 1:
        raise ValueError("mask has no tumour pixels")
    areas = stats[1:, cv2.CC_STAT_AREA]
    return labels == 1 + int(np.argmax(areas)), count - 1


def bounding_box(component: np.ndarray) -> list[list[int]]:
    """Corners TL, TR, BR, BL from xmin/xmax/ymin/ymax of the component's pixels."""
    ys, xs = np.nonzero(component)
    xmin, xmax, ymin, ymax = int(xs.min()), int(xs.max()), int(ys.min()), int(ys.max())
    return [[xmin, ymin], [xmax, ymin], [xmax, ymax], [xmin, ymax]]


def box_center(bbox: list[list[int]]) -> list[float]:
    """Centre of a TL, TR, BR, BL box."""
    (xmin, ymin), (xmax, ymax) = bbox[0], bbox[2]
    return [(xmin + xmax) / 2.0, (ymin + ymax) / 2.0]


def target_points(component: np.ndarray, contour: np.ndarray) -> int:
    """10 points for small, compact tumours, up to 15 for large or irregular ones.

    Size adds up to 3 points (area 0 -> 1,200+ pixels of the 128 x 128 slice), irregularity up to
    2 (solidity 0.9 -> 0.65; pixelated compact shapes sit above 0.9).
    """
    area = float(component.sum())
    hull_area = cv2.contourArea(cv2.convexHull(contour))
    solidity = min(1.0, cv2.contourArea(contour) / hull_area) if hull_area > 0 else 1.0
    extra = min(3.0, 3.0 * area / 1200.0) + 2.0 * float(np.clip((0.9 - solidity) / 0.25, 0.0, 1.0))
    return int(np.clip(MIN_POLYGON_POINTS + round(extra), MIN_POLYGON_POINTS, MAX_POLYGON_POINTS))


def _valid_polygon(points: np.ndarray) -> Polygon:
    """A valid polygon from a traced outline (one-pixel necks make raw contours self-touching)."""
    polygon = Polygon(points)
    if polygon.is_valid and polygon.area > 0:
        return polygon
    repaired = shapely.make_valid(polygon)
    parts = [g for g in getattr(repaired, "geoms", [repaired]) if isinstance(g, Polygon) and g.area > 0]
    return Polygon(max(parts, key=lambda g: g.area).exterior) if parts else polygon.convex_hull


def _drop_to(coords: list[tuple[float, float]], n: int) -> list[tuple[float, float]]:
    """Remove the vertex that changes the area least (keeping the ring simple) until ``n`` remain."""
    while len(coords) > n:
        best_index, best_change = None, None
        area = Polygon(coords).area
        for i in range(len(coords)):
            candidate = coords[:i] + coords[i + 1 :]
            polygon = Polygon(candidate)
            if not polygon.is_valid or polygon.area == 0:
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


def trace_polygon(component: np.ndarray) -> list[list[float]]:
    """Outline of a component as 10-15 points (cv2 contour, simplified with shapely)."""
    contours, _ = cv2.findContours(component.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    contour = max(contours, key=cv2.contourArea)
    n = target_points(component, contour)
    points = contour[:, 0, :].astype(float)
    if len(points) < 3 or Polygon(points).area == 0:  # a line or single pixel: use the pixel square
        ys, xs = np.nonzero(component)
        points = np.array([[xs.min() - 0.5, ys.min() - 0.5], [xs.max() + 0.5, ys.min() - 0.5],
                           [xs.max() + 0.5, ys.max() + 0.5], [xs.min() - 0.5, ys.max() + 0.5]])
    polygon = _valid_polygon(points)
    best = list(polygon.exterior.coords)[:-1]
    low, high = 0.0, float(max(component.shape))
    for _ in range(20):  # bisect the tolerance for the largest simplification keeping >= n vertices
        tolerance = (low + high) / 2
        simplified = shapely.simplify(polygon, tolerance, preserve_topology=True)
        coords = list(simplified.exterior.coords)[:-1] if isinstance(simplified, Polygon) else []
        if len(coords) >= n and Polygon(coords).is_valid:
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
    return [[round(float(x), 2), round(float(y), 2)] for x, y in coords]


def rasterize_polygon(polygon: list[list[float]], shape: tuple[int, int]) -> np.ndarray:
    """Pixels inside ``polygon`` (cv2.fillPoly on rounded vertices)."""
    canvas = np.zeros(shape, np.uint8)
    cv2.fillPoly(canvas, [np.round(np.asarray(polygon)).astype(np.int32)], 1)
    return canvas.astype(bool)


def rasterize_box(bbox: list[list[int]], shape: tuple[int, int]) -> np.ndarray:
    """Pixels inside a TL, TR, BR, BL box (inclusive)."""
    canvas = np.zeros(shape, bool)
    (xmin, ymin), (xmax, ymax) = bbox[0], bbox[2]
    canvas[int(ymin) : int(ymax) + 1, int(xmin) : int(xmax) + 1] = True
    return canvas


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def slice_geometry(mask: np.ndarray) -> SliceGeometry:
    """Box, centre, polygon and quality of the largest tumour component of a 2D mask.

    Raises:
        ValueError: the slice has no tumour pixels.
    """
    mask = np.asarray(mask).astype(bool)
    if mask.ndim != 2:
        raise ValueError(f"expected a 2D slice, got shape {mask.shape}")
    component, count = largest_component(mask)
    bbox = bounding_box(component)
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
