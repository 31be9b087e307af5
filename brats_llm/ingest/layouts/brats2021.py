"""BraTS 2021: flat ``BraTS2021_NNNNN/BraTS2021_NNNNN_{flair,t1,t1ce,t2,seg}.nii.gz``, no grades."""

from __future__ import annotations

from pathlib import Path

from brats_llm.ingest.cases import Inventory, Release
from brats_llm.ingest.folders import case_folders, collect, no_grade
from brats_llm.ingest.layouts.brats2018 import LABEL_MAP, SUFFIXES

NAME = "brats2021"
#: BraTS 2021 case folders start with this (how a flat release without name_mapping.csv is recognised).
PREFIX = "BraTS2021_"


def detect(root: Path) -> bool:
    """A case folder named ``BraTS2021_*``."""
    return any(folder.name.startswith(PREFIX) for folder in case_folders(root))


def discover(root: Path) -> Inventory:
    """The case folders of ``root``, without grades."""
    inventory = Inventory(root=root, layout=NAME)
    collect(inventory, case_folders(root), hidden_in=[root], names=SUFFIXES, grade_of=no_grade, label_map=LABEL_MAP)
    return inventory


RELEASE = Release(NAME, LABEL_MAP, graded=False, marker=False, detect=detect, discover=discover)
