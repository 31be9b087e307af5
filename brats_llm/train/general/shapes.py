"""Generic visual instruction chats (bright shapes on textured backgrounds) in the four tasks' answer formats.

The embedded default's "general" model learns from these what the paper's general model brings: it follows
the instruction and answers in the JSON format of each task, and it can point at a bright object, but it has
never seen a brain or a glioma. The classification chats reuse the answer codes ``LGG-0`` / ``HGG-1`` /
``NG-2`` as arbitrary option names of a position question (left half / right half / no shape), so the
general model answers in the classification format with a label that carries no tumour knowledge.
The instructions are the glioma tasks' templates (:func:`brats_llm.conversations.prompts.instruction`) with the
picture, object and class names generic or random vocabulary words, so the template is learnt, not the nouns.
"""

from __future__ import annotations

import functools
import re

import cv2
import numpy as np
from PIL import Image as PILImage
from scipy import ndimage

from brats_llm.conversations.prompts import TASKS, answer_text, frame_text, instruction
from brats_llm.geometry.shapes import slice_geometry

#: Shape kinds drawn; the classification label does not depend on them.
KINDS = ("ellipse", "rectangle", "triangle", "blob")
#: How the pictures and the object are named in the instructions (varied so the format, not the noun, is learnt).
SCENES = ("a synthetic grayscale picture", "a grayscale image", "one greyscale picture", "a generated image")
OBJECTS = ("bright shape", "bright object", "bright region", "brightest blob", "marked object")
#: The classification question: the answer codes of the glioma task, named as the positions they stand for.
POSITION_NAMES = ("Left Half", "Right Half", "No Shape")


def _scene(rng: np.random.Generator, size: int) -> np.ndarray:
    """A textured background in [0, 0.55]: smooth noise, in half the scenes inside a large dim ellipse."""
    texture = ndimage.gaussian_filter(rng.standard_normal((size, size)), sigma=rng.uniform(2, 8))
    texture = (texture - texture.min()) / (np.ptp(texture) + 1e-9)
    canvas = 0.05 + 0.25 * texture
    if rng.random() < 0.5:
        frame = np.zeros((size, size), np.uint8)
        centre = (int(size / 2 + rng.normal(0, size / 20)), int(size / 2 + rng.normal(0, size / 20)))
        axes = (int(size * rng.uniform(0.3, 0.45)), int(size * rng.uniform(0.3, 0.45)))
        cv2.ellipse(frame, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
        canvas = np.where(frame > 0, canvas + rng.uniform(0.1, 0.25), 0.02 * texture)
    return canvas


def _shape(rng: np.random.Generator, size: int, kind: str) -> np.ndarray:
    """A filled shape of ``kind`` at a random place and size, as a boolean mask."""
    mask = np.zeros((size, size), np.uint8)
    radius = rng.uniform(3, size / 6)
    cx, cy = rng.uniform(radius + 2, size - radius - 2, size=2)
    if kind == "ellipse":
        axes = (max(1, int(radius)), max(1, int(radius * rng.uniform(0.5, 1.0))))
        cv2.ellipse(mask, (int(cx), int(cy)), axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    elif kind == "rectangle":
        w, h = radius * rng.uniform(0.6, 1.0), radius * rng.uniform(0.6, 1.0)
        mask[int(cy - h):int(cy + h) + 1, int(cx - w):int(cx + w) + 1] = 1
    else:  # triangle (3 corners) or irregular blob (7-11 corners at jittered radii)
        corners = 3 if kind == "triangle" else int(rng.integers(7, 12))
        angles = np.sort(rng.uniform(0, 2 * np.pi, corners)) if kind == "blob" else \
            rng.uniform(0, 2 * np.pi) + np.arange(3) * 2 * np.pi / 3
        radii = radius * (rng.uniform(0.6, 1.0, corners) if kind == "blob" else 1.0)
        points = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], axis=1)
        cv2.fillPoly(mask, [np.round(points).astype(np.int32)], 1)
    return mask.astype(bool)


def picture(rng: np.random.Generator, size: int, empty: bool) -> tuple[np.ndarray, np.ndarray, str]:
    """(uint8 image, boolean mask of the bright shapes, kind of the main shape); one shape, sometimes two."""
    canvas = _scene(rng, size)
    mask = np.zeros((size, size), bool)
    kind = "none"
    if not empty:
        kind = KINDS[int(rng.integers(len(KINDS)))]
        mask = _shape(rng, size, kind)
        if rng.random() < 0.2:
            mask |= _shape(rng, size, KINDS[int(rng.integers(len(KINDS)))])
        canvas = np.where(mask, rng.uniform(0.55, 1.0) + 0.05 * rng.standard_normal((size, size)), canvas)
    canvas = canvas + 0.02 * rng.standard_normal((size, size))
    return np.clip(canvas * 255, 0, 255).astype(np.uint8), mask, kind


def _keywords(mask: np.ndarray, kind: str) -> list[str]:
    """Ten plain visual keywords of the picture (shape, size, place, margin, count)."""
    if not mask.any():
        return ["no-shape", "textured", "background-only", "dim", "uniform", "no-edge", "empty", "smooth",
                "no-object", "plain"]
    ys, xs = np.nonzero(mask)
    size = "large" if len(xs) > 600 else ("medium" if len(xs) > 150 else "small")
    side = "left-half" if xs.mean() < mask.shape[1] / 2 else "right-half"
    height = "upper-half" if ys.mean() < mask.shape[0] / 2 else "lower-half"
    count = "single-object" if cv2.connectedComponents(mask.astype(np.uint8))[0] == 2 else "several-objects"
    fill = len(xs) / ((np.ptp(xs) + 1) * (np.ptp(ys) + 1))
    margin = "straight-edges" if fill > 0.85 else "curved-edges"
    return ["bright", kind, size, side, height, margin, count, "high-contrast", "textured-background", "solid"]


#: Share of chats whose picture, object and class options are named with random vocabulary words.
RANDOM_NAMES = 0.5
#: Words never drawn as random names: the general model is told nothing of brains or tumours.
FORBIDDEN = ("brain", "glioma", "mri", "tumour", "tumor", "lesion", "cancer", "grade", "flair", "mass")


@functools.lru_cache(maxsize=1)
def vocabulary() -> tuple[str, ...]:
    """Lower-case words of 4-10 letters that the real tokenizer holds as one token (sorted, so draws are stable)."""
    from brats_llm.llm.tiny import build_tokenizer

    words = (token[1:] for token in build_tokenizer().get_vocab() if token.startswith("\u0120"))
    return tuple(sorted(w for w in words if re.fullmatch("[a-z]{4,10}", w) and not any(f in w for f in FORBIDDEN)))


def _names(rng: np.random.Generator) -> tuple[str, str, str, tuple[str, str, str]]:
    """(picture, object, objects, class option names) of one chat: generic words, or random vocabulary words in
    ``RANDOM_NAMES`` of the chats, so the model learns the instruction template and formats, not the nouns."""
    if rng.random() >= RANDOM_NAMES:
        thing = OBJECTS[int(rng.integers(len(OBJECTS)))]
        return SCENES[int(rng.integers(len(SCENES)))], thing, thing + "s", POSITION_NAMES
    pool = vocabulary()

    def words(low: int, high: int) -> str:
        return " ".join(pool[i] for i in rng.integers(len(pool), size=int(rng.integers(low, high + 1))))

    thing = words(1, 1)
    names = tuple(words(1, 3).title() for _ in range(3))
    return f"one {words(2, 5)} of a {words(1, 1)}", thing, thing + "s", names


def _prompt(task: str, rng: np.random.Generator, size: int) -> str:
    scene, thing, things, names = _names(rng)
    image = f"The image is {scene}, {size} x {size} pixels (width x height)."
    return instruction(task, image, frame_text(size, size), thing, things, names)


def _answer(task: str, mask: np.ndarray, kind: str) -> str:
    if task == "cls":
        label = 2 if not mask.any() else int(np.nonzero(mask)[1].mean() >= mask.shape[1] / 2)
        return answer_text("cls", (label, _keywords(mask, kind)))
    geometry = slice_geometry(mask)
    return answer_text(task, {"center": geometry.center, "bbox": geometry.bbox, "polygon": geometry.polygon}[task])


def shape_chat(task: str, rng: np.random.Generator, size: int) -> dict:
    """One chat row (``images`` + ``messages`` + ``task`` + ``target``) of ``task`` on a new random picture.

    Only classification shows pictures without a shape (one in five), as the glioma tasks' geometry rows
    hold tumour slices only.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; tasks are {TASKS}")
    image, mask, kind = picture(rng, size, empty=task == "cls" and rng.random() < 0.2)
    while task != "cls" and mask.sum() < 4:  # a shape clipped to a few pixels: draw again
        image, mask, kind = picture(rng, size, empty=False)
    answer = _answer(task, mask, kind)
    text = _prompt(task, rng, size)
    return {"images": [PILImage.fromarray(image, mode="L")], "task": task, "target": answer,
            "messages": [{"role": "user", "content": [{"type": "image", "text": None}, {"type": "text", "text": text}]},
                         {"role": "assistant", "content": [{"type": "text", "text": answer}]}]}


def shape_chats(rows_per_task: int, size: int, seed: int) -> list[dict]:
    """``rows_per_task`` chats of every task, interleaved task by task; row ``i`` of task ``t`` uses stream (seed, t, i)."""
    rows = []
    for i in range(rows_per_task):
        for t, task in enumerate(TASKS):
            rows.append(shape_chat(task, np.random.default_rng([seed, t, i]), size))
    return rows


def describe(rows_per_task: int, size: int) -> str:
    """One line saying what the general model was trained on (model card, config, report)."""
    return (f"instruction-tuned on {rows_per_task * len(TASKS)} synthetic generic-shape chats ({rows_per_task} per task: "
            f"position label, centre, box, outline of bright shapes on textured {size} x {size} backgrounds); "
            f"never on brain images; the glioma tasks' instruction templates with generic or random words for "
            f"picture, object and class names (no brain or tumour words); classification codes LGG-0/HGG-1/NG-2 "
            f"stand for left/right/no shape")
