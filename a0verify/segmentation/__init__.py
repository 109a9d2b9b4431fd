"""Semi-automatic segmentation of the ablation zone and the tumour from seed points (LPS mm).

Public API (called by ``a0verify run --ablation-seed/--tumor-seed`` and ``a0verify segment``)::

    segment_ablation(image, seeds_lps) -> SegmentationResult
    segment_tumor(image, seed_lps) -> SegmentationResult

plus evaluation metrics (Dice, HD95) used by tests and benchmarks. Mask *import* lives in
:mod:`a0verify.io`.
"""

from a0verify.segmentation.core import (
    METHOD,
    SegmentationResult,
    SegParams,
    check_seed_inside,
    segment_ablation,
    segment_tumor,
)
from a0verify.segmentation.metrics import (
    dice_coefficient,
    hausdorff95_mm,
    hausdorff_mm,
    surface_distances_mm,
)

__all__ = [
    "METHOD",
    "SegParams",
    "SegmentationResult",
    "check_seed_inside",
    "dice_coefficient",
    "hausdorff95_mm",
    "hausdorff_mm",
    "segment_ablation",
    "segment_tumor",
    "surface_distances_mm",
]
