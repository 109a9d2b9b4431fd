"""What the registration metric must not look at, found automatically (no user mask needed).

* :func:`artefact_mask` - the ablation probe / needle and other metal (> 2000 HU) with the
  in-plane metal streaks around it (the axial slices it crosses, within ``STREAK_RADIUS_MM``),
  and gas (< -400 HU) in and near the zone or in small pockets (bubbles, tract). These change
  between the scans (the probe is only in the post; gas forms during the ablation).
* :func:`zone_organ_mask` - the organ the zone lies in (the liver), grown from the tissue
  around the zone: with it the metric follows the liver around the lesion and not the body
  wall it slides against when the patient breathes differently.

Both work on a box around the zone (``box``: index box on the image, z, y, x) and return UInt8
masks on the full image grid (zero outside the box) plus a JSON-ready summary. HU thresholds act
on the *unclamped* CT. Lengths in mm.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import SimpleITK as sitk

from a0verify import geometry
from a0verify.registration.roi import dilate, erode

METAL_HU = 2000.0
STREAK_RADIUS_MM = 30.0  # in-plane exclusion around metal, in every slice with metal
GAS_HU = -400.0
GAS_NEAR_ZONE_MM = 10.0  # any gas this close to the zone is excluded
GAS_POCKET_ML = 2.0  # smaller gas pockets anywhere in the box are excluded
GAS_DILATION_MM = 2.0
#: Organ mask: shell around the zone whose tissue defines the organ's intensity range.
SHELL_MM = (4.0, 12.0)
ORGAN_OPEN_MM = 3.0  # opening radius that cuts thin bridges to neighbouring tissue
ORGAN_CLOSE_MM = 5.0  # closing radius that fills vessels and bubbles
ORGAN_MIN_SHELL = 0.5  # the organ must cover at least this fraction of the shell
ORGAN_GRID_MM = 1.4  # the organ is delineated on a grid about this coarse in-plane


def _paste(sub: sitk.Image, full: sitk.Image, box: geometry.IndexBox) -> sitk.Image:
    arr = np.zeros(sitk.GetArrayViewFromImage(full).shape, np.uint8)
    arr[box.slices] = sitk.GetArrayViewFromImage(sub) != 0
    return geometry.array_to_image(arr, full)


def artefact_mask(raw: sitk.Image, zone: sitk.Image | None,
                  box: geometry.IndexBox) -> tuple[sitk.Image, dict[str, Any]]:
    """Metal + streaks + gas to leave out of the metric (UInt8 on ``raw``'s grid) and a
    summary (voxel counts, excluded volume in ml). ``zone`` on ``raw``'s grid or None."""
    sub = geometry.crop(raw, box)
    metal = sitk.Cast(sub > METAL_HU, sitk.sitkUInt8)
    n_metal = int(sitk.GetArrayViewFromImage(metal).sum())
    out = sitk.Image(sub.GetSize(), sitk.sitkUInt8)
    out.CopyInformation(sub)
    if n_metal:
        # metal streaks lie in the axial slices that hold metal: an in-plane disc, then +-1 slice
        streaks = dilate(metal, STREAK_RADIUS_MM, inplane=True)
        out = out | sitk.BinaryDilate(streaks, [0, 0, 1], sitk.sitkBox)
    gas = sitk.Cast(sub < GAS_HU, sitk.sitkUInt8)
    n_gas = 0
    if sitk.GetArrayViewFromImage(gas).any():
        cc = sitk.ConnectedComponent(gas)
        stats = sitk.LabelShapeStatisticsImageFilter()
        stats.Execute(cc)
        small = [lab for lab in stats.GetLabels()
                 if stats.GetPhysicalSize(lab) / 1000.0 < GAS_POCKET_ML]
        keep = sitk.Cast(sitk.ChangeLabel(cc, {lab: 0 for lab in stats.GetLabels()
                                               if lab not in set(small)}) > 0, sitk.sitkUInt8)
        if zone is not None:
            near = dilate(geometry.crop(zone, box), GAS_NEAR_ZONE_MM)
            keep = keep | (gas & near)
        n_gas = int(sitk.GetArrayViewFromImage(keep).sum())
        if n_gas:
            out = out | dilate(keep, GAS_DILATION_MM)
    vox_ml = geometry.voxel_volume_ml(raw)
    info = {"metal_voxels": n_metal, "gas_voxels": n_gas,
            "excluded_ml": float(sitk.GetArrayViewFromImage(out).sum()) * vox_ml}
    return _paste(out, raw, box), info


def zone_organ_mask(raw: sitk.Image, zone: sitk.Image, exclude: sitk.Image | None,
                    box: geometry.IndexBox) -> tuple[sitk.Image | None, dict[str, Any]]:
    """The organ around the zone (UInt8 on ``raw``'s grid; None when it cannot be delineated)
    and a summary.

    The tissue in a shell 4-12 mm around the zone (minus ``exclude``) sets an intensity range
    (median -max(30, 2.5 sigma) .. +max(90, 2.5 sigma) HU, sigma from the MAD: enhancing vessels
    stay in, fat, muscle of a contrast CT, lung and bone stay out); the smoothed CT in that
    range is opened by 3 mm (cutting thin bridges), the component holding most of the shell is
    kept, grown back within the range, closed by 5 mm and hole-filled. Rejected (None) when it
    covers less than half of the shell."""
    # ~1.4 mm in-plane is plenty for a mask that is dilated by 4 mm afterwards (4x cheaper)
    fine = sitk.Cast(geometry.crop(raw, box), sitk.sitkFloat32)
    factors = [max(1, round(ORGAN_GRID_MM / s)) for s in fine.GetSpacing()]
    sub = sitk.SmoothingRecursiveGaussian(sitk.BinShrink(fine, factors), [1.0] * 3)
    z = sitk.Resample(geometry.crop(zone, box), sub, sitk.Transform(), sitk.sitkNearestNeighbor,
                      0, sitk.sitkUInt8) | sitk.Cast(sitk.Resample(
                          sitk.Cast(geometry.crop(zone, box), sitk.sitkFloat32), sub,
                          sitk.Transform(), sitk.sitkLinear) > 0.25, sitk.sitkUInt8)
    shell = dilate(z, SHELL_MM[1]) & (dilate(z, SHELL_MM[0]) == 0)
    if exclude is not None:
        shell = shell & (sitk.Resample(geometry.crop(exclude, box), sub, sitk.Transform(),
                                       sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8) == 0)
    arr = sitk.GetArrayViewFromImage(sub)
    sh = sitk.GetArrayViewFromImage(shell) != 0
    if sh.sum() < 50:
        return None, {"used": False, "reason": "no tissue around the zone"}
    vals = arr[sh]
    med = float(np.median(vals))
    sig = 1.4826 * float(np.median(np.abs(vals - med)))
    lo, hi = med - max(30.0, 2.5 * sig), med + max(90.0, 2.5 * sig)
    cand = sitk.Cast((sub > lo) & (sub < hi), sitk.sitkUInt8)
    opened = dilate(erode(cand, ORGAN_OPEN_MM), ORGAN_OPEN_MM) & cand
    cc = sitk.GetArrayFromImage(sitk.ConnectedComponent(opened))
    labels, counts = np.unique(cc[sh & (cc > 0)], return_counts=True)
    info: dict[str, Any] = {"used": False, "intensity_range_hu": [lo, hi]}
    if len(labels) == 0:
        return None, {**info, "reason": "no organ tissue around the zone"}
    core = geometry.array_to_image((cc == labels[int(np.argmax(counts))]).astype(np.uint8), sub)
    organ = dilate(core, ORGAN_OPEN_MM) & cand
    organ = erode(dilate(organ | z, ORGAN_CLOSE_MM), ORGAN_CLOSE_MM)
    organ = sitk.Cast(sitk.BinaryFillhole(organ), sitk.sitkUInt8)
    oa = sitk.GetArrayViewFromImage(organ) != 0
    coverage = float(oa[sh].mean())
    info.update(shell_coverage=coverage, box_fraction=float(oa.mean()),
                volume_ml=float(oa.sum()) * geometry.voxel_volume_ml(sub))
    if coverage < ORGAN_MIN_SHELL:
        return None, {**info, "reason": f"the organ covers only {100 * coverage:.0f} % of the "
                      "tissue around the zone"}
    info["used"] = True
    organ = sitk.Resample(organ, geometry.crop(raw, box), sitk.Transform(),
                          sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    return _paste(organ, raw, box), info


def moving_metal_mask(raw: sitk.Image) -> sitk.Image | None:
    """Metal (> 2000 HU) in the pre scan (clips, coils, dense lipiodol) with its in-plane
    streak region, or None when there is none."""
    metal = sitk.Cast(raw > METAL_HU, sitk.sitkUInt8)
    arr = sitk.GetArrayViewFromImage(metal)
    box = geometry.nonzero_index_box(arr)
    if box is None:
        return None
    pad = [math.ceil(STREAK_RADIUS_MM / s) + 1 for s in geometry.spacing_zyx(raw)]
    shape = arr.shape
    big = geometry.IndexBox(tuple(max(0, lo - p) for lo, p in zip(box.lo_zyx, pad, strict=True)),
                            tuple(min(n, hi + p) for hi, p, n in zip(box.hi_zyx, pad, shape,
                                                                     strict=True)))
    sub = geometry.crop(metal, big)
    streaks = dilate(sub, STREAK_RADIUS_MM, inplane=True)
    return _paste(sitk.BinaryDilate(streaks, [0, 0, 1], sitk.sitkBox), raw, big)


__all__ = ["artefact_mask", "moving_metal_mask", "zone_organ_mask"]
