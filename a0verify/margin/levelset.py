"""Continuous level sets (mm, positive inside, boundary at 0) of the tumour and the ablation
zone on crops of their grids, and their zero-level surfaces.

A binary mask becomes a level set by *shape-based interpolation* along its thickest grid axis
(:func:`a0verify.margin.core.shape_based_level`): sub-pixel 2-D signed distances per slice,
joined between slices, refined ``up`` times along that axis. Lattice <-> LPS mapping:
:class:`a0verify.geometry.RefinedLattice`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

from a0verify import geometry
from a0verify.margin import core

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
F32 = npt.NDArray[np.float32]


@dataclass
class LevelSet:
    """A continuous level set (mm, positive inside) sampled on ``lattice`` (a refined crop of a
    grid). ``values`` are in lattice axis order; ``spacing`` (mm) too."""

    values: F32
    lattice: geometry.RefinedLattice
    spacing: F64
    mask: npt.NDArray[np.bool_] | None = None  # binary crop (z, y, x) it was built from
    distance: F32 | None = None  # signed distance (mm), every dist_step-th lattice slice
    dist_step: int = 1  # along lattice axis 0
    frame: int = 0  # background voxels added around the crop (see zone_level)
    _bnd: tuple[F64, npt.NDArray[np.bool_]] | None = None

    @property
    def grid(self) -> sitk.Image:
        """The parent grid (geometry only)."""
        return self.lattice.grid

    @property
    def up(self) -> int:
        """Refinement of lattice axis 0."""
        return self.lattice.up

    @property
    def perm(self) -> tuple[int, int, int]:
        """Lattice axis i = crop axis perm[i] (crop axes in z, y, x order)."""
        return self.lattice.perm

    def boundary_lps(self) -> tuple[F64, npt.NDArray[np.bool_]]:
        """LPS centres of the crop's boundary voxels (both classes) and their class."""
        if self._bnd is None:
            assert self.mask is not None
            idx = core.boundary_points(self.mask)
            pts = geometry.zyx_index_to_lps(
                self.grid, idx.astype(np.float64) + np.asarray(self.lattice.lo_zyx))
            self._bnd = (pts, self.mask[idx[:, 0], idx[:, 1], idx[:, 2]])
        return self._bnd

    def sample_index(self, index: F64, outside: float) -> F64:
        """Trilinear level-set values (mm) at lattice indices (N, 3)."""
        return core.trilinear(self.values, np.ascontiguousarray(index), outside)

    def sample(self, pts: F64, outside: float) -> F64:
        """Trilinear level-set values (mm) at LPS points; ``outside`` beyond the lattice."""
        f = np.ascontiguousarray(self.lattice.lps_to_index(pts))
        return core.trilinear(self.values, f, outside)

    def sample_distance(self, pts: F64, outside: float) -> F64:
        """Trilinear values (mm) of the lattice signed distance ``distance`` at LPS points."""
        assert self.distance is not None
        f = self.lattice.lps_to_index(pts)
        f[:, 0] /= self.dist_step
        return core.trilinear(self.distance, np.ascontiguousarray(f), outside)


def mask_level(mask: npt.NDArray[np.bool_], grid: sitk.Image, lo_zyx: npt.ArrayLike
               ) -> LevelSet:
    """Continuous level set of a binary crop (z, y, x) of ``grid`` starting at ``lo_zyx``."""
    sp = geometry.spacing_zyx(grid)
    thick = int(np.argmax(sp))
    others = [a for a in range(3) if a != thick]
    perm = (thick, others[0], others[1])
    sp_p = sp[list(perm)]
    up = max(2, int(np.ceil(sp_p[0] / sp_p[1:].min() - 1e-6)))
    m = np.ascontiguousarray(np.transpose(mask, perm))
    lev, sp_f = core.shape_based_level(m, sp_p, up)
    lo = tuple(float(v) for v in np.asarray(lo_zyx, np.float64))
    return LevelSet(lev, geometry.RefinedLattice(grid, lo, perm, up), sp_f,  # type: ignore[arg-type]
                    mask=mask)


def image_level(values: F32, grid: sitk.Image, lo_zyx: npt.ArrayLike) -> LevelSet:
    """Level set given as signed-distance values (mm, positive inside) on a crop of ``grid``."""
    lo = tuple(float(v) for v in np.asarray(lo_zyx, np.float64))
    return LevelSet(np.ascontiguousarray(values, np.float32),
                    geometry.RefinedLattice(grid, lo), geometry.spacing_zyx(grid))  # type: ignore[arg-type]


def zone_level(abl_arr: npt.NDArray[Any], ablation: sitk.Image,
               roi: geometry.IndexBox) -> LevelSet:
    """Refined level set of the zone inside ``roi`` with its exact signed distance (mm).

    A crop without any background voxel (the zone fills the region, up to the image's edge) is
    framed by one voxel of background outside it (``frame`` = 1): its boundary is then put just
    beyond the crop, so distances are lower bounds (what lies beyond the image is unknown)."""
    sub = np.asarray(abl_arr[roi.slices]) != 0
    frame = 0
    if sub.all():
        sub, frame = np.pad(sub, 1, mode="constant"), 1
    zl = mask_level(sub, ablation, np.asarray(roi.lo_zyx, np.float64) - frame)
    zl.frame = frame
    # the distance map is only used for per-vertex margins (fractions, patches, candidates) and
    # the output map: every ``dist_step``-th refined slice is plenty (slices <= ~1.3 mm apart)
    step = max(1, zl.up // 2)
    if zl.up % step:
        step = 1
    sp = zl.spacing * np.array([step, 1.0, 1.0])
    zl.distance = core.signed_distance(np.ascontiguousarray(zl.values[::step] > 0), sp)
    zl.dist_step = step
    return zl


def level_mesh(level: LevelSet) -> tuple[F64, I64]:
    """Closed zero-level surface of ``level`` in LPS mm; outward (towards negative) normals."""
    verts, faces = core.surface_mesh(level.values, level.spacing, 0.0)
    if len(verts) == 0:
        return np.zeros((0, 3)), np.zeros((0, 3), np.int64)
    verts_lps = level.lattice.index_to_lps(verts)
    # Orientation: make normals point out of the shape (down the level's gradient) in LPS,
    # whatever the handedness of the grid / permutation.
    sub = faces[:: max(1, len(faces) // 512)]
    _, nrm = core.face_areas_normals(verts_lps, sub)
    cen = verts_lps[sub].mean(axis=1)
    step = 0.25 * float(level.spacing.min())
    out_val = level.sample(cen + step * nrm, np.nan)
    in_val = level.sample(cen - step * nrm, np.nan)
    ok = np.isfinite(out_val) & np.isfinite(in_val)
    if ok.any() and np.mean(out_val[ok] < in_val[ok]) < 0.5:
        faces = faces[:, ::-1].copy()
    return verts_lps, faces


def native_distance(zl: LevelSet) -> F32:
    """The zone's lattice signed distance at the native voxel centres of its ROI (z, y, x)."""
    assert zl.distance is not None
    d = np.transpose(zl.distance[:: zl.up // zl.dist_step], np.argsort(zl.perm))
    if zl.frame:
        d = d[tuple(slice(zl.frame, n - zl.frame) for n in d.shape)]
    return np.ascontiguousarray(d)


def outside_fraction(tlev: LevelSet, zl: LevelSet) -> float:
    """Fraction of the tumour (lattice samples inside it) lying outside the zone."""
    idx = np.argwhere(tlev.values > 0).astype(np.float64)
    idx = idx[:: max(1, len(idx) // 20000)]  # an even subsample is plenty for a fraction
    if len(idx) == 0:
        return 0.0
    pts = tlev.lattice.index_to_lps(idx)
    z = zl.sample(pts, -1.0)
    return float(np.mean(z <= 0))
