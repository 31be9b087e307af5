"""Parse model answers back to values: tolerant of prose and code fences, strict about the values."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from shapely.geometry import Polygon

from brats_llm.constants import IMAGE_SIZE
from brats_llm.conversations.prompts import CLASS_ANSWERS, CLASS_NAMES
from brats_llm.geometry.shapes import MAX_POLYGON_POINTS, MIN_POLYGON_POINTS

OK, FORMAT_ERROR, INVALID_VALUE = "ok", "format_error", "invalid_value"


@dataclass(frozen=True)
class Parsed:
    """``status`` is ok, format_error (no usable answer) or invalid_value (parsed but out of range)."""

    status: str
    value: Any = None
    detail: str = ""


_DECODER = json.JSONDecoder()


def _json_object(text: str) -> dict | None:
    """The first JSON object in ``text`` (code fences and surrounding prose ignored)."""
    text = re.sub(r"```(?:json)?", "", text)
    start = text.find("{")
    while start != -1:
        try:
            obj, _ = _DECODER.raw_decode(text, start)
        except (json.JSONDecodeError, RecursionError, ValueError):
            obj = None
        if isinstance(obj, dict):
            return obj
        start = text.find("{", start + 1)
    return None


def _point(value: Any) -> tuple[float, float] | None:
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        x, y = float(value[0]), float(value[1])
        if math.isfinite(x) and math.isfinite(y):
            return x, y
    return None


def _inside(points: list[tuple[float, float]]) -> bool:
    return all(0 <= x <= IMAGE_SIZE - 1 and 0 <= y <= IMAGE_SIZE - 1 for x, y in points)


def _parse_cls(text: str, obj: dict | None) -> Parsed:
    label_text = obj.get("label") if obj else None
    candidates = [label_text] if isinstance(label_text, str) else []
    candidates.append(text)
    for candidate in candidates:
        upper = candidate.upper()
        found = {index for index, code in CLASS_ANSWERS.items() if code in upper}
        if not found:
            found = {index for index, name in CLASS_NAMES.items() if name.upper() in upper}
        if not found:
            found = {index for index, code in CLASS_ANSWERS.items() if re.search(rf"\b{code[:-2]}\b", upper)}
        if len(found) == 1:
            return Parsed(OK, found.pop())
        if len(found) > 1:
            return Parsed(FORMAT_ERROR, detail=f"several labels {sorted(found)}")
    return Parsed(FORMAT_ERROR, detail="no label")


def parse_answer(task: str, text: str) -> Parsed:
    """Parse an answer to ``task``; never raises for any string input.

    Values must lie inside the image; a box must have x_min <= x_max and y_min <= y_max; a polygon
    needs 10-15 vertices forming a valid (non-self-intersecting, non-zero-area) shape.
    """
    if not isinstance(text, str):
        return Parsed(FORMAT_ERROR, detail="not text")
    obj = _json_object(text)
    if task == "cls":
        return _parse_cls(text, obj)
    if obj is None or task not in obj:
        return Parsed(FORMAT_ERROR, detail=f"no JSON object with '{task}'")
    raw = obj[task]
    if task == "center":
        point = _point(raw)
        if point is None:
            return Parsed(FORMAT_ERROR, detail="center is not [x, y]")
        return Parsed(OK, point) if _inside([point]) else Parsed(INVALID_VALUE, point, "outside the image")
    if not isinstance(raw, list) or not raw:
        return Parsed(FORMAT_ERROR, detail=f"{task} is not a list of points")
    points = [_point(p) for p in raw]
    if any(p is None for p in points):
        return Parsed(FORMAT_ERROR, detail="a vertex is not [x, y]")
    if task == "bbox":
        if len(points) != 4:
            return Parsed(FORMAT_ERROR, detail=f"bbox needs 4 corners, got {len(points)}")
        (x0, y0), (x1, y1), (x2, y2), (x3, y3) = points
        if not _inside(points):
            return Parsed(INVALID_VALUE, points, "outside the image")
        if not (x0 == x3 and x1 == x2 and y0 == y1 and y2 == y3 and x0 <= x1 and y0 <= y2):
            return Parsed(INVALID_VALUE, points, "corners are not TL, TR, BR, BL of one box")
        return Parsed(OK, points)
    if task == "polygon":
        if not MIN_POLYGON_POINTS <= len(points) <= MAX_POLYGON_POINTS:
            return Parsed(INVALID_VALUE, points, f"{len(points)} vertices, need {MIN_POLYGON_POINTS}-{MAX_POLYGON_POINTS}")
        if not _inside(points):
            return Parsed(INVALID_VALUE, points, "outside the image")
        polygon = Polygon(points)
        if not polygon.is_valid or polygon.area == 0:
            return Parsed(INVALID_VALUE, points, "not a simple polygon")
        return Parsed(OK, points)
    return Parsed(FORMAT_ERROR, detail=f"unknown task {task!r}")
