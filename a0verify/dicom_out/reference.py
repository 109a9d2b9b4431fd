"""The CT series a result's DICOM objects reference: the post-ablation CT they were measured on.

* **Original** (the normal case): the post CT was a DICOM series (or multi-frame file) and the
  result is not anonymized. Its headers are re-read from the path recorded in report.json (or
  given with ``--post``) and checked against the SeriesInstanceUID recorded at run time; the SEG
  and SR join its study (Study Instance UID, patient, Frame of Reference).
* **Synthesized**: the post CT was not DICOM (NIfTI, NRRD, ...), the export is anonymized, or
  the DICOM series lacks what a SEG must reference (:data:`REQUIRED`, e.g. a series whose Frame
  of Reference UID was stripped; the patient identity is then kept).
  The post CT image is written as a new DICOM CT series (DERIVED\\SECONDARY, series description
  saying so) in a **new study**, and sent along with the results so that every reference
  resolves in the PACS. Anonymized: no patient name, birth date or study date; PatientID is a
  pseudonym; every UID is new. Non-DICOM input: PatientID ``A0V-<first 10 hex of the post CT's
  sha256>`` (the same input always lands in the same PACS patient), no name.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from a0verify.dicom_out.ctseries import StudyInfo, write_ct_series
from a0verify.errors import InputError

#: Header attributes of every source instance that the SEG and SR reference (CT Image IOD:
#: all Type 1); a series missing one is referenced through a synthesized copy instead.
REQUIRED = ("StudyInstanceUID", "SeriesInstanceUID", "SOPClassUID", "SOPInstanceUID",
            "FrameOfReferenceUID")


def missing_attributes(datasets: list[Any]) -> list[str]:
    """The :data:`REQUIRED` keywords absent or empty in any of ``datasets``."""
    return [kw for kw in REQUIRED if any(not str(ds.get(kw, "") or "") for ds in datasets)]


@dataclass
class Plane:
    """Geometry of one source image plane (LPS mm); ``frame`` is 0-based within its dataset."""

    dataset_index: int
    frame: int
    position: np.ndarray
    orientation: np.ndarray  # (6,) row then column direction cosines
    pixel_spacing: tuple[float, float]  # (row spacing, column spacing) mm
    rows: int
    columns: int


@dataclass
class ReferenceSeries:
    """Source image headers (pydicom datasets without pixel data, slice order) and planes."""

    datasets: list[Any]
    planes: list[Plane]
    study: StudyInfo
    synthesized: bool
    reason: str = ""
    files: list[Path] = field(default_factory=list)  # synthesized CT files to send along

    @property
    def series_instance_uid(self) -> str:
        return str(self.datasets[0].SeriesInstanceUID)


def _planes_of(datasets: list[Any]) -> list[Plane]:
    from a0verify.io.dicom import _floats, _frame_planes

    planes: list[Plane] = []
    for i, ds in enumerate(datasets):
        rows, cols = int(ds.Rows), int(ds.Columns)
        if int(ds.get("NumberOfFrames", 1) or 1) > 1:
            for fp in _frame_planes(ds, Path(str(getattr(ds, "filename", "") or "?"))):
                planes.append(Plane(i, fp.frame, fp.position, fp.orientation, fp.pixel_spacing,
                                    rows, cols))
            continue
        pos = _floats(ds.get("ImagePositionPatient"), 3)
        ori = _floats(ds.get("ImageOrientationPatient"), 6)
        ps = _floats(ds.get("PixelSpacing"), 2)
        if pos is None or ori is None or ps is None:
            continue
        planes.append(Plane(i, 0, pos, ori, (float(ps[0]), float(ps[1])), rows, cols))
    return planes


def _study_from(ds: Any) -> StudyInfo:
    return StudyInfo(
        study_instance_uid=str(ds.StudyInstanceUID),
        frame_of_reference_uid=str(ds.get("FrameOfReferenceUID", "") or ""),
        patient={kw: str(ds.get(kw, "") or "") for kw in
                 ("PatientName", "PatientID", "PatientBirthDate", "PatientSex")},
        study_date=str(ds.get("StudyDate", "") or ""),
        study_time=str(ds.get("StudyTime", "") or ""),
        study_id=str(ds.get("StudyID", "") or ""),
        accession_number=str(ds.get("AccessionNumber", "") or ""),
        study_description=str(ds.get("StudyDescription", "") or ""))


def original_reference(post: str | Path, series_uid: str | None,
                       expected: dict[str, Any] | None) -> ReferenceSeries:
    """Headers of the post CT series at ``post`` (directory or multi-frame file), in slice order.

    ``expected``: the identity record stored at run time; its series UID and instance UIDs must
    match (else InputError: the files changed since the run)."""
    import pydicom

    from a0verify.io.dicom import _quiet, series_identity

    p = Path(post)
    ident = series_identity(p, series_uid)
    if ident is None:
        raise InputError(f"{p}: post-ablation CT is not DICOM")
    if expected and expected.get("series_instance_uid") and \
            expected["series_instance_uid"] != ident["series_instance_uid"]:
        raise InputError(f"{p}: holds series {ident['series_instance_uid']}, but the result was "
                         f"measured on series {expected['series_instance_uid']}")
    if expected and expected.get("sop_instance_uids") and \
            sorted(expected["sop_instance_uids"]) != sorted(ident["sop_instance_uids"]):
        raise InputError(f"{p}: the post-ablation CT series changed since the run (other "
                         "instances); re-run the case")
    files = _files_in_order(p, ident)
    with _quiet():
        datasets = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    planes = _planes_of(datasets)
    if not planes:
        raise InputError(f"{p}: post-ablation CT has no slice geometry")
    return ReferenceSeries(datasets, planes, _study_from(datasets[0]), synthesized=False)


def _files_in_order(p: Path, ident: dict[str, Any]) -> list[Path]:
    if p.is_file():
        return [p]
    from a0verify.io.dicom import scan_dicom_dir

    series = [s for s in scan_dicom_dir(p) if s.uid == ident["series_instance_uid"]]
    order = {uid: i for i, uid in enumerate(ident["sop_instance_uids"])}
    import pydicom

    def key(f: Path) -> int:
        ds = pydicom.dcmread(f, stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
        return order.get(str(ds.get("SOPInstanceUID", "")), len(order))

    files = [f for f in series[0].files] if series else []
    return sorted(files, key=key)


def synthesized_reference(post_image: Any, folder: Path, *, anonymized: bool,
                          source_sha256: str | None, reason: str,
                          uids: dict[str, str] | None = None,
                          pseudonym: str | None = None,
                          patient: dict[str, str] | None = None) -> ReferenceSeries:
    """Write ``post_image`` as a new DICOM CT series into ``folder`` (new study) and return it.

    ``uids`` may give ``study_instance_uid``, ``series_instance_uid``, ``frame_of_reference_uid``
    (kept stable across exports of one anonymized result); missing ones are generated.
    ``patient``: the source's patient module (PatientName, PatientID, ...) to keep when not
    anonymized (a DICOM source that could not be referenced); default: a PatientID derived
    from the image (see the module docstring).
    """
    import pydicom
    from pydicom.uid import generate_uid

    u = dict(uids or {})
    for k in ("study_instance_uid", "series_instance_uid", "frame_of_reference_uid"):
        u.setdefault(k, generate_uid())
    if anonymized:
        pid = pseudonym or "A0V-ANON-" + hashlib.sha256(
            u["study_instance_uid"].encode()).hexdigest()[:8].upper()
    else:
        pid = "A0V-" + (source_sha256 or hashlib.sha256(
            u["study_instance_uid"].encode()).hexdigest())[:10].upper()
    import datetime as _dt

    now = _dt.datetime.now()
    keep = {k: v for k, v in (patient or {}).items() if v} if not anonymized else {}
    study = StudyInfo(study_instance_uid=u["study_instance_uid"],
                      frame_of_reference_uid=u["frame_of_reference_uid"],
                      patient={"PatientID": pid, "PatientName": "", **keep},
                      study_date="" if anonymized else now.strftime("%Y%m%d"),
                      study_time="" if anonymized else now.strftime("%H%M%S"), study_id="A0V",
                      study_description="a0verify ablation margin")
    desc = ("a0verify: anonymized copy of the post-ablation CT" if anonymized else
            "a0verify: post-ablation CT converted to DICOM")
    files = write_ct_series(post_image, folder, study,
                            series_instance_uid=u["series_instance_uid"], series_number=900,
                            series_description=desc, derived=True)
    datasets = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    return ReferenceSeries(datasets, _planes_of(datasets), study, synthesized=True,
                           reason=reason, files=files)
