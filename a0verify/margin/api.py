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
3. Surface (:mod:`.surface`): the tumour surface is the marching-cubes zero level of its level
   set (sub-voxel vertices); per-vertex margins come from the exact anisotropic EDT (Numba) of the
   refined zone level set, sampled trilinearly; they give the area fractions, deficit patches and
   the surface mesh.
4. Refinement (:mod:`.refinement`): the MAM itself is refined where it occurs by local quadric
   patches of both masks' voxel data.
5. Uncertainty (:mod:`.uncertainty`): a calibrated 95 % half-width of the MAM.

The result types live in :mod:`.results`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

from a0verify import geometry
from a0verify.errors import InputError
from a0verify.margin import core, levelset, refinement, surface, uncertainty
from a0verify.margin.kernels import load_kernels
from a0verify.margin.lesions import LesionInput, label_lesions, levelset_lesions
from a0verify.margin.results import LesionMargin, MarginResult, SurfaceMesh

TumorInput = sitk.Image | Mapping[int, sitk.Image]
F32 = npt.NDArray[np.float32]
RoiDistance = tuple[geometry.IndexBox, F32]

#: Safety band (mm) added to the threshold around each tumour for the ablation ROI.
SAFETY_MM = 6.0


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
    result = margin_of_lesions(tumor, ablation, float(threshold_mm))
    if load_s > 0:
        result.timings_s["margin_kernel_load"] = load_s
    return result


def margin_of_lesions(tumor: TumorInput, ablation: sitk.Image, threshold_mm: float
                      ) -> MarginResult:
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


def _one_lesion(les: LesionInput, ablation: sitk.Image, abl_arr: npt.NDArray[Any],
                abl_box: geometry.IndexBox, threshold: float
                ) -> tuple[LesionMargin, RoiDistance]:
    # --- tumour surface
    if les.mask is not None:
        tlev = levelset.mask_level(les.mask, les.grid, les.lo_zyx)
    else:
        assert les.values is not None
        tlev = levelset.image_level(les.values, les.grid, les.lo_zyx)
    tv, tf = levelset.level_mesh(tlev)
    if len(tf) == 0:
        raise InputError(f"tumour lesion {les.id} has no surface (too small or empty)")
    # --- ablation-zone ROI around the tumour
    pad = threshold + SAFETY_MM + 2.0 * float(max(ablation.GetSpacing()))
    roi = geometry.roi_box_around_lps(ablation, tv, pad)
    if roi.empty:
        raise InputError(
            f"tumour lesion {les.id} lies outside the ablation mask's field of view"
        )
    zl = levelset.zone_level(abl_arr, ablation, roi)
    lower_bound = False
    if not zl.has_surface() or not zl.covers(tv):
        # no zone boundary near the tumour: widen the ROI to the whole zone (+ the tumour)
        roi = geometry.union_box(geometry.union_box(roi, abl_box),
                                 geometry.roi_box_around_lps(ablation, tv, 2.0))
        roi = geometry.pad_box(roi, 2, abl_arr.shape)
        zl = levelset.zone_level(abl_arr, ablation, roi)
    # per-vertex margin: exact EDT of the refined zone level set (boundary half-way between the
    # lattice samples), trilinear at the vertices; the MAM itself is refined below.
    assert zl.distance is not None
    fidx = zl.lattice.lps_to_index(tv)
    fidx[:, 0] /= zl.dist_step
    margin = core.trilinear(zl.distance, np.ascontiguousarray(fidx), -np.inf)
    if np.any(np.isinf(margin) & (margin > 0)):
        # the whole ROI lies inside the zone: the margin is at least the ROI reach
        lower_bound = True
    margin = np.clip(margin, -1e4, pad)
    mesh = SurfaceMesh(tv, tf, margin)
    area, normals = core.face_areas_normals(tv, tf)
    fractions = surface.surface_fractions(tf, area, margin, threshold)
    k = int(np.argmin(margin))
    vol_ml = core.mesh_volume(tv, tf) / 1000.0
    resid_ml = vol_ml * levelset.outside_fraction(tlev, zl)
    vn = surface.vertex_normals(tv, tf, normals, area)
    ks, mam = refinement.smooth_argmin(tv, vn, margin, k,
                                       refinement.patch_radius(tlev, 100.0))
    mam, mam_pt, band, source = min(mam, float(margin[k]) + 0.5), tv[ks], 0.0, "mesh"
    sharp = 0.0
    step = uncertainty.grid_step(mam_pt, tv, tf, normals, area, les.grid, ablation)
    if not lower_bound:
        ref = refinement.refine_mam(tv, tf, vn, margin, tlev, zl, vol_ml)
        if ref is not None:
            mam, mam_pt, band, sharp = ref.margin_mm, ref.point_lps, ref.band_mm, \
                ref.sharpness_per_mm
            step = uncertainty.grid_step(mam_pt, tv, tf, normals, area, les.grid, ablation)
            source = "patch"
    unc = uncertainty.mam_half_width(source, step, band, sharp)
    patches = surface.deficit_patches(tv, tf, margin, area, normals, threshold)
    surface.align_patches(patches, mam, mam_pt)
    lm = LesionMargin(
        id=int(les.id),
        min_margin_mm=float(mam),
        min_margin_point_lps=[float(v) for v in mam_pt],
        min_margin_point_ras=[float(v) for v in geometry.lps_to_ras(mam_pt)],
        surface_fraction=fractions,
        surface_area_mm2=float(area.sum()),
        tumor_volume_ml=vol_ml,
        residual_volume_ml=resid_ml,
        uncertainty_mm=float(unc),
        uncertainty_terms={"grid_step_mm": float(step), "data_band_mm": float(band),
                           "sharpness_per_mm": float(sharp), "source": source},
        deficit_patches=patches,
        surface=mesh,
        margin_is_lower_bound=lower_bound,
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
