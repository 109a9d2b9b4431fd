"""a0verify: verify the 3-D ablative safety margin (A0 ablation) after liver tumour ablation.

Sign convention (everywhere): margin(p) is the signed distance in millimetres from a tumour
surface point p to the ablation-zone boundary, **positive when p lies inside the ablation zone**.
"""

__version__ = "0.1.0"

SIGN_CONVENTION = (
    "margin(p) = signed distance in mm from tumour-surface point p to the ablation-zone boundary, "
    "positive inside the ablation zone; physical space LPS (DICOM/ITK)"
)

#: Default second, reading-aid threshold (mm; ``--second-threshold``): the share of the tumour
#: surface below it is reported (margins of 5-10 mm still carry several times the recurrence
#: risk of margins over 10 mm). It does not change the verdict.
SECOND_THRESHOLD_MM = 10.0
