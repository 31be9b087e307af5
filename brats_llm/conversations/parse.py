"""Parse model answers back to values: tolerant of prose and code fences, strict about the values."""

from __future__ import annotations

import json
import math
import re
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from shapely.geometry import Polygon

from brats_llm.conversations.prompts import CLASS_ANSWERS, CLASS_NAMES
from brats_llm.geometry.shapes import MAX_POLYGON_POINTS, MIN_POLYGON_POINTS

OK, FORMAT_ERROR, INVALID_VALUE = "ok", "format_error", "invalid_value"


@dataclass(frozen=True)
class Parsed:
    """``status`` is ok, format_error (no usable answer) or invalid_value (parsed but out of range)."""

    status: str
    value: Any = None
    detail: str = ""


def _parse_int(digits: str) -> int | float:
    """JSON integers: exact up to 18 digits, longer ones as floats (huge ones become inf and are rejected).

    Avoids Python's int-from-string digit limit (a ValueError past 4300 digits) and its superlinear cost.
    """
    return int(digits) if len(digits) <= 18 else float(digits)


_DECODER = json.JSONDecoder(parse_int=_parse_int)

MAX_NESTING = 64
"""Only the innermost ``MAX_NESTING`` open objects are candidates (answers nest 3 levels deep)."""
MAX_CANDIDATES = 1000
"""At most this many balanced ``{...}`` candidates are decoded per answer; later ones are not tried."""
RESCAN_CHARS = 16384
"""Rescans (after a stray quote inside a stray ``{``) stop once this many characters beyond one pass were scanned."""

# Text between brackets, in one C-level match: anything but brackets and quotes, or a whole JSON string
# (an unterminated one runs to the end of the text). Atomic groups: a match never backtracks.
_NEUTRAL = re.compile(r'(?>[^{}\[\]"]+|"(?>[^"\\]+|\\.)*+(?:"|\\?\Z))+', re.S)
_FENCE = re.compile(r"```(?:json)?")


def _regions(text: str) -> Iterator[tuple[int, int]]:
    """Balanced ``{...}`` spans of ``text`` in a linear scan; JSON strings are respected, prose quotes are not.

    Outside objects only ``{`` matters; inside, a depth counter over ``{[`` / ``]}`` skips JSON strings.
    Every object that closes is a candidate (inner ones too, so an answer inside an unbalanced outer
    ``{`` is still found); candidates of one top-level region come out in order of their start. A region
    that never closes, or whose candidates all failed, is rescanned from its first ``{`` inside a string
    (a stray prose ``"`` can shift string boundaries), within a total budget of scanned characters.
    """
    n, neutral, find = len(text), _NEUTRAL.match, text.find
    budget = n + RESCAN_CHARS
    scanned, pos = 0, 0
    while scanned <= budget:
        start = find("{", pos)
        if start < 0:
            return
        stack: deque[tuple[int, int]] = deque(maxlen=MAX_NESTING)  # (position, depth) of open "{"
        closed: list[tuple[int, int]] = []
        depth, i, in_string_brace = 0, start, -1
        stop = min(n, start + budget - scanned)  # the first pass always reaches the end
        while i < stop:
            ch = text[i]
            if ch == "{":
                depth += 1
                stack.append((i, depth))
            elif ch == "[":
                depth += 1
            elif ch == "}" or ch == "]":
                if stack and stack[-1][1] == depth:
                    closed.append((stack.pop()[0], i + 1))
                depth -= 1
                if depth == 0:
                    i += 1
                    break
            else:
                end = neutral(text, i).end()
                if in_string_brace < 0:  # a "{" in a neutral span is inside a string
                    in_string_brace = find("{", i, end)
                i = end
                continue
            i += 1
        scanned += i - start
        closed.sort()
        yield from closed
        pos = in_string_brace if in_string_brace > start else i
        if pos >= n or i >= stop < n:  # nothing left, or the budget ran out mid-region
            return


def _json_object(text: str) -> dict | None:
    """The first JSON object in ``text`` (code fences and surrounding prose ignored).

    Linear in ``len(text)``: candidates come from one bracket scan (:func:`_regions`) and only they are
    decoded, each as its own substring, at most :data:`MAX_CANDIDATES` of them and in total at most
    ``2 * len(text)`` characters.
    """
    text = _FENCE.sub("", text)
    tried: set[int] = set()
    decoded = 0
    for start, end in _regions(text):
        if start in tried:
            continue
        tried.add(start)
        decoded += end - start
        if len(tried) > MAX_CANDIDATES or decoded > 2 * len(text) + 4096:
            return None
        try:
            obj = _DECODER.decode(text[start:end])
        except (ValueError, RecursionError, OverflowError, MemoryError):  # JSONDecodeError is a ValueError
            continue
        if isinstance(obj, dict):
            return obj
    return None


def _point(value: Any) -> tuple[float, float] | None:
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        try:
            x, y = float(value[0]), float(value[1])
        except OverflowError:  # an int too large for a float
            return None
        if math.isfinite(x) and math.isfinite(y):
            return x, y
    return None


def _inside(points: list[tuple[float, float]], shape: tuple[int, int]) -> bool:
    """Every point lies on the ``shape`` (rows, cols) grid: 0 <= x <= cols - 1, 0 <= y <= rows - 1."""
    height, width = shape
    return all(0 <= x <= width - 1 and 0 <= y <= height - 1 for x, y in points)


def _image_shape(shape: tuple[int, int] | None, task: str) -> tuple[int, int]:
    """``shape`` as (rows, cols) of positive ints; an error when a coordinate task has none (no default size)."""
    if shape is None:
        raise ValueError(f"parse_answer({task!r}, ...) needs the image shape (height, width) the answer is about: "
                         "coordinates are checked against the slice's own size")
    if len(shape) != 2 or min(int(v) for v in shape) < 1:
        raise ValueError(f"image shape must be (height, width), both >= 1, got {tuple(shape)}")
    return int(shape[0]), int(shape[1])


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


def parse_answer(task: str, text: str, shape: tuple[int, int] | None = None) -> Parsed:
    """Parse an answer to ``task``; never raises for any string input, and takes time linear in its length.

    ``shape`` is (height, width) in pixels of the image the answer is about (the slice shown): required
    for center, bbox and polygon (a ValueError without it; there is no default size), unused for cls.

    The answer is the first balanced ``{...}`` that decodes to a JSON object (see :func:`_json_object`
    for the limits that keep adversarial text linear: at most :data:`MAX_CANDIDATES` candidates, only
    the innermost :data:`MAX_NESTING` open objects). Numbers that do not fit a finite float (``1e400``,
    a 400-digit integer, ``NaN``, ``Infinity``) are not coordinates: a format_error.
    Values must lie inside the image (0 <= x <= width - 1, 0 <= y <= height - 1); a box must have
    x_min <= x_max and y_min <= y_max; a polygon needs 10-15 vertices forming a valid
    (non-self-intersecting, non-zero-area) shape.
    """
    if task in ("center", "bbox", "polygon"):
        shape = _image_shape(shape, task)
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
        return Parsed(OK, point) if _inside([point], shape) else Parsed(INVALID_VALUE, point, "outside the image")
    if not isinstance(raw, list) or not raw:
        return Parsed(FORMAT_ERROR, detail=f"{task} is not a list of points")
    points = [_point(p) for p in raw]
    if any(p is None for p in points):
        return Parsed(FORMAT_ERROR, detail="a vertex is not [x, y]")
    if task == "bbox":
        if len(points) != 4:
            return Parsed(FORMAT_ERROR, detail=f"bbox needs 4 corners, got {len(points)}")
        (x0, y0), (x1, y1), (x2, y2), (x3, y3) = points
        if not _inside(points, shape):
            return Parsed(INVALID_VALUE, points, "outside the image")
        if not (x0 == x3 and x1 == x2 and y0 == y1 and y2 == y3 and x0 <= x1 and y0 <= y2):
            return Parsed(INVALID_VALUE, points, "corners are not TL, TR, BR, BL of one box")
        return Parsed(OK, points)
    if task == "polygon":
        if not MIN_POLYGON_POINTS <= len(points) <= MAX_POLYGON_POINTS:
            return Parsed(INVALID_VALUE, points, f"{len(points)} vertices, need {MIN_POLYGON_POINTS}-{MAX_POLYGON_POINTS}")
        if not _inside(points, shape):
            return Parsed(INVALID_VALUE, points, "outside the image")
        polygon = Polygon(points)
        if not polygon.is_valid or polygon.area == 0:
            return Parsed(INVALID_VALUE, points, "not a simple polygon")
        return Parsed(OK, points)
    return Parsed(FORMAT_ERROR, detail=f"unknown task {task!r}")
