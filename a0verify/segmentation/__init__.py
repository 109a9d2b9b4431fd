"""Semi-automatic segmentation of the ablation zone and the tumour (LPS mm in, masks out).

Public API (called by ``a0verify run`` and ``a0verify segment``)::

    segment_ablation(image, seeds_lps) -> SegmentationResult
    segment_tumor(image, *, line_lps=None, seeds_lps=(), outside_lps=()) -> SegmentationResult

Every result carries a UInt8 0/1 mask on the input grid, the method, warnings, statistics and a
JSON-ready quality record (:mod:`a0verify.segmentation.result`). Bad points raise InputError
(exit 2) naming the option; a segmentation that finds nothing usable raises SegmentationError
(exit 4) with a one-line reason. Evaluation metrics (Dice, HD95) live in
:mod:`a0verify.segmentation.metrics`; painted test data in :mod:`a0verify.segmentation.synth`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk

from a0verify.errors import InputError
from a0verify.io.checks import check_seed_inside
from a0verify.segmentation.ablation import METHOD as ABLATION_METHOD
from a0verify.segmentation.ablation import AblationParams, segment_ablation_zone
from a0verify.segmentation.metrics import (
    dice_coefficient,
    hausdorff95_mm,
    hausdorff_mm,
    surface_distances_mm,
)
from a0verify.segmentation.result import Quality, SegmentationResult
from a0verify.segmentation.tumor import METHOD as TUMOR_METHOD
from a0verify.segmentation.tumor import TumorParams, segment_tumor_core

Point = Sequence[float]

__all__ = [
    "ABLATION_METHOD",
    "TUMOR_METHOD",
    "AblationParams",
    "Quality",
    "SegmentationResult",
    "TumorParams",
    "dice_coefficient",
    "hausdorff95_mm",
    "hausdorff_mm",
    "lesion_inputs",
    "segment_ablation",
    "segment_tumor",
    "surface_distances_mm",
]


def _check_image(image: sitk.Image, what: str, source: str | None) -> None:
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"{source + ': ' if source else ''}{what} must be a 3-D scalar image")


def _points(image: sitk.Image, points: Sequence[Point], option: str, what: str,
            source: str | None) -> list[list[float]]:
    """Validate points (LPS mm) against ``image``; InputError names ``option`` and the file."""
    where = f"{source} ({option})" if source else option
    out = []
    for pt in points:
        check_seed_inside(image, pt, where)
        out.append([float(v) for v in np.asarray(pt, float).reshape(3)])
    return out


def segment_ablation(image: sitk.Image, seeds_lps: Sequence[Point], *,
                     what: str = "post-ablation CT", source: str | None = None,
                     option: str = "--seed",
                     params: AblationParams | None = None) -> SegmentationResult:
    """Ablation-zone mask from one or more seeds on a contrast-enhanced post-ablation CT (HU).

    ``seeds_lps``: points (x, y, z) in LPS millimetres anywhere inside the zone (on gas or the
    needle too); one seed per zone is enough, confluent multi-probe zones need one in total. The
    zone is the non-enhancing region around each seed; gas, tracts and needles inside it are
    included, the enhancing rim is excluded; several seeds give the union. Returns a UInt8 0/1
    mask on ``image``'s grid with quality and statistics (volume ml, HU, mm).

    Raises InputError (exit 2) for no seed or a seed outside the image (the message names
    ``option`` and ``source``); SegmentationError (exit 4) when no zone is found at a seed (not
    darker than its surroundings, in gas only) or it floods more than
    ``AblationParams.max_volume_ml``.
    """
    _check_image(image, what, source)
    if len(seeds_lps) == 0:
        raise InputError(f"{source + ': ' if source else ''}no seed given for the ablation zone "
                         f"({option} X,Y,Z)")
    pts = _points(image, seeds_lps, option, what, source)
    return segment_ablation_zone(image, pts, params)


def segment_tumor(image: sitk.Image, *, line_lps: tuple[Point, Point] | None = None,
                  seeds_lps: Sequence[Point] = (), outside_lps: Sequence[Point] = (),
                  what: str = "pre-ablation CT", source: str | None = None,
                  options: tuple[str, str, str] = ("--line", "--seed", "--outside"),
                  params: TumorParams | None = None) -> SegmentationResult:
    """Tumour mask from a RECIST long-axis line and/or inside clicks (LPS mm) on a CT in HU.

    ``line_lps``: the two end points of the longest diameter, on the tumour's border (as drawn
    for RECIST, any plane); ``seeds_lps``: points inside the tumour; ``outside_lps``: points
    that are not tumour (e.g. a vessel or a neighbouring lesion the mask must not take). At
    least a line or one inside point is required; the line gives by far the best result
    (without it the size is estimated and quality is at best "review"). Hypo-, hyper- and
    near-iso-dense lesions (>= 8 HU contrast) are handled; necrotic centres and enhancing parts
    inside are kept. Returns a UInt8 0/1 mask on ``image``'s grid.

    Raises InputError (exit 2) naming the option when a point lies outside the image, the line
    is shorter than 2 mm or nothing is given; SegmentationError (exit 4) when the lesion does
    not differ from its surroundings or nothing is found.
    """
    _check_image(image, what, source)
    o_line, o_seed, o_out = options
    pre = f"{source}: " if source else ""
    if line_lps is None and len(seeds_lps) == 0:
        raise InputError(f"{pre}give a tumour diameter line ({o_line} X1,Y1,Z1:X2,Y2,Z2) or at "
                         f"least one point inside the tumour ({o_seed} X,Y,Z)")
    line = None
    if line_lps is not None:
        if len(line_lps) != 2:
            raise InputError(f"{pre}{o_line} needs exactly two end points")
        a, b = _points(image, list(line_lps), o_line, what, source)
        length = float(np.linalg.norm(np.subtract(b, a)))
        if length < 2.0:
            raise InputError(f"{pre}{o_line}: the two end points are {length:.1f} mm apart; "
                             "draw the tumour's longest diameter (border to border)")
        line = (a, b)
    seeds = _points(image, seeds_lps, o_seed, what, source)
    outside = _points(image, outside_lps, o_out, what, source)
    return segment_tumor_core(image, line_lps=line, seeds_lps=seeds, outside_lps=outside,
                              params=params)


def lesion_inputs(lines: Sequence[tuple[Point, Point]], seeds: Sequence[Point]
                  ) -> list[tuple[tuple[Point, Point] | None, list[Point]]]:
    """Group a case's tumour inputs into lesions (``a0verify run``): with diameter lines, one
    lesion per line, and each inside click joins the line whose midpoint is nearest; without
    lines, one lesion per click (as ``--tumor-seed`` always meant). Empty input: []."""
    if not lines:
        return [(None, [s]) for s in seeds]
    mids = [0.5 * (np.asarray(a, float) + np.asarray(b, float)) for a, b in lines]
    groups: list[tuple[tuple[Point, Point] | None, list[Point]]] = [(ln, []) for ln in lines]
    for s in seeds:
        k = int(np.argmin([np.linalg.norm(np.asarray(s, float) - m) for m in mids]))
        groups[k][1].append(s)
    return groups
