"""Write a 3-D CT image (SimpleITK, LPS mm) as a classic DICOM CT series (one file per slice).

Used for the *synthesized* reference series (the post CT was not DICOM, or the result is exported
anonymized, see :mod:`a0verify.dicom_out.reference`) and by the tests to build DICOM series from
the phantoms in any orientation. Slice k of the image becomes one CT Image Storage instance whose
ImagePositionPatient is the LPS centre of voxel (0, 0, k) and whose ImageOrientationPatient is the
first two direction columns, so the series re-reads onto exactly the image's voxel centres
(whatever the direction matrix: flipped, permuted or oblique). Values are rounded to integers
(HU) and stored as int16 with a rescale intercept.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from a0verify import __version__, geometry

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


@dataclass
class StudyInfo:
    """Patient and study attributes copied into every instance written for one study.

    ``patient`` holds DICOM keywords (PatientName, PatientID, PatientBirthDate, PatientSex);
    empty strings are written as empty (type 2) attributes.
    """

    study_instance_uid: str
    frame_of_reference_uid: str
    patient: dict[str, str] = field(default_factory=dict)
    study_date: str = ""
    study_time: str = ""
    study_id: str = ""
    accession_number: str = ""
    study_description: str = ""

    def apply(self, ds: Any) -> None:
        """Set the Patient and General Study attributes of ``ds``."""
        for kw in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex"):
            setattr(ds, kw, self.patient.get(kw, ""))
        ds.StudyInstanceUID = self.study_instance_uid
        ds.StudyDate = self.study_date
        ds.StudyTime = self.study_time
        ds.StudyID = self.study_id
        ds.AccessionNumber = self.accession_number
        ds.ReferringPhysicianName = ""
        if self.study_description:
            ds.StudyDescription = self.study_description


def _now() -> tuple[str, str]:
    t = _dt.datetime.now()
    return t.strftime("%Y%m%d"), t.strftime("%H%M%S")


def write_ct_series(image: sitk.Image, folder: str | Path, study: StudyInfo, *,
                    series_instance_uid: str, series_number: int = 900,
                    series_description: str = "", derived: bool = True,
                    extra: Mapping[str, Any] | None = None) -> list[Path]:
    """Write ``image`` (3-D, HU) as CT Image Storage files ``folder/CT_0001.dcm`` ... in slice
    order (index k of the image). Returns the paths. ``derived`` marks the images
    DERIVED\\SECONDARY (a synthesized copy, not an acquisition). ``extra``: keywords set on every
    instance (e.g. ``PatientPosition``). Every file is written atomically.
    """
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

    from a0verify.io import atomic_path

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    arr = np.rint(sitk.GetArrayFromImage(image).astype(np.float64))  # (z, y, x)
    lo = float(arr.min()) if arr.size else 0.0
    intercept = min(-1024.0, float(np.floor(lo)))
    stored = np.clip(arr - intercept, 0, 32767).astype(np.int16)
    d = geometry.direction_matrix(image)
    sx, sy, _ = (float(v) for v in image.GetSpacing())
    nz = stored.shape[0]
    cdate, ctime = _now()
    paths: list[Path] = []
    for k in range(nz):
        pos = geometry.index_to_lps(image, np.array([0.0, 0.0, float(k)]))
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = UID(CT_IMAGE_STORAGE)
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = out / f"CT_{k + 1:04d}.dcm"
        ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.SOPClassUID = CT_IMAGE_STORAGE
        ds.SOPInstanceUID = str(meta.MediaStorageSOPInstanceUID)
        study.apply(ds)
        ds.Modality = "CT"
        ds.SeriesInstanceUID = series_instance_uid
        ds.SeriesNumber = series_number
        ds.SeriesDescription = series_description[:64]
        ds.SeriesDate, ds.SeriesTime = cdate, ctime
        ds.ContentDate, ds.ContentTime = cdate, ctime
        ds.FrameOfReferenceUID = study.frame_of_reference_uid
        ds.PositionReferenceIndicator = ""
        ds.Manufacturer = "a0verify"
        ds.ManufacturerModelName = "a0verify"
        ds.SoftwareVersions = __version__
        ds.InstanceNumber = k + 1
        ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"] if derived else \
            ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.AcquisitionNumber = 1
        ds.PatientPosition = ""  # unknown for a synthesized copy (type 2C, may be empty)
        ds.Laterality = ""
        ds.KVP = ""
        ds.ImagePositionPatient = [f"{v:.6f}" for v in pos]
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in (*d[:, 0], *d[:, 1])]
        ds.PixelSpacing = [f"{sy:.6f}", f"{sx:.6f}"]  # (row spacing, column spacing)
        ds.SliceThickness = f"{float(image.GetSpacing()[2]):.6f}"
        ds.SliceLocation = f"{float(pos @ np.cross(d[:, 0], d[:, 1])):.6f}"
        ds.Rows, ds.Columns = int(stored.shape[1]), int(stored.shape[2])
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        ds.RescaleIntercept = f"{intercept:g}"
        ds.RescaleSlope = "1"
        ds.RescaleType = "HU"
        ds.WindowCenter, ds.WindowWidth = "60", "400"
        for kw, v in (extra or {}).items():
            setattr(ds, kw, v)
        ds.PixelData = np.ascontiguousarray(stored[k]).tobytes()
        with atomic_path(path) as tmp:
            ds.save_as(str(tmp), enforce_file_format=True)
        paths.append(path)
    return paths
