"""Morphology on boolean (z, y, x) arrays with radii in mm (anisotropic spacing handled exactly
through Euclidean distance transforms: the margin core's exact Numba transform, parallel on
large regions). Empty input gives empty output everywhere."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from a0verify.margin import core

BoolArray = npt.NDArray[np.bool_]
F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
STRUCT26 = np.ones((3, 3, 3), bool)
#: A voxel at exactly the radius belongs to the ball (as in :func:`ball_element`), whatever the
#: float32 rounding of the distance transform.
TIE_MM = 1e-4


def edt(mask: BoolArray, spacing: F64) -> F32:
    """Distance (mm, float32) from each True voxel to the nearest False voxel centre (0 on False;
    inf everywhere when all voxels are True). Exact, as ``scipy.ndimage.distance_transform_edt``
    (:func:`a0verify.margin.core.edt`, which handles the all-False and all-True cases itself;
    5-10 x faster on the segmentation's regions)."""
    return core.edt(mask, spacing)


def touches(mask: BoolArray, faces: list[tuple[int, int]]) -> bool:
    """Whether ``mask`` has a True voxel on any of ``faces`` ``(axis, 0 | -1)``."""
    return any(mask.take(end, axis=ax).any() for ax, end in faces)


def ball_element(r_mm: float, spacing: F64) -> BoolArray:
    """Structuring element: voxel offsets within ``r_mm`` (mm, anisotropic spacing)."""
    h = np.floor(r_mm / spacing + 1e-9).astype(int)
    g = np.ogrid[tuple(slice(-k, k + 1) for k in h)]
    d2 = sum((gi * s) ** 2 for gi, s in zip(g, spacing, strict=True))
    return np.asarray(d2 <= r_mm * r_mm + 1e-9)


def dilate(mask: BoolArray, r_mm: float, spacing: F64) -> BoolArray:
    """Dilation by a ball of ``r_mm`` (radii of a few voxels by a structuring element, larger
    ones through a distance transform of the mask's bounding box grown by the radius: the same
    voxels, faster from a 13-voxel element on)."""
    if not mask.any() or r_mm <= 0:
        return mask
    el = ball_element(r_mm, spacing)
    if el.sum() <= 9:
        return np.asarray(ndimage.binary_dilation(mask, structure=el))
    sub = bbox(mask, int(np.ceil(r_mm / float(spacing.min()))) + 1, mask.shape)
    out = np.zeros_like(mask)
    out[sub] = mask[sub] | (edt(~mask[sub], spacing) <= r_mm + TIE_MM)
    return out


def erode(mask: BoolArray, r_mm: float, spacing: F64) -> BoolArray:
    """Erosion by a ball of ``r_mm``; outside the array counts as inside (no border erosion)."""
    return np.asarray(edt(mask, spacing) > r_mm + TIE_MM)


def opening(mask: BoolArray, r_mm: float, spacing: F64) -> BoolArray:
    """Opening by a ball of ``r_mm``: what is thinner than 2 x ``r_mm`` goes. Like
    :func:`erode`, outside the array counts as inside (pad the mask to erode from its border)."""
    return dilate(erode(mask, r_mm, spacing), r_mm, spacing)


def close(mask: BoolArray, r_mm: float, spacing: F64) -> BoolArray:
    """Closing by a ball of ``r_mm`` (padded, so nothing sticks to the array border)."""
    if r_mm <= 0 or not mask.any():
        return mask
    pad = math.ceil(r_mm / float(spacing.min())) + 1
    big = np.pad(mask, pad)
    out = erode(dilate(big, r_mm, spacing), r_mm, spacing)
    return np.asarray(mask | out[pad:-pad, pad:-pad, pad:-pad])


def ball(shape: tuple[int, ...], center_zyx: F64, r_mm: float, spacing: F64) -> BoolArray:
    """Voxels whose centre lies within ``r_mm`` of the continuous index ``center_zyx``."""
    grids = np.ogrid[tuple(slice(0, s) for s in shape)]
    d2 = sum(((g - c) * sp) ** 2 for g, c, sp in zip(grids, center_zyx, spacing, strict=True))
    return np.asarray(d2 <= r_mm * r_mm)


def component_touching(mask: BoolArray, marker: BoolArray) -> BoolArray:
    """Union of the 26-connected components of ``mask`` that contain a ``marker`` voxel; when
    none does, the component with most voxels inside ``marker``'s 2-voxel dilation."""
    lab, n = ndimage.label(mask, structure=STRUCT26)
    if n == 0:
        return np.zeros_like(mask)
    ids = np.unique(lab[marker])
    ids = ids[ids > 0]
    if ids.size == 0:
        near = ndimage.binary_dilation(marker, iterations=2)
        counts = np.bincount(lab[near], minlength=n + 1)
        counts[0] = 0
        if counts.max() == 0:
            return np.zeros_like(mask)
        ids = np.array([int(np.argmax(counts))])
    keep = np.zeros(n + 1, bool)
    keep[ids] = True
    return keep[lab]


def neck_cut(region: BoolArray, marker: BoolArray, r_mm: float, spacing: F64) -> BoolArray:
    """Detach parts joined to the marked body by bridges thinner than 2 x ``r_mm``: opening by a
    ball, the marked component, geodesic reconstruction within one voxel beyond the opened core
    (so the body keeps its own boundary)."""
    if not region.any() or r_mm <= 0:
        return region
    opened = opening(region, r_mm, spacing)
    core = component_touching(opened, marker & opened) if (marker & opened).any() else \
        component_touching(opened, marker)
    if not core.any():
        return region
    out = region & dilate(core, r_mm + float(spacing.max()), spacing)
    return component_touching(out, marker)


def fill_holes(mask: BoolArray) -> BoolArray:
    """``mask`` with its holes filled: background not 6-connected to the array's faces. The
    same voxels as ``scipy.ndimage.binary_fill_holes`` (one labelling of the background instead
    of an iterated dilation: ~10 x faster on a large region of interest)."""
    lab, n = ndimage.label(~mask)
    if n == 0:
        return mask.copy()
    faces = [lab.take(end, axis=ax).ravel() for ax in range(lab.ndim) for end in (0, -1)]
    outside = np.zeros(n + 1, bool)
    outside[np.concatenate(faces)] = True
    outside[0] = False
    return np.asarray(~outside[lab])


def smooth_shape(region: BoolArray, sigma_mm: float, spacing: F64) -> BoolArray:
    """Gaussian smoothing of the signed distance (sigma in mm, symmetric so it does not shrink);
    holes filled."""
    if sigma_mm <= 0 or not region.any():
        return region
    phi = edt(region, spacing) - edt(~region, spacing)
    phi = ndimage.gaussian_filter(phi, sigma=sigma_mm / spacing, mode="nearest")
    return fill_holes(phi > 0)


def bbox(mask: BoolArray, margin: int, shape: tuple[int, ...]) -> tuple[slice, ...]:
    """Slices of ``mask``'s nonzero bounding box grown by ``margin`` voxels (clipped)."""
    idx = np.argwhere(mask)
    lo = np.maximum(idx.min(axis=0) - margin, 0)
    hi = np.minimum(idx.max(axis=0) + margin + 1, shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))


def neck_cut_fast(region: BoolArray, marker: BoolArray, r_mm: float, spacing: F64,
                  max_voxels: int = 1_500_000) -> BoolArray:
    """:func:`neck_cut` computed on a grid coarsened (integer factors, finest axes first) until
    it has at most ``max_voxels`` voxels, then applied to the full-resolution ``region``. The
    opening radius is at least one coarse voxel, so the result differs from the exact cut only
    within a coarse voxel of the cut surfaces."""
    if region.size <= max_voxels or not region.any():
        return neck_cut(region, marker, r_mm, spacing)
    f = np.ones(3, int)
    while region.size / np.prod(f) > max_voxels:
        ax = int(np.argmin(spacing * f))
        f[ax] += 1
    sl = tuple(slice(0, None, int(k)) for k in f)
    sp_c = spacing * f
    reg_c = region[sl]
    mk_c = ndimage.binary_dilation(marker, iterations=1)[sl] & reg_c
    if not mk_c.any():
        mk_c = marker[sl]
    r = max(r_mm, float(sp_c.max()))
    opened = opening(reg_c, r, sp_c)
    core = component_touching(opened, mk_c & opened) if (mk_c & opened).any() else \
        component_touching(opened, mk_c)
    if not core.any():
        return region
    keep_c = dilate(core, r + float(sp_c.max()), sp_c)
    keep = keep_c
    for ax, k in enumerate(f):
        keep = np.repeat(keep, int(k), axis=ax)
    keep = keep[tuple(slice(0, n) for n in region.shape)]
    return component_touching(region & keep, marker)
