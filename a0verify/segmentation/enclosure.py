"""Is a grown region enclosed by the organ? Cuts a leak out of the liver into the body wall.

An ablation zone lies inside the liver: seen from any point of the zone, most directions meet
liver tissue (or the rim, or bile in the gallbladder) within a few centimetres. A region that has
leaked through the capsule into the diaphragm or the abdominal wall (muscle has the zone's HU and
there is no rim there, so no threshold separates them) continues in tissue that sees the liver
only on one side: towards the outside its rays end in fat, air or the edge of the region of
interest. For a locally flat capsule the fraction of directions that meet the organ is exactly
1/2 on the capsule, above 1/2 inside and below outside, so keeping the points with a fraction of
at least 1/2 puts the cut on the capsule's continuation across the contact, where the image has
no edge. This is a shape argument, used only when the region is already suspect (far longer than
the zone is thick at the click); the cut is reported in the quality signal.

Arrays (z, y, x); distances in mm from the spacing; HU on the smoothed crop.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from a0verify.margin import core as _numba_setup  # noqa: F401  (Numba cache directory first)
from a0verify.segmentation import morph

BoolArray = npt.NDArray[np.bool_]
F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

from numba import njit, prange  # noqa: E402


def sphere_directions(n: int) -> F64:
    """``n`` nearly uniform unit vectors (Fibonacci sphere), (z, y, x) in mm space."""
    i = np.arange(n) + 0.5
    polar = np.arccos(1.0 - 2.0 * i / n)
    azim = np.pi * (1.0 + 5.0 ** 0.5) * i
    return np.stack([np.cos(polar), np.sin(polar) * np.sin(azim),
                     np.sin(polar) * np.cos(azim)], axis=1)


@njit(parallel=True, cache=True)
def _fraction_kernel(organ: npt.NDArray[np.bool_], pts: F64, sp: F64, dirs: F64,
                     range_mm: float, step_mm: float) -> F32:  # pragma: no cover - compiled
    n = pts.shape[0]
    out = np.zeros(n, np.float32)
    nz, ny, nx = organ.shape
    n_steps = int(range_mm / step_mm)
    for k in prange(n):
        hits = 0
        for d in range(dirs.shape[0]):
            for s in range(1, n_steps + 1):
                iz = int(pts[k, 0] + dirs[d, 0] * s * step_mm / sp[0] + 0.5)
                iy = int(pts[k, 1] + dirs[d, 1] * s * step_mm / sp[1] + 0.5)
                ix = int(pts[k, 2] + dirs[d, 2] * s * step_mm / sp[2] + 0.5)
                if iz < 0 or iy < 0 or ix < 0 or iz >= nz or iy >= ny or ix >= nx:
                    break
                if organ[iz, iy, ix]:
                    hits += 1
                    break
        out[k] = hits / dirs.shape[0]
    return out


def organ_fraction(region: BoolArray, organ: BoolArray, sp: F64, range_mm: float = 100.0,
                   n_dirs: int = 64, stride_mm: float = 2.5, step_mm: float = 1.0) -> F32:
    """For every voxel of ``region``: the fraction (0-1) of ``n_dirs`` directions whose ray
    meets ``organ`` within ``range_mm`` (rays pass through everything else and stop at the
    array's edge, which counts as a miss). Evaluated on a grid of about ``stride_mm`` and
    interpolated (linear) to every voxel; 0 outside ``region``'s reach. Empty region: zeros."""
    out = np.zeros(region.shape, np.float32)
    if not region.any():
        return out
    st = np.maximum(1, np.round(stride_mm / sp).astype(int))
    coarse_region = region[::st[0], ::st[1], ::st[2]]
    if not coarse_region.any():
        coarse_region = ndimage.binary_dilation(region, iterations=int(st.max()))[
            ::st[0], ::st[1], ::st[2]]
    idx = np.argwhere(coarse_region)
    frac = _fraction_kernel(np.ascontiguousarray(organ), (idx * st).astype(np.float64),
                            sp.astype(np.float64), sphere_directions(n_dirs), float(range_mm),
                            float(step_mm))
    coarse = np.zeros(coarse_region.shape, np.float32)
    coarse[tuple(idx.T)] = frac
    nearest = ndimage.distance_transform_edt(~coarse_region, return_distances=False,
                                             return_indices=True)
    coarse = coarse[tuple(nearest)]
    # coarse sample j sits at full index j * st
    where = np.nonzero(region)
    coords = np.stack([w / k for w, k in zip(where, st, strict=True)])
    out[where] = ndimage.map_coordinates(coarse, coords, order=1, mode="nearest")
    return out


def organ_around(region: BoolArray, sm: F32, sp: F64, *, upper_hu: float, lower_hu: float,
                 tissue_hu: float, min_ml: float = 5.0, shell_mm: float = 2.0) -> BoolArray:
    """The organ that encloses the zone, as seen from ``region``: tissue brighter than the
    region's upper threshold ``upper_hu`` and not much brighter than the surrounding liver
    (``tissue_hu`` + 60 HU: liver, rim, not bone), plus bile-dark tissue between -30 HU and
    ``lower_hu`` (the gallbladder); opened once, and only the pieces that touch the region's
    outer shell (``shell_mm``) and hold at least ``min_ml``."""
    outside = ~region
    shell = outside & (morph.edt(outside, sp) <= shell_mm)
    vox_ml = float(np.prod(sp)) / 1000.0
    organ = np.zeros(region.shape, bool)
    for band in ((sm > upper_hu) & (sm < tissue_hu + 60.0),
                 (sm >= -30.0) & (sm < lower_hu)):
        band = ndimage.binary_opening(band & outside)
        lab, _ = ndimage.label(band)
        ids = np.unique(lab[shell & band])
        ids = ids[ids > 0]
        if ids.size:
            sizes = np.bincount(lab.ravel())[ids] * vox_ml
            organ |= np.isin(lab, ids[sizes >= min_ml])
    return organ


def enclosed_part(region: BoolArray, marker: BoolArray, sm: F32, sp: F64, *, upper_hu: float,
                  lower_hu: float, tissue_hu: float, min_fraction: float = 0.52,
                  range_mm: float = 100.0, crop_mm: float = 20.0) -> BoolArray:
    """The part of ``region`` (connected to ``marker``) whose points see the organ
    (:func:`organ_around`) in at least ``min_fraction`` of directions (a little above 1/2: the
    layer just outside a flat capsule reads 1/2 - h/range, within one direction of 1/2).
    Everything is computed on ``region``'s box grown by ``crop_mm`` (rays leaving it miss: the
    organ around a zone is met within millimetres of it). Returns ``region`` unchanged when it
    is empty, when no organ is found or when nothing connected to the marker would remain."""
    if not region.any():
        return region
    sub = morph.bbox(region, int(np.ceil(crop_mm / float(sp.min()))), region.shape)
    reg = region[sub]
    organ = organ_around(reg, sm[sub], sp, upper_hu=upper_hu, lower_hu=lower_hu,
                         tissue_hu=tissue_hu)
    if not organ.any():
        return region
    frac = organ_fraction(reg, organ, sp, range_mm=range_mm)
    kept = np.zeros_like(region)
    kept[sub] = reg & (frac >= min_fraction)
    kept = morph.component_touching(kept, marker)
    return kept if kept.any() else region
