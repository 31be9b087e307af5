"""Area-weighted surface distances and robust Hausdorff distance (DeepMind ``surface-distance`` 0.1 definition).

The BraTS 2023 scoring script takes HD95 from DeepMind's ``surface-distance`` (``compute_surface_distances`` +
``compute_robust_hausdorff(..., 95)``); that package does not run unpatched under NumPy 2 (``numpy.Inf``), so
the same definition is computed here with numpy / scipy:

* Surface points lie on the voxel-corner grid (half a voxel off the voxel centres): a corner is on the surface
  of a mask when its 2 x 2 (x 2) neighbourhood of voxels is neither all in nor all out (outside the array = out).
* Each surface point carries the contour length (2D) or marching-cubes surface area (3D, in mm^2 through the
  spacing) of its neighbourhood pattern; the 3D normals table is MONAI's copy of DeepMind's.
* Each point's distance is the Euclidean distance (mm) to the nearest surface point of the other mask.
* The robust Hausdorff distance at ``percent`` is, per direction, the smallest distance whose cumulative
  share of surface area reaches ``percent`` %; the larger of the two directions is returned.

MONAI's ``HausdorffDistanceMetric`` instead takes a plain percentile of voxel-centre distances of the mask's
boundary voxels (unweighted); the two differ by up to about a voxel.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

#: Weight of each 2 x 2 (x 2) neighbour's bit in the neighbourhood code (DeepMind's encoding order).
_KERNEL = {2: np.array([[8, 4], [2, 1]]), 3: np.array([[[128, 64], [32, 16]], [[8, 4], [2, 1]]])}


@functools.lru_cache(maxsize=32)
def _measure_table(spacing: tuple[float, ...]) -> np.ndarray:
    """Contour length (2D) or surface area (3D) of each neighbourhood code, float64 as DeepMind computes it."""
    if len(spacing) == 2:
        first, second = spacing
        diag = 0.5 * math.sqrt(first**2 + second**2)
        table = np.zeros(16)
        for code in range(1, 15):
            inside = bin(code).count("1")
            if inside != 2:
                table[code] = diag  # one corner in or one corner out: a cut across the corner
            elif code in (0b0011, 0b1100):
                table[code] = second  # a row of two in: an edge along the second axis
            elif code in (0b0101, 0b1010):
                table[code] = first  # a column of two in: an edge along the first axis
            else:
                table[code] = 2 * diag  # two opposite corners in: two cuts
        return table
    from monai.metrics.utils import _get_neighbour_code_to_normals_table  # DeepMind's table (signs may differ)

    normals = _get_neighbour_code_to_normals_table().numpy().astype(np.float64)
    table = np.zeros(256)
    for code in range(256):
        total = 0.0
        for normal in normals[code]:
            if normal.any():  # MONAI pads each code to 4 normals with zeros
                scaled = np.array([normal[0] * spacing[1] * spacing[2], normal[1] * spacing[0] * spacing[2],
                                   normal[2] * spacing[0] * spacing[1]])
                total += np.linalg.norm(scaled)
        table[code] = total
    return table


def _codes(mask: np.ndarray) -> np.ndarray:
    """Neighbourhood code of every voxel corner of ``mask`` (already zero-padded by one on each side)."""
    kernel = _KERNEL[mask.ndim]
    corners = tuple(n - 1 for n in mask.shape)
    codes = np.zeros(corners, np.int64)
    for offset in np.ndindex(*kernel.shape):
        window = tuple(slice(o, o + n) for o, n in zip(offset, corners))
        codes += kernel[offset] * mask[window]
    return codes


def surface_distances(pred: np.ndarray, truth: np.ndarray, spacing: Sequence[float]
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Distances (mm) and areas of the surface elements of two masks, each direction sorted by distance.

    Returns ``(pred_to_truth, pred_areas, truth_to_pred, truth_areas)``; a direction is empty when its mask
    is, and its distances are ``inf`` when the other mask is empty.
    """
    pred, truth = np.asarray(pred).astype(bool), np.asarray(truth).astype(bool)
    spacing = tuple(float(s) for s in spacing)
    if pred.shape != truth.shape or pred.ndim not in (2, 3) or len(spacing) != pred.ndim:
        raise ValueError(f"need two 2D or 3D masks of one shape and one spacing per axis, got {pred.shape}, "
                         f"{truth.shape} and spacing {spacing}")
    union = pred | truth
    if not union.any():
        return np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0)
    box = ndimage.find_objects(union.astype(np.uint8))[0]
    table, full = _measure_table(spacing), 2 ** (2**pred.ndim) - 1
    codes = [_codes(np.pad(mask[box].astype(np.int64), 1)) for mask in (pred, truth)]
    borders = [(code != 0) & (code != full) for code in codes]
    distance_maps = [ndimage.distance_transform_edt(~border, sampling=spacing) if border.any()
                     else np.full(border.shape, np.inf) for border in borders]
    result = []
    for own, other in ((0, 1), (1, 0)):
        distances = distance_maps[other][borders[own]]
        areas = table[codes[own][borders[own]]]
        order = np.lexsort((areas, distances))  # by distance, then area (as DeepMind sorts its pairs)
        result += [distances[order], areas[order]]
    return tuple(result)


def _directed_percentile(distances: np.ndarray, areas: np.ndarray, percent: float) -> float:
    if distances.size == 0:
        return math.inf
    cumulative = np.cumsum(areas) / np.sum(areas)
    index = int(np.searchsorted(cumulative, percent / 100.0))
    return float(distances[min(index, distances.size - 1)])


def robust_hausdorff(pred: np.ndarray, truth: np.ndarray, spacing: Sequence[float], percent: float = 95.0) -> float:
    """Area-weighted ``percent``-th percentile Hausdorff distance in mm (``inf`` when exactly one mask is empty)."""
    pred_to_truth, pred_areas, truth_to_pred, truth_areas = surface_distances(pred, truth, spacing)
    return max(_directed_percentile(truth_to_pred, truth_areas, percent),
               _directed_percentile(pred_to_truth, pred_areas, percent))
