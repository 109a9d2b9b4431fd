"""Margin API: SimpleITK images in, :class:`MarginResult` out.

Sign convention: margin(p) = signed distance (mm) from tumour-surface point p to the
ablation-zone boundary, **positive inside the ablation zone**. MAM = min over the tumour surface.

Method (all geometry in physical LPS mm, so the two masks may lie on different grids with any
direction cosines and anisotropic spacing); per lesion, in this order:

1. Lesions (:mod:`.lesions`): a label image is split into lesions, each kept on a crop of its
   grid; or level-set images are taken as given.
2. Level sets (:mod:`.levelset`): each binary mask becomes a continuous level set by shape-based
   interpolation along its thickest grid axis; only a region of interest around each lesion is
   processed (tumour box + threshold + safety band on the ablation grid).
3. Field (:mod:`.field`): the tumour surface is the marching-cubes zero level of its level set
   (sub-voxel vertices); each vertex's margin is its signed distance to the zone's continuous
   surface (lattice EDT refined by ray casting onto the zone level set). The zone ROI grows until
   it holds every vertex's nearest zone boundary, so no margin is capped.
4. Refinement (:mod:`.refinement`): the MAM is refined region by region (lowest field first) by
   local quadric patches of both masks' voxel data, and each refined value is carried into the
   field around it; the field is finally raised to the MAM where it still lies below it. So the
   surface colours, the mesh's ``margin_mm``, the histogram, the area fractions and the deficit
   patches (:mod:`.surface`) all read one field whose minimum is the MAM.
5. Uncertainty (:mod:`.uncertainty`): a calibrated 95 % half-width of the MAM.

The result types live in :mod:`.results`. :func:`load_kernels` loads the compiled Numba kernels
once per process, apart from the timed computation.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

from a0verify import geometry
from a0verify.errors import InputError
from a0verify.margin import bordervoxel, core, field, levelset, refinement, surface, uncertainty
from a0verify.margin.lesions import LesionInput, label_lesions, levelset_lesions
from a0verify.margin.results import LesionMargin, MarginResult, SurfaceMesh

TumorInput = sitk.Image | Mapping[int, sitk.Image]
F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
RoiDistance = tuple[geometry.IndexBox, F32]

#: Safety band (mm) added to the threshold around each tumour for the ablation ROI.
SAFETY_MM = 6.0


def compute_margin(
    tumor: TumorInput,
    ablation: sitk.Image,
    threshold_mm: float = 5.0,
    second_threshold_mm: float | None = None,
) -> MarginResult:
    """Signed ablative margin of every tumour lesion with respect to the ablation zone.

    Parameters
    ----------
    tumor : label image (any grid; one lesion per label, a single label split into connected
        components) or ``{id: level-set image}`` (signed distance in mm, positive inside the
        tumour, boundary at 0; any grid).
    ablation : ablation-zone mask; every nonzero voxel belongs to the zone. Any grid.
    threshold_mm : margin required for A0 (mm).
    second_threshold_mm : a second, reading-aid threshold (mm; e.g. 10): each lesion then
        reports the surface fraction below it. None: not reported.

    Returns a :class:`MarginResult` (margins in mm, points in LPS mm, volumes in ml). An empty
    tumour or ablation mask, or a tumour outside the ablation image, raises InputError.
    """
    if not threshold_mm >= 0:
        raise InputError(f"--threshold must be >= 0 mm, got {threshold_mm}")
    if second_threshold_mm is not None and not second_threshold_mm >= 0:
        raise InputError(f"--second-threshold must be >= 0 mm, got {second_threshold_mm}")
    load_s = load_kernels()
    result = margin_of_lesions(tumor, ablation, float(threshold_mm), second_threshold_mm)
    if load_s > 0:
        result.timings_s["margin_kernel_load"] = load_s
    return result


def margin_of_lesions(tumor: TumorInput, ablation: sitk.Image, threshold_mm: float,
                      second_threshold_mm: float | None = None) -> MarginResult:
    """:func:`compute_margin` without its checks and kernel loading (same arguments)."""
    t0 = time.perf_counter()
    abl_arr = sitk.GetArrayViewFromImage(ablation)
    abl_box = geometry.nonzero_index_box(abl_arr)
    if abl_box is None:
        raise InputError("ablation mask is empty (no nonzero voxels)")
    if isinstance(tumor, sitk.Image):
        inputs = label_lesions(tumor)
    else:
        inputs = levelset_lesions(tumor)
    timings: dict[str, float] = {"margin_inputs": time.perf_counter() - t0}
    lesions: list[LesionMargin] = []
    rois: list[RoiDistance] = []
    for les in inputs:
        lm, roi = _one_lesion(les, ablation, abl_arr, abl_box, float(threshold_mm),
                              second_threshold_mm)
        lesions.append(lm)
        rois.append(roi)
    t1 = time.perf_counter()
    margin_map = _margin_map(ablation, abl_arr, rois)
    t2 = time.perf_counter()
    timings["margin_map"] = t2 - t1
    timings["margin"] = t2 - t0
    return MarginResult(threshold_mm=float(threshold_mm), lesions=lesions,
                        second_threshold_mm=(None if second_threshold_mm is None
                                             else float(second_threshold_mm)),
                        margin_map=margin_map, timings_s=timings)


def _zone_around(tv: F64, ablation: sitk.Image, abl_arr: npt.NDArray[Any],
                 abl_box: geometry.IndexBox, pad: float, lesion_id: int
                 ) -> tuple[levelset.LevelSet, geometry.IndexBox]:
    """The zone's level set on an ROI of the ablation grid that holds, for every tumour vertex,
    its nearest zone-boundary point: first the tumour box + ``pad``; the whole zone when that
    holds no boundary (or does not hold the tumour); then grown to the vertices' box + their
    largest distance to the zone in the ROI (a native-grid EDT; an upper bound of the true
    distance) when that reaches farther. The refined level set is built once, on the final ROI."""
    roi = geometry.roi_box_around_lps(ablation, tv, pad)
    if roi.empty:
        raise InputError(
            f"tumour lesion {lesion_id} lies outside the ablation mask's field of view"
        )
    sp = geometry.spacing_zyx(ablation)

    def state(box: geometry.IndexBox) -> tuple[npt.NDArray[np.bool_], F64, bool]:
        sub = np.ascontiguousarray(np.asarray(abl_arr[box.slices]) != 0)
        idx = geometry.lps_to_zyx_index(ablation, tv) - np.asarray(box.lo_zyx, np.float64)
        inside = bool(np.all((idx >= 0) & (idx <= np.asarray(box.shape) - 1)))
        return sub, idx, inside

    sub, idx, inside = state(roi)
    if not (sub.any() and not sub.all()) or not inside:
        # no zone boundary near the tumour: widen the ROI to the whole zone (+ the tumour)
        roi = geometry.union_box(geometry.union_box(roi, abl_box),
                                 geometry.roi_box_around_lps(ablation, tv, 2.0))
        roi = geometry.pad_box(roi, 2, abl_arr.shape)
        sub, idx, inside = state(roi)
    if sub.any() and not sub.all():
        d0 = np.abs(core.trilinear(core.signed_distance(sub, sp), idx, np.inf))
        if np.isfinite(d0).any():
            reach = float(d0[np.isfinite(d0)].max()) + 2.0 * float(max(ablation.GetSpacing()))
            roi = geometry.union_box(roi, geometry.roi_box_around_lps(ablation, tv, reach))
    return levelset.zone_level(abl_arr, ablation, roi), roi


def _one_lesion(les: LesionInput, ablation: sitk.Image, abl_arr: npt.NDArray[Any],
                abl_box: geometry.IndexBox, threshold: float,
                second_threshold: float | None = None) -> tuple[LesionMargin, RoiDistance]:
    # --- tumour surface
    if les.mask is not None:
        tlev = levelset.mask_level(les.mask, les.grid, les.lo_zyx)
    else:
        assert les.values is not None
        tlev = levelset.image_level(les.values, les.grid, les.lo_zyx)
    tv, tf = levelset.level_mesh(tlev)
    if len(tf) == 0:
        raise InputError(f"tumour lesion {les.id} has no surface (too small or empty)")
    # --- the zone around it, and the per-vertex margin field
    pad = threshold + SAFETY_MM + 2.0 * float(max(ablation.GetSpacing()))
    zl, roi = _zone_around(tv, ablation, abl_arr, abl_box, pad, les.id)
    raw = field.surface_distance(zl, tv)
    # the zone fills the whole region up to the image's edge: its boundary was put just beyond
    # the image, so the margin is a lower bound
    lower_bound = bool(zl.frame)
    area, normals = core.face_areas_normals(tv, tf)
    vol_ml = core.mesh_volume(tv, tf) / 1000.0
    resid_ml = vol_ml * levelset.outside_fraction(tlev, zl)
    vn = surface.vertex_normals(tv, tf, normals, area)
    # --- the MAM, refined region by region and carried into the field
    smooth_r = refinement.patch_radius(tlev, 100.0)
    if lower_bound:
        rf = refinement.unrefined_field(tv, vn, raw, smooth_r)
    else:
        rf = refinement.refine_field(tv, tf, vn, raw, tlev, zl, vol_ml, smooth_r)
    margin = rf.margin_mm
    step = uncertainty.grid_step(rf.point_lps, tv, tf, normals, area, les.grid, ablation)
    unc = uncertainty.mam_half_width(rf.source, step, rf.band_mm, rf.sharpness_per_mm)
    patches = surface.deficit_patches(tv, tf, margin, area, normals, threshold)
    surface.align_patches(patches, rf.mam_mm, rf.point_lps)
    lm = LesionMargin(
        id=int(les.id),
        min_margin_mm=float(rf.mam_mm),
        min_margin_point_lps=[float(v) for v in rf.point_lps],
        min_margin_point_ras=[float(v) for v in geometry.lps_to_ras(rf.point_lps)],
        surface_fraction=surface.surface_fractions(tf, area, margin, threshold),
        surface_area_mm2=float(area.sum()),
        tumor_volume_ml=vol_ml,
        residual_volume_ml=resid_ml,
        uncertainty_mm=float(unc),
        uncertainty_terms={"grid_step_mm": float(step), "data_band_mm": rf.band_mm,
                           "sharpness_per_mm": rf.sharpness_per_mm, "source": rf.source},
        deficit_patches=patches,
        surface=SurfaceMesh(tv, tf, margin),
        margin_is_lower_bound=lower_bound,
        surface_field={"method": "distance to the continuous zone surface per vertex, refined "
                                 "minima carried in",
                       "regions_refined": rf.regions_refined, "regions_tried": rf.regions_tried,
                       "raised_to_mam_max_mm": rf.raised_max_mm},
        surface_fraction_below_second_threshold=(
            None if second_threshold is None
            else surface.fraction_below(tf, area, margin, second_threshold)),
        border_voxel_min_margin_mm=bordervoxel.border_voxel_mam(les, zl),
    )
    return lm, (roi, levelset.native_distance(zl))


def _margin_map(ablation: sitk.Image, abl_arr: npt.NDArray[Any],
                rois: list[RoiDistance]) -> sitk.Image:
    """Signed distance of the zone (mm, float32, positive inside) on the ablation grid over the
    union of the lesion ROIs. Inside each ROI it is the exact EDT of the refined zone level set
    (sampled at the native voxel centres); any part of the union box outside every ROI gets the
    native-grid signed distance (boundary half-way between voxel centres)."""
    box = rois[0][0]
    for r, _ in rois[1:]:
        box = geometry.union_box(box, r)
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


# --------------------------------------------------------------------------- kernel loading
_kernels_lock = threading.Lock()
_kernels_loaded = False


def load_kernels() -> float:
    """Load the compiled Numba kernels once per process (from the on-disk cache; compiled on the
    very first run) by computing the margin of a tiny analytic case through the same code paths
    (UInt16 label masks, 0.8 x 0.8 x 2.5 mm voxels). Returns the seconds this call spent
    (loading, or waiting for a load already under way, e.g. by :func:`start_loading_kernels`);
    0.0 once loaded. :func:`a0verify.margin.compute_margin` calls it and reports the time as
    ``margin_kernel_load``, apart from the margin computation itself (``margin``)."""
    global _kernels_loaded
    t0 = time.perf_counter()
    with _kernels_lock:
        if _kernels_loaded:  # loaded, or just loaded by another thread while this one waited
            waited = time.perf_counter() - t0
            return waited if waited >= 1e-3 else 0.0
        _kernels_loaded = True  # set first: the tiny case below runs the margin code
        grid = geometry.make_grid((40, 40, 14), (0.8, 0.8, 2.5), pixel_type=sitk.sitkUInt16)
        pts = geometry.voxel_centers_lps(grid)
        tumor = np.linalg.norm(pts - [0.3, -0.2, 0.4], axis=-1) <= 4.0
        zone = np.linalg.norm(pts - [1.1, 0.5, 0.9], axis=-1) <= 11.0
        margin_of_lesions(geometry.array_to_image(tumor.astype(np.uint16), grid),
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
