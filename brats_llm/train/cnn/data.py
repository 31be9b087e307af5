"""Volumes for CNN training: the rows of a split, held in memory as uint8, optionally downsampled."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F
from tqdm.auto import tqdm

from brats_llm.constants import GRADES, NO_GRADE
from brats_llm.errors import InputError
from brats_llm.metrics.segmentation import REGION_NAMES, region_masks
from brats_llm.split.splits import fold_members, read_splits
from brats_llm.train.cnn.source import VolumeSource, open_volumes


@dataclass
class VolumeTensors:
    """Stacked uint8 images (N, C, D, H, W), masks, labels, ids and voxel spacing.

    ``masks`` is (N, D, H, W) for the whole-tumour target (``wt``) and (N, 3, D, H, W) for ``regions``
    (channels WT, TC, ET of :data:`~brats_llm.metrics.segmentation.REGION_NAMES`).
    """

    patient_ids: list[str]
    images: torch.Tensor
    masks: torch.Tensor
    labels: torch.Tensor
    spacing_mm: np.ndarray  # (N, 3) of the stored (full-resolution) grid

    def __len__(self) -> int:
        return len(self.patient_ids)

    @property
    def in_shape(self) -> tuple[int, int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def downsampled(self, factor: int) -> VolumeTensors:
        """The same patients pooled by ``factor`` (as :func:`load_split` with that factor would load them)."""
        pooled = [downsample(image, mask, factor) for image, mask in zip(self.images, self.masks)]
        return VolumeTensors(self.patient_ids, torch.stack([p[0] for p in pooled]), torch.stack([p[1] for p in pooled]),
                             self.labels, self.spacing_mm)

    def batch(self, index: np.ndarray | list[int], device: torch.device,
              transform: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None,
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Float images in [0, 1], masks and labels of rows ``index`` on ``device``.

        ``transform`` (e.g. augmentation) sees the uint8 images and masks, before the float copy.
        """
        index = torch.as_tensor(np.asarray(index), dtype=torch.long)
        images, masks = self.images[index], self.masks[index]
        if transform is not None:
            images, masks = transform(images, masks)
        images = images.to(device, non_blocking=True).float().div_(255.0)
        return images, masks.to(device), self.labels[index].to(device).float()


def downsample(image: np.ndarray, mask: np.ndarray, factor: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Average-pool a (C, D, H, W) uint8 image and its mask by ``factor`` (mask: share >= 0.5).

    The mask is (D, H, W) or (regions, D, H, W), pooled per region (nested regions stay nested).
    """
    image_t = torch.from_numpy(np.ascontiguousarray(image))
    mask_t = torch.from_numpy(np.ascontiguousarray(mask))
    if factor == 1:
        return image_t, mask_t
    pooled = F.avg_pool3d(image_t[None].float(), factor)[0]
    stacked = mask_t[None, None] if mask_t.ndim == 3 else mask_t[None]
    pooled_mask = F.avg_pool3d(stacked.float(), factor)[0] >= 0.5
    pooled_mask = pooled_mask[0] if mask_t.ndim == 3 else pooled_mask
    return pooled.round().to(torch.uint8), pooled_mask.to(torch.uint8)


#: Segmentation targets (``train_seg.target``): the paper's whole tumour, or the three BraTS regions.
TARGETS = ("wt", "regions")


def load_split(volumes: VolumeSource | str | os.PathLike, patient_ids: list[str], factor: int = 1,
               progress: bool = True, target: str = "wt") -> VolumeTensors:
    """Load the rows of ``patient_ids`` (in that order) into memory.

    ``volumes`` is an open :class:`~brats_llm.train.cnn.source.VolumeSource` or its path (a revision
    file or a volumes dataset folder). ``target`` ``regions`` stacks WT, TC, ET masks from the
    dataset's ``regions`` column (constants.REGIONS).

    Raises:
        InputError: a patient of the split is missing from the volumes dataset, or ``regions`` is asked
            of a dataset without that column.
    """
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    source = open_volumes(volumes)
    if target == "regions" and "regions" not in source.column_names:
        raise InputError(f"{source.path} ({source.folder}): the volumes dataset has no 'regions' column (target "
                         "'regions' needs a dataset built by a prepare that stores them; rerun prepare and publish)")
    loaded = {}
    rows = source.rows(patient_ids)
    for pid, row in tqdm(rows, total=len(patient_ids), desc="load volumes", unit="patient", disable=not progress,
                         leave=False):
        truth = row["mask"] if target == "wt" else region_masks(row["regions"], REGION_NAMES).view(np.uint8)
        loaded[pid] = (*downsample(row["image"], truth, factor), int(row["label"]), row["spacing_mm"])
    images, masks, labels, spacing = zip(*(loaded[pid] for pid in patient_ids)) if patient_ids else ([], [], [], [])
    return VolumeTensors(
        patient_ids=list(patient_ids),
        images=torch.stack(images) if images else torch.empty(0, dtype=torch.uint8),
        masks=torch.stack(masks) if masks else torch.empty(0, dtype=torch.uint8),
        labels=torch.tensor(labels, dtype=torch.long),
        spacing_mm=np.asarray(spacing, dtype=float).reshape(-1, 3),
    )


def require_grades(volumes: VolumeSource | str | os.PathLike) -> None:
    """Refuse a cohort without LGG/HGG grades for the classifier (BraTS 2021, 2023+ and MSD have none).

    Raises:
        InputError: some patients have no grade (``NO_GRADE``) or an unknown one.
    """
    source = open_volumes(volumes)
    grades = source.column("grade") if "grade" in source.column_names else []
    ungraded = sum(g == NO_GRADE for g in grades)
    if not grades or ungraded:
        raise InputError(f"{source.path}: {ungraded or 'all'} of {len(grades)} patients have no LGG/HGG grade (this "
                         "release publishes none, and none is invented): the classifier cannot be trained on it; "
                         "segmentation, geometry and the LLM segmentation tasks can (dvc repro train_cnn@seg ...)")
    missing = sorted({str(g) for g in grades if g not in GRADES})
    if missing:
        raise InputError(f"{source.path}: grades {missing} are not LGG/HGG; this release cannot train the classifier")


def fold_patients(splits_file: str | os.PathLike, fold: int) -> dict[str, list[str]]:
    """``train`` / ``validation`` / ``test`` patient ids of ``fold`` from the split file."""
    return fold_members(read_splits(splits_file), fold)
