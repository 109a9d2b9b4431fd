"""Result types of the margin step (all lengths mm, points LPS mm, volumes ml).

Sign convention: margin(p) = signed distance (mm) from tumour-surface point p to the
ablation-zone boundary, **positive inside the ablation zone**. MAM = min over the tumour surface.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

#: The margin's method tag (recorded with every result: published tools differ by ~2 mm).
METHOD_NAME = "continuous sub-voxel margin"
METHOD_DESCRIPTION = (
    "distance between the continuous tumour and ablation-zone surfaces reconstructed from the "
    "masks (boundaries between voxel centres, sub-voxel surface points), positive inside the "
    "zone; minimum refined by local quadric fits of both masks' voxels")
BORDER_VOXEL_DESCRIPTION = (
    "distance between the centres of the masks' border voxels (tumour border voxel to the "
    "nearest ablation-zone border voxel, negative outside the zone), as most published tools "
    "measure it")


@dataclass
class SurfaceMesh:
    """Triangle mesh of a tumour surface in LPS mm with the margin (mm) at each vertex.

    Face normals (right-hand rule on ``faces``) point out of the tumour."""

    vertices_lps: F64  # (N, 3)
    faces: I64  # (M, 3) vertex indices
    margin_mm: F64  # (N,)


@dataclass
class DeficitPatch:
    """Connected region of tumour surface with margin below the threshold (where to re-ablate).

    ``outward_direction_lps`` is the unit, area-weighted mean outward surface normal of the patch.
    """

    area_mm2: float
    min_margin_mm: float
    centroid_lps: list[float]
    outward_direction_lps: list[float]
    min_margin_point_lps: list[float] = field(default_factory=list)


@dataclass
class LesionMargin:
    """Margin figures of one lesion. Points are LPS mm (RAS given alongside for people)."""

    id: int
    min_margin_mm: float
    min_margin_point_lps: list[float]
    min_margin_point_ras: list[float]
    surface_fraction: dict[str, float]  # below_zero, below_threshold, at_or_above_threshold
    surface_area_mm2: float
    tumor_volume_ml: float
    residual_volume_ml: float
    uncertainty_mm: float  # discretisation half-width (95 %) of the MAM
    deficit_patches: list[DeficitPatch] = field(default_factory=list)
    surface: SurfaceMesh | None = field(default=None, repr=False)
    #: True when the whole ROI around the tumour lies inside the zone: the MAM is then a lower
    #: bound (the zone boundary is farther than the ROI reaches).
    margin_is_lower_bound: bool = False
    #: What the uncertainty was built from: grid_step_mm (voxel extent of both grids along the
    #: margin direction), data_band_mm (local quadric band), sharpness_per_mm (curvature of the
    #: margin around its minimum, 1/mm), source ("patch" or "mesh").
    uncertainty_terms: dict[str, Any] = field(default_factory=dict)
    #: How the per-vertex margins (``surface.margin_mm``; fractions, patches) were made: method,
    #: regions_refined / regions_tried (refined minima carried into the field) and
    #: raised_to_mam_max_mm (the most any vertex was raised to the MAM at the end).
    surface_field: dict[str, Any] = field(default_factory=dict)
    #: Area fraction of the surface with margin below the second threshold (None: not asked).
    surface_fraction_below_second_threshold: float | None = None
    #: The MAM as border-voxel tools report it (:mod:`a0verify.margin.bordervoxel`), mm.
    border_voxel_min_margin_mm: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the surface mesh is left out)."""
        d = asdict(self)
        d.pop("surface", None)
        return d


@dataclass
class MarginResult:
    """Per-lesion margins plus the ablation-zone signed-distance map (mm, positive inside,
    float32, on the ablation mask's grid, cropped to the lesions' regions of interest)."""

    threshold_mm: float
    lesions: list[LesionMargin]
    #: Second (reading-aid) threshold in mm, e.g. 10 mm; None when not asked.
    second_threshold_mm: float | None = None
    margin_map: sitk.Image | None = field(default=None, repr=False)
    timings_s: dict[str, float] = field(default_factory=dict)

    @property
    def min_margin_mm(self) -> float:
        """MAM over all lesions (mm)."""
        return min(les.min_margin_mm for les in self.lesions)

    def method_record(self) -> dict[str, Any]:
        """The method tag for report.json: name, description, and the border-voxel MAM of the
        worst lesion (what border-voxel tools would report, for comparison)."""
        worst = min(self.lesions, key=lambda les: les.min_margin_mm)
        return {"name": METHOD_NAME, "description": METHOD_DESCRIPTION,
                "border_voxel_description": BORDER_VOXEL_DESCRIPTION,
                "border_voxel_min_margin_mm": worst.border_voxel_min_margin_mm}
