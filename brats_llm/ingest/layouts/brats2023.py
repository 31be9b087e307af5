"""BraTS 2023/2024 glioma: flat ``BraTS-GLI-NNNNN-NNN/BraTS-GLI-NNNNN-NNN-{t2f,t1n,t1c,t2w,seg}.nii.gz``, no grades."""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

from brats_llm.constants import MODALITIES
from brats_llm.ingest.cases import CaseError, Inventory, Release, nifti_files, nifti_stem
from brats_llm.ingest.folders import case_folders, collect, no_grade, suffixes

NAME = "brats2023"
#: File labels 1 NETC, 2 SNFH, 3 ET: already the ``REGION_LABELS`` numbering.
LABEL_MAP = MappingProxyType({0: 0, 1: 1, 2: 2, 3: 3})
#: Each modality's name in the files (``<case>-t2f.nii.gz`` is FLAIR).
MODALITY_NAMES = MappingProxyType({"flair": "t2f", "t1": "t1n", "t1ce": "t1c", "t2": "t2w"})
SUFFIXES = suffixes(MODALITY_NAMES, "-")


def detect(root: Path) -> bool:
    """A case folder holding a file named ``*-t2f``, ``*-t1n``, ``*-t1c`` or ``*-t2w``."""
    modality_suffixes = tuple(SUFFIXES[m] for m in MODALITIES)
    for folder in case_folders(root):
        try:
            stems = [nifti_stem(path).lower() for path in nifti_files(folder)]
        except CaseError:
            continue  # reported when the folder is inspected
        if any(stem.endswith(modality_suffixes) for stem in stems):
            return True
    return False


def discover(root: Path) -> Inventory:
    """The case folders of ``root``, without grades."""
    inventory = Inventory(root=root, layout=NAME)
    collect(inventory, case_folders(root), hidden_in=[root], names=SUFFIXES, grade_of=no_grade, label_map=LABEL_MAP)
    return inventory


RELEASE = Release(NAME, LABEL_MAP, graded=False, marker=False, detect=detect, discover=discover)
