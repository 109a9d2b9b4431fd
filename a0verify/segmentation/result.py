"""Result record of a segmentation and its quality signal (JSON-ready, goes into report.json).

The quality of a mask is judged from evidence in the image, the same for the tumour and the
ablation zone:

* ``boundary_contrast_hu`` — median HU in a shell 1-3 mm outside the mask minus the median HU
  inside it (away from its edge); positive when the surroundings are brighter (a hypodense zone).
* ``weak_boundary_fraction`` — fraction of that shell whose HU looks like the inside (within the
  lesion's intensity window): there the boundary was set by shape (a cut leak, a truncated
  region), not by an edge in the image. A zone bounded everywhere by enhancing rim or liver has
  ~0; a leak cut through a wide contact or a low-contrast lesion has a large value.
* ``threshold_stability`` — volume after moving the intensity threshold 15 % of the contrast
  towards the surroundings, divided by the volume found: ~1.0-1.1 for a sharp edge; large when
  the region floods its surroundings (a leak waiting to happen).
* ``touches_image_edge`` — the mask reaches the image border (it may be truncated).

From these, ``leak_suspicion`` in [0, 1] and a ``level``: ``good``, ``review`` or ``poor``, with
``reasons`` in plain words (shown next to the verdict on the report page).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

from a0verify.segmentation import morph

Level = Literal["good", "review", "poor"]


@dataclass
class Quality:
    """Quality signal of one segmented structure (see the module docstring)."""

    level: Level
    boundary_contrast_hu: float
    weak_boundary_fraction: float
    threshold_stability: float
    leak_suspicion: float
    touches_image_edge: bool
    reasons: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def sentence(self, structure: str) -> str:
        """One plain sentence for people, e.g. "Ablation-zone segmentation: review it before
        trusting the verdict (...)"."""
        head = {"good": "looks reliable", "review": "review it before trusting the verdict",
                "poor": "low quality; do not trust the verdict without correcting it"}[self.level]
        tail = f" ({'; '.join(self.reasons)})" if self.reasons else ""
        return f"{structure} segmentation: {head}{tail}."


@dataclass
class SegmentationResult:
    """Output of :func:`segment_ablation` / :func:`segment_tumor`.

    ``mask`` is UInt8 0/1 on the input image's grid; ``method`` names the algorithm;
    ``warnings`` are one-line strings for report.json; ``stats`` holds JSON-ready floats
    (volumes in ml, HU, mm); ``quality`` is the quality signal.
    """

    mask: sitk.Image
    method: str
    warnings: list[str] = field(default_factory=list)
    stats: dict[str, float] = field(default_factory=dict)
    quality: Quality | None = None

    def to_json(self) -> dict[str, Any]:
        """method, warnings, stats and quality as plain JSON types (no mask)."""
        return {"method": self.method, "warnings": list(self.warnings),
                "stats": dict(self.stats),
                "quality": None if self.quality is None else self.quality.to_json()}


def assess(sm: npt.NDArray[np.floating[Any]], region: npt.NDArray[np.bool_],
           spacing: npt.NDArray[np.float64], window: tuple[float, float],
           stability: float, touches_edge: bool, structure: str,
           ignore: npt.NDArray[np.bool_] | None = None,
           min_contrast_hu: float = 20.0,
           stability_limits: tuple[float, float] = (1.25, 1.5)) -> Quality:
    """Quality of ``region`` on the smoothed ROI ``sm`` (HU). ``window`` = (lo, hi) HU that the
    method kept as lesion-like; ``ignore`` marks artefact voxels (gas, metal) left out of the
    shell statistics. Empty region: level ``poor``."""
    if not region.any():
        return Quality("poor", 0.0, 1.0, float(stability), 1.0, touches_edge,
                       ["empty mask"])
    dout = morph.edt(~region, spacing)
    din = morph.edt(region, spacing)
    shell = (dout > 1.0) & (dout <= 3.0)
    core = din > 1.5
    if ignore is not None:
        shell &= ~ignore
        core &= ~ignore
    if core.sum() < 5:
        core = region
    m_in = float(np.median(sm[core]))
    sv = sm[shell]
    if sv.size == 0:
        return Quality("review", 0.0, 0.0, float(stability), 0.5, touches_edge,
                       ["no tissue around the mask"])
    contrast = float(np.median(sv)) - m_in
    lo, hi = window
    weak = float(np.mean((sv >= lo) & (sv <= hi)))
    leak = float(np.clip(max(2.0 * (weak - 0.05),
                             (stability - 1.0) / (stability_limits[1] - 1.0) - 0.3), 0.0, 1.0))
    reasons: list[str] = []
    level: Level = "good"

    def worse(new: Level) -> None:
        nonlocal level
        order = {"good": 0, "review": 1, "poor": 2}
        if order[new] > order[level]:
            level = new

    if weak > 0.35:
        reasons.append(f"{weak:.0%} of its border has no visible edge (leak cut or "
                       "low contrast)")
        worse("poor")
    elif weak > 0.15:
        reasons.append(f"{weak:.0%} of its border has no visible edge")
        worse("review")
    if stability > stability_limits[1]:
        reasons.append("the region floods its surroundings when the threshold moves slightly "
                       "(leak-prone)")
        worse("poor")
    elif stability > stability_limits[0]:
        reasons.append("the boundary is threshold-sensitive")
        worse("review")
    if abs(contrast) < 0.4 * min_contrast_hu:
        reasons.append(f"its surroundings look like its inside ({contrast:+.0f} HU): it has "
                       "probably leaked out of the lesion")
        worse("poor")
        leak = 1.0
    elif abs(contrast) < min_contrast_hu:
        reasons.append(f"low contrast against its surroundings ({abs(contrast):.0f} HU)")
        worse("review")
    if touches_edge:
        reasons.append("it touches the image edge and may be truncated")
        worse("review")
    return Quality(level, round(contrast, 1), round(weak, 3), round(float(stability), 3),
                   round(leak, 3), bool(touches_edge), reasons)
