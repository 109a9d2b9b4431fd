"""DICOM Segmentation of a result: one segment per tumour lesion (registered onto the post CT)
and one for the ablation zone, BINARY, frames on the planes of the referenced CT series.

The masks live on the post grid (or a crop of it). Each segment frame is obtained by sampling the
masks (nearest neighbour, physical space) on the pixel centres of one source image plane, so every
frame carries the per-frame reference (Derivation Image / Source Image Sequence) to the CT image
it overlays, whatever the slice orientation, order or spacing of that series.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

from a0verify import __version__, geometry
from a0verify.dicom_out import codes
from a0verify.dicom_out.reference import Plane, ReferenceSeries

#: CIELab display colours (tumour yellow, ablation zone green, as in the figures)
_TUMOR_LAB = (88.0, -5.0, 85.0)
_ABLATION_LAB = (72.0, -60.0, 55.0)


@dataclass(frozen=True)
class SegmentPlan:
    """What one segment holds: a binary mask (post grid) and its description fields."""

    number: int
    label: str
    mask: sitk.Image
    is_tumor: bool
    lesion_id: int | None
    tracking_uid: str


def plan_segments(tumor: sitk.Image | None, ablation: sitk.Image,
                  lesion_ids: Sequence[int]) -> list[SegmentPlan]:
    """Segments 1..n: tumour lesions in ``lesion_ids`` order (voxels == id), then the ablation
    zone (all nonzero voxels). Tracking UIDs are new."""
    from pydicom.uid import generate_uid

    plans: list[SegmentPlan] = []
    if tumor is not None:
        for lid in lesion_ids:
            plans.append(SegmentPlan(len(plans) + 1, f"tumour {lid} (registered)",
                                     sitk.Cast(tumor == int(lid), sitk.sitkUInt8), True, int(lid),
                                     generate_uid()))
    plans.append(SegmentPlan(len(plans) + 1, "ablation zone",
                             sitk.Cast(ablation != 0, sitk.sitkUInt8), False, None,
                             generate_uid()))
    return plans


def _bits(plans: Sequence[SegmentPlan]) -> sitk.Image:
    """One UInt32 image whose bit i is segment i + 1 (all masks share one grid)."""
    if len(plans) > 31:
        raise ValueError("at most 31 segments")
    out = sitk.Cast(plans[0].mask, sitk.sitkUInt32)
    for i, p in enumerate(plans[1:], start=1):
        out = out + sitk.Cast(p.mask, sitk.sitkUInt32) * (1 << i)
    return out


def _plane_grid(pl: Plane) -> sitk.Image:
    r, c = pl.orientation[:3], pl.orientation[3:]
    n = np.cross(r, c)
    img = sitk.Image([pl.columns, pl.rows, 1], sitk.sitkUInt8)
    img.SetOrigin([float(v) for v in pl.position])
    img.SetSpacing([pl.pixel_spacing[1], pl.pixel_spacing[0], 1.0])
    img.SetDirection(np.column_stack([r, c, n / np.linalg.norm(n)]).ravel().tolist())
    return img


def masks_on_planes(plans: Sequence[SegmentPlan], planes: Sequence[Plane]
                    ) -> npt.NDArray[np.uint8]:
    """Sample every segment on every plane: array (planes, rows, columns, segments) of 0/1.

    Planes that do not cut the masks' nonzero box (beyond half a voxel diagonal) are left empty
    without resampling."""
    bits = _bits(plans)
    rows, cols = planes[0].rows, planes[0].columns
    out = np.zeros((len(planes), rows, cols, len(plans)), np.uint8)
    box = geometry.nonzero_index_box(sitk.GetArrayViewFromImage(bits))
    if box is None:
        return out
    lo = np.array(box.lo_zyx, float) - 0.5
    hi = np.array(box.hi_zyx, float) - 0.5
    corners = geometry.zyx_index_to_lps(bits, np.array(
        [[z, y, x] for z in (lo[0], hi[0]) for y in (lo[1], hi[1]) for x in (lo[2], hi[2])]))
    for k, pl in enumerate(planes):
        if (pl.rows, pl.columns) != (rows, cols):
            raise ValueError("source planes of different sizes")
        n = np.cross(pl.orientation[:3], pl.orientation[3:])
        s = corners @ n
        if pl.position @ n < s.min() - 1e-6 or pl.position @ n > s.max() + 1e-6:
            continue
        frame = sitk.GetArrayFromImage(sitk.Resample(
            bits, _plane_grid(pl), sitk.Transform(), sitk.sitkNearestNeighbor, 0,
            sitk.sitkUInt32))[0]
        if not frame.any():
            continue
        for i in range(len(plans)):
            out[k, :, :, i] = (frame >> i) & 1
    return out


def build_seg(ref: ReferenceSeries, plans: Sequence[SegmentPlan], *, series_instance_uid: str,
              sop_instance_uid: str, series_number: int = 901) -> Any:
    """The highdicom Segmentation (BINARY) of ``plans`` on ``ref``'s planes."""
    import highdicom as hd
    from pydicom.sr.codedict import codes as pcodes

    pixels = masks_on_planes(plans, ref.planes)
    if len(ref.datasets) == 1 and len(ref.planes) > 1:
        source = ref.datasets  # one multi-frame image: frames in plane order = file order
        order = np.argsort([p.frame for p in ref.planes])
        pixels = pixels[order]
    else:
        source = [ref.datasets[p.dataset_index] for p in ref.planes]
    algo = hd.AlgorithmIdentificationSequence(
        name="a0verify", version=__version__, family=pcodes.cid7162.MorphologicalOperations)
    descriptions = []
    for p in plans:
        descriptions.append(hd.seg.SegmentDescription(
            segment_number=p.number, segment_label=p.label,
            segmented_property_category=codes.MORPHOLOGICALLY_ABNORMAL,
            segmented_property_type=codes.NEOPLASM if p.is_tumor else codes.NECROSIS,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC,
            algorithm_identification=algo, tracking_uid=p.tracking_uid,
            tracking_id=p.label, anatomic_regions=[codes.LIVER],
            display_color=hd.color.CIELabColor(*(_TUMOR_LAB if p.is_tumor else _ABLATION_LAB))))
    return hd.seg.Segmentation(
        source_images=source, pixel_array=pixels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=series_instance_uid,
        series_number=series_number, sop_instance_uid=sop_instance_uid, instance_number=1,
        manufacturer="a0verify", manufacturer_model_name="a0verify",
        software_versions=__version__, device_serial_number="0",
        series_description="a0verify tumour and ablation zone",
        content_label="A0VERIFY", content_description="Tumour (registered) and ablation zone",
        omit_empty_frames=True)
