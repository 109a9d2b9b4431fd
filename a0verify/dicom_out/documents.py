"""Report page as DICOM Encapsulated PDF, and the key views as a Secondary Capture image.

Both join the referenced CT's study (patient, Study Instance UID) in series of their own, so a
PACS shows them next to the CT, SEG and SR. The PDF is the HTML report page printed by weasyprint
(extra ``pdf``); the Secondary Capture holds ``figure_views.png`` (axial, coronal and sagittal
views through the thinnest point, radiological convention).
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

import numpy as np

from a0verify import __version__
from a0verify.dicom_out.reference import ReferenceSeries
from a0verify.errors import InputError

ENCAPSULATED_PDF_STORAGE = "1.2.840.10008.5.1.4.1.1.104.1"


def html_to_pdf(html_path: Path, pdf_path: Path) -> Path:
    """Print ``html_path`` to ``pdf_path`` (atomically) with weasyprint; InputError naming the
    ``pdf`` extra when weasyprint is missing."""
    try:
        import weasyprint
    except ImportError:
        raise InputError("the DICOM report PDF needs weasyprint: pip install "
                         "'a0verify[pdf,dicom]'") from None
    import logging

    from a0verify.io import atomic_path

    logging.getLogger("weasyprint").setLevel(logging.ERROR)  # CSS notes would reach stderr
    with atomic_path(pdf_path) as tmp:
        weasyprint.HTML(filename=str(html_path)).write_pdf(str(tmp))
    return pdf_path


def encapsulated_pdf(ref: ReferenceSeries, pdf: bytes, *, series_instance_uid: str,
                     sop_instance_uid: str, title: str, burned_in_identity: bool,
                     series_number: int = 903) -> Any:
    """Encapsulated PDF instance (pydicom FileDataset) in ``ref``'s study.
    ``burned_in_identity``: the PDF shows patient identifiers (BurnedInAnnotation YES)."""
    from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
    from pydicom.uid import UID, ExplicitVRLittleEndian

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(ENCAPSULATED_PDF_STORAGE)
    meta.MediaStorageSOPInstanceUID = UID(sop_instance_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("report_pdf.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
    now = _dt.datetime.now()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = ENCAPSULATED_PDF_STORAGE
    ds.SOPInstanceUID = sop_instance_uid
    ref.study.apply(ds)
    if not ds.StudyTime:
        ds.StudyTime = now.strftime("%H%M%S")
    ds.Modality = "DOC"
    ds.SeriesInstanceUID = series_instance_uid
    ds.SeriesNumber = series_number
    ds.SeriesDescription = "a0verify report page"
    ds.Manufacturer = "a0verify"
    ds.SoftwareVersions = __version__
    ds.ConversionType = "WSD"
    ds.InstanceNumber = 1
    ds.ContentDate = now.strftime("%Y%m%d")
    ds.ContentTime = now.strftime("%H%M%S")
    ds.AcquisitionDateTime = now.strftime("%Y%m%d%H%M%S")
    ds.BurnedInAnnotation = "YES" if burned_in_identity else "NO"
    ds.DocumentTitle = title[:64]
    ds.ConceptNameCodeSequence = []
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator = "18748-4", "LN"
    code.CodeMeaning = "Diagnostic imaging report"
    ds.ConceptNameCodeSequence = [code]
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocument = pdf + (b"\0" if len(pdf) % 2 else b"")
    ds.EncapsulatedDocumentLength = len(pdf)
    return ds


def views_secondary_capture(ref: ReferenceSeries, png_path: Path, *, series_instance_uid: str,
                            sop_instance_uid: str, series_number: int = 904) -> Any:
    """Secondary Capture (RGB) of the key-views figure, in ``ref``'s study."""
    import highdicom as hd
    from PIL import Image

    with Image.open(png_path) as im:
        rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=ref.datasets[0], pixel_array=rgb, photometric_interpretation="RGB",
        bits_allocated=8, coordinate_system="PATIENT", patient_orientation=("L", "P"),
        series_instance_uid=series_instance_uid, series_number=series_number,
        sop_instance_uid=sop_instance_uid, instance_number=1, manufacturer="a0verify",
        series_description="a0verify key views")
    sc.BurnedInAnnotation = "NO"
    sc.Laterality = ""  # General Series, type 2C: a liver view, no paired body part
    return sc
