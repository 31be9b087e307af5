"""Every release (one module of brats_llm.ingest.layouts each) gives the same ``regions`` contract through prepare."""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np

from brats_llm.constants import NO_GRADE, NO_LABEL, REGION_LABELS, REGIONS
from brats_llm.ingest.layout import discover
from brats_llm.ingest.layouts import RELEASES, brats2018, brats2020, brats2023, msd
from brats_llm.ingest.nifti import load_case
from brats_llm.preprocess.volumes import PrepareParams, load_volumes, prepare
from tests.release_cases import PARAMS, TO_REGIONS, patient, remap

#: Each release's test module writes one patient in its layout (a release without one fails here).
WRITERS = {release.name: importlib.import_module(f"tests.test_layouts_{release.name}").write for release in RELEASES}


def prepared(tmp_path: Path, layout: str, images, labels):
    raw = WRITERS[layout](tmp_path / layout / "raw", images, labels)
    result = prepare(raw, tmp_path / layout / "volumes", PARAMS, workers=1, progress=False)
    return result, load_volumes(tmp_path / layout / "volumes")


def test_same_patient_gives_identical_arrays_in_every_layout(tmp_path):
    images, labels = patient()
    rows = {}
    for layout in WRITERS:
        result, volumes = prepared(tmp_path, layout, images, labels)
        assert result.layout == layout and not result.excluded and len(volumes) == 1
        rows[layout] = volumes[0]
    reference = rows[brats2020.NAME]
    assert reference["grade"] == "HGG" and reference["label"] == 1
    assert rows[brats2018.NAME]["grade"] == "HGG"
    for layout, row in rows.items():
        for column in ("image", "mask", "regions"):
            assert row[column].dtype == np.uint8
            assert row[column].tobytes() == reference[column].tobytes(), (layout, column)
        for column in ("spacing_mm", "crop_start", "crop_stop", "original_shape", "tumour_fraction_in_window"):
            assert np.array_equal(row[column], reference[column]), (layout, column)
    assert set(np.unique(reference["regions"])) == set(REGION_LABELS)
    assert np.array_equal(reference["mask"], (reference["regions"] > 0).astype(np.uint8))
    for release in RELEASES:  # no invented grade
        if not release.graded:
            assert rows[release.name]["grade"] == NO_GRADE and rows[release.name]["label"] == NO_LABEL
    assert rows[msd.NAME]["source"] == "imagesTr/BRATS_001.nii.gz"
    assert rows[brats2023.NAME]["source"] == "BraTS-GLI-00001-000"


def test_regions_match_the_raw_labels_voxel_for_voxel(tmp_path):
    images, labels = patient()
    for layout in WRITERS:
        raw = WRITERS[layout](tmp_path / layout, images, labels)
        loaded = load_case(discover(raw).cases[0])
        expected = remap(labels, TO_REGIONS)  # the REGION_LABELS convention
        assert np.array_equal(loaded.regions, expected), layout
        for name, members in REGIONS.items():  # WT / TC / ET as sets of region labels
            assert np.array_equal(np.isin(loaded.regions, members),
                                  np.isin(labels, {"wt": (1, 2, 4), "tc": (1, 4), "et": (4,)}[name])), name


def test_real_sample_keeps_regions(sample_dir, tmp_path):
    """The real BraTS 2018 sample: label 4 is stored as 3, regions within 0-3, mask == regions > 0."""
    inventory = discover(sample_dir)
    assert inventory.layout == brats2018.NAME and inventory.cases
    loaded = load_case(inventory.cases[0])
    assert np.array_equal(loaded.regions == 3, loaded.mask == 4)
    assert np.array_equal(loaded.regions > 0, loaded.mask > 0)
    result = prepare(sample_dir, tmp_path / "volumes", PrepareParams(), workers=1, progress=False)
    volumes = load_volumes(tmp_path / "volumes")
    assert len(volumes) == len(result.included) == len(inventory.cases)
    seen = set()
    for row in volumes:
        values = set(np.unique(row["regions"]).tolist())
        assert values <= {0, 1, 2, 3}
        seen |= values
        assert np.array_equal(row["mask"], (row["regions"] > 0).astype(np.uint8))
        assert row["grade"] in ("LGG", "HGG")
    assert 3 in seen
