"""The ``conversations`` stage: per-task TRL vision chats with train / validation / test splits."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from datasets import Features, Image, List, Value, load_from_disk
from tqdm.auto import tqdm

from brats_llm import atomic
from brats_llm.arrowio import dataset_writer
from brats_llm.constants import IMAGE_SIZE
from brats_llm.conversations.prompts import PROMPT_VERSION, PROMPTS, TASKS, answer_text
from brats_llm.slices.slices import load_slices
from brats_llm.split.splits import oversample_indices

SPLITS = ("train", "validation", "test")
GRADE_KEYWORDS = {
    0: ["homogeneous", "hyperintense", "infiltrative", "no-necrosis", "low-mass-effect"],
    1: ["heterogeneous", "necrotic-core", "perilesional-oedema", "mass-effect", "aggressive-appearance"],
}
NO_GLIOMA_KEYWORDS = ["no-lesion", "symmetric", "normal-signal", "no-oedema", "no-mass-effect", "no-necrosis",
                      "preserved-sulci", "normal-ventricles", "homogeneous", "no-enhancement"]


@dataclass(frozen=True)
class ConversationParams:
    """``conversations`` section of params.yaml.

    Attributes:
        fold: cross-validation fold whose validation patients form the validation split.
        oversample_lgg: repeat LGG conversations in train until the grades balance (paper: balanced).
        tumour_only: train/validation hold only slices with tumour (paper: fine-tuning on glioma slices);
            the classification test split keeps tumour-free slices of the window (answer NG-2).
        seed: shuffle seed of the train split.
    """

    fold: int = 0
    oversample_lgg: bool = True
    tumour_only: bool = True
    seed: int = 2020


def conversation_features() -> Features:
    part = {"type": Value("string"), "text": Value("string")}
    return Features({
        "images": List(Image()),
        "messages": List({"role": Value("string"), "content": List(part)}),
        "patient_id": Value("string"),
        "grade": Value("string"),
        "plane": Value("string"),
        "slice_index": Value("int32"),
        "target": Value("string"),  # the ground truth as JSON, for scoring without parsing the chat
    })


def keywords(label: int, mask: np.ndarray) -> list[str]:
    """Ten reason keywords from the ground truth: grade-typical signs plus measured size, side and shape."""
    if label == 2:
        return list(NO_GLIOMA_KEYWORDS)
    ys, xs = np.nonzero(mask)
    area = len(xs)
    size = "large" if area > 600 else ("medium" if area > 150 else "small")
    side = "right-hemisphere" if xs.mean() < IMAGE_SIZE / 2 else "left-hemisphere"  # radiological view
    front = "anterior" if ys.mean() < IMAGE_SIZE / 2 else "posterior"
    box_fill = area / ((np.ptp(xs) + 1) * (np.ptp(ys) + 1))
    margin = "well-defined-margin" if box_fill > 0.7 else "irregular-margin"
    components = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)[0] - 1
    focality = "solitary-lesion" if components == 1 else "multifocal"
    return [*GRADE_KEYWORDS[label][:3], size, side, front, margin, focality, *GRADE_KEYWORDS[label][3:]]


def conversation(task: str, image, answer: str) -> dict:
    """One TRL-native chat: user turn = image placeholder + instruction, assistant turn = answer."""
    return {
        "images": [image],
        "messages": [
            {"role": "user", "content": [{"type": "image", "text": None}, {"type": "text", "text": PROMPTS[task]}]},
            {"role": "assistant", "content": [{"type": "text", "text": answer}]},
        ],
    }


def to_unsloth(row: dict) -> dict:
    """Unsloth notebook format: the PIL image inside the user content, no top-level ``images``."""
    images = iter(row["images"])
    messages = []
    for message in row["messages"]:
        content = []
        for part in message["content"]:
            if part["type"] == "image":
                content.append({"type": "image", "image": next(images)})
            else:
                content.append({"type": "text", "text": part["text"]})
        messages.append({"role": message["role"], "content": content})
    return {"messages": messages}


def split_of(split: str, fold: int, row_fold: int) -> str:
    if split == "test":
        return "test"
    return "validation" if row_fold == fold else "train"


def _targets(task: str, row: dict) -> tuple[object, object]:
    if task == "center":
        return row["center"], row["center"]
    if task == "bbox":
        return row["bbox"], row["bbox"]
    return row["polygon"], row["polygon"]


def build_conversations(slices_dir: str | os.PathLike, geometry_dir: str | os.PathLike, out_dir: str | os.PathLike,
                        params: ConversationParams, *, progress: bool = True) -> dict[str, dict[str, int]]:
    """Write ``out_dir/<task>/<split>`` datasets (a ``DatasetDict`` per task) and ``out_dir/summary.json``.

    Classification uses every axial plane slice of the slices dataset (all planes it holds);
    centre, box and polygon use the geometry rows (axial slices with tumour).

    Returns:
        Rows per task and split.
    """
    # Images pass through as PNG bytes (no decode / re-encode); only cls masks are decoded.
    slices = load_slices(slices_dir).cast_column("image", Image(decode=False))
    geometry = load_from_disk(str(geometry_dir)).cast_column("image", Image(decode=False))
    counts: dict[str, dict[str, int]] = {}
    with atomic.atomic_dir(out_dir, kind="conversations") as staging:
        for task in TASKS:
            source = slices if task == "cls" else geometry
            columns = source.select_columns(["split", "fold", "label"] + (["has_tumour"] if task == "cls" else []))
            by_split: dict[str, list[int]] = {s: [] for s in SPLITS}
            for i, row in enumerate(columns):
                split = split_of(row["split"], params.fold, row["fold"])
                if task == "cls" and params.tumour_only and split != "test" and not row["has_tumour"]:
                    continue
                by_split[split].append(i)
            if params.oversample_lgg and by_split["train"]:
                labels = [columns[i]["label"] for i in by_split["train"]]
                order = oversample_indices(labels, params.seed)
                by_split["train"] = [by_split["train"][j] for j in order]
            counts[task] = {}
            for split, indices in by_split.items():
                if not indices:
                    continue
                with dataset_writer(staging / task / split, conversation_features(), f"{task} conversations ({split})",
                                    kind="conversation-split") as writer:
                    for index in tqdm(indices, desc=f"{task} {split}", unit="chat", disable=not progress, leave=False):
                        row = source[index]
                        if task == "cls":
                            mask = np.asarray(row["mask"])
                            label = row["label"] if row["has_tumour"] else 2
                            answer = answer_text("cls", (label, keywords(label, mask)))
                            target, plane = label, row["plane"]
                        else:
                            value, target = _targets(task, row)
                            answer, plane = answer_text(task, value), "axial"
                        writer.write({**conversation(task, row["image"], answer), "patient_id": row["patient_id"],
                                      "grade": row["grade"], "plane": plane, "slice_index": row["slice_index"],
                                      "target": json.dumps(target if task == "cls" else np.round(np.asarray(target, dtype=float), 2).tolist())})
                counts[task][split] = len(indices)
            atomic.write_json(staging / task / "dataset_dict.json", {"splits": [s for s in SPLITS if s in counts[task]]})
        atomic.write_json(staging / "summary.json", {"prompt_version": PROMPT_VERSION, "counts": counts,
                                                      "params": params.__dict__})
    return counts


def load_conversations(path: str | os.PathLike, task: str):
    """The ``DatasetDict`` (train / validation / test) of one task."""
    return load_from_disk(str(Path(path) / task))
