"""Pure array transforms of preprocessing: brain mask, robust 0-255 scaling, axial window, resize."""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np

CentreOn = Literal["tumour", "volume"]
CENTRE_CHOICES: tuple[str, ...] = ("tumour", "volume")


def brain_mask(images: tuple[np.ndarray, ...] | list[np.ndarray]) -> np.ndarray:
    """Voxels that are non-zero in any modality (BraTS volumes are skull-stripped, background 0)."""
    mask = images[0] != 0
    for image in images[1:]:
        mask |= image != 0
    return mask


def masked_values(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``image[mask]`` as a 1D array, in memory order when both share a layout (much faster for
    the Fortran-ordered arrays nibabel returns)."""
    same_layout = (image.flags.f_contiguous and mask.flags.f_contiguous) or (
        image.flags.c_contiguous and mask.flags.c_contiguous
    )
    if same_layout and image.shape == mask.shape:
        order = "F" if image.flags.f_contiguous else "C"
        return image.ravel(order=order)[mask.ravel(order=order)]
    return image[mask]


def intensity_range(image: np.ndarray, brain: np.ndarray, lower: float, upper: float) -> tuple[float, float]:
    """The [lower, upper] percentiles (0-100) of ``image`` inside ``brain`` (robust to outliers)."""
    values = masked_values(image, brain)
    if values.size == 0:
        return 0.0, 0.0
    low, high = np.percentile(values, [lower, upper])
    return float(low), float(high)


def scale_to_255(image: np.ndarray, brain: np.ndarray, low: float, high: float) -> np.ndarray:
    """Linearly map [low, high] to [0, 255] inside ``brain`` with clipping; 0 outside (float32).

    A modality that is constant inside the brain (``high <= low``) maps to 0 everywhere.
    """
    if high <= low:
        return np.zeros(image.shape, dtype=np.float32)
    out = image.astype(np.float32)
    out -= np.float32(low)
    out *= np.float32(255.0 / (high - low))
    np.clip(out, 0.0, 255.0, out=out)
    out *= brain
    return out


def axial_window(mask: np.ndarray, n_slices: int, centre_on: CentreOn) -> tuple[int, int]:
    """Return [start, stop) of ``n_slices`` along the last axis, centred as asked and clamped.

    Args:
        mask: tumour mask in voxel order (i, j, k); k is the axial axis.
        n_slices: window length.
        centre_on: ``"tumour"`` (centre of the tumour's axial extent) or ``"volume"``.

    Raises:
        ValueError: the volume has fewer than ``n_slices`` slices, or ``centre_on`` is unknown.
    """
    depth = mask.shape[-1]
    if depth < n_slices:
        raise ValueError(f"volume has {depth} axial slices, fewer than the {n_slices} requested")
    if centre_on == "tumour":
        occupied = np.flatnonzero(mask.any(axis=(0, 1)))
        if occupied.size == 0:
            raise ValueError("cannot centre on the tumour: mask is empty")
        centre = (int(occupied[0]) + int(occupied[-1]) + 1) / 2.0
    elif centre_on == "volume":
        centre = depth / 2.0
    else:
        raise ValueError(f"centre_on must be one of {CENTRE_CHOICES}, got {centre_on!r}")
    start = int(np.floor(centre - n_slices / 2.0))
    start = min(max(start, 0), depth - n_slices)
    return start, start + n_slices


def to_slices(volume: np.ndarray) -> np.ndarray:
    """Voxel order (i, j, k) to the project's (slice, row, col) = (k, j, i)."""
    return np.ascontiguousarray(volume.transpose(2, 1, 0))


def nearest_indices(n_in: int, n_out: int) -> np.ndarray:
    """Source index of each output pixel for pixel-centre aligned nearest neighbour.

    Output pixel ``d`` covers source coordinates around ``(d + 0.5) * n_in / n_out``; this is
    OpenCV's ``INTER_NEAREST_EXACT`` rule (the legacy ``INTER_NEAREST`` drifts by half a pixel).
    """
    return np.minimum(np.floor((np.arange(n_out) + 0.5) * n_in / n_out).astype(np.intp), n_in - 1)


def resize_slices(stack: np.ndarray, size: int, *, nearest: bool = False) -> np.ndarray:
    """Resize every slice of a (slice, row, col) stack to ``size`` x ``size``.

    Images use OpenCV ``INTER_AREA`` (pixel-area averaging, anti-aliased when downsampling),
    one slice at a time (OpenCV 5 resizes at most 4 channels at once). Masks use
    :func:`nearest_indices`, so labels are never blended.
    """
    if nearest:
        rows = nearest_indices(stack.shape[1], size)
        cols = nearest_indices(stack.shape[2], size)
        return np.ascontiguousarray(stack[:, rows][:, :, cols])
    out = np.empty((stack.shape[0], size, size), dtype=stack.dtype)
    for index, plane in enumerate(stack):
        out[index] = cv2.resize(plane, (size, size), interpolation=cv2.INTER_AREA)
    return out


def to_uint8(values: np.ndarray) -> np.ndarray:
    """Round and clip floats in [0, 255] to uint8."""
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)
