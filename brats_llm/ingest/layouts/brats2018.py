"""BraTS 2018/2019: ``HGG/`` and ``LGG/`` folders of case folders ``<case>_{flair,t1,t1ce,t2,seg}.nii[.gz]``."""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

from brats_llm.constants import (
    GRADES,
    LABEL_BACKGROUND,
    LABEL_EDEMA,
    LABEL_ENHANCING,
    LABEL_NCR_NET,
    MODALITIES,
    REGION_BACKGROUND,
    REGION_EDEMA,
    REGION_ENHANCING,
    REGION_NCR_NET,
)
from brats_llm.ingest.cases import Inventory, Release, is_dir
from brats_llm.ingest.folders import case_folders, checked_grade, collect, suffixes

NAME = "brats2018"
#: BraTS 2017-2021 file labels (1 NCR/NET, 2 ED, 4 ET) -> ``REGION_LABELS`` (4 is stored as 3); 2020 and 2021 share it.
LABEL_MAP = MappingProxyType({LABEL_BACKGROUND: REGION_BACKGROUND, LABEL_NCR_NET: REGION_NCR_NET,
                              LABEL_EDEMA: REGION_EDEMA, LABEL_ENHANCING: REGION_ENHANCING})
#: ``<case>_flair.nii.gz`` ... ``<case>_seg.nii.gz`` (2020 and 2021 name their files the same way).
SUFFIXES = suffixes({m: m for m in MODALITIES}, "_")


def detect(root: Path) -> bool:
    """A grade folder (``LGG/`` or ``HGG/``) in the release folder."""
    return any(is_dir(root / grade) for grade in GRADES)


def grade_of(patient_id: str, folder: Path) -> str:
    """The grade is the name of the grade folder holding the case."""
    return checked_grade(folder.parent.name, folder)


def discover(root: Path) -> Inventory:
    """The cases in ``root``'s grade folders."""
    inventory = Inventory(root=root, layout=NAME)
    grade_folders = [root / grade for grade in GRADES if is_dir(root / grade)]
    folders = [folder for grade_folder in grade_folders for folder in case_folders(grade_folder)]
    collect(inventory, folders, hidden_in=grade_folders, names=SUFFIXES, grade_of=grade_of, label_map=LABEL_MAP)
    return inventory


RELEASE = Release(NAME, LABEL_MAP, graded=True, marker=True, detect=detect, discover=discover)
