"""One registration's inputs, prepared: float32 HU images clamped for the metric, the user's
masks on their grids, and the automatic ones (probe / streaks / gas left out of the metric, the
organ around the zone). Points are LPS mm."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

from a0verify import geometry
from a0verify.errors import InputError
from a0verify.registration import artefacts, initial, roi


@dataclass
class Case:
    """Prepared inputs (float32 HU images, UInt8 masks on their grids; ``center``: LPS mm of
    the zone's centre, else of the post image) and what the automatic masks found."""

    fixed: sitk.Image
    moving: sitk.Image
    zone: sitk.Image | None
    exclude: sitk.Image | None
    liver: sitk.Image | None
    moving_exclude: sitk.Image | None
    center: npt.NDArray[np.float64]
    found: dict[str, Any] = field(default_factory=dict)


def prepare_case(fixed: sitk.Image, moving: sitk.Image, *, zone: sitk.Image | None,
                 tumor: sitk.Image | None, liver: sitk.Image | None,
                 exclude: sitk.Image | None, box_pad_mm: float, auto_exclude: bool,
                 organ_metric: bool) -> Case:
    """Check and prepare the images and masks (any grid: resampled by nearest neighbour).

    With a zone, the automatic masks are computed in its box padded by ``box_pad_mm`` on the
    unclamped post CT: ``auto_exclude`` adds probe / metal streaks / gas to ``exclude`` (and pre
    metal to the moving exclusions); ``organ_metric`` delineates the organ around the zone when
    no ``liver`` is given. Raises InputError on non-scalar or non-3-D images and empty masks."""
    for img, what in ((fixed, "fixed (post) image"), (moving, "moving (pre) image")):
        if img.GetDimension() != 3 or img.GetNumberOfComponentsPerPixel() != 1:
            raise InputError(f"{what} must be a scalar 3-D image")
    f, m = initial.prepare(fixed), initial.prepare(moving)
    z = roi.on_grid(zone, f, "focus (ablation-zone) mask")
    ex = roi.on_grid(exclude, f, "exclude mask")
    liv = roi.on_grid(liver, f, "liver mask")
    m_ex = roi.on_grid(tumor, m, "moving exclude (tumour) mask")
    center = np.asarray(f.TransformContinuousIndexToPhysicalPoint(
        [(s - 1) / 2.0 for s in f.GetSize()]))
    found: dict[str, Any] = {}
    if z is not None:
        center = roi.mask_points(z).mean(axis=0)
        box = geometry.roi_box_around_lps(f, roi.mask_points(z), box_pad_mm)
        raw = sitk.Cast(fixed, sitk.sitkFloat32)
        if auto_exclude:
            art, found["artefacts"] = artefacts.artefact_mask(raw, z, box)
            ex = art if ex is None else (ex | art)
        if organ_metric and liv is None:
            liv, found["organ_mask"] = artefacts.zone_organ_mask(raw, z, ex, box)
    if auto_exclude:
        metal = artefacts.moving_metal_mask(sitk.Cast(moving, sitk.sitkFloat32))
        if metal is not None:
            found["moving_metal"] = True
            m_ex = metal if m_ex is None else (m_ex | metal)
    return Case(f, m, z, ex, liv, m_ex, center, found)
