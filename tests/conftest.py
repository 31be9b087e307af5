"""Shared fixtures: tiny synthetic cases and cohorts, and the real BraTS 2018 sample when present."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from isal import igzip

from brats_llm.constants import MODALITIES
from brats_llm.ingest.demo import DemoParams, brats_affine, generate_demo

SAMPLE_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "brats2018_sample"
TINY_SHAPE = (48, 48, 40)


def nifti_bytes(array: np.ndarray, affine: np.ndarray | None = None, *, gz: bool = True) -> bytes:
    raw = nib.Nifti1Image(array, brats_affine(array.shape) if affine is None else affine).to_bytes()
    return igzip.compress(raw, mtime=0) if gz else raw


def write_case(
    folder: Path,
    case_id: str,
    *,
    shape: tuple[int, int, int] = TINY_SHAPE,
    ext: str = ".nii.gz",
    mask_name: str | None = None,
    mask: np.ndarray | None = None,
    skip: tuple[str, ...] = (),
    seed: int = 0,
) -> Path:
    """Write one small case: brain-like images and a tumour mask with labels 1/2/4."""
    rng = np.random.default_rng(seed)
    case_dir = folder / case_id
    case_dir.mkdir(parents=True, exist_ok=True)
    brain = np.zeros(shape, dtype=bool)
    brain[8:-8, 8:-8, 4:-4] = True
    for index, modality in enumerate(MODALITIES):
        if modality in skip:
            continue
        image = np.where(brain, rng.integers(100, 400, size=shape) + 50 * index, 0).astype(np.int16)
        (case_dir / f"{case_id}_{modality}{ext}").write_bytes(nifti_bytes(image, gz=ext.endswith(".gz")))
    if mask is None:
        mask = np.zeros(shape, dtype=np.uint8)
        mask[20:30, 18:28, 15:25] = 2
        mask[22:28, 20:26, 17:23] = 4
        mask[24:26, 22:24, 19:21] = 1
    if "seg" not in skip:
        name = mask_name or f"{case_id}_seg{ext}"
        (case_dir / name).write_bytes(nifti_bytes(mask, gz=name.endswith(".gz")))
    return case_dir


@pytest.fixture
def case_factory():
    return write_case


@pytest.fixture(scope="session")
def tiny_params() -> DemoParams:
    return DemoParams(patients=6, seed=7, lgg_fraction=0.5, shape=TINY_SHAPE)


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory, tiny_params) -> Path:
    """A 6-patient synthetic cohort at a small shape (generated once per session)."""
    out = tmp_path_factory.mktemp("demo") / "raw"
    generate_demo(out, tiny_params, workers=1, progress=False)
    return out


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    if not SAMPLE_DIR.is_dir():
        pytest.skip(f"real BraTS sample not available at {SAMPLE_DIR}")
    return SAMPLE_DIR


@pytest.fixture(scope="session")
def built(tiny_demo, tmp_path_factory) -> Path:
    """The tiny cohort through prepare, split, slices, geometry and conversations (24 px slices)."""
    from brats_llm.conversations.build import ConversationParams, build_conversations
    from brats_llm.geometry.stage import GeometryParams, build_geometry
    from brats_llm.preprocess.volumes import PrepareParams, prepare
    from brats_llm.slices.slices import SlicesParams, build_slices
    from brats_llm.split.splits import SplitParams, split_volumes

    root = tmp_path_factory.mktemp("built")
    prepare(tiny_demo, root / "volumes", PrepareParams(slices=20, size=24), workers=1, progress=False)
    split_volumes(root / "volumes", root / "splits.csv", SplitParams(test_fraction=0.3, folds=2))
    build_slices(root / "volumes", root / "splits.csv", root / "slices", SlicesParams(planes=("axial",)), progress=False)
    build_geometry(root / "slices", root / "geometry", GeometryParams(), progress=False)
    build_conversations(root / "slices", root / "geometry", root / "conversations", ConversationParams(), progress=False)
    return root


@pytest.fixture(scope="session")
def published(built) -> Path:
    """``built`` published to a local folder; returns the revision file (data/hub_revision.json's role)."""
    from brats_llm.publish.hub import PublishParams, publish

    publish(built / "volumes", built / "slices", built / "geometry", built / "conversations", built / "hub",
            built / "revision.json", PublishParams(), {}, "md5-test", synthetic=True)
    return built / "revision.json"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """The embedded default model, built once per session."""
    from brats_llm.llm.tiny import TinyModelParams, build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-mllama", TinyModelParams())


@pytest.fixture(scope="session")
def prepared(tiny_demo, tmp_path_factory) -> Path:
    """The tiny demo cohort prepared (20 slices of 24x24) and split (2 folds); read-only for the tests."""
    from brats_llm.preprocess.volumes import PrepareParams, prepare
    from brats_llm.split.splits import SplitParams, split_volumes

    root = tmp_path_factory.mktemp("prepared")
    prepare(tiny_demo, root / "volumes", PrepareParams(slices=20, size=24), workers=1, progress=False)
    split_volumes(root / "volumes", root / "splits.csv", SplitParams(test_fraction=0.3, folds=2))
    return root
