"""Versioned prompt texts and answer formats of the four tasks (our own wording; the paper's were figures).

Every prompt names the plane and the size of the slice actually shown, states the coordinate frame and a
strict JSON answer format, so answers are machine-parsable (see :mod:`brats_llm.conversations.parse`).
:func:`prompt` builds the text for any plane and size (always the slice's own); ``PROMPTS`` holds the texts
for an axial slice of the paper's 128 x 128 size, as examples.
Bump ``PROMPT_VERSION`` on any change.
"""

from __future__ import annotations

import json

PROMPT_VERSION = "2026.11-2"  # -2: plane and slice size stated per slice
TASKS = ("cls", "center", "bbox", "polygon")
#: Classification answers: the paper's label names with their class index.
CLASS_ANSWERS = {0: "LGG-0", 1: "HGG-1", 2: "NG-2"}
CLASS_NAMES = {0: "Low Grade Glioma", 1: "High Grade Glioma", 2: "No Glioma"}

_ONLY = "Reply with exactly one JSON object and nothing else."


#: How a modality is named in the prompt.
MODALITY_NAMES = {"flair": "FLAIR", "t1": "T1-weighted", "t1ce": "contrast-enhanced T1-weighted", "t2": "T2-weighted"}


def _image(plane: str, height: int, width: int, modality: str) -> str:
    name = MODALITY_NAMES.get(modality, modality)
    return f"The image is one {plane} {name} MRI slice of a brain, {width} x {height} pixels (width x height)."


def frame_text(height: int, width: int) -> str:
    """The coordinate-frame sentence of a ``width`` x ``height`` image."""
    return (f"Coordinates are pixels: x is the column (0 at the left edge, {width - 1} at the right), "
            f"y is the row (0 at the top, {height - 1} at the bottom).")


def prompt(task: str, plane: str, height: int, width: int, modality: str = "flair") -> str:
    """The instruction of ``task`` for one ``modality`` slice of ``plane`` shown at ``width`` x ``height`` pixels
    (no default size: the caller passes the size of the image it shows)."""
    return instruction(task, _image(plane, height, width, modality), frame_text(height, width), "glioma", "gliomas",
                       tuple(CLASS_NAMES[c] for c in sorted(CLASS_NAMES)))


def instruction(task: str, image: str, frame: str, thing: str, things: str, names: tuple[str, str, str]) -> str:
    """The instruction template of ``task``: the ``image`` and coordinate ``frame`` sentences, the object named
    ``thing`` (plural ``things``) and the three class ``names`` of the answer codes LGG-0, HGG-1, NG-2.

    The glioma tasks fill it with their own words (:func:`prompt`); the general model's shape chats fill the
    same template with other words, so it learns the template and the formats, not the nouns.
    """
    if task == "cls":
        options = ", ".join(f"{names[c]} ({CLASS_ANSWERS[c]})" for c in (0, 1))
        return (f"{image} Classify the {thing} on it as {options} or {names[2]} ({CLASS_ANSWERS[2]}), and give a concise "
                f"reason of exactly 10 keywords about its visual characteristics. "
                f'{_ONLY} Format: {{"label": "LGG-0" | "HGG-1" | "NG-2", "reason": "keyword1, keyword2, ..., keyword10"}}')
    if task == "center":
        return (f"{image} {frame} Give the centre point of the bounding box of the {thing}. "
                f'{_ONLY} Format: {{"center": [x, y]}}')
    if task == "bbox":
        return (f"{image} {frame} Give the bounding box of the {thing} as its four corners: top-left, top-right, "
                f"bottom-right, bottom-left. "
                f'{_ONLY} Format: {{"bbox": [[x_min, y_min], [x_max, y_min], [x_max, y_max], [x_min, y_max]]}}')
    if task == "polygon":
        # After LLaFS (Zhu et al., CVPR 2024): the boundary as an ordered list of vertices.
        return (f"{image} {frame} Trace the boundary of the {thing} as a polygon of 10 to 15 vertices, clockwise as "
                f"seen on the image, starting at the top-most vertex; use more vertices for large or irregular {things}. "
                f'{_ONLY} Format: {{"polygon": [[x1, y1], [x2, y2], ...]}}')
    raise ValueError(f"unknown task {task!r}; tasks are {TASKS}")


#: Example prompts: an axial FLAIR slice at the paper's 128 x 128 (the pipeline states each slice's own size).
PROMPTS = {task: prompt(task, "axial", 128, 128) for task in TASKS}


def _number(value: float) -> float | int:
    value = round(float(value), 1)
    return int(value) if value.is_integer() else value


def answer_text(task: str, value) -> str:
    """The assistant turn for a ground-truth ``value`` (class index + reason, point, box or polygon)."""
    if task == "cls":
        label, reason = value
        return json.dumps({"label": CLASS_ANSWERS[label], "reason": ", ".join(reason)})
    if task == "center":
        return json.dumps({"center": [_number(v) for v in value]})
    if task in ("bbox", "polygon"):
        return json.dumps({task: [[_number(x), _number(y)] for x, y in value]})
    raise ValueError(f"unknown task {task!r}; tasks are {TASKS}")
