"""One synthetic patient written in a release's layout, and test helpers shared by the ``test_layouts_*`` modules."""

from __future__ import annotations

import pathlib
from pathlib import Path

import numpy as np

from brats_llm.constants import MODALITIES
from brats_llm.ingest.demo import synthesize_case
from brats_llm.preprocess.volumes import PrepareParams
from tests.conftest import TINY_SHAPE, nifti_bytes

PARAMS = PrepareParams(slices=20, size=24)
#: BraTS 2017-2021 file label -> ``REGION_LABELS`` value (label 4 is stored as 3).
TO_REGIONS = {0: 0, 1: 1, 2: 2, 4: 3}


def patient(seed: int = 4) -> tuple[list[np.ndarray], np.ndarray]:
    """One synthetic HGG patient (LPS voxel order) with labels 1/2/4, as BraTS 2017-2021 ship them."""
    images, labels = synthesize_case(np.random.default_rng(seed), "HGG", TINY_SHAPE)
    assert set(np.unique(labels)) == {0, 1, 2, 4}
    return images, labels


def remap(labels: np.ndarray, table: dict[int, int]) -> np.ndarray:
    out = np.zeros_like(labels)
    for source, target in table.items():
        out[labels == source] = target
    return out


def write_flat(root: Path, case_id: str, images, labels, *, sep: str = "_", names=None, skip=()) -> Path:
    """A BraTS case folder: ``<case><sep><name>.nii.gz`` per modality and ``<case><sep>seg.nii.gz``."""
    folder = root / case_id
    folder.mkdir(parents=True, exist_ok=True)
    names = names or {m: m for m in MODALITIES}
    for modality, image in zip(MODALITIES, images):
        if modality not in skip:
            (folder / f"{case_id}{sep}{names[modality]}.nii.gz").write_bytes(nifti_bytes(image))
    if "seg" not in skip:
        (folder / f"{case_id}{sep}seg.nii.gz").write_bytes(nifti_bytes(labels))
    return folder


def reasons(inventory) -> dict[str, str]:
    return {e.id: e.reason for e in inventory.excluded}


def deny(monkeypatch, method, denied):
    """Make ``Path.<method>`` raise PermissionError for ``denied`` (tests run as root: chmod cannot)."""
    original = getattr(pathlib.Path, method)

    def guarded(self, *args, **kwargs):
        if self == denied:
            raise PermissionError(13, "Permission denied", str(self))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, method, guarded)
