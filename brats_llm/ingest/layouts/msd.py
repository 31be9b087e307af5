"""MSD Task01_BrainTumour: ``dataset.json``, 4D ``imagesTr/BRATS_NNN.nii.gz``, ``labelsTr/BRATS_NNN.nii.gz``."""

from __future__ import annotations

import json
import os
import re
from collections import defaultdict
from pathlib import Path
from types import MappingProxyType

from brats_llm.constants import MODALITIES, NO_GRADE, PATIENT_ID_PATTERN, REGION_EDEMA, REGION_ENHANCING, REGION_NCR_NET
from brats_llm.errors import InputError
from brats_llm.ingest.cases import (
    CaseFiles,
    Exclusion,
    Inventory,
    Release,
    file_problem,
    is_dir,
    list_dir,
    nifti_stem,
    why,
)

NAME = "msd"
#: MSD's own numbering (1 oedema, 2 non-enhancing, 3 enhancing); each case's map is read from ``dataset.json``.
LABEL_MAP = MappingProxyType({0: 0, 1: REGION_EDEMA, 2: REGION_NCR_NET, 3: REGION_ENHANCING})
#: The description file and the training folders.
MSD_JSON, MSD_IMAGES, MSD_LABELS = "dataset.json", "imagesTr", "labelsTr"
#: Channel names of an MSD / nnU-Net dataset.json (lower case) -> our modality.
MSD_CHANNEL_NAMES = {"flair": "flair", "t2f": "flair", "t1w": "t1", "t1": "t1", "t1n": "t1", "t1gd": "t1ce",
                     "t1ce": "t1ce", "t1c": "t1ce", "t2w": "t2", "t2": "t2"}
#: Label names of an MSD dataset.json (lower case, normalised) -> ``REGION_LABELS`` value.
MSD_LABEL_NAMES = {"background": 0, "edema": REGION_EDEMA, "oedema": REGION_EDEMA,
                   "non-enhancing tumor": REGION_NCR_NET, "non-enhancing tumour": REGION_NCR_NET,
                   "enhancing tumor": REGION_ENHANCING, "enhancing tumour": REGION_ENHANCING}


def detect(root: Path) -> bool:
    """A ``dataset.json`` or an ``imagesTr/`` folder in the release folder."""
    return os.path.lexists(root / MSD_JSON) or is_dir(root / MSD_IMAGES)


def _label_name(name: object) -> str:
    return " ".join(str(name).strip().lower().replace("_", " ").replace("non enhancing", "non-enhancing").split())


def _description(path: Path) -> dict:
    """The parsed ``dataset.json``; InputError when unreadable or not a JSON object."""
    problem = file_problem(path)
    if problem:
        raise InputError(f"{path}: cannot read {MSD_JSON}: {problem}")
    try:
        description = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise InputError(f"{path}: cannot read {MSD_JSON} ({why(error)})") from error
    except (UnicodeDecodeError, ValueError) as error:
        raise InputError(f"{path}: {MSD_JSON} is not valid JSON ({error})") from error
    if not isinstance(description, dict):
        raise InputError(f"{path}: {MSD_JSON} is not a JSON object")
    return description


def _channels(path: Path, description: dict) -> tuple[int, ...]:
    """The 4D volume index of each modality in ``MODALITIES`` order."""
    channels = description.get("modality", description.get("channel_names"))
    if not isinstance(channels, dict):
        raise InputError(f"{path}: no 'modality' (or 'channel_names') object naming the 4 channels")
    by_modality: dict[str, int] = {}
    for key, name in channels.items():
        modality = MSD_CHANNEL_NAMES.get(str(name).strip().lower())
        if modality is None or not str(key).isdigit() or modality in by_modality:
            raise InputError(f"{path}: unexpected channel {key!r}: {name!r}; expected the 4 channels FLAIR, T1w, "
                             f"t1gd, T2w once each")
        by_modality[modality] = int(key)
    if set(by_modality) != set(MODALITIES):
        raise InputError(f"{path}: channels {dict(channels)} do not name FLAIR, T1w, t1gd and T2w")
    return tuple(by_modality[m] for m in MODALITIES)


def _label_map(path: Path, description: dict) -> dict[int, int]:
    """File label -> ``REGION_LABELS`` value, from the label names."""
    labels = description.get("labels")
    if not isinstance(labels, dict):
        raise InputError(f"{path}: no 'labels' object")
    label_map: dict[int, int] = {}
    for key, value in labels.items():
        number, name = (key, value) if isinstance(value, str) else (value, key)  # MSD {"1": "edema"}, nnU-Net {"edema": 1}
        target = MSD_LABEL_NAMES.get(_label_name(name))
        if target is None or not str(number).isdigit() or int(number) in label_map:
            raise InputError(f"{path}: unexpected label {key!r}: {value!r}; expected background, edema, "
                             f"non-enhancing tumor and enhancing tumour")
        label_map[int(number)] = target
    if sorted(label_map.values()) != [0, 1, 2, 3]:
        raise InputError(f"{path}: labels {dict(labels)} do not name background, edema, non-enhancing tumor and "
                         f"enhancing tumour once each")
    return label_map


def read_msd_description(path: Path) -> tuple[tuple[int, ...], dict[int, int]]:
    """Channels and labels of an MSD Task01 ``dataset.json``.

    Returns:
        The 4D volume index of each modality in ``MODALITIES`` order, and file label -> ``REGION_LABELS``
        value (MSD's own: 1 oedema -> 2, 2 non-enhancing tumour -> 1, 3 enhancing tumour -> 3).

    Raises:
        InputError: unreadable or not JSON, or channels / labels that are not exactly FLAIR, T1, T1-Gd, T2
            and background, oedema, non-enhancing tumour, enhancing tumour.
    """
    description = _description(path)
    return _channels(path, description), _label_map(path, description)


def _msd_files(folder: Path) -> dict[str, list[Path]]:
    """NIfTI files of an MSD folder by name stem (hidden files such as macOS ``._BRATS_001.nii.gz`` skipped)."""
    if not is_dir(folder):
        raise InputError(f"{folder}: MSD folder missing")
    files: dict[str, list[Path]] = defaultdict(list)
    for path in list_dir(folder):
        stem = nifti_stem(path)
        if stem is not None and not path.name.startswith("."):
            files[stem].append(path)
    return files


def _problem(root: Path, patient_id: str, images: list[Path], labels: list[Path]) -> tuple[Path, str] | None:
    """The (path, reason) that excludes a patient, or None when it has one image and one label file."""
    if not images:
        return labels[0], f"image missing (no {MSD_IMAGES}/{patient_id}.nii.gz)"
    if len(images) > 1:
        return root / MSD_IMAGES, f"image ambiguous ({', '.join(p.name for p in images)})"
    if not labels:
        return images[0], f"segmentation mask missing (no {MSD_LABELS}/{patient_id}.nii.gz)"
    if len(labels) > 1:
        return root / MSD_LABELS, f"segmentation mask ambiguous ({', '.join(p.name for p in labels)})"
    if not re.match(PATIENT_ID_PATTERN, patient_id):
        return images[0], "patient id is not a safe file name"
    return next(((p, reason) for p in (images[0], labels[0]) if (reason := file_problem(p))), None)


def discover(root: Path) -> Inventory:
    """One 4D image and one label file per case, no grades."""
    inventory = Inventory(root=root, layout=NAME)
    if not os.path.lexists(root / MSD_JSON):
        raise InputError(f"{root / MSD_JSON}: missing; an MSD release names its channels and labels there")
    channels, label_map = read_msd_description(root / MSD_JSON)
    labels_of_case = tuple(sorted(label_map.items()))
    images, labels = _msd_files(root / MSD_IMAGES), _msd_files(root / MSD_LABELS)
    for patient_id in sorted(set(images) | set(labels)):
        found_images, found_labels = images.get(patient_id, []), labels.get(patient_id, [])
        problem = _problem(root, patient_id, found_images, found_labels)
        if problem:
            inventory.excluded.append(Exclusion(patient_id, str(problem[0]), problem[1]))
            continue
        inventory.cases.append(CaseFiles(patient_id, NO_GRADE, root / MSD_IMAGES, (found_images[0],) * len(MODALITIES),
                                         found_labels[0], NAME, channels, labels_of_case))
    return inventory


RELEASE = Release(NAME, LABEL_MAP, graded=False, marker=True, detect=detect, discover=discover)
