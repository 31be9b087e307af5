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

from brats_llm.constants import CANONICAL_AXCODES, MODALITIES, REGION_LABELS
from brats_llm.ingest.layout import CaseError, CaseFiles

#: Largest tolerated difference between the affines of one case's files (mm).
AFFINE_TOLERANCE_MM = 1e-3
#: Largest tolerated |cosine| between two voxel axes of an affine (1e-3: 0.06 degrees from a right angle;
#: float32 storage of an orthogonal oblique sform is orders of magnitude closer).
SHEAR_TOLERANCE = 1e-3


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
    """A case's arrays in LPS voxel order (i, j, k): images in ``MODALITIES`` order, the mask with
    the release's own labels, and ``regions``: the same labels in the ``REGION_LABELS`` convention."""

    images: tuple[np.ndarray, ...]
    mask: np.ndarray
    regions: np.ndarray
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


def _array(image: nib.Nifti1Image, path: Path, *, channels: int | None = None) -> np.ndarray:
    """The voxel array: 3D (a trailing axis of 1 dropped), or 4D with at least ``channels`` volumes."""
    try:
        with numeric_guard(path):
            array = np.asanyarray(image.dataobj)
    except CaseError:
        raise
    except Exception as error:
        raise CaseError(path, f"image data unreadable or truncated ({error})") from error
    if channels is not None:
        if array.ndim != 4 or array.shape[3] < channels:
            raise CaseError(path, f"expected a 4D volume of {channels} channels, got shape {array.shape}")
        return array
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


def mask_labels(array: np.ndarray, path: Path, labels: dict[int, int], release: str = "BraTS") -> np.ndarray:
    """Validate a segmentation against its release's labels (the keys of ``labels``) and return it as
    uint8; other values fail loudly (e.g. label 3 in a BraTS 2020 file, 4 in a BraTS 2023 file)."""
    if not np.issubdtype(array.dtype, np.integer):  # NaN/infinity were rejected by check_finite
        if not np.array_equal(array, np.round(array)):
            raise CaseError(path, f"mask has non-integer values (dtype {array.dtype})")
    low, high = array.min(initial=0), array.max(initial=0)
    if low >= 0 and high <= max(labels):  # fast path: test each missing value inside [0, max]
        unexpected = [v for v in range(int(high) + 1) if v not in labels and (array == v).any()]
    else:
        unexpected = sorted(set(np.unique(array).tolist()) - set(labels))
    if unexpected:
        shown = [int(v) if float(v).is_integer() else float(v) for v in unexpected[:10]]
        raise CaseError(path, f"unexpected mask label(s) {shown}; {release} labels are {sorted(labels)}")
    if high == 0:
        raise CaseError(path, "mask has no tumour voxels (empty mask)")
    return array.astype(np.uint8, copy=False)


def to_regions(mask: np.ndarray, labels: dict[int, int]) -> np.ndarray:
    """A validated uint8 mask (see :func:`mask_labels`) in the ``REGION_LABELS`` convention."""
    if set(labels.values()) - set(REGION_LABELS):
        raise ValueError(f"label map {labels} targets values outside {sorted(REGION_LABELS)}")
    table = np.zeros(256, dtype=np.uint8)
    for source, target in labels.items():
        table[source] = target
    return table[mask]


def load_case(case: CaseFiles) -> LoadedCase:
    """Read and check all files of ``case``; arrays are reoriented to ``CANONICAL_AXCODES``.

    Raises:
        CaseError: naming the first file that is unreadable, inconsistent, holds NaN/infinite
            voxels, has a sheared or degenerate affine or has bad labels.
    """
    if case.channels is not None:  # MSD: one 4D file holds every modality
        paths = (case.images[0], case.mask)
        reference = read_nifti(paths[0])
        volumes = _array(reference, paths[0], channels=max(case.channels) + 1)
        check_finite(volumes, paths[0])
        arrays, others = [volumes[..., channel] for channel in case.channels], [paths[1]]
    else:
        paths = (*case.images, case.mask)
        reference = read_nifti(paths[0])
        arrays, others = [], list(paths)
    reference_path = paths[0]
    check_orthogonal(reference.affine, reference_path)
    reference_shape = arrays[0].shape if arrays else _array_shape(reference)
    for path in others:
        image = reference if path == reference_path else read_nifti(path)
        array = _array(image, path)
        if array.shape != reference_shape:
            raise CaseError(path, f"shape {array.shape} differs from {reference_path.name} {reference_shape}")
        if not np.allclose(image.affine, reference.affine, atol=AFFINE_TOLERANCE_MM):
            raise CaseError(path, f"affine differs from {reference_path.name} (files are not co-registered)")
        check_finite(array, path)
        arrays.append(array)
    labels = case.labels
    arrays[-1] = mask_labels(arrays[-1], case.mask, labels, case.layout)
    arrays.append(to_regions(arrays[-1], labels))

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
        mask=arrays[-2],
        regions=arrays[-1],
        spacing_mm=tuple(float(z) for z in zooms),
        notes=tuple(notes),
    )


def check_orthogonal(affine: np.ndarray, path: Path) -> None:
    """Refuse an affine whose voxel axes are degenerate or not at right angles (a sheared grid).

    Reorientation and spacing assume a rotated, scaled voxel grid; a shear would silently give wrong
    spacings and geometry. Oblique but orthogonal grids (rotations) are accepted.
    """
    axes = np.asarray(affine, dtype=float)[:3, :3]
    lengths = np.linalg.norm(axes, axis=0)
    if not np.all(np.isfinite(axes)) or np.any(lengths <= 0):
        raise CaseError(path, f"affine is degenerate (voxel axis lengths {np.round(lengths, 4).tolist()} mm)")
    cosines = (axes / lengths).T @ (axes / lengths)
    off_diagonal = np.abs(np.triu(cosines, 1))
    worst = np.unravel_index(np.argmax(off_diagonal), cosines.shape)
    if off_diagonal[worst] > SHEAR_TOLERANCE:
        angle = float(np.degrees(np.arccos(np.clip(cosines[worst], -1.0, 1.0))))
        raise CaseError(path, f"affine is sheared: voxel axes {'ijk'[worst[0]]} and {'ijk'[worst[1]]} meet at "
                              f"{angle:.1f} degrees, not 90 (resample the case to an orthogonal grid first)")


def _array_shape(image: nib.Nifti1Image) -> tuple[int, ...]:
    shape = tuple(image.shape)
    return shape[:3] if len(shape) == 4 and shape[3] == 1 else shape
