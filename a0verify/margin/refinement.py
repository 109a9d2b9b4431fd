"""MAM refinement by local quadric patches of both masks' voxel data.

Around the lowest-margin region(s) of the per-vertex field, local implicit quadrics are fitted to
each mask's *voxel data* (linear programs: every quadric separating the inside from the outside
voxel centres is consistent with the data; the midpoint of the extreme consistent surfaces is
used and the half-range is the local data band), and the MAM is the gap between the two patches
along their common normal. This recovers sub-voxel positions at thick slices and at caps, where
border-voxel methods err by up to half a slice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from a0verify.margin import core
from a0verify.margin.field import FieldCorrection, bump
from a0verify.margin.levelset import LevelSet

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

REFINE_RADIUS_MIN_MM = 3.5
REFINE_RADIUS_VOXELS = 3.0
REFINE_CANDIDATE_MM = 0.6
REFINE_MAX_CANDIDATES = 2
REFINE_MAX_SHIFT_MM = 1.0
REFINE_STEP_MM = 1.0
REFINE_BAND_MAX_MM = 1.0
REFINE_BAND_OK_MM = 0.3
REFINE_RADIUS_GROWTH = 1.35
REFINE_RADIUS_MAX_MM = 12.0
REFINE_SLACK_MAX_MM = 0.3
#: More regions are refined while the field still lies this far below the MAM found so far,
#: up to REFINE_MAX_REGIONS regions in all (see :func:`refine_field`).
REFINE_CONSISTENT_MM = 0.05
REFINE_MAX_REGIONS = 6
#: A region that could not be refined sets the MAM (its lowest field value) only when it lies
#: this far below the refined MAM: a thinner spot the voxel data could not pin down, rather than
#: the field's noise.
REFINE_FAILED_BELOW_MM = 0.5


@dataclass(frozen=True)
class RefinedMinimum:
    """A refined margin minimum: ``margin_mm`` at LPS ``point_lps`` (on the tumour patch),
    ``band_mm`` the half-range of data-consistent surfaces there and ``sharpness_per_mm`` the
    curvature of the gap between the patches around it."""

    margin_mm: float
    point_lps: F64
    band_mm: float
    sharpness_per_mm: float


@dataclass(frozen=True)
class _PatchGap:
    """Gap between the two patches along a tumour vertex normal."""

    gap_mm: float
    point_lps: F64
    band_mm: float
    step_uv: F64  # in-patch minimiser (u, v) of the gap's quadratic trend (mm)
    frame: F64  # (3, 3): u, v, normal
    sharpness_per_mm: float


def patch_radius(level: LevelSet, cap: float) -> float:
    """Initial radius (mm) of a quadric patch on ``level``: a few voxels, at most ``cap``."""
    h = float(max(level.grid.GetSpacing()))
    return float(min(max(REFINE_RADIUS_MIN_MM, REFINE_RADIUS_VOXELS * h), cap))


def fit_level_patch(level: LevelSet, centre: F64, origin: F64, frame: F64, radius: float,
                    mesh: tuple[F64, I64] | None,
                    max_radius: float | None = None) -> tuple[F64, float, float] | None:
    """Quadric patch of ``level``'s surface near ``centre`` in ``frame`` at ``origin``:
    separating quadric of the voxel data for masks (the radius grows up to ``max_radius`` while
    the data leave the surface height ambiguous, e.g. at caps seen on few thick slices; the
    narrowest band wins), least squares on the mesh for level sets. Returns (coefficients,
    band mm, slack mm) or None."""
    if level.mask is not None:
        pts, cls = level.boundary_lps()
        d2 = np.sum((pts - centre) ** 2, axis=1)
        best: tuple[F64, float, float] | None = None
        r = radius
        rmax = radius if max_radius is None else max(radius, max_radius)
        while True:
            sel = d2 <= r * r
            if sel.sum() >= 20:
                fit = core.fit_quadric_patch(pts[sel], cls[sel], origin, frame)
                if fit is not None and (best is None or fit[1] + fit[2] < best[1] + best[2]):
                    best = fit
                if best is not None and best[1] + best[2] <= REFINE_BAND_OK_MM:
                    break
            if r >= rmax:
                break
            r = min(rmax, r * REFINE_RADIUS_GROWTH)
        return best
    if mesh is None:
        return None
    v = mesh[0]
    sel = np.sum((v - centre) ** 2, axis=1) <= radius * radius
    if sel.sum() < 20:
        return None
    q = (v[sel] - origin) @ frame.T
    phi = core.quadric_features(q)
    c, *_ = np.linalg.lstsq(phi, q[:, 2], rcond=None)
    res = float(np.abs(phi @ c - q[:, 2]).max())
    return c, res, 0.0


def smooth_argmin(tv: F64, vn: F64, margin: F64, i: int, radius: float) -> tuple[int, float]:
    """Vertex nearest to the minimum of a quadratic fitted to the mesh margins around vertex
    ``i``, and the fitted (denoised) margin there. The mesh margins are noisy at the voxel scale;
    their smooth trend locates the MAM and averages the noise."""
    p = tv[i]
    sel = np.flatnonzero(np.sum((tv - p) ** 2, axis=1) <= radius * radius)
    if len(sel) < 12:
        return i, float(margin[i])
    frame = core.local_frame(vn[i])
    q = (tv[sel] - p) @ frame.T
    phi = np.stack([np.ones(len(q)), q[:, 0], q[:, 1], q[:, 0] ** 2, q[:, 0] * q[:, 1],
                    q[:, 1] ** 2], axis=1)
    c, *_ = np.linalg.lstsq(phi, margin[sel], rcond=None)
    hess = np.array([[2 * c[3], c[4]], [c[4], 2 * c[5]]])
    x = np.zeros(2)
    if np.linalg.eigvalsh(hess).min() > 1e-6:
        x = np.linalg.solve(hess, -c[1:3])
        if float(np.hypot(x[0], x[1])) > 0.6 * radius:
            x = np.zeros(2)
    val = float(c[0] + c[1] * x[0] + c[2] * x[1] + c[3] * x[0] ** 2 + c[4] * x[0] * x[1]
                + c[5] * x[1] ** 2)
    target = p + x[0] * frame[0] + x[1] * frame[1]
    j = int(sel[np.argmin(np.sum((tv[sel] - target) ** 2, axis=1))])
    return j, min(val, float(margin[j]) + 0.5)


def smooth_value(tv: F64, vn: F64, margin: F64, point: F64, radius: float) -> float:
    """The smooth trend of the per-vertex ``margin`` at LPS ``point`` (near the surface): a
    quadratic in the tangent plane fitted to the vertices within ``radius`` of it."""
    i = int(np.argmin(np.sum((tv - point) ** 2, axis=1)))
    sel = np.flatnonzero(np.sum((tv - tv[i]) ** 2, axis=1) <= radius * radius)
    if len(sel) < 12:
        return float(margin[i])
    frame = core.local_frame(vn[i])
    q = (tv[sel] - tv[i]) @ frame.T
    phi = np.stack([np.ones(len(q)), q[:, 0], q[:, 1], q[:, 0] ** 2, q[:, 0] * q[:, 1],
                    q[:, 1] ** 2], axis=1)
    c, *_ = np.linalg.lstsq(phi, margin[sel], rcond=None)
    x = (np.asarray(point, np.float64) - tv[i]) @ frame[:2].T
    return float(c[0] + c[1] * x[0] + c[2] * x[1] + c[3] * x[0] ** 2 + c[4] * x[0] * x[1]
                 + c[5] * x[1] ** 2)


def _patch_margin(tv: F64, vn: F64, margin: F64, i: int, tlev: LevelSet, zl: LevelSet,
                  rt: tuple[float, float], rz: tuple[float, float], mesh: tuple[F64, I64]
                  ) -> _PatchGap | None:
    """Margin at tumour vertex ``i`` from quadric patches of both surfaces along its normal;
    None when a patch cannot be fitted."""
    p = tv[i]
    frame = core.local_frame(vn[i])
    ft = fit_level_patch(tlev, p, p, frame, rt[0], mesh, rt[1])
    # the zone patch is fitted in the same axes, centred on the zone surface near p + margin n
    # (the quadric's regularisation is meant for its own neighbourhood)
    shift = float(margin[i])
    fz = fit_level_patch(zl, p + shift * vn[i], p + shift * vn[i], frame, rz[0], None, rz[1])
    if ft is None or fz is None:
        return None
    if max(ft[1], fz[1]) > REFINE_BAND_MAX_MM or max(ft[2], fz[2]) > REFINE_SLACK_MAX_MM:
        return None  # the voxel data do not pin the surface down locally
    # Gap along the shared normal n between the two patches on a small (u, v) grid around the
    # vertex (each patch is evaluated only near its own data); at the MAM pair both surfaces are
    # normal to n, so the gap times the cosine between n and the zone normal is the distance.
    # The value at the vertex is the estimate; the gap's quadratic trend locates the minimum for
    # the next iteration.
    g1 = np.array([-1.0, 0.0, 1.0]) * REFINE_STEP_MM
    uu, vv = np.meshgrid(g1, g1, indexing="ij")
    uv = np.stack([uu.ravel(), vv.ravel()], axis=1)
    hts = np.array([core.quadric_height(ft[0], a, b) for a, b in uv])
    hzs = np.array([core.quadric_height(fz[0], a, b) for a, b in uv])
    d = shift + hzs - hts
    if not np.all(np.isfinite(d)):
        return None
    grad = core.quadric_gradient(fz[0], np.array([[0.0, 0.0, hzs[4]]]))[0]
    cos = float(-grad[2] / max(float(np.linalg.norm(grad)), 1e-12))
    if cos < 0.5:
        return None  # the zone surface is far from normal to n here: not a margin pair
    gap = float(d[4]) * cos
    phi = np.stack([np.ones(9), uv[:, 0], uv[:, 1], uv[:, 0] ** 2, uv[:, 0] * uv[:, 1],
                    uv[:, 1] ** 2], axis=1)
    g, *_ = np.linalg.lstsq(phi, d, rcond=None)
    hess = np.array([[2 * g[3], g[4]], [g[4], 2 * g[5]]])
    x = np.zeros(2)
    if np.linalg.eigvalsh(hess).min() > 1e-4:
        x = np.linalg.solve(hess, -g[1:3])
    pt = p + hts[4] * frame[2]
    half = float(np.hypot(ft[1], fz[1]) + ft[2] + fz[2])
    sharp = float(max(np.linalg.eigvalsh(hess).max(), 0.0)) / 2.0
    return _PatchGap(gap, pt, half, x, frame, sharp)


def _radii(tlev: LevelSet, zl: LevelSet, vol_ml: float
           ) -> tuple[tuple[float, float], tuple[float, float]]:
    """Initial and largest patch radii (mm) on the tumour and on the zone."""
    r_eq = (3.0 * vol_ml * 1000.0 / (4.0 * np.pi)) ** (1.0 / 3.0)
    rt = (patch_radius(tlev, 0.9 * r_eq), min(REFINE_RADIUS_MAX_MM, 1.2 * r_eq))
    rz = (patch_radius(zl, 15.0), REFINE_RADIUS_MAX_MM)
    return rt, rz


def refine_at(i0: int, tv: F64, tf: I64, vn: F64, margin: F64, tlev: LevelSet, zl: LevelSet,
              rt: tuple[float, float], rz: tuple[float, float]) -> RefinedMinimum | None:
    """Refined margin minimum in the region of vertex ``i0`` (the smooth trend of ``margin``
    locates it, the patches' gap steps towards it twice); None when the patches cannot be
    fitted or disagree grossly with the field."""
    i, _ = smooth_argmin(tv, vn, margin, i0, rt[0])
    res = None
    for _ in range(2):
        res = _patch_margin(tv, vn, margin, i, tlev, zl, rt, rz, (tv, tf))
        if res is None:
            break
        x = res.step_uv
        if not (0.2 < float(np.hypot(x[0], x[1])) < 0.5 * rt[0]):
            break
        target = tv[i] + x[0] * res.frame[0] + x[1] * res.frame[1]
        i = int(np.argmin(np.sum((tv - target) ** 2, axis=1)))
    if res is None:
        return None
    if abs(res.gap_mm - margin[i]) > REFINE_MAX_SHIFT_MM + float(max(zl.grid.GetSpacing())):
        return None  # patch fit disagrees grossly with the mesh: do not trust it
    return RefinedMinimum(res.gap_mm, res.point_lps, res.band_mm, res.sharpness_per_mm)


@dataclass
class RefinedField:
    """The per-vertex margin field with the refined minima carried into it, and the MAM.

    ``margin_mm`` (N,) is the field after the corrections (see :func:`refine_field`), never below
    ``mam_mm``; ``source`` is "patch" when the MAM comes from a refined region, "mesh" when from
    the field's smooth trend (no region could be refined below it). ``regions_refined`` /
    ``regions_tried`` count the regions; ``raised_max_mm`` is the most any vertex was raised to
    the MAM at the end (0 when the corrections alone made the field agree)."""

    margin_mm: F64
    mam_mm: float
    point_lps: F64
    band_mm: float
    sharpness_per_mm: float
    source: str
    corrections: list[FieldCorrection]
    regions_refined: int
    regions_tried: int
    raised_max_mm: float


def unrefined_field(tv: F64, vn: F64, margin: F64, smooth_radius: float) -> RefinedField:
    """The field's own smooth minimum as the MAM (no refinement: e.g. a lower-bound margin),
    the field raised to it."""
    k = int(np.argmin(margin))
    j, val = smooth_argmin(tv, vn, margin, k, smooth_radius)
    # the smooth trend denoises the minimum, within [lowest value, lowest value + 0.5 mm] (no
    # extrapolation below every vertex)
    mam = float(np.clip(val, margin[k], margin[k] + 0.5))
    return RefinedField(np.maximum(margin, mam), mam, tv[j].copy(), 0.0, 0.0, "mesh", [],
                        0, 0, float(max(0.0, mam - float(margin.min()))))


def refine_field(tv: F64, tf: I64, vn: F64, margin: F64, tlev: LevelSet, zl: LevelSet,
                 vol_ml: float, smooth_radius: float) -> RefinedField:
    """Refine the MAM region by region and carry each refined value into the field.

    Regions (centred on a vertex, at least the tumour patch radius r apart) are taken lowest
    field value first: the first ones within the candidate spread of the field's minimum (at
    most REFINE_MAX_CANDIDATES), then any whose field value still lies REFINE_CONSISTENT_MM below
    the MAM found so far, up to REFINE_MAX_REGIONS. A refined region adds ``refined - local
    field minimum`` to the field within r of its point, fading out at 2 r (cos^2), never
    touching vertices an earlier region already set. A region that cannot be refined keeps its
    field; its lowest value sets the MAM only when it lies REFINE_FAILED_BELOW_MM below the
    refined MAM (else it is taken as the field's noise). Without any refined region the MAM is
    the field's smooth minimum (:func:`unrefined_field`). Finally the vertex nearest the MAM's
    point is brought to the MAM (with its neighbourhood, same fall-off) and the field is raised
    to the MAM where it still lies below it (noise of the field away from the refined regions),
    so the field's minimum is the MAM."""
    rt, rz = _radii(tlev, zl, vol_ml)
    spread = REFINE_CANDIDATE_MM + 0.5 * float(max(zl.grid.GetSpacing()))
    field = np.asarray(margin, np.float64).copy()
    m0 = float(field.min())
    done_w = np.zeros(len(tv))
    free = np.ones(len(tv), bool)
    corrections: list[FieldCorrection] = []
    best: RefinedMinimum | None = None
    mesh_best: tuple[float, F64] | None = None
    tried = 0
    for n in range(REFINE_MAX_REGIONS):
        if not free.any():
            break
        idx = np.flatnonzero(free)
        i = int(idx[np.argmin(field[idx])])
        current = min(best.margin_mm if best is not None else np.inf,
                      mesh_best[0] if mesh_best is not None else np.inf)
        first = n < REFINE_MAX_CANDIDATES and margin[i] <= m0 + spread
        if not (first or field[i] < current - REFINE_CONSISTENT_MM):
            break
        tried += 1
        free &= np.linalg.norm(tv - tv[i], axis=1) > rt[0]
        res = refine_at(i, tv, tf, vn, field, tlev, zl, rt, rz)
        if res is None:  # the region keeps its field; its lowest value is its estimate
            if mesh_best is None or field[i] < mesh_best[0]:
                mesh_best = (float(field[i]), tv[i].copy())
            continue
        dist = np.linalg.norm(tv - res.point_lps, axis=1)
        local = smooth_value(tv, vn, field, res.point_lps, rt[0])
        corr = FieldCorrection(res.point_lps, res.margin_mm - local, rt[0])
        w = bump(dist, rt[0]) * (1.0 - done_w)
        field = field + corr.delta_mm * w
        done_w = np.maximum(done_w, np.minimum(1.0, done_w + w))
        corrections.append(corr)
        if best is None or res.margin_mm < best.margin_mm:
            best = res
    if best is None:  # nothing refined: the field's own smooth minimum
        return unrefined_field(tv, vn, field, smooth_radius)
    if mesh_best is not None and mesh_best[0] < best.margin_mm - REFINE_FAILED_BELOW_MM:
        mam, pt, band, sharp, source = mesh_best[0], mesh_best[1], 0.0, 0.0, "mesh"
    else:
        mam, pt, band, sharp, source = (best.margin_mm, best.point_lps, best.band_mm,
                                        best.sharpness_per_mm, "patch")
    # the vertex nearest the MAM's point reads the MAM (a region whose vertices an earlier,
    # overlapping region had already set may have kept them above it)
    near = np.linalg.norm(tv - np.asarray(pt, np.float64), axis=1)
    j = int(np.argmin(near))
    if field[j] > mam:
        field = field - (field[j] - mam) * bump(near, rt[0])
    raised = float(max(0.0, mam - float(field.min())))
    field = np.maximum(field, mam)
    return RefinedField(field, float(mam), np.asarray(pt, np.float64), float(band), float(sharp),
                        source, corrections, len(corrections), tried, raised)
