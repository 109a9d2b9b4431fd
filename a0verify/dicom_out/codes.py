"""Coded concepts used in a0verify's DICOM SEG and SR, and why each was chosen.

Standard codes (SNOMED CT "SCT", DICOM "DCM", UCUM units) are used wherever a concept exists:

==========================  =====================================================================
SEG tumour segment          category SCT 49755003 *Morphologically abnormal structure*, type
                            SCT 108369006 *Neoplasm* (CID 7151), anatomic region SCT 10200004
                            *Liver*. "Neoplasm" rather than a histology (HCC, metastasis): the
                            pipeline does not know the histology.
SEG ablation-zone segment   category SCT 49755003, type SCT 6574001 *Necrosis* (CID 7151),
                            region *Liver*. SNOMED CT has no concept "ablation zone"; the zone
                            seen on the post-ablation CT is the (coagulation) necrosis the
                            ablation produced, so *Necrosis* is the closest standard type. The
                            segment label says "ablation zone".
SR tumour volume            SCT 118565006 *Volume*, unit UCUM ``ml``, in the TID 1411 group
                            that references the tumour segment.
SR procedure reported       SCT 879916008 *Radiofrequency ablation* is *not* used (the modality
                            of ablation is unknown); the report uses the local code
                            ``A0V000`` *Thermal ablation margin assessment*.
==========================  =====================================================================

No standard code exists for the minimal ablative margin, its uncertainty, the surface-area
fractions by margin band, the residual (unablated) tumour volume, the A0 threshold or the A0
verdict and its values. Those use the private coding scheme ``99A0V`` (private scheme
designators start with "99", DICOM PS3.16 section 8.2), declared in the SR's Coding Scheme
Identification Sequence. The thinnest point is an SCOORD3D POINT in the post CT's frame of
reference, in a TID 1410 group sharing the lesion's tracking UID with the SEG segment and with the
TID 1411 group that references that segment.
"""

from __future__ import annotations

from typing import Any

from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

SCHEME = "99A0V"
SCHEME_NAME = "a0verify local codes"


def _local(value: str, meaning: str) -> Code:
    return Code(value, SCHEME, meaning)


# ---- standard
MORPHOLOGICALLY_ABNORMAL = codes.SCT.MorphologicallyAbnormalStructure  # 49755003
NEOPLASM = codes.SCT.Neoplasm  # 108369006
NECROSIS = codes.SCT.Necrosis  # 6574001
LIVER = codes.SCT.Liver  # 10200004
VOLUME = codes.SCT.Volume  # 118565006
MINIMUM = codes.SCT.Minimum  # 255605001
UNIT_MM = codes.UCUM.Millimeter
UNIT_PERCENT = codes.UCUM.Percent
UNIT_ML = Code("ml", "UCUM", "milliliter")

# ---- local (no standard concept exists; see the module docstring)
PROCEDURE = _local("A0V000", "Thermal ablation margin assessment")
MIN_MARGIN = _local("A0V001", "Minimal ablative margin")
MIN_MARGIN_UNCERTAINTY = _local("A0V002", "Minimal ablative margin uncertainty (95% half-width)")
RESIDUAL_VOLUME = _local("A0V003", "Residual (unablated) tumor volume")
FRACTION_BELOW_ZERO = _local("A0V004", "Tumor surface fraction with margin below 0 mm")
FRACTION_BELOW_THRESHOLD = _local("A0V005",
                                  "Tumor surface fraction with margin from 0 mm to threshold")
FRACTION_AT_OR_ABOVE = _local("A0V006", "Tumor surface fraction with margin at or above threshold")
THRESHOLD = _local("A0V007", "Required minimal ablative margin (threshold)")
VERDICT = _local("A0V010", "A0 verdict")
THINNEST_POINT = _local("A0V011", "Thinnest margin point")
VERDICT_VALUES = {
    "A0": _local("A0V020", "A0 (margin sufficient)"),
    "insufficient": _local("A0V021", "Insufficient margin"),
    "incomplete": _local("A0V022", "Incomplete ablation"),
    "indeterminate": _local("A0V023", "Indeterminate"),
}
VERDICT_BY_CODE = {c.value: k for k, c in VERDICT_VALUES.items()}


def coding_scheme_item() -> Any:
    """A CodingSchemeIdentificationSequence item declaring the local scheme."""
    from pydicom.dataset import Dataset

    item = Dataset()
    item.CodingSchemeDesignator = SCHEME
    item.CodingSchemeName = SCHEME_NAME
    item.CodingSchemeResponsibleOrganization = "a0verify developers"
    return item
