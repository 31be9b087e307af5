"""Load and validate the NIfTI files of one case (fast gzip path, LPS reorientation)."""

from __future__ import annotations

import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from isal import igzip
from isal.igzip_lib import IsalError
from nibabel import orientations

from brats_llm.constants import BRATS_LABELS, CANONICAL_AXCODES, MODALITIES
from brats_llm.ingest.layout import CaseError, CaseFiles

#: Largest tolerated difference between the affines of one case's files (mm).
AFFINE_TOLERANCE_MM = 1e-3


@contextmanager
def numeric_guard(path: str | Path) -> Iterator[None]:
    """Turn numpy floating-point problems (overflow, invalid value, division by zero) and any
    RuntimeWarning inside the block into a CaseError naming ``path``, so none escapes anonymously."""
    with warnings.catch_warnings(), np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
        warnings.simplefilter("error", RuntimeWarning)
        try:
            yield
        except (FloatingPointError, RuntimeWarning) as error:
            raise CaseError(path, f"numeric problem in the voxel values ({error})") from error


@dataclass(frozen=True)
class LoadedCase:
    """A case's arrays in LPS voxel order (i, j, k): images in ``MODALITIES`` order, mask labels."""

    images: tuple[np.ndarray, ...]
    mask: np.ndarray
    spacing_mm: tuple[float, float, float]
    notes: tuple[str, ...] = ()


def read_nifti(path: Path) -> nib.Nifti1Image:
    """Read a ``.nii`` or ``.nii.gz`` file fully into memory.

    Gzip is inflated with ISA-L (several times faster than zlib), then parsed by nibabel.

    Raises:
        CaseError: unreadable, corrupt or truncated file.
    """
    try:
        data = path.read_bytes()
    except OSError as error:
        raise CaseError(path, f"cannot read file: {error.strerror or error}") from error
    if data[:2] == b"\x1f\x8b":
        try:
            data = igzip.decompress(data)
        except (EOFError, OSError, IsalError, zlib.error, ValueError) as error:
            raise CaseError(path, f"corrupt or truncated gzip stream ({error})") from error
    elif path.name.lower().endswith(".gz"):
        raise CaseError(path, "file ends in .gz but is not gzip-compressed")
    try:
        image = nib.Nifti1Image.from_bytes(data)
    except Exception as error:  # nibabel raises several types for bad headers
        raise CaseError(path, f"not a readable NIfTI-1 file ({error})") from error
    return image


def _array(image: nib.Nifti1Image, path: Path) -> np.ndarray:
    try:
        with numeric_guard(path):
            array = np.asanyarray(image.dataobj)
    except CaseError:
        raise
    except Exception as error:
        raise CaseError(path, f"image data unreadable or truncated ({error})") from error
    if array.ndim == 4 and array.shape[3] == 1:
        array = array[..., 0]
    if array.ndim != 3:
        raise CaseError(path, f"expected a 3D volume, got shape {array.shape}")
    return array


def check_finite(array: np.ndarray, path: Path) -> None:
    """Raise CaseError naming ``path`` and the count when ``array`` holds NaN or infinite voxels."""
    if np.issubdtype(array.dtype, np.inexact):
        bad = array.size - int(np.count_nonzero(np.isfinite(array)))
        if bad:
            raise CaseError(path, f"{bad} non-finite voxel(s) (NaN or infinity) in the image data")


def _mask_labels(array: np.ndarray, path: Path) -> np.ndarray:
    """Validate BraTS labels and return the mask as uint8; other values fail loudly."""
    if not np.issubdtype(array.dtype, np.integer):  # NaN/infinity were rejected by check_finite
        if not np.array_equal(array, np.round(array)):
            raise CaseError(path, f"mask has non-integer values (dtype {array.dtype})")
    low, high = array.min(initial=0), array.max(initial=0)
    if low >= 0 and high <= max(BRATS_LABELS):  # fast path: only 3 can be wrong inside [0, 4]
        unexpected = [v for v in range(int(high) + 1) if v not in BRATS_LABELS and (array == v).any()]
    else:
        unexpected = sorted(set(np.unique(array).tolist()) - set(BRATS_LABELS))
    if unexpected:
        shown = [int(v) if float(v).is_integer() else float(v) for v in unexpected[:10]]
        raise CaseError(path, f"unexpected mask label(s) {shown}; BraTS labels are {sorted(BRATS_LABELS)}")
    if high == 0:
        raise CaseError(path, "mask has no tumour voxels (empty mask)")
    return array.astype(np.uint8, copy=False)


def load_case(case: CaseFiles) -> LoadedCase:
    """Read and check all files of ``case``; arrays are reoriented to ``CANONICAL_AXCODES``.

    Raises:
        CaseError: naming the first file that is unreadable, inconsistent, holds NaN/infinite
            voxels or has bad labels.
    """
    paths = (*case.images, case.mask)
    images = [read_nifti(path) for path in paths]
    reference, reference_path = images[0], paths[0]
    arrays = []
    for image, path in zip(images, paths):
        array = _array(image, path)
        if array.shape != _array_shape(reference):
            raise CaseError(path, f"shape {array.shape} differs from {reference_path.name} {_array_shape(reference)}")
        if not np.allclose(image.affine, reference.affine, atol=AFFINE_TOLERANCE_MM):
            raise CaseError(path, f"affine differs from {reference_path.name} (files are not co-registered)")
        check_finite(array, path)
        arrays.append(array)
    arrays[-1] = _mask_labels(arrays[-1], case.mask)

    current = orientations.io_orientation(reference.affine)
    wanted = orientations.axcodes2ornt(CANONICAL_AXCODES)
    transform = orientations.ornt_transform(current, wanted)
    zooms = np.asarray(reference.header.get_zooms()[:3], dtype=float)
    notes = []
    if not np.array_equal(transform, orientations.ornt_transform(wanted, wanted)):
        arrays = [orientations.apply_orientation(a, transform) for a in arrays]
        zooms = zooms[transform[:, 0].astype(int).argsort()]
        notes.append(f"reoriented from {''.join(orientations.aff2axcodes(reference.affine))} to LPS")
    return LoadedCase(
        images=tuple(arrays[: len(MODALITIES)]),
        mask=arrays[-1],
        spacing_mm=tuple(float(z) for z in zooms),
        notes=tuple(notes),
    )


def _array_shape(image: nib.Nifti1Image) -> tuple[int, ...]:
    shape = tuple(image.shape)
    return shape[:3] if len(shape) == 4 and shape[3] == 1 else shape
