"""Overlap and surface-distance metrics between two binary masks on the same grid.

Surfaces are the masks' border voxels (voxels of the mask with a 6-neighbour outside it);
distances are in mm using the image spacing (array order (z, y, x)). The symmetric 95 % Hausdorff
distance (HD95) is the 95th percentile of the pooled border-to-border distances in both
directions, as in common segmentation benchmarks.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk
from scipy import ndimage

from a0verify import geometry


def _arrays(a: sitk.Image, b: sitk.Image) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    if not geometry.same_grid(a, b):
        raise ValueError("masks must share one grid (origin, spacing, direction, size)")
    return sitk.GetArrayViewFromImage(a) != 0, sitk.GetArrayViewFromImage(b) != 0


def dice_coefficient(a: sitk.Image, b: sitk.Image) -> float:
    """Dice = 2|A∩B| / (|A| + |B|) of two masks on the same grid; 1.0 when both are empty."""
    x, y = _arrays(a, b)
    den = int(x.sum()) + int(y.sum())
    return 1.0 if den == 0 else 2.0 * int((x & y).sum()) / den


def _border(m: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    er = ndimage.binary_erosion(m, structure=ndimage.generate_binary_structure(3, 1),
                                border_value=0)
    return np.asarray(m & ~er)


def surface_distances_mm(a: sitk.Image, b: sitk.Image) -> tuple[
        npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Distances (mm) from each border voxel of ``a`` to the nearest border voxel of ``b`` and
    vice versa. Raises ValueError when either mask is empty."""
    x, y = _arrays(a, b)
    if not x.any() or not y.any():
        raise ValueError("surface distance of an empty mask is undefined")
    # crop to the joint bounding box plus one voxel (distances are unchanged, much faster)
    idx = np.argwhere(x | y)
    lo = np.maximum(idx.min(axis=0) - 1, 0)
    hi = idx.max(axis=0) + 2
    sl = tuple(slice(int(i), int(j)) for i, j in zip(lo, hi, strict=True))
    x, y = np.pad(x[sl], 1), np.pad(y[sl], 1)
    sp = geometry.spacing_zyx(a)
    bx, by = _border(x), _border(y)
    dy = ndimage.distance_transform_edt(~by, sampling=sp)
    dx = ndimage.distance_transform_edt(~bx, sampling=sp)
    return np.asarray(dy[bx], np.float64), np.asarray(dx[by], np.float64)


def hausdorff_mm(a: sitk.Image, b: sitk.Image, percentile: float = 95.0) -> float:
    """Symmetric percentile Hausdorff distance (mm): ``percentile`` of the pooled border-to-border
    distances (100 gives the classical Hausdorff distance)."""
    d_ab, d_ba = surface_distances_mm(a, b)
    return float(np.percentile(np.concatenate([d_ab, d_ba]), percentile))


def hausdorff95_mm(a: sitk.Image, b: sitk.Image) -> float:
    """Symmetric 95 % Hausdorff distance in mm (see :func:`hausdorff_mm`)."""
    return hausdorff_mm(a, b, 95.0)
