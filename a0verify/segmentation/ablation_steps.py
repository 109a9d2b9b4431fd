"""Stateless array steps of the ablation-zone grower (:mod:`a0verify.segmentation.ablation`):
pre-smoothing with streak suppression, the zone's HU mode at a click beside metal, filling holes
that touch artefacts, the zone's thickness at the seed. Arrays are (z, y, x); ``sp`` is the
spacing in mm in that order; ``seed`` a (z, y, x) continuous index; HU throughout."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from a0verify.segmentation import morph

BoolArray = npt.NDArray[np.bool_]
F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]


def smooth_ct(raw: F32, sp: F64, smooth_sigma_mm: float, metal_hu: float,
              streak_median_mm: float) -> F32:
    """Gaussian pre-smoothing; axial slices holding metal are first median-filtered in plane
    (``streak_median_mm`` wide), which removes thin streaks and keeps edges."""
    metal_slices = np.nonzero((raw > metal_hu).any(axis=(1, 2)))[0]
    if metal_slices.size:
        raw = raw.copy()
        k = max(3, round(streak_median_mm / float(sp[1:].min())) | 1)
        for z in metal_slices:
            raw[z] = ndimage.median_filter(raw[z], size=k, mode="nearest")
    return np.asarray(ndimage.gaussian_filter(raw, sigma=smooth_sigma_mm / sp, mode="nearest"),
                      dtype=np.float32)


def seed_mode_marker(sm: F32, art: BoolArray, seed: F64, sp: F64, radius_mm: float,
                     core_mm: float, bandwidth_hu: float, within_hu: float) -> BoolArray:
    """Marker for a click beside a metal needle (more than half of its ``radius_mm`` ball
    lies in the streak core, ``metal_avoid_mm`` around the metal): the voxels near the zone's
    HU *mode*.

    The mode is the peak of a kernel density of the smoothed HU (bandwidth ``bandwidth_hu``)
    over the ball outside gas and metal, each voxel weighted by a Gaussian of its distance to
    the click (sigma ``core_mm``). The zone is a plateau of similar HU and forms a peak;
    the streak core spreads over hundreds of HU and forms none, and the parenchyma beyond the
    edge of a small zone is weighted down by its distance. (A wider ball clear of the streak
    core, the fallback used before, mostly holds parenchyma when the zone is 1-2 cm.) The marker
    is the ball's voxels within ``within_hu`` of the mode; empty when there are too few."""
    cand = morph.ball(sm.shape, seed, radius_mm, sp) & ~art
    if cand.sum() < 10:
        return np.zeros_like(art)
    idx = np.argwhere(cand)
    d2 = np.sum(((idx - seed) * sp) ** 2, axis=1)
    w = np.exp(-0.5 * d2 / core_mm ** 2)
    vals = sm[cand].astype(np.float64)
    lo_edge, step = -300.0, 2.0
    hist = np.bincount(np.clip(((vals - lo_edge) / step).astype(int), 0, 400), weights=w,
                       minlength=401)
    dens = ndimage.gaussian_filter1d(hist, bandwidth_hu / step, mode="constant")
    mode = lo_edge + step * (float(np.argmax(dens)) + 0.5)
    marker = cand & (np.abs(sm - mode) <= within_hu)
    return marker if marker.sum() >= 10 else np.zeros_like(art)


def fill_artefact_holes(region: BoolArray, art: BoolArray) -> BoolArray:
    """Enclosed holes that touch an artefact (the partial-volume halo of a bubble beyond the
    artefact margin, a bright streak core beside the needle) belong to the zone: left open they
    thin its wall, and the neck cut would then cut the zone itself. Other enclosed holes (a
    vessel crossing the zone) stay open until the final hole filling."""
    holes = np.asarray(ndimage.binary_fill_holes(region)) & ~region
    if not holes.any() or not art.any():
        return region
    lab, _ = ndimage.label(holes, structure=morph.STRUCT26)
    ids = np.unique(lab[ndimage.binary_dilation(art, structure=morph.STRUCT26) & holes])
    return np.asarray(region | np.isin(lab, ids[ids > 0]))


def depth_at_seed(region: BoolArray, seed: F64, sp: F64) -> float:
    """Radius (mm) of the largest ball inside ``region`` near the seed (within 15 mm): the
    zone's own thickness, which a leak elsewhere does not inflate."""
    near = morph.ball(region.shape, seed, 15.0, sp)
    sub = morph.bbox(near, 1, region.shape)
    d = morph.edt(np.pad(region[sub], 1), sp)[1:-1, 1:-1, 1:-1]
    vals = d[near[sub] & region[sub]]
    return float(vals.max()) if vals.size else 0.0
