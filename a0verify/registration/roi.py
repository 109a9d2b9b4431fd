"""Region of interest and metric masks for the lesion-focused registration.

The ROI is a box on the post (fixed) grid around the ablation zone; the metric mask is the ROI
minus what changes between the scans (the zone, the tumour, probe/needle and gas: see
:mod:`a0verify.registration.artefacts`), optionally restricted to the liver, and kept away from
the edges of the pre (moving) scan. All masks are UInt8 (0/1) images on the grid they belong to;
points are LPS mm; arrays (z, y, x).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

from a0verify import geometry
from a0verify.errors import InputError, RegistrationError

F64 = npt.NDArray[np.float64]

#: Metric exclusion margin around the zone / tumour / user exclusions (mm).
EXCLUDE_DILATION_MM = 3.0
#: Metric samples kept this far inside the moving field of view (mm).
MOVING_EDGE_MM = 8.0
#: The moving ROI covers the mapped fixed ROI plus this much (mm).
MOVING_PAD_MM = 25.0
#: The metric is restricted to the liver mask dilated by this much (mm): enough to keep the
#: liver's own edge, little enough to leave out the body wall it slides against (with 4 mm the
#: rigid stage followed the wall on a sliding pair: 8.5 mm off at the tumour; 1 mm: 2.3 mm).
LIVER_DILATION_MM = 2.0


@dataclass
class Roi:
    """Fixed ROI and its metric mask (post grid), moving ROI and optional moving mask (pre
    grid). ``fixed_mask`` is None when nothing is left to measure similarity on."""

    fixed: sitk.Image
    fixed_mask: sitk.Image | None
    moving: sitk.Image
    moving_mask: sitk.Image | None


def on_grid(mask: sitk.Image | None, ref: sitk.Image, what: str) -> sitk.Image | None:
    """Binary UInt8 ``mask`` on ``ref``'s grid (nearest neighbour when the grids differ); None
    stays None. Raises InputError when the mask is empty or misses ``ref``."""
    if mask is None:
        return None
    m = sitk.Cast(mask != 0, sitk.sitkUInt8)
    if not geometry.same_grid(m, ref):
        m = sitk.Resample(m, ref, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    if not sitk.GetArrayViewFromImage(m).any():
        raise InputError(f"{what} is empty or does not overlap its image")
    return m


def mask_points(mask: sitk.Image) -> F64:
    """LPS mm centres (N, 3) of the nonzero voxels of ``mask``; (0, 3) when empty."""
    arr = sitk.GetArrayViewFromImage(mask)
    box = geometry.nonzero_index_box(arr)
    if box is None:
        return np.zeros((0, 3), np.float64)
    idx = np.argwhere(arr[box.slices] != 0).astype(np.float64) + np.asarray(box.lo_zyx, float)
    return geometry.zyx_index_to_lps(mask, idx)


def dilate(mask: sitk.Image, mm: float, inplane: bool = False) -> sitk.Image:
    """UInt8 (0/1) dilation of ``mask`` by a ball of radius ``mm`` (voxels whose centre lies
    within ``mm`` of a mask voxel's centre; with ``inplane``, a disc in each axial slice). Uses
    a distance map, so the cost does not grow with the radius."""
    m = sitk.Cast(mask != 0, sitk.sitkUInt8)
    if not sitk.GetArrayViewFromImage(m).any():
        return m
    work = m
    if inplane:
        work = sitk.Image(m)
        work.SetSpacing([*m.GetSpacing()[:2], 1e6])
    d = sitk.SignedMaurerDistanceMap(work, insideIsPositive=False, squaredDistance=False,
                                     useImageSpacing=True)
    out = sitk.Cast(d <= float(mm), sitk.sitkUInt8)
    out.CopyInformation(mask)
    return out


def erode(mask: sitk.Image, mm: float) -> sitk.Image:
    """UInt8 erosion by a ball of radius ``mm``: the complement of the dilated complement."""
    m = sitk.Cast(mask != 0, sitk.sitkUInt8)
    return sitk.Cast(dilate(1 - m, mm) == 0, sitk.sitkUInt8)


def crop_like(mask: sitk.Image | None, ref: sitk.Image) -> sitk.Image | None:
    """``mask`` on ``ref``'s grid (nearest neighbour, UInt8); None stays None."""
    if mask is None:
        return None
    return sitk.Resample(mask, ref, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)


def near_region(zone: sitk.Image | None, mm: float = 15.0) -> sitk.Image | None:
    """Zone dilated by ``mm`` (where the margin is measured); None without a zone."""
    if zone is None or not sitk.GetArrayViewFromImage(zone).any():
        return None
    return dilate(zone, mm)


def inside_moving(f_roi: sitk.Image, moving: sitk.Image, init: sitk.Transform,
                  edge_mm: float) -> sitk.Image:
    """UInt8 mask on ``f_roi``: voxels whose centre, mapped by the rigid ``init`` (post -> pre),
    lies inside the moving image at least ``edge_mm`` from its border. Keeps the metric off
    samples that would map outside a small moving field of view."""
    pts = geometry.voxel_centers_lps(f_roi).reshape(-1, 3)
    origin = np.asarray(init.TransformPoint((0.0, 0.0, 0.0)), float)
    a = np.column_stack([np.asarray(init.TransformPoint(tuple(e))) - origin for e in np.eye(3)])
    idx = geometry.lps_to_zyx_index(moving, pts @ a.T + origin)
    shape = np.asarray(sitk.GetArrayViewFromImage(moving).shape, float)
    edge = edge_mm / geometry.spacing_zyx(moving)
    ok = np.all((idx >= -0.5 + edge) & (idx <= shape - 0.5 - edge), axis=1)
    if not ok.any():  # tiny moving image: fall back to any overlap at all
        ok = np.all((idx >= -0.5) & (idx <= shape - 0.5), axis=1)
    arr = ok.reshape(sitk.GetArrayViewFromImage(f_roi).shape).astype(np.uint8)
    return geometry.array_to_image(arr, f_roi)


def roi_box(fixed: sitk.Image, zone: sitk.Image | None, liver: sitk.Image | None,
            pad_mm: float) -> geometry.IndexBox:
    """Index box on ``fixed``: the zone's box padded by ``pad_mm``, else the liver's + 10 mm,
    else the whole image. Raises InputError when empty."""
    if zone is not None:
        box = geometry.roi_box_around_lps(fixed, mask_points(zone), pad_mm)
    elif liver is not None:
        box = geometry.roi_box_around_lps(fixed, mask_points(liver), 10.0)
    else:
        box = geometry.IndexBox((0, 0, 0), tuple(int(v) for v in fixed.GetSize()[::-1]))  # type: ignore[arg-type]
    if box.empty:
        raise InputError("the region of interest around the ablation zone is empty")
    return box


def roi_and_masks(fixed: sitk.Image, moving: sitk.Image, init: sitk.Transform, pad_mm: float, *,
                  zone: sitk.Image | None = None, exclude: sitk.Image | None = None,
                  liver: sitk.Image | None = None,
                  moving_exclude: sitk.Image | None = None) -> Roi:
    """ROIs and metric masks for one attempt.

    ``fixed``/``moving``: prepared CTs; ``init``: rigid start (post -> pre); ``zone``: ablation
    zone, ``exclude``: more post-grid exclusions (both dilated by :data:`EXCLUDE_DILATION_MM`),
    ``liver``: post-grid liver (the metric stays within it + :data:`LIVER_DILATION_MM`),
    ``moving_exclude``: pre-grid exclusions (tumour). The moving ROI covers ``init`` of the fixed
    ROI + :data:`MOVING_PAD_MM`. Raises RegistrationError when that falls outside the pre scan
    (no overlap)."""
    box = roi_box(fixed, zone, liver, pad_mm)
    f_roi = geometry.crop(fixed, box)
    ex = None
    for m in (zone, exclude):
        if m is not None:
            c = geometry.crop(m, box)
            ex = c if ex is None else (ex | c)
    f_mask = sitk.Image(f_roi.GetSize(), sitk.sitkUInt8) + 1
    f_mask.CopyInformation(f_roi)
    if ex is not None:
        f_mask = f_mask - dilate(ex, EXCLUDE_DILATION_MM)
    if liver is not None:
        f_mask = f_mask & dilate(geometry.crop(liver, box), LIVER_DILATION_MM)
    inside = inside_moving(f_roi, moving, init, MOVING_EDGE_MM)
    if not sitk.GetArrayViewFromImage(inside).any():
        raise RegistrationError("the scans do not overlap around the ablation zone (after "
                                "initialisation the region of interest falls outside the pre "
                                "scan)")
    f_mask = f_mask & inside
    if not sitk.GetArrayViewFromImage(f_mask).any():
        return Roi(f_roi, None, moving, None)
    lo, hi = geometry.physical_bounds(f_roi)
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1])
                        for z in (lo[2], hi[2])])
    mpts = np.array([init.TransformPoint(tuple(c)) for c in corners.tolist()])
    mbox = geometry.roi_box_around_lps(moving, mpts, MOVING_PAD_MM)
    if mbox.empty:
        raise RegistrationError("the scans do not overlap around the ablation zone (after "
                                "initialisation the region of interest falls outside the pre "
                                "scan)")
    m_roi = geometry.crop(moving, mbox)
    m_mask = None
    if moving_exclude is not None:
        mm = sitk.Image(m_roi.GetSize(), sitk.sitkUInt8) + 1
        mm.CopyInformation(m_roi)
        m_mask = mm - dilate(geometry.crop(moving_exclude, mbox), EXCLUDE_DILATION_MM)
    return Roi(f_roi, f_mask, m_roi, m_mask)
