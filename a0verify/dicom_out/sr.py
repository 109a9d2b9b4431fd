"""DICOM SR (Comprehensive 3D SR, TID 1500 measurement report) of a result, and its reader.

Per lesion two groups share one tracking UID (the one of the lesion's SEG segment):

* TID 1411 *Volumetric ROI measurements* referencing the tumour segment of the SEG: tumour volume,
  residual volume, minimal ablative margin (derivation *Minimum*), its uncertainty (95 %
  half-width), the three surface-area fractions (percent), the threshold, and the verdict as a
  qualitative evaluation;
* TID 1410 *Planar ROI measurements* whose region is the thinnest-margin point (SCOORD3D POINT,
  LPS mm in the post CT's frame of reference) carrying the minimal ablative margin again.

Codes: :mod:`a0verify.dicom_out.codes`. :func:`read_sr_values` reads such a document back into
report.json-shaped numbers (tests, and whoever checks a PACS copy).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from a0verify import __version__
from a0verify.dicom_out import codes
from a0verify.dicom_out.reference import ReferenceSeries
from a0verify.dicom_out.seg import SegmentPlan


def _lesion_groups(les: dict[str, Any], plan: SegmentPlan, seg: Any, threshold_mm: float,
                   for_uid: str) -> list[Any]:
    import highdicom as hd

    mm, pct, ml = codes.UNIT_MM, codes.UNIT_PERCENT, codes.UNIT_ML
    frac = les["surface_fraction"]
    tracking = hd.sr.TrackingIdentifier(uid=plan.tracking_uid, identifier=f"lesion {les['id']}")
    site = [hd.sr.FindingSite(anatomic_location=codes.LIVER)]

    def m(name: Any, value: float, unit: Any, **kw: Any) -> Any:
        return hd.sr.Measurement(name=name, value=float(value), unit=unit, **kw)

    mam = m(codes.MIN_MARGIN, les["min_margin_mm"], mm, derivation=codes.MINIMUM)
    volumetric = hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=tracking,
        referenced_segment=hd.sr.ReferencedSegment.from_segmentation(seg, plan.number),
        finding_type=codes.NEOPLASM, finding_sites=site,
        measurements=[
            m(codes.VOLUME, les["tumor_volume_ml"], ml),
            m(codes.RESIDUAL_VOLUME, les["residual_volume_ml"], ml),
            mam,
            m(codes.MIN_MARGIN_UNCERTAINTY, les["uncertainty_mm"], mm),
            m(codes.FRACTION_BELOW_ZERO, 100.0 * frac["below_zero"], pct),
            m(codes.FRACTION_BELOW_THRESHOLD, 100.0 * frac["below_threshold"], pct),
            m(codes.FRACTION_AT_OR_ABOVE, 100.0 * frac["at_or_above_threshold"], pct),
            m(codes.THRESHOLD, threshold_mm, mm),
        ],
        qualitative_evaluations=[hd.sr.QualitativeEvaluation(
            codes.VERDICT, codes.VERDICT_VALUES[les["verdict"]])])
    point = hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=plan.tracking_uid, identifier=f"lesion {les['id']}"),
        referenced_region=hd.sr.ImageRegion3D(
            graphic_type=hd.sr.GraphicTypeValues3D.POINT,
            graphic_data=np.asarray([les["min_margin_point_lps"]], float),
            frame_of_reference_uid=for_uid),
        finding_type=codes.THINNEST_POINT, finding_sites=site,
        measurements=[m(codes.MIN_MARGIN, les["min_margin_mm"], mm, derivation=codes.MINIMUM)])
    return [volumetric, point]


def build_sr(ref: ReferenceSeries, seg: Any, plans: Sequence[SegmentPlan],
             report: dict[str, Any], *, series_instance_uid: str, sop_instance_uid: str,
             series_number: int = 902) -> Any:
    """The TID 1500 measurement report of ``report`` (report.json dictionary) whose lesions
    reference the tumour segments ``plans`` of ``seg`` (a highdicom Segmentation)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes as pcodes
    from pydicom.uid import generate_uid

    by_lesion = {p.lesion_id: p for p in plans if p.is_tumor}
    for_uid = str(ref.datasets[0].FrameOfReferenceUID)
    groups: list[Any] = []
    for les in report["lesions"]:
        plan = by_lesion.get(int(les["id"]))
        if plan is None:
            raise ValueError(f"lesion {les['id']} has no tumour segment")
        groups += _lesion_groups(les, plan, seg, float(report["threshold_mm"]), for_uid)
    observer = hd.sr.ObserverContext(
        observer_type=pcodes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=generate_uid(), name="a0verify", manufacturer_name="a0verify developers",
            model_name=f"a0verify {__version__}"))
    doc = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=codes.PROCEDURE, imaging_measurements=groups)
    sr = hd.sr.Comprehensive3DSR(
        evidence=[seg, *ref.datasets], content=doc[0],
        series_instance_uid=series_instance_uid, series_number=series_number,
        sop_instance_uid=sop_instance_uid, instance_number=1, manufacturer="a0verify",
        is_complete=True, is_final=False, is_verified=False,
        series_description="a0verify ablation margin report")
    sr.CodingSchemeIdentificationSequence = [
        *list(getattr(sr, "CodingSchemeIdentificationSequence", [])), codes.coding_scheme_item()]
    return sr


def read_sr_values(sr: Any) -> dict[int, dict[str, Any]]:
    """{lesion id: {"tumor_volume_ml", "residual_volume_ml", "min_margin_mm",
    "uncertainty_mm", "surface_fraction": {...} (0-1), "threshold_mm", "verdict",
    "min_margin_point_lps", "segment_number", "tracking_uid", "point_tracking_uid"}} read from
    a document written by
    :func:`build_sr` (a pydicom Dataset)."""
    import highdicom as hd

    names = {codes.VOLUME.value: "tumor_volume_ml", codes.RESIDUAL_VOLUME.value:
             "residual_volume_ml", codes.MIN_MARGIN.value: "min_margin_mm",
             codes.MIN_MARGIN_UNCERTAINTY.value: "uncertainty_mm",
             codes.THRESHOLD.value: "threshold_mm"}
    fractions = {codes.FRACTION_BELOW_ZERO.value: "below_zero",
                 codes.FRACTION_BELOW_THRESHOLD.value: "below_threshold",
                 codes.FRACTION_AT_OR_ABOVE.value: "at_or_above_threshold"}
    doc = hd.sr.Comprehensive3DSR.from_dataset(sr, copy=True)
    content: Any = doc.content
    out: dict[int, dict[str, Any]] = {}
    for grp in content.get_volumetric_roi_measurement_groups():
        lid = int(str(grp.tracking_identifier).split()[-1])
        rec = out.setdefault(lid, {"surface_fraction": {}})
        rec["tracking_uid"] = str(grp.tracking_uid)
        ref_seg = grp.referenced_segment
        if ref_seg is not None:
            rec["segment_number"] = int(ref_seg[0].ReferencedSOPSequence[0]
                                        .ReferencedSegmentNumber)
        for meas in grp.get_measurements():
            code = meas.name.value
            if code in names:
                rec[names[code]] = float(meas.value)
            elif code in fractions:
                rec["surface_fraction"][fractions[code]] = float(meas.value) / 100.0
        for ev in grp.get_qualitative_evaluations():
            if ev.name.value == codes.VERDICT.value:
                rec["verdict"] = codes.VERDICT_BY_CODE[ev.value.value]
    for grp in content.get_planar_roi_measurement_groups():
        lid = int(str(grp.tracking_identifier).split()[-1])
        rec = out.setdefault(lid, {"surface_fraction": {}})
        rec["min_margin_point_lps"] = [float(v) for v in np.asarray(grp.roi.value).ravel()[:3]]
        rec["point_tracking_uid"] = str(grp.tracking_uid)
    return out
