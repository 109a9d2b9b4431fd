"""Discretisation uncertainty of the MAM: a calibrated 95 % half-width (mm).

Model for patch (refined) estimates:
``UNC_BASE + UNC_K h + UNC_BAND min(band, UNC_BAND_CAP) + UNC_SHARP min(sharp h^2, cap)`` with
h = sqrt(h_t^2 + h_a^2) the voxel extent of both grids seen along the margin direction, band
the half-range of surface positions the voxel data allow at the MAM (local quadric fits) and
sharp the curvature (1/mm) of the margin around its minimum (e.g. at the tip of an elongated
tumour a small error in locating the minimum costs sharp * offset^2). Fitted on 160 random
analytic cases (0.7 mm isotropic to 0.8 x 0.8 x 3 mm, axis-aligned and oblique: 98.8 %
covered, mean half-width 0.22 mm); checked on fresh cases by
``benchmarks/bench_margin.py --accuracy``. Estimates that could not be refined (mesh only)
use ``UNC_BASE + UNC_MESH_K h``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

from a0verify import geometry

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

UNC_BASE = 0.06
UNC_K = 0.03
UNC_BAND = 0.3
UNC_BAND_CAP = 1.0
UNC_SHARP = 0.1
UNC_SHARP_CAP = 2.0
UNC_MESH_K = 0.35


def grid_step(p: F64, tv: F64, tf: I64, normals: F64, area: F64, tgrid: sitk.Image,
              agrid: sitk.Image) -> float:
    """Combined voxel extent (mm) of the tumour and ablation grids seen along the tumour normal
    at surface point ``p``: ``hypot(h_t, h_a)``. Both surfaces are reconstructed from voxels; their
    position error along the margin direction scales with it (largest along thick slices)."""
    cen = tv[tf].mean(axis=1)
    near = np.linalg.norm(cen - p, axis=1) < 2.0 * float(max(tgrid.GetSpacing()))
    n = (normals[near] * area[near, None]).sum(axis=0) if near.any() else np.array([0, 0, 1.0])
    n = n / max(float(np.linalg.norm(n)), 1e-12)
    ht = geometry.voxel_extent_along(tgrid, n)
    ha = geometry.voxel_extent_along(agrid, n)
    return float(np.hypot(ht, ha))


def mam_half_width(source: str, step: float, band: float = 0.0, sharp: float = 0.0) -> float:
    """95 % half-width (mm) of the MAM's discretisation error: ``source`` "patch" (refined;
    ``band`` mm and ``sharp`` 1/mm from the refinement) or "mesh" (not refined); ``step`` from
    :func:`grid_step`."""
    if source == "patch":
        return (UNC_BASE + UNC_K * step + UNC_BAND * min(band, UNC_BAND_CAP)
                + UNC_SHARP * min(sharp * step * step, UNC_SHARP_CAP))
    return UNC_BASE + UNC_MESH_K * step
