"""The ``conversations`` stage: per-task TRL vision chats with train / validation / test splits."""

from __future__ import annotations

import io
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
from brats_llm.conversations.prompts import PROMPT_VERSION, TASKS, answer_text, prompt
from brats_llm.errors import InputError
from brats_llm.slices.slices import PLANES, load_slices
from brats_llm.split.splits import oversample_indices

SPLITS = ("train", "validation", "test")
GRADE_KEYWORDS = {
    0: ["homogeneous", "hyperintense", "infiltrative", "no-necrosis", "low-mass-effect"],
    1: ["heterogeneous", "necrotic-core", "perilesional-oedema", "mass-effect", "aggressive-appearance"],
}
NO_GLIOMA_KEYWORDS = ["no-lesion", "symmetric", "normal-signal", "no-oedema", "no-mass-effect", "no-necrosis",
                      "preserved-sulci", "normal-ventricles", "homogeneous", "no-enhancement"]
#: Size keywords: tumour area above these shares of a width x width in-plane grid is "large" / "medium"
#: (600 and 150 pixels of the 128 x 128 slice), so the words do not change with ``prepare.size``.
LARGE_AREA_SHARE, MEDIUM_AREA_SHARE = 600 / 128**2, 150 / 128**2


@dataclass(frozen=True)
class ConversationParams:
    """``conversations`` section of params.yaml.

    Attributes:
        fold: cross-validation fold whose validation patients form the validation split.
        oversample_lgg: repeat LGG conversations in train until the grades balance (paper: balanced).
        tumour_only: train/validation hold only slices with tumour (paper: fine-tuning on glioma slices);
            the classification test split keeps tumour-free slices of the window (answer NG-2).
        seed: shuffle seed of the train split.
        finetune_planes: planes whose classification slices enter train/validation (the fine-tuning
            set). Slices of other planes in the slices dataset (``slices.planes``) go to the test split
            only, where they are scored for Table 2 (the paper fine-tuned on axial slices).
    """

    fold: int = 0
    oversample_lgg: bool = True
    tumour_only: bool = True
    seed: int = 2020
    finetune_planes: tuple[str, ...] = ("axial",)

    def __post_init__(self) -> None:
        object.__setattr__(self, "finetune_planes", tuple(self.finetune_planes))
        if self.fold < 0:
            raise InputError(f"conversations.fold must be >= 0, got {self.fold}")
        if self.seed < 0:
            raise InputError(f"conversations.seed must be >= 0, got {self.seed}")
        if not self.finetune_planes or set(self.finetune_planes) - set(PLANES):
            raise InputError(f"conversations.finetune_planes must be a non-empty subset of {tuple(PLANES)}, "
                             f"got {list(self.finetune_planes)}")


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


def keywords(label: int, mask: np.ndarray, plane: str = "axial") -> list[str]:
    """Ten reason keywords from the ground truth: grade-typical signs plus measured size, side and shape.

    Position words are measured on the slice as shown: left/right hemisphere (radiological view) on axial and
    coronal slices, anterior/posterior on axial and sagittal ones, superior/inferior on coronal ones. Size
    words compare the area with the in-plane grid (the width: coronal / sagittal slices are slices x width).
    """
    if label == 2:
        return list(NO_GLIOMA_KEYWORDS)
    if mask.ndim != 2:
        raise ValueError(f"keywords need a 2D mask, got shape {mask.shape}")
    ys, xs = np.nonzero(mask)
    height, width = mask.shape
    area, grid = len(xs), width * width
    size = "large" if area > LARGE_AREA_SHARE * grid else ("medium" if area > MEDIUM_AREA_SHARE * grid else "small")
    if plane == "sagittal":
        side = "anterior" if xs.mean() < width / 2 else "posterior"
        front = "superior" if ys.mean() < height / 2 else "inferior"
    else:
        side = "right-hemisphere" if xs.mean() < width / 2 else "left-hemisphere"  # radiological view
        if plane == "coronal":
            front = "superior" if ys.mean() < height / 2 else "inferior"
        else:
            front = "anterior" if ys.mean() < height / 2 else "posterior"
    box_fill = area / ((np.ptp(xs) + 1) * (np.ptp(ys) + 1))
    margin = "well-defined-margin" if box_fill > 0.7 else "irregular-margin"
    components = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)[0] - 1
    focality = "solitary-lesion" if components == 1 else "multifocal"
    return [*GRADE_KEYWORDS[label][:3], size, side, front, margin, focality, *GRADE_KEYWORDS[label][3:]]


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: Rows read from the slices / geometry dataset per batch (a few MB of PNG bytes).
READ_BATCH = 512


def image_size(image) -> tuple[int, int]:
    """(height, width) of a slice image: a PIL image, an array, or undecoded {"bytes": PNG} (header only)."""
    if isinstance(image, dict):
        data = image["bytes"]
        if data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR":  # width, height: big-endian after the chunk type
            return int.from_bytes(data[20:24], "big"), int.from_bytes(data[16:20], "big")
        from PIL import Image as PILImage

        width, height = PILImage.open(io.BytesIO(image["bytes"])).size
        return height, width
    if hasattr(image, "size") and not isinstance(image, np.ndarray):
        width, height = image.size
        return height, width
    return tuple(np.asarray(image).shape[:2])  # type: ignore[return-value]


def conversation(task: str, image, answer: str, *, plane: str = "axial", modality: str = "flair") -> dict:
    """One TRL-native chat: user turn = image placeholder + instruction, assistant turn = answer.

    The instruction names ``plane`` and the size of ``image`` (coronal / sagittal slices are size x slices,
    e.g. 128 x 95).
    """
    height, width = image_size(image)
    text = prompt(task, plane, height, width, modality)
    return {
        "images": [image],
        "messages": [
            {"role": "user", "content": [{"type": "image", "text": None}, {"type": "text", "text": text}]},
            {"role": "assistant", "content": [{"type": "text", "text": answer}]},
        ],
    }


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


def _decode_mask(image: dict) -> np.ndarray:
    """A stored mask PNG as an array (as ``datasets.Image`` decodes it: PIL, no mode conversion).

    8-bit greyscale PNGs (what the slices stage writes) are decoded by OpenCV, which gives the same
    array several times faster; other PNGs by PIL.
    """
    data = image["bytes"]
    if data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR" and data[24:26] == b"\x08\x00":  # bit depth 8, grey
        return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    from PIL import Image as PILImage

    with PILImage.open(io.BytesIO(data)) as decoded:
        return np.asarray(decoded)


def _read_rows(source, indices: list[int], columns: list[str]):
    """Rows ``indices`` of ``source`` (only ``columns``), read :data:`READ_BATCH` at a time, in order."""
    table = source.select_columns(columns)
    for start in range(0, len(indices), READ_BATCH):
        batch = table[indices[start:start + READ_BATCH]]
        yield from (dict(zip(batch, values)) for values in zip(*batch.values()))


def _chat_row(task: str, row: dict, plane_default: str = "axial") -> dict:
    """One conversation row, already in the Arrow-encoded form of :func:`conversation_features`
    (the image stays the stored PNG: {"bytes", "path"})."""
    if task == "cls":
        label = row["label"] if row["has_tumour"] else 2
        mask = _decode_mask(row["mask"]) if label != 2 else None  # tumour-free slices: fixed keywords
        answer = answer_text("cls", (label, keywords(label, mask, row["plane"])))
        target, plane = label, row["plane"]
    else:
        value, target = _targets(task, row)
        answer, plane = answer_text(task, value), plane_default
    image = {"bytes": row["image"]["bytes"], "path": row["image"]["path"]}
    chat = conversation(task, image, answer, plane=plane, modality=row.get("modality") or "flair")
    return {**chat, "patient_id": row["patient_id"], "grade": row["grade"], "plane": plane,
            "slice_index": row["slice_index"],
            "target": json.dumps(target if task == "cls" else np.round(np.asarray(target, dtype=float), 2).tolist())}


def build_conversations(slices_dir: str | os.PathLike, geometry_dir: str | os.PathLike, out_dir: str | os.PathLike,
                        params: ConversationParams, *, progress: bool = True) -> dict[str, dict[str, int]]:
    """Write ``out_dir/<task>/<split>`` datasets (a ``DatasetDict`` per task) and ``out_dir/summary.json``.

    Classification uses every slice of the slices dataset (all planes it holds); only planes in
    ``params.finetune_planes`` enter train / validation, the others are test rows (scored per plane).
    Centre, box and polygon use the geometry rows (axial slices with tumour). Prompts name each row's
    plane and image size.

    Returns:
        Rows per task and split.
    """
    # Images pass through as PNG bytes (no decode / re-encode); only cls masks with tumour are decoded.
    # Rows are read in batches and written already encoded (no per-row formatting or encoding).
    slices = load_slices(slices_dir).cast_column("image", Image(decode=False)).cast_column("mask", Image(decode=False))
    geometry = load_from_disk(str(geometry_dir)).cast_column("image", Image(decode=False))
    counts: dict[str, dict[str, int]] = {}
    with atomic.atomic_dir(out_dir, kind="conversations") as staging:
        for task in TASKS:
            source = slices if task == "cls" else geometry
            names = ["split", "fold", "label"] + (["has_tumour", "plane"] if task == "cls" else [])
            columns = source.select_columns(names)[:]
            columns = [dict(zip(names, values)) for values in zip(*(columns[n] for n in names))]
            by_split: dict[str, list[int]] = {s: [] for s in SPLITS}
            for i, row in enumerate(columns):
                split = split_of(row["split"], params.fold, row["fold"])
                if task == "cls" and split != "test" and row["plane"] not in params.finetune_planes:
                    continue  # other planes are scored (test) but not fine-tuned on
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
                    wanted = ["patient_id", "grade", "slice_index", "image"] + (
                        ["label", "has_tumour", "plane", "modality", "mask"] if task == "cls" else [task])
                    rows = _read_rows(source, indices, [c for c in wanted if c in source.column_names])
                    for row in tqdm(rows, total=len(indices), desc=f"{task} {split}", unit="chat", disable=not progress, leave=False):
                        writer.write(_chat_row(task, row), encoded=True)
                counts[task][split] = len(indices)
            atomic.write_json(staging / task / "dataset_dict.json", {"splits": [s for s in SPLITS if s in counts[task]]})
        atomic.write_json(staging / "summary.json", {"prompt_version": PROMPT_VERSION, "counts": counts,
                                                      "params": {**params.__dict__, "finetune_planes": list(params.finetune_planes)}})
    return counts


def load_conversations(path: str | os.PathLike, task: str):
    """The ``DatasetDict`` (train / validation / test) of one task."""
    return load_from_disk(str(Path(path) / task))
