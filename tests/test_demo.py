"""The synthetic cohort: BraTS layout and geometry, determinism, and a visible grade signal."""

import csv
import hashlib

import nibabel as nib
import numpy as np
import pytest

from brats_llm.constants import BRATS_SHAPE, MODALITIES
from brats_llm.ingest.demo import DemoParams, assign_grades, generate_demo, synthesize_case
from brats_llm.ingest.layout import discover


def digest_tree(root):
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout_and_mapping(tiny_demo, tiny_params):
    inventory = discover(tiny_demo)
    assert inventory.layout == "brats2020" and not inventory.excluded
    assert [c.patient_id for c in inventory.cases] == [f"BraTS20_Training_{n:03d}" for n in range(1, 7)]
    with open(tiny_demo / "name_mapping.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["Grade"] for r in rows] == assign_grades(tiny_params)
    image = nib.load(inventory.cases[0].images[0])
    assert image.shape == tiny_params.shape and image.get_data_dtype() == np.int16
    assert nib.aff2axcodes(image.affine) == ("L", "P", "S")


def test_same_seed_same_bytes_any_workers(tmp_path, tiny_demo, tiny_params):
    again = tmp_path / "again"
    generate_demo(again, tiny_params, workers=2, progress=False)
    assert digest_tree(again) == digest_tree(tiny_demo)
    other = tmp_path / "other"
    generate_demo(other, DemoParams(patients=2, seed=8, lgg_fraction=0.5, shape=tiny_params.shape), workers=1, progress=False)
    assert digest_tree(other)["BraTS20_Training_001/BraTS20_Training_001_flair.nii.gz"] != \
        digest_tree(tiny_demo)["BraTS20_Training_001/BraTS20_Training_001_flair.nii.gz"]


def test_lgg_share():
    grades = assign_grades(DemoParams(patients=50, seed=3))
    assert grades.count("LGG") == 10 and len(grades) == 50


@pytest.fixture(scope="module")
def full_size_pair():
    """One HGG and one LGG phantom at the real geometry."""
    return {grade: synthesize_case(np.random.default_rng(seed), grade, BRATS_SHAPE)
            for grade, seed in (("HGG", 11), ("LGG", 12))}


def test_real_geometry_and_labels(full_size_pair):
    images, labels = full_size_pair["HGG"]
    assert labels.shape == BRATS_SHAPE and labels.dtype == np.uint8
    assert len(images) == len(MODALITIES) and all(i.shape == BRATS_SHAPE and i.dtype == np.int16 for i in images)
    assert set(np.unique(labels)) == {0, 1, 2, 4}
    assert set(np.unique(full_size_pair["LGG"][1])) == {0, 1, 2}  # LGG: no enhancing tumour
    brain = images[0] > 0
    assert all(((i > 0) == brain).all() for i in images)  # skull-stripped: background exactly 0


def test_grade_is_visible_like_in_reality(full_size_pair):
    flair, t1, t1ce, t2 = (i.astype(float) for i in full_size_pair["HGG"][0])
    labels = full_size_pair["HGG"][1]
    brain = flair > 0
    healthy = brain & (labels == 0)
    # HGG: ring enhancement on T1ce (label 4 brighter than brain), darker necrotic core.
    assert t1ce[labels == 4].mean() > 1.4 * t1ce[healthy].mean()
    assert t1ce[labels == 1].mean() < 0.6 * t1ce[labels == 4].mean()
    lgg_images, lgg_labels = full_size_pair["LGG"]
    lgg_flair, _, lgg_t1ce, lgg_t2 = (i.astype(float) for i in lgg_images)
    lgg_healthy = (lgg_flair > 0) & (lgg_labels == 0)
    tumour = lgg_labels > 0
    # LGG: bright on FLAIR/T2, not enhancing on T1ce; and smaller than the HGG.
    assert lgg_flair[tumour].mean() > 1.3 * lgg_flair[lgg_healthy].mean()
    assert lgg_t2[tumour].mean() > 1.2 * lgg_t2[lgg_healthy].mean()
    assert lgg_t1ce[tumour].mean() < lgg_t1ce[lgg_healthy].mean()
    assert tumour.sum() < (labels > 0).sum()


def test_tumours_are_not_centred():
    offsets = []
    for seed in range(6):
        _, labels = synthesize_case(np.random.default_rng(seed), "HGG", (96, 96, 64))
        centre = np.argwhere(labels > 0).mean(axis=0)
        offsets.append(np.linalg.norm(centre[:2] - np.array([48, 48])))
    assert min(offsets) > 5 and np.mean(offsets) > 8 and np.std(offsets) > 1  # voxels of a 96-wide grid
