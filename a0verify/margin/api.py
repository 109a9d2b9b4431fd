"""Margin API: SimpleITK images in, :class:`MarginResult` out.

Sign convention: margin(p) = signed distance (mm) from tumour-surface point p to the
ablation-zone boundary, **positive inside the ablation zone**. MAM = min over the tumour surface.

Method (all geometry in physical LPS mm, so the two masks may lie on different grids with any
direction cosines and anisotropic spacing):

1. Each binary mask is turned into a continuous level set by *shape-based interpolation* along its
   thickest grid axis (:func:`a0verify.margin.core.shape_based_level`): sub-pixel 2-D signed
   distances per slice, joined between slices with the curvature of the local cross-section
   radius, and closed between slices where the shape ends (caps) at the pole predicted by that
   radius profile. Only a region of interest around each lesion is processed (tumour box +
   threshold + safety band on the ablation grid).
2. The tumour surface is the marching-cubes zero level of its level set (sub-voxel vertices).
   Per-vertex margins come from the exact anisotropic EDT (Numba) of the refined zone level set,
   sampled trilinearly; they give the area fractions, deficit patches and the surface mesh.
3. The MAM itself is refined where it occurs: around the lowest-margin region(s), local implicit
   quadrics are fitted to each mask's *voxel data* (linear programs: every quadric separating the
   inside from the outside voxel centres is consistent with the data; the midpoint of the extreme
   consistent surfaces is used and the half-range is the local data band), and the MAM is the gap
   between the two patches along their common normal. This recovers sub-voxel positions at thick
   slices and at caps, where border-voxel methods err by up to half a slice.
4. ``uncertainty_mm`` is a calibrated 95 % half-width from the voxel extent along the margin
   direction and the local data band (see UNC_* below).

The tumour may be given as a label image (one lesion per label; a single label is split into
26-connected components) or as a mapping ``{lesion_id: level-set image}`` where each image holds a
signed distance in mm, positive inside the tumour, boundary at 0.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

from a0verify import geometry
from a0verify.errors import InputError
from a0verify.margin import core

TumorInput = sitk.Image | Mapping[int, sitk.Image]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

#: Safety band (mm) added to the threshold around each tumour for the ablation ROI.
SAFETY_MM = 6.0
#: Calibrated 95 % half-width model of the MAM discretisation error (patch estimates):
#: ``UNC_BASE + UNC_K h + UNC_BAND min(band, UNC_BAND_CAP) + UNC_SHARP min(sharp h^2, cap)`` with
#: h = sqrt(h_t^2 + h_a^2) the voxel extent of both grids seen along the margin direction, band
#: the half-range of surface positions the voxel data allow at the MAM (local quadric fits) and
#: sharp the curvature (1/mm) of the margin around its minimum (e.g. at the tip of an elongated
#: tumour a small error in locating the minimum costs sharp * offset^2). Fitted on 160 random
#: analytic cases (0.7 mm isotropic to 0.8 x 0.8 x 3 mm, axis-aligned and oblique: 98.8 %
#: covered, mean half-width 0.22 mm); checked on fresh cases by
#: ``benchmarks/bench_margin.py --accuracy``. Estimates that could not be refined (mesh only)
#: use ``UNC_BASE + UNC_MESH_K h``.
UNC_BASE = 0.06
UNC_K = 0.03
UNC_BAND = 0.3
UNC_BAND_CAP = 1.0
UNC_SHARP = 0.1
UNC_SHARP_CAP = 2.0
UNC_MESH_K = 0.35
#: MAM refinement by local quadric patches (see :func:`_refine_mam`).
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


@dataclass
class SurfaceMesh:
    """Triangle mesh of a tumour surface in LPS mm with the margin (mm) at each vertex.

    Face normals (right-hand rule on ``faces``) point out of the tumour."""

    vertices_lps: F64  # (N, 3)
    faces: I64  # (M, 3) vertex indices
    margin_mm: F64  # (N,)

    def face_areas(self) -> F64:
        """Area of every face in mm^2."""
        return core.face_areas_normals(self.vertices_lps, self.faces)[0]


@dataclass
class DeficitPatch:
    """Connected region of tumour surface with margin below the threshold (where to re-ablate).

    ``outward_direction_lps`` is the unit, area-weighted mean outward surface normal of the patch.
    """

    area_mm2: float
    min_margin_mm: float
    centroid_lps: list[float]
    outward_direction_lps: list[float]
    min_margin_point_lps: list[float] = field(default_factory=list)


@dataclass
class LesionMargin:
    """Margin figures of one lesion. Points are LPS mm (RAS given alongside for people)."""

    id: int
    min_margin_mm: float
    min_margin_point_lps: list[float]
    min_margin_point_ras: list[float]
    surface_fraction: dict[str, float]  # below_zero, below_threshold, at_or_above_threshold
    surface_area_mm2: float
    tumor_volume_ml: float
    residual_volume_ml: float
    uncertainty_mm: float  # discretisation half-width (95 %) of the MAM
    deficit_patches: list[DeficitPatch] = field(default_factory=list)
    surface: SurfaceMesh | None = field(default=None, repr=False)
    #: True when the whole ROI around the tumour lies inside the zone: the MAM is then a lower
    #: bound (the zone boundary is farther than the ROI reaches).
    margin_is_lower_bound: bool = False
    #: What the uncertainty was built from: grid_step_mm (voxel extent of both grids along the
    #: margin direction), data_band_mm (local quadric band), sharpness_per_mm (curvature of the
    #: margin around its minimum, 1/mm), source ("patch" or "mesh").
    uncertainty_terms: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the surface mesh is left out)."""
        d = asdict(self)
        d.pop("surface", None)
        return d


@dataclass
class MarginResult:
    """Per-lesion margins plus the ablation-zone signed-distance map (mm, positive inside,
    float32, on the ablation mask's grid, cropped to the lesions' regions of interest)."""

    threshold_mm: float
    lesions: list[LesionMargin]
    margin_map: sitk.Image | None = field(default=None, repr=False)
    timings_s: dict[str, float] = field(default_factory=dict)

    @property
    def min_margin_mm(self) -> float:
        """MAM over all lesions (mm)."""
        return min(les.min_margin_mm for les in self.lesions)


# --------------------------------------------------------------------------- level sets / meshes
@dataclass
class _Level:
    """A continuous level set (mm, positive inside) on a (possibly refined) crop of a grid."""

    values: npt.NDArray[np.float32]  # fine array, permuted axis order
    perm: tuple[int, int, int]  # fine axis i = crop axis perm[i] (crop axes in z, y, x order)
    up: int  # refinement of fine axis 0
    lo_zyx: F64  # crop origin (array index of the parent grid)
    grid: sitk.Image  # parent grid (geometry only)
    spacing_fine: F64  # mm, permuted order
    mask: npt.NDArray[np.bool_] | None = None  # binary crop (z, y, x) it was built from
    distance: npt.NDArray[np.float32] | None = None  # signed distance (mm), every dist_step-th
    dist_step: int = 1  # fine slice along axis 0
    _bnd: tuple[F64, npt.NDArray[np.bool_]] | None = None

    def boundary_lps(self) -> tuple[F64, npt.NDArray[np.bool_]]:
        """LPS centres of the crop's boundary voxels (both classes) and their class."""
        if self._bnd is None:
            assert self.mask is not None
            idx = core.boundary_points(self.mask)
            pts = geometry.zyx_index_to_lps(self.grid, idx.astype(np.float64) + self.lo_zyx)
            self._bnd = (pts, self.mask[idx[:, 0], idx[:, 1], idx[:, 2]])
        return self._bnd

    def fine_to_lps(self, fidx: F64) -> F64:
        pidx = np.asarray(fidx, np.float64).copy()
        pidx[:, 0] /= self.up
        idx = np.empty_like(pidx)
        for i, ax in enumerate(self.perm):
            idx[:, ax] = pidx[:, i]
        return geometry.zyx_index_to_lps(self.grid, idx + self.lo_zyx)

    def lps_to_fine(self, pts: F64) -> F64:
        idx = geometry.lps_to_zyx_index(self.grid, pts) - self.lo_zyx
        f = np.empty_like(idx)
        for i, ax in enumerate(self.perm):
            f[:, i] = idx[:, ax]
        f[:, 0] *= self.up
        return f

    def sample(self, pts: F64, outside: float) -> F64:
        return core.trilinear(self.values, np.ascontiguousarray(self.lps_to_fine(pts)), outside)

    def fine_voxel_volume_mm3(self) -> float:
        return float(np.prod(self.spacing_fine))


def _mask_level(mask: npt.NDArray[np.bool_], grid: sitk.Image, lo_zyx: npt.ArrayLike) -> _Level:
    """Continuous level set of a binary crop (z, y, x) of ``grid`` starting at ``lo_zyx``."""
    sp = geometry.spacing_zyx(grid)
    thick = int(np.argmax(sp))
    others = [a for a in range(3) if a != thick]
    perm = (thick, others[0], others[1])
    sp_p = sp[list(perm)]
    up = max(2, int(np.ceil(sp_p[0] / sp_p[1:].min() - 1e-6)))
    m = np.ascontiguousarray(np.transpose(mask, perm))
    lev, sp_f = core.shape_based_level(m, sp_p, up)
    return _Level(lev, perm, up, np.asarray(lo_zyx, np.float64), grid, sp_f, mask=mask)


def _image_level(values: npt.NDArray[np.float32], grid: sitk.Image,
                 lo_zyx: npt.ArrayLike) -> _Level:
    """Level set given as signed-distance values (mm, positive inside) on a crop of ``grid``."""
    sp = geometry.spacing_zyx(grid)
    return _Level(np.ascontiguousarray(values, np.float32), (0, 1, 2), 1,
                  np.asarray(lo_zyx, np.float64), grid, sp)


def _mesh(level: _Level) -> tuple[F64, I64]:
    """Closed zero-level surface of ``level`` in LPS mm; outward (towards negative) normals."""
    verts, faces = core.surface_mesh(level.values, level.spacing_fine, 0.0)
    if len(verts) == 0:
        return np.zeros((0, 3)), np.zeros((0, 3), np.int64)
    verts_lps = level.fine_to_lps(verts)
    # Orientation: make normals point out of the shape (down the level's gradient) in LPS,
    # whatever the handedness of the grid / permutation.
    sub = faces[:: max(1, len(faces) // 512)]
    _, nrm = core.face_areas_normals(verts_lps, sub)
    cen = verts_lps[sub].mean(axis=1)
    step = 0.25 * float(level.spacing_fine.min())
    out_val = level.sample(cen + step * nrm, np.nan)
    in_val = level.sample(cen - step * nrm, np.nan)
    ok = np.isfinite(out_val) & np.isfinite(in_val)
    if ok.any() and np.mean(out_val[ok] < in_val[ok]) < 0.5:
        faces = faces[:, ::-1].copy()
    return verts_lps, faces


# --------------------------------------------------------------------------- lesions
@dataclass
class _LesionInput:
    id: int
    grid: sitk.Image
    lo_zyx: tuple[int, int, int]
    mask: npt.NDArray[np.bool_] | None = None  # binary crop (z, y, x)
    values: npt.NDArray[np.float32] | None = None  # level-set crop (mm, positive inside)


def _pad_box(lo: tuple[int, ...], hi: tuple[int, ...], shape: tuple[int, ...],
             pad: int) -> geometry.IndexBox:
    return geometry.IndexBox(
        tuple(max(0, int(a) - pad) for a in lo),  # type: ignore[arg-type]
        tuple(min(int(s), int(b) + pad) for b, s in zip(hi, shape, strict=True)),  # type: ignore[arg-type]
    )


def _label_lesions(tumor: sitk.Image) -> list[_LesionInput]:
    arr = sitk.GetArrayViewFromImage(tumor)
    nb = core.nonzero_box(arr)
    if nb is None:
        raise InputError("tumour mask is empty (no nonzero voxels)")
    box = _pad_box(nb[0], nb[1], arr.shape, 3)
    crop = np.asarray(arr[box.slices])
    labels = [v for v in np.unique(crop) if v != 0]
    out: list[_LesionInput] = []
    if len(labels) > 1:
        for lab in labels:
            m = crop == lab
            out.append(_crop_lesion(int(lab), m, tumor, box.lo_zyx))
        return out
    from scipy import ndimage

    cc, n = ndimage.label(crop != 0, structure=np.ones((3, 3, 3), bool))
    sizes = np.bincount(cc.ravel(), minlength=n + 1)[1:]
    for rank, comp in enumerate(np.argsort(-sizes, kind="stable"), start=1):
        out.append(_crop_lesion(rank, cc == comp + 1, tumor, box.lo_zyx))
    return out


def _crop_lesion(lid: int, m: npt.NDArray[np.bool_], grid: sitk.Image,
                 lo: tuple[int, int, int]) -> _LesionInput:
    nb = core.nonzero_box(m.view(np.uint8))
    assert nb is not None
    # 3 voxels of background around the lesion (zeros beyond the image edge)
    sub = m[tuple(slice(a, b) for a, b in zip(nb[0], nb[1], strict=True))]
    padded = np.pad(sub, 3, mode="constant")
    lo_zyx = tuple(int(a) + int(b) - 3 for a, b in zip(lo, nb[0], strict=True))
    return _LesionInput(lid, grid, lo_zyx, mask=padded)  # type: ignore[arg-type]


def _levelset_lesions(tumor: Mapping[int, sitk.Image]) -> list[_LesionInput]:
    out = []
    for lid, img in tumor.items():
        vals = sitk.GetArrayViewFromImage(img)
        inside = vals > 0
        if not inside.any():
            raise InputError(f"tumour lesion {lid}: level set has no positive (inside) voxel")
        nb = core.nonzero_box(inside.view(np.uint8))
        assert nb is not None
        box = _pad_box(nb[0], nb[1], vals.shape, 2)
        v = np.asarray(vals[box.slices], np.float32)
        # pad with the outside continuation so the surface closes inside the crop
        lo = float(min(v.min(), 0.0)) - 1.0
        v = np.pad(v, 1, mode="constant", constant_values=lo)
        lo_zyx = tuple(int(a) - 1 for a in box.lo_zyx)
        out.append(_LesionInput(int(lid), img, lo_zyx, values=v))  # type: ignore[arg-type]
    if not out:
        raise InputError("tumour mask is empty (no lesions)")
    return out


def split_lesions(tumor: sitk.Image) -> dict[int, sitk.Image]:
    """Split a tumour label image into one binary UInt8 image per lesion (full grid).

    Several nonzero labels: one lesion per label. A single label: connected components
    (26-connectivity), numbered 1.. by decreasing size. Empty input raises InputError.
    """
    out: dict[int, sitk.Image] = {}
    shape = sitk.GetArrayViewFromImage(tumor).shape
    for les in _label_lesions(tumor):
        assert les.mask is not None
        full = np.zeros(shape, np.uint8)
        lo = np.asarray(les.lo_zyx)
        src = [slice(max(0, -a), m - max(0, a + m - s)) for a, m, s in
               zip(lo, les.mask.shape, shape, strict=True)]
        dst = [slice(max(0, a), min(s, a + m)) for a, m, s in
               zip(lo, les.mask.shape, shape, strict=True)]
        full[tuple(dst)] = les.mask[tuple(src)]
        out[les.id] = geometry.array_to_image(full, tumor)
    return out


# --------------------------------------------------------------------------- main entry
def compute_margin(
    tumor: TumorInput,
    ablation: sitk.Image,
    threshold_mm: float = 5.0,
) -> MarginResult:
    """Signed ablative margin of every tumour lesion with respect to the ablation zone.

    Parameters
    ----------
    tumor : label image (any grid; one lesion per label, a single label split into connected
        components) or ``{id: level-set image}`` (signed distance in mm, positive inside the
        tumour, boundary at 0; any grid).
    ablation : ablation-zone mask; every nonzero voxel belongs to the zone. Any grid.
    threshold_mm : margin required for A0 (mm).

    Returns a :class:`MarginResult` (margins in mm, points in LPS mm, volumes in ml). An empty
    tumour or ablation mask, or a tumour outside the ablation image, raises InputError.
    """
    if not threshold_mm >= 0:
        raise InputError(f"--threshold must be >= 0 mm, got {threshold_mm}")
    load_s = load_kernels()
    result = _compute_margin(tumor, ablation, float(threshold_mm))
    if load_s > 0:
        result.timings_s["margin_kernel_load"] = load_s
    return result


def _compute_margin(tumor: TumorInput, ablation: sitk.Image, threshold_mm: float
                    ) -> MarginResult:
    t0 = time.perf_counter()
    abl_arr = sitk.GetArrayViewFromImage(ablation)
    abl_box = core.nonzero_box(abl_arr)
    if abl_box is None:
        raise InputError("ablation mask is empty (no nonzero voxels)")
    if isinstance(tumor, sitk.Image):
        inputs = _label_lesions(tumor)
    else:
        inputs = _levelset_lesions(tumor)
    timings: dict[str, float] = {"margin_inputs": time.perf_counter() - t0}
    lesions: list[LesionMargin] = []
    rois: list[tuple[geometry.IndexBox, npt.NDArray[np.float32]]] = []
    for les in inputs:
        lm, roi = _one_lesion(les, ablation, abl_arr, abl_box, float(threshold_mm))
        lesions.append(lm)
        rois.append(roi)
    t1 = time.perf_counter()
    margin_map = _margin_map(ablation, abl_arr, rois)
    t2 = time.perf_counter()
    timings["margin_map"] = t2 - t1
    timings["margin"] = t2 - t0
    return MarginResult(threshold_mm=float(threshold_mm), lesions=lesions,
                        margin_map=margin_map, timings_s=timings)


_kernels_lock = threading.Lock()
_kernels_loaded = False


def load_kernels() -> float:
    """Load the compiled Numba kernels once per process (from the on-disk cache; compiled on the
    very first run) by computing the margin of a tiny analytic case through the same code paths
    (UInt16 label masks, 0.8 x 0.8 x 2.5 mm voxels). Returns the seconds this call spent
    (loading, or waiting for a load already under way, e.g. by :func:`start_loading_kernels`);
    0.0 once loaded. :func:`compute_margin` calls it and reports the time as
    ``margin_kernel_load``, apart from the margin computation itself (``margin``)."""
    global _kernels_loaded
    t0 = time.perf_counter()
    with _kernels_lock:
        if _kernels_loaded:  # loaded, or just loaded by another thread while this one waited
            waited = time.perf_counter() - t0
            return waited if waited >= 1e-3 else 0.0
        _kernels_loaded = True  # set first: the tiny case below calls compute_margin
        grid = geometry.make_grid((40, 40, 14), (0.8, 0.8, 2.5), pixel_type=sitk.sitkUInt16)
        pts = geometry.voxel_centers_lps(grid)
        tumor = np.linalg.norm(pts - [0.3, -0.2, 0.4], axis=-1) <= 4.0
        zone = np.linalg.norm(pts - [1.1, 0.5, 0.9], axis=-1) <= 11.0
        _compute_margin(geometry.array_to_image(tumor.astype(np.uint16), grid),
                        geometry.array_to_image(zone.astype(np.uint16), grid), 5.0)
    return time.perf_counter() - t0


def start_loading_kernels() -> threading.Thread:
    """Start :func:`load_kernels` in a background thread (e.g. while the masks are read: Numba's
    cache loading and SimpleITK's file reading overlap in part). Join the thread before the
    process exits; failures are left to the later, synchronous :func:`load_kernels` call."""

    def run() -> None:
        with contextlib.suppress(Exception):
            load_kernels()

    th = threading.Thread(target=run, name="a0verify-kernel-load", daemon=True)
    th.start()
    return th


def _one_lesion(les: _LesionInput, ablation: sitk.Image, abl_arr: npt.NDArray[Any],
                abl_box: tuple[tuple[int, int, int], tuple[int, int, int]],
                threshold: float
                ) -> tuple[LesionMargin, tuple[geometry.IndexBox, npt.NDArray[np.float32]]]:
    # --- tumour surface
    if les.mask is not None:
        tlev = _mask_level(les.mask, les.grid, les.lo_zyx)
    else:
        assert les.values is not None
        tlev = _image_level(les.values, les.grid, les.lo_zyx)
    tv, tf = _mesh(tlev)
    if len(tf) == 0:
        raise InputError(f"tumour lesion {les.id} has no surface (too small or empty)")
    # --- ablation-zone ROI around the tumour
    pad = threshold + SAFETY_MM + 2.0 * float(max(ablation.GetSpacing()))
    roi = geometry.roi_box_around_lps(ablation, tv, pad)
    if roi.empty:
        raise InputError(
            f"tumour lesion {les.id} lies outside the ablation mask's field of view"
        )
    zl = _zone_level(abl_arr, ablation, roi)
    lower_bound = False
    if not _has_surface(zl) or not _covers(zl, tv):
        # no zone boundary near the tumour: widen the ROI to the whole zone (+ the tumour)
        zb = geometry.IndexBox(abl_box[0], abl_box[1])
        roi = _union_box(_union_box(roi, zb), geometry.roi_box_around_lps(ablation, tv, 2.0))
        roi = _pad_box(roi.lo_zyx, roi.hi_zyx, abl_arr.shape, 2)
        zl = _zone_level(abl_arr, ablation, roi)
    # per-vertex margin: exact EDT of the refined zone level set (boundary half-way between the
    # fine samples), trilinear at the vertices; the MAM itself is refined below.
    assert zl.distance is not None
    fidx = zl.lps_to_fine(tv)
    fidx[:, 0] /= zl.dist_step
    margin = core.trilinear(zl.distance, np.ascontiguousarray(fidx), -np.inf)
    if np.any(np.isinf(margin) & (margin > 0)):
        # the whole ROI lies inside the zone: the margin is at least the ROI reach
        lower_bound = True
    margin = np.clip(margin, -1e4, pad)
    mesh = SurfaceMesh(tv, tf, margin)
    area, normals = core.face_areas_normals(tv, tf)
    total = float(area.sum())
    fm = margin[tf].mean(axis=1)
    below0 = float(area[fm < 0].sum()) / total
    below_t = float(area[(fm >= 0) & (fm < threshold)].sum()) / total
    k = int(np.argmin(margin))
    vol_ml = core.mesh_volume(tv, tf) / 1000.0
    resid_ml = vol_ml * _outside_fraction(tlev, zl)
    vn = _vertex_normals(tv, tf, normals, area)
    ks, mam = _smooth_argmin(tv, vn, margin, k, _patch_radius(tlev, 100.0))
    mam, mam_pt, band, source = min(mam, float(margin[k]) + 0.5), tv[ks], 0.0, "mesh"
    sharp = 0.0
    step = _grid_step(mam_pt, tv, tf, normals, area, les.grid, ablation)
    if not lower_bound:
        ref = _refine_mam(tv, tf, normals, area, margin, tlev, zl, vol_ml)
        if ref is not None:
            mam, mam_pt, band, sharp = ref
            step = _grid_step(mam_pt, tv, tf, normals, area, les.grid, ablation)
            source = "patch"
    if source == "patch":
        unc = (UNC_BASE + UNC_K * step + UNC_BAND * min(band, UNC_BAND_CAP)
               + UNC_SHARP * min(sharp * step * step, UNC_SHARP_CAP))
    else:
        unc = UNC_BASE + UNC_MESH_K * step
    patches = _deficit_patches(tv, tf, margin, area, normals, threshold)
    _align_patches(patches, mam, mam_pt)
    lm = LesionMargin(
        id=int(les.id),
        min_margin_mm=float(mam),
        min_margin_point_lps=[float(v) for v in mam_pt],
        min_margin_point_ras=[float(v) for v in geometry.lps_to_ras(mam_pt)],
        surface_fraction={
            "below_zero": below0,
            "below_threshold": below_t,
            "at_or_above_threshold": max(0.0, 1.0 - below0 - below_t),
        },
        surface_area_mm2=total,
        tumor_volume_ml=vol_ml,
        residual_volume_ml=resid_ml,
        uncertainty_mm=float(unc),
        uncertainty_terms={"grid_step_mm": float(step), "data_band_mm": float(band),
                           "sharpness_per_mm": float(sharp), "source": source},
        deficit_patches=patches,
        surface=mesh,
        margin_is_lower_bound=lower_bound,
    )
    return lm, (roi, _native_distance(zl))


def _union_box(a: geometry.IndexBox, b: geometry.IndexBox) -> geometry.IndexBox:
    return geometry.IndexBox(
        tuple(min(x, y) for x, y in zip(a.lo_zyx, b.lo_zyx, strict=True)),  # type: ignore[arg-type]
        tuple(max(x, y) for x, y in zip(a.hi_zyx, b.hi_zyx, strict=True)),  # type: ignore[arg-type]
    )


def _covers(level: _Level, pts: F64) -> bool:
    """True when every point lies within the level set's sampled lattice."""
    f = level.lps_to_fine(pts)
    shape = np.asarray(level.values.shape) - 1
    return bool(np.all((f >= 0) & (f <= shape)))


def _zone_level(abl_arr: npt.NDArray[Any], ablation: sitk.Image,
                roi: geometry.IndexBox) -> _Level:
    """Refined level set of the zone inside ``roi`` with its exact signed distance (mm)."""
    sub = np.asarray(abl_arr[roi.slices]) != 0
    zl = _mask_level(sub, ablation, roi.lo_zyx)
    # the distance map is only used for per-vertex margins (fractions, patches, candidates) and
    # the output map: every ``dist_step``-th refined slice is plenty (slices <= ~1.3 mm apart)
    step = max(1, zl.up // 2)
    if zl.up % step:
        step = 1
    sp = zl.spacing_fine * np.array([step, 1.0, 1.0])
    zl.distance = core.signed_distance(np.ascontiguousarray(zl.values[::step] > 0), sp)
    zl.dist_step = step
    return zl


def _has_surface(level: _Level) -> bool:
    v = level.values
    return bool(v.max() > 0 > v.min())


def _outside_fraction(tlev: _Level, zl: _Level) -> float:
    """Fraction of the tumour (fine level-set samples inside it) lying outside the zone."""
    idx = np.argwhere(tlev.values > 0).astype(np.float64)
    idx = idx[:: max(1, len(idx) // 20000)]  # an even subsample is plenty for a fraction
    if len(idx) == 0:
        return 0.0
    pts = tlev.fine_to_lps(idx)
    z = zl.sample(pts, -1.0)
    return float(np.mean(z <= 0))


def _grid_step_along(grid: sitk.Image, direction_lps: F64) -> float:
    """Spacing (mm) of ``grid`` seen along a unit LPS direction: the extent of one voxel cell
    projected on it, ``sum_j |d . e_j| s_j`` over the grid axes."""
    d = geometry.direction_matrix(grid)
    s = np.asarray(grid.GetSpacing(), np.float64)
    return float(np.sum(np.abs(direction_lps @ d) * s))


def _grid_step(p: F64, tv: F64, tf: I64, normals: F64, area: F64, tgrid: sitk.Image,
                 agrid: sitk.Image) -> float:
    """Combined voxel extent (mm) of the tumour and ablation grids seen along the tumour normal
    at surface point ``p``: ``hypot(h_t, h_a)``. Both surfaces are reconstructed from voxels; their
    position error along the margin direction scales with it (largest along thick slices)."""
    cen = tv[tf].mean(axis=1)
    near = np.linalg.norm(cen - p, axis=1) < 2.0 * float(max(tgrid.GetSpacing()))
    n = (normals[near] * area[near, None]).sum(axis=0) if near.any() else np.array([0, 0, 1.0])
    n = n / max(float(np.linalg.norm(n)), 1e-12)
    ht = _grid_step_along(tgrid, n)
    ha = _grid_step_along(agrid, n)
    return float(np.hypot(ht, ha))


def _vertex_normals(tv: F64, tf: I64, normals: F64, area: F64) -> F64:
    acc = np.zeros_like(tv)
    for j in range(3):
        np.add.at(acc, tf[:, j], normals * area[:, None])
    return acc / np.maximum(np.linalg.norm(acc, axis=1), 1e-12)[:, None]


def _patch_radius(level: _Level, cap: float) -> float:
    h = float(max(level.grid.GetSpacing()))
    return float(min(max(REFINE_RADIUS_MIN_MM, REFINE_RADIUS_VOXELS * h), cap))


def _fit_level_patch(level: _Level, centre: F64, origin: F64, frame: F64, radius: float,
                     mesh: tuple[F64, I64] | None,
                     max_radius: float | None = None) -> tuple[F64, float, float] | None:
    """Quadric patch of ``level``'s surface near ``centre`` in ``frame`` at ``origin``:
    separating quadric of the voxel data for masks (the radius grows up to ``max_radius`` while
    the data leave the surface height ambiguous, e.g. at caps seen on few thick slices; the
    narrowest band wins), least squares on the mesh for level sets."""
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


def _smooth_argmin(tv: F64, vn: F64, margin: F64, i: int, radius: float) -> tuple[int, float]:
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


def _patch_margin(tv: F64, vn: F64, margin: F64, i: int, tlev: _Level, zl: _Level,
                  rt: tuple[float, float], rz: tuple[float, float], mesh: tuple[F64, I64]
                  ) -> tuple[float, F64, float, F64, F64, float] | None:
    """Margin at tumour vertex ``i`` from quadric patches of both surfaces along its normal.

    Returns (margin mm, surface point LPS, half-range of the data-consistent surfaces mm,
    in-patch minimiser (u, v) of the
    gap between the patches (mm), frame) or None when a patch cannot be fitted."""
    p = tv[i]
    frame = core.local_frame(vn[i])
    ft = _fit_level_patch(tlev, p, p, frame, rt[0], mesh, rt[1])
    # the zone patch is fitted in the same axes, centred on the zone surface near p + margin n
    # (the quadric's regularisation is meant for its own neighbourhood)
    shift = float(margin[i])
    fz = _fit_level_patch(zl, p + shift * vn[i], p + shift * vn[i], frame, rz[0], None, rz[1])
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
    return gap, pt, half, x, frame, sharp


def _refine_mam(tv: F64, tf: I64, normals: F64, area: F64, margin: F64, tlev: _Level,
                zl: _Level, vol_ml: float) -> tuple[float, F64, float, float] | None:
    """MAM refined by local quadric patches fitted to both masks' voxel data around the few
    lowest-margin regions of the mesh estimate. Returns (MAM mm, LPS point, data band mm)
    or None when no patch could be fitted (the mesh estimate then stands)."""
    vn = _vertex_normals(tv, tf, normals, area)
    r_eq = (3.0 * vol_ml * 1000.0 / (4.0 * np.pi)) ** (1.0 / 3.0)
    rt = (_patch_radius(tlev, 0.9 * r_eq), min(REFINE_RADIUS_MAX_MM, 1.2 * r_eq))
    rz = (_patch_radius(zl, 15.0), REFINE_RADIUS_MAX_MM)
    order = np.argsort(margin)
    m0 = float(margin[order[0]])
    spread = REFINE_CANDIDATE_MM + 0.5 * float(max(zl.grid.GetSpacing()))
    chosen: list[int] = []
    for i in order:
        if margin[i] > m0 + spread or len(chosen) >= REFINE_MAX_CANDIDATES:
            break
        if all(np.linalg.norm(tv[i] - tv[j]) > rt[0] for j in chosen):
            chosen.append(int(i))
    best: tuple[float, F64, float, float] | None = None
    for i0 in chosen:
        i, _ = _smooth_argmin(tv, vn, margin, i0, rt[0])
        res = None
        for _ in range(2):
            res = _patch_margin(tv, vn, margin, i, tlev, zl, rt, rz, (tv, tf))
            if res is None:
                break
            x = res[3]
            if not (0.2 < float(np.hypot(x[0], x[1])) < 0.5 * rt[0]):
                break
            target = tv[i] + x[0] * res[4][0] + x[1] * res[4][1]
            i = int(np.argmin(np.sum((tv - target) ** 2, axis=1)))
        if res is None:
            continue
        gap, pt, unc, sharp = res[0], res[1], res[2], res[5]
        if abs(gap - margin[i]) > REFINE_MAX_SHIFT_MM + float(max(zl.grid.GetSpacing())):
            continue  # patch fit disagrees grossly with the mesh: do not trust it
        if best is None or gap < best[0]:
            best = (gap, pt, unc, sharp)
    return best


def _align_patches(patches: list[DeficitPatch], mam: float, mam_pt: F64) -> None:
    """Make patch minima consistent with the refined MAM: none lies below it, and the patch
    nearest to the MAM point carries it (per-vertex margins are voxel-level estimates)."""
    if not patches:
        return
    d = [float(np.linalg.norm(np.asarray(p.min_margin_point_lps) - mam_pt)) for p in patches]
    k = int(np.argmin(d))
    for i, p in enumerate(patches):
        if i == k and mam < p.min_margin_mm + 1.0:
            p.min_margin_mm = float(mam)
            p.min_margin_point_lps = [float(v) for v in mam_pt]
        elif p.min_margin_mm < mam:
            p.min_margin_mm = float(mam)


def _deficit_patches(v: F64, f: I64, margin: F64, area: F64, normals: F64,
                     threshold: float) -> list[DeficitPatch]:
    """Connected surface regions with face margin below ``threshold``, largest first."""
    fm = margin[f].mean(axis=1)
    ncomp, lab = core.face_components(f, fm < threshold, len(v))
    out = []
    cen_f = v[f].mean(axis=1)
    for c in range(ncomp):
        sel = lab == c
        fa = area[sel]
        a = float(fa.sum())
        cen = (cen_f[sel] * fa[:, None]).sum(axis=0) / max(a, 1e-12)
        d = (normals[sel] * fa[:, None]).sum(axis=0)
        d = d / max(float(np.linalg.norm(d)), 1e-12)
        verts = np.unique(f[sel])
        kmin = verts[int(np.argmin(margin[verts]))]
        out.append(DeficitPatch(
            area_mm2=a,
            min_margin_mm=float(margin[kmin]),
            centroid_lps=[float(x) for x in cen],
            outward_direction_lps=[float(x) for x in d],
            min_margin_point_lps=[float(x) for x in v[kmin]],
        ))
    out.sort(key=lambda p: -p.area_mm2)
    return out


def _native_distance(zl: _Level) -> npt.NDArray[np.float32]:
    """The zone's fine-grid signed distance at the native voxel centres of its ROI (z, y, x)."""
    assert zl.distance is not None
    d = zl.distance[:: zl.up // zl.dist_step]
    inv = np.argsort(zl.perm)
    return np.ascontiguousarray(np.transpose(d, inv))


def _margin_map(ablation: sitk.Image, abl_arr: npt.NDArray[Any],
                rois: list[tuple[geometry.IndexBox, npt.NDArray[np.float32]]]) -> sitk.Image:
    """Signed distance of the zone (mm, float32, positive inside) on the ablation grid over the
    union of the lesion ROIs. Inside each ROI it is the exact EDT of the refined zone level set
    (sampled at the native voxel centres); any part of the union box outside every ROI gets the
    native-grid signed distance (boundary half-way between voxel centres)."""
    box = rois[0][0]
    for r, _ in rois[1:]:
        box = _union_box(box, r)
    out = np.full(box.shape, np.nan, np.float32)
    for r, sd in rois:
        sl = tuple(slice(lo - lu, hi - lu) for lo, hi, lu in
                   zip(r.lo_zyx, r.hi_zyx, box.lo_zyx, strict=True))
        out[sl] = sd
    if np.isnan(out).any():
        sub = np.ascontiguousarray(np.asarray(abl_arr[box.slices]) != 0)
        full = core.signed_distance(sub, geometry.spacing_zyx(ablation))
        out = np.where(np.isnan(out), full, out)
    out = np.clip(out, np.float32(-1e4), np.float32(1e4))
    return geometry.array_to_image(out.astype(np.float32), ablation, box)
