"""Release layouts (BraTS 2018/2020/2021/2023, MSD Task01) and the ``regions`` contract of prepare."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from brats_llm.constants import (
    LABEL_MAP_MSD,
    MODALITIES,
    NO_GRADE,
    NO_LABEL,
    REGION_LABELS,
    REGIONS,
)
from brats_llm.errors import InputError
from brats_llm.ingest.demo import synthesize_case
from brats_llm.ingest.layout import (
    LAYOUT_2018,
    LAYOUT_2020,
    LAYOUT_2021,
    LAYOUT_2023,
    LAYOUT_MSD,
    discover,
    read_msd_description,
)
from brats_llm.ingest.nifti import load_case
from brats_llm.preprocess.volumes import (
    PrepareParams,
    load_volumes,
    prepare,
    ungraded_patients,
)
from tests.conftest import TINY_SHAPE, nifti_bytes

PARAMS = PrepareParams(slices=20, size=24)
#: The real MSD Task01_BrainTumour dataset.json (without its file lists).
MSD_DESCRIPTION = {
    "name": "BRATS",
    "description": "Gliomas segmentation tumour and oedema in on brain images",
    "tensorImageSize": "4D",
    "modality": {"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"},
    "labels": {"0": "background", "1": "edema", "2": "non-enhancing tumor", "3": "enhancing tumour"},
    "numTraining": 484,
    "numTest": 266,
}
SUFFIX_2023 = {"flair": "t2f", "t1": "t1n", "t1ce": "t1c", "t2": "t2w"}
#: BraTS 2017-2021 label -> MSD label (2017: 1 NCR/NET, 2 ED, 4 ET; MSD: 1 ED, 2 NET, 3 ET).
TO_MSD = {0: 0, 1: 2, 2: 1, 4: 3}


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


def write_2020(root: Path, images, labels, case_id: str = "BraTS20_Training_001") -> Path:
    write_flat(root, case_id, images, labels)
    (root / "name_mapping.csv").write_text(f"Grade,BraTS_2020_subject_ID\nHGG,{case_id}\n")
    return root


def write_2018(root: Path, images, labels, case_id: str = "Brats18_TCIA01_1_1") -> Path:
    write_flat(root / "HGG", case_id, images, labels)
    return root


def write_2021(root: Path, images, labels, case_id: str = "BraTS2021_00001", **kwargs) -> Path:
    write_flat(root, case_id, images, labels, **kwargs)
    return root


def write_2023(root: Path, images, labels, case_id: str = "BraTS-GLI-00001-000", *, convert: bool = True,
               **kwargs) -> Path:
    """BraTS 2023 names; ``convert`` turns the 2017 label 4 into 3 as the 2023 release did."""
    seg = remap(labels, {0: 0, 1: 1, 2: 2, 4: 3}) if convert else labels
    write_flat(root, case_id, images, seg, sep="-", names=SUFFIX_2023, **kwargs)
    return root


def write_msd(root: Path, images, labels, case_id: str = "BRATS_001", *, description=None,
              convert: bool = True) -> Path:
    """MSD Task01: the 4 modalities stacked (FLAIR, T1w, t1gd, T2w) into one 4D file, labels renumbered;
    stored in RAS voxel order (x and y flipped) with a RAS affine, so loading must reorient to LPS."""
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "dataset.json").write_text(json.dumps(description or MSD_DESCRIPTION))
    affine = np.eye(4)
    affine[0, 3] = -(TINY_SHAPE[0] - 1)  # the same world coordinates as brats_affine
    stacked = np.stack([image[::-1, ::-1] for image in images], axis=-1)
    (root / "imagesTr" / f"{case_id}.nii.gz").write_bytes(nifti_bytes(np.ascontiguousarray(stacked), affine))
    seg = remap(labels, TO_MSD) if convert else labels
    (root / "labelsTr" / f"{case_id}.nii.gz").write_bytes(nifti_bytes(np.ascontiguousarray(seg[::-1, ::-1]), affine))
    (root / "imagesTr" / f"._{case_id}.nii.gz").write_bytes(b"\x00\x05\x16\x07 AppleDouble junk")
    return root


WRITERS = {LAYOUT_2018: write_2018, LAYOUT_2020: write_2020, LAYOUT_2021: write_2021, LAYOUT_2023: write_2023,
           LAYOUT_MSD: write_msd}


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
    reference = rows[LAYOUT_2020]
    assert reference["grade"] == "HGG" and reference["label"] == 1
    assert rows[LAYOUT_2018]["grade"] == "HGG"
    for layout, row in rows.items():
        for column in ("image", "mask", "regions"):
            assert row[column].dtype == np.uint8
            assert row[column].tobytes() == reference[column].tobytes(), (layout, column)
        for column in ("spacing_mm", "crop_start", "crop_stop", "original_shape", "tumour_fraction_in_window"):
            assert np.array_equal(row[column], reference[column]), (layout, column)
    assert set(np.unique(reference["regions"])) == set(REGION_LABELS)
    assert np.array_equal(reference["mask"], (reference["regions"] > 0).astype(np.uint8))
    for layout in (LAYOUT_2021, LAYOUT_2023, LAYOUT_MSD):  # no invented grade
        assert rows[layout]["grade"] == NO_GRADE and rows[layout]["label"] == NO_LABEL
    assert rows[LAYOUT_MSD]["source"] == "imagesTr/BRATS_001.nii.gz"
    assert rows[LAYOUT_2023]["source"] == "BraTS-GLI-00001-000"


def test_regions_match_the_raw_labels_voxel_for_voxel(tmp_path):
    images, labels = patient()
    for layout in (LAYOUT_2020, LAYOUT_2023, LAYOUT_MSD):
        raw = WRITERS[layout](tmp_path / layout, images, labels)
        loaded = load_case(discover(raw).cases[0])
        expected = remap(labels, {0: 0, 1: 1, 2: 2, 4: 3})  # the REGION_LABELS convention
        assert np.array_equal(loaded.regions, expected), layout
        for name, members in REGIONS.items():  # WT / TC / ET as sets of region labels
            assert np.array_equal(np.isin(loaded.regions, members),
                                  np.isin(labels, {"wt": (1, 2, 4), "tc": (1, 4), "et": (4,)}[name])), name


def test_ungraded_dataset_is_detectable(tmp_path):
    images, labels = patient()
    raw = write_2021(tmp_path / "raw", images, labels)
    write_2021(raw, images, labels, case_id="BraTS2021_00002")
    prepare(raw, tmp_path / "volumes", PARAMS, workers=1, progress=False)
    volumes = load_volumes(tmp_path / "volumes")
    assert ungraded_patients(volumes) == ["BraTS2021_00001", "BraTS2021_00002"]
    assert list(volumes["label"]) == [NO_LABEL, NO_LABEL]
    assert "no grades" in volumes.info.description


def test_2021_layout_and_its_bad_cases(tmp_path):
    images, labels = patient()
    root = tmp_path / "BraTS2021_Training_Data"
    write_2021(root, images, labels)
    write_2021(root, images, labels, case_id="BraTS2021_00002", skip=("t1ce",))
    write_2021(root, images, labels, case_id="BraTS2021_00003", skip=("seg",))
    write_2021(root, images, remap(labels, {0: 0, 1: 1, 2: 2, 4: 3}), case_id="BraTS2021_00004")  # 2023 labels
    inventory = discover(tmp_path)
    assert inventory.layout == LAYOUT_2021 and inventory.root == root
    assert [c.patient_id for c in inventory.cases] == ["BraTS2021_00001", "BraTS2021_00004"]
    assert all(c.grade == NO_GRADE for c in inventory.cases)
    why = {e.id: e for e in inventory.excluded}
    assert why["BraTS2021_00002"].reason == "t1ce image missing"
    assert why["BraTS2021_00003"].reason == "segmentation mask missing"
    result = prepare(tmp_path, tmp_path / "volumes", PARAMS, workers=1, progress=False)
    assert result.included == ["BraTS2021_00001"]
    bad = {e.id: e for e in result.excluded}["BraTS2021_00004"]
    assert bad.path.endswith("BraTS2021_00004_seg.nii.gz") and "unexpected mask label(s) [3]" in bad.reason


def test_2023_layout_and_its_bad_cases(tmp_path):
    images, labels = patient()
    write_2023(tmp_path, images, labels)
    write_2023(tmp_path, images, labels, case_id="BraTS-GLI-00002-000", skip=("flair",))
    write_2023(tmp_path, images, labels, case_id="BraTS-GLI-00003-000", convert=False)  # label 4: not 2023
    inventory = discover(tmp_path)
    assert inventory.layout == LAYOUT_2023
    case = inventory.cases[0]
    assert [c.patient_id for c in inventory.cases] == ["BraTS-GLI-00001-000", "BraTS-GLI-00003-000"]
    assert [p.name for p in case.images] == [f"BraTS-GLI-00001-000-{s}.nii.gz" for s in ("t2f", "t1n", "t1c", "t2w")]
    assert case.mask.name == "BraTS-GLI-00001-000-seg.nii.gz" and case.grade == NO_GRADE
    assert {e.id: e.reason for e in inventory.excluded} == {"BraTS-GLI-00002-000": "flair image (*-t2f.nii.gz) missing"}
    result = prepare(tmp_path, tmp_path.parent / "volumes23", PARAMS, workers=1, progress=False)
    bad = {e.id: e for e in result.excluded}["BraTS-GLI-00003-000"]
    assert bad.path.endswith("BraTS-GLI-00003-000-seg.nii.gz")
    assert "unexpected mask label(s) [4]" in bad.reason and "[0, 1, 2, 3]" in bad.reason
    row = load_volumes(tmp_path.parent / "volumes23")[0]
    assert set(np.unique(row["regions"])) <= {0, 1, 2, 3} and 3 in row["regions"]


def test_label_3_in_a_2020_case_is_excluded_naming_the_file(tmp_path):
    images, labels = patient()
    write_flat(tmp_path, "BraTS20_Training_001", images, labels)
    write_flat(tmp_path, "BraTS20_Training_002", images, remap(labels, {0: 0, 1: 1, 2: 2, 4: 3}))
    (tmp_path / "name_mapping.csv").write_text(
        "Grade,BraTS_2020_subject_ID\nHGG,BraTS20_Training_001\nLGG,BraTS20_Training_002\n")
    result = prepare(tmp_path, tmp_path.parent / "v20", PARAMS, workers=1, progress=False)
    assert result.layout == LAYOUT_2020 and result.included == ["BraTS20_Training_001"]
    (bad,) = result.excluded
    assert bad.path.endswith("BraTS20_Training_002_seg.nii.gz")
    assert "unexpected mask label(s) [3]" in bad.reason and "[0, 1, 2, 4]" in bad.reason


def test_msd_layout_and_its_bad_cases(tmp_path):
    images, labels = patient()
    root = tmp_path / "Task01_BrainTumour"
    write_msd(root, images, labels)
    write_msd(root, images, labels, case_id="BRATS_002")
    (root / "labelsTr" / "BRATS_002.nii.gz").unlink()  # image without label
    write_msd(root, images, labels, case_id="BRATS_003")
    (root / "imagesTr" / "BRATS_003.nii.gz").unlink()  # label without image
    write_msd(root, images, labels, case_id="BRATS_004")
    (root / "imagesTr" / "BRATS_004.nii.gz").write_bytes(nifti_bytes(images[0]))  # 3D, not 4D
    write_msd(root, images, labels, case_id="BRATS_005", convert=False)  # BraTS label 4 in an MSD file
    inventory = discover(tmp_path)
    assert inventory.layout == LAYOUT_MSD and inventory.root == root
    assert [c.patient_id for c in inventory.cases] == ["BRATS_001", "BRATS_004", "BRATS_005"]
    case = inventory.cases[0]
    assert case.channels == (0, 1, 2, 3) and case.labels == dict(LABEL_MAP_MSD) and case.grade == NO_GRADE
    why = {e.id: e for e in inventory.excluded}
    assert why["BRATS_002"].path.endswith("imagesTr/BRATS_002.nii.gz")
    assert why["BRATS_002"].reason == "segmentation mask missing (no labelsTr/BRATS_002.nii.gz)"
    assert why["BRATS_003"].path.endswith("labelsTr/BRATS_003.nii.gz") and "image missing" in why["BRATS_003"].reason
    result = prepare(tmp_path, tmp_path / "volumes", PARAMS, workers=1, progress=False)
    assert result.included == ["BRATS_001"]
    why = {e.id: e for e in result.excluded}
    assert why["BRATS_004"].path.endswith("imagesTr/BRATS_004.nii.gz") and "expected a 4D volume" in why["BRATS_004"].reason
    assert why["BRATS_005"].path.endswith("labelsTr/BRATS_005.nii.gz")
    assert "unexpected mask label(s) [4]" in why["BRATS_005"].reason


def test_msd_channel_and_label_order_come_from_dataset_json(tmp_path):
    description = json.loads(json.dumps(MSD_DESCRIPTION))
    description["modality"] = {"0": "T2w", "1": "t1gd", "2": "T1w", "3": "FLAIR"}
    description["labels"] = {"background": 0, "enhancing_tumour": 1, "edema": 2, "non_enhancing_tumor": 3}
    path = tmp_path / "dataset.json"
    path.write_text(json.dumps(description))
    channels, labels = read_msd_description(path)
    assert channels == (3, 2, 1, 0)  # FLAIR, T1, T1ce, T2
    assert labels == {0: 0, 1: 3, 2: 2, 3: 1}


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d.update(labels={"0": "background", "1": "necrosis", "2": "edema", "3": "enhancing tumour"}),
         "unexpected label"),
        (lambda d: d.update(labels={"0": "background", "1": "edema", "2": "enhancing tumour"}), "once each"),
        (lambda d: d.update(modality={"0": "FLAIR", "1": "T1w", "2": "CT", "3": "T2w"}), "unexpected channel"),
        (lambda d: d.pop("modality"), "no 'modality'"),
        (lambda d: d.pop("labels"), "no 'labels'"),
    ],
)
def test_unexpected_msd_dataset_json_fails_loudly(tmp_path, change, message):
    images, labels = patient()
    description = json.loads(json.dumps(MSD_DESCRIPTION))
    change(description)
    write_msd(tmp_path, images, labels, description=description)
    with pytest.raises(InputError, match=message):
        discover(tmp_path)


def test_msd_without_dataset_json_fails_loudly(tmp_path):
    images, labels = patient()
    write_msd(tmp_path, images, labels)
    (tmp_path / "dataset.json").unlink()
    with pytest.raises(InputError, match="dataset.json: missing"):
        discover(tmp_path)


def test_real_sample_keeps_regions(sample_dir, tmp_path):
    """The real BraTS 2018 sample: label 4 is stored as 3, regions within 0-3, mask == regions > 0."""
    inventory = discover(sample_dir)
    assert inventory.layout == LAYOUT_2018 and inventory.cases
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
