"""Loading one case: the file-level quirks each produce a CaseError naming the file."""

import numpy as np
import pytest

from brats_llm.ingest.layout import discover
from brats_llm.ingest.nifti import CaseError, load_case
from tests.conftest import TINY_SHAPE, nifti_bytes


def only_case(root):
    (case,) = discover(root).cases
    return case


@pytest.fixture
def root(tmp_path):
    (tmp_path / "HGG").mkdir()
    return tmp_path


def test_loads_valid_case_in_lps(root, case_factory):
    case_factory(root / "HGG", "c1")
    loaded = load_case(only_case(root))
    assert len(loaded.images) == 4 and loaded.images[0].shape == TINY_SHAPE
    assert loaded.mask.dtype == np.uint8 and set(np.unique(loaded.mask)) == {0, 1, 2, 4}
    assert loaded.spacing_mm == (1.0, 1.0, 1.0) and loaded.notes == ()


def test_int16_mask_is_accepted(root, case_factory):
    mask = np.zeros(TINY_SHAPE, dtype=np.int16)
    mask[10:20, 10:20, 10:20] = 2
    case_factory(root / "HGG", "c1", mask=mask)
    assert load_case(only_case(root)).mask.sum() == 2 * 1000


def test_ras_case_is_reoriented_to_lps(root, case_factory):
    case_dir = case_factory(root / "HGG", "c1")
    mask = np.zeros(TINY_SHAPE, dtype=np.uint8)
    mask[2, 3, 4] = 2  # near voxel (0, 0) in RAS = the far corner in LPS
    ras = np.diag([1.0, 1.0, 1.0, 1.0])
    for path in case_dir.iterdir():
        data = mask if "seg" in path.name else np.full(TINY_SHAPE, 7, np.int16)
        path.write_bytes(nifti_bytes(data, ras))
    loaded = load_case(only_case(root))
    assert tuple(np.argwhere(loaded.mask)[0]) == (TINY_SHAPE[0] - 3, TINY_SHAPE[1] - 4, 4)
    assert "reoriented from RAS to LPS" in loaded.notes[0]


@pytest.mark.parametrize(
    "corrupt, reason",
    [
        (lambda data: data[: len(data) // 2], "corrupt or truncated gzip"),
        (lambda data: data[:10] + b"\x00" * 40 + data[50:], "corrupt or truncated gzip"),
        (lambda data: b"\x1f\x8bnot gzip at all", "corrupt or truncated gzip"),
        (lambda data: b"plain text", "not gzip-compressed"),
    ],
)
def test_corrupt_gzip_names_the_file(root, case_factory, corrupt, reason):
    case_dir = case_factory(root / "HGG", "c1")
    bad = case_dir / "c1_t2.nii.gz"
    bad.write_bytes(corrupt(bad.read_bytes()))
    with pytest.raises(CaseError, match=reason) as info:
        load_case(only_case(root))
    assert info.value.path == str(bad)


def test_truncated_uncompressed_nifti(root, case_factory):
    case_dir = case_factory(root / "HGG", "c1", ext=".nii")
    bad = case_dir / "c1_flair.nii"
    bad.write_bytes(bad.read_bytes()[:5000])
    with pytest.raises(CaseError, match="unreadable or truncated") as info:
        load_case(only_case(root))
    assert info.value.path == str(bad)


def test_shape_mismatch(root, case_factory):
    case_dir = case_factory(root / "HGG", "c1")
    bad = case_dir / "c1_t1.nii.gz"
    bad.write_bytes(nifti_bytes(np.ones((40, 48, 40), np.int16)))
    with pytest.raises(CaseError, match=r"shape \(40, 48, 40\) differs") as info:
        load_case(only_case(root))
    assert info.value.path == str(bad)


def test_affine_mismatch(root, case_factory):
    case_dir = case_factory(root / "HGG", "c1")
    bad = case_dir / "c1_t1ce.nii.gz"
    shifted = np.diag([-1.0, -1.0, 1.0, 1.0])
    shifted[0, 3] = 5.0
    bad.write_bytes(nifti_bytes(np.ones(TINY_SHAPE, np.int16), shifted))
    with pytest.raises(CaseError, match="not co-registered"):
        load_case(only_case(root))


@pytest.mark.parametrize(
    "values, reason",
    [
        ((0, 3), r"unexpected mask label\(s\) \[3\]"),
        ((0, 1, 5), r"unexpected mask label\(s\) \[5\]"),
        ((0,), "empty mask"),
    ],
)
def test_bad_mask_labels(root, case_factory, values, reason):
    mask = np.zeros(TINY_SHAPE, dtype=np.uint8)
    for offset, value in enumerate(values):
        mask[10 + offset, 10:20, 10:20] = value
    case_dir = case_factory(root / "HGG", "c1", mask=mask)
    with pytest.raises(CaseError, match=reason) as info:
        load_case(only_case(root))
    assert info.value.path == str(case_dir / "c1_seg.nii.gz")


def test_float_mask_with_fractions_is_rejected(root, case_factory):
    mask = np.zeros(TINY_SHAPE, dtype=np.float32)
    mask[10:20, 10:20, 10:20] = 1.5
    case_factory(root / "HGG", "c1", mask=mask)
    with pytest.raises(CaseError, match="non-integer"):
        load_case(only_case(root))


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("modality, bad, count", [("flair", [np.nan], 1), ("t1", [np.inf, -np.inf], 2)])
def test_non_finite_voxels_name_the_file_and_count(root, case_factory, modality, bad, count):
    case_dir = case_factory(root / "HGG", "c1")
    image = np.full(TINY_SHAPE, 100.0, np.float32)
    image[10, 10, 10 : 10 + len(bad)] = bad
    path = case_dir / f"c1_{modality}.nii.gz"
    path.write_bytes(nifti_bytes(image))
    with pytest.raises(CaseError, match=rf"^{path}: {count} non-finite voxel\(s\)") as info:
        load_case(only_case(root))
    assert info.value.path == str(path)


def test_case_error_is_a_project_input_error():
    from brats_llm.errors import BratsLlmError, InputError

    error = CaseError("/x/c1_t2.nii.gz", "broken")
    assert isinstance(error, InputError) and isinstance(error, BratsLlmError) and isinstance(error, ValueError)
    assert str(error) == "/x/c1_t2.nii.gz: broken"


def _rewrite_affine(case_dir, affine):
    for path in case_dir.iterdir():
        data = np.zeros(TINY_SHAPE, np.uint8) if "seg" in path.name else np.full(TINY_SHAPE, 7, np.int16)
        if "seg" in path.name:
            data[10:20, 10:20, 10:20] = 2
        path.write_bytes(nifti_bytes(data, affine))


def test_sheared_affine_is_refused_naming_the_file(root, case_factory):
    case_dir = case_factory(root / "HGG", "c1")
    sheared = np.diag([-1.0, -1.0, 1.0, 1.0])
    sheared[0, 1] = 0.3  # every file agrees, so only the shear itself can be refused
    _rewrite_affine(case_dir, sheared)
    case = only_case(root)
    with pytest.raises(CaseError, match=r"affine is sheared: voxel axes i and j meet at 106\.7 degrees") as info:
        load_case(case)
    assert info.value.path == str(case.images[0])


def test_oblique_orthogonal_affine_is_accepted(root, case_factory):
    case_dir = case_factory(root / "HGG", "c1")
    angle = np.radians(10)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    oblique = np.eye(4)
    oblique[:3, :3] = rotation @ np.diag([-1.0, -1.0, 2.0])
    _rewrite_affine(case_dir, oblique)
    assert load_case(only_case(root)).spacing_mm == pytest.approx((1.0, 1.0, 2.0))
