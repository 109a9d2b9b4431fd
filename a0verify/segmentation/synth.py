"""Paint ablation zones of known shape into real CT (tests and benchmarks of segmentation).

A zone is a union of ellipsoids (LPS mm). Inside: ``zone_hu`` plus smooth heterogeneity and noise;
a thin enhancing rim (``rim_mm`` thick, ``rim_hu``) just outside the boundary; small gas bubbles
and an optional needle tract (about -950 HU) strictly inside. The painted values are blurred by
``blur_mm`` (partial volume) and composited into the real scan. Truth is voxel-centre inclusion
in the ellipsoid union, on the image grid.

``HCC048_LIVER_POINT_LPS`` is a verified liver location in the TCIA HCC_048 portal-venous series
(``/work/shared/data/hcc048/HCC048_portal_venous``): within 28 mm of it the 1st percentile of HU
is 70 and the median 113 (liver parenchyma with small vessels, no capsule or fat).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk
from scipy import ndimage

from a0verify import geometry
from a0verify.phantom import ellipsoid_sd_grid

HCC048_LIVER_POINT_LPS: tuple[float, float, float] = (-80.0, -40.0, -262.0)


@dataclass
class Ellipsoid:
    """Ellipsoid with semi-axes ``axes_mm`` along the columns of R(rotation_deg), centre LPS mm."""

    center_lps: npt.ArrayLike
    axes_mm: Sequence[float]
    rotation_deg: Sequence[float] = (0.0, 0.0, 0.0)


@dataclass
class PaintedCase:
    image: sitk.Image  # Int16 HU on the source grid
    truth: sitk.Image  # UInt8 0/1, voxel-centre inclusion in the union of ellipsoids
    zones: list[Ellipsoid]
    gas_centers_lps: list[list[float]] = field(default_factory=list)


def _union_sd(points: npt.NDArray[np.float64], zones: Sequence[Ellipsoid]) -> npt.NDArray[
        np.float64]:
    """Signed distance (mm, positive inside) to the union: max over ellipsoids (exact outside)."""
    sd = np.full(points.shape[:-1], -np.inf)
    for z in zones:
        rot = geometry.rotation_matrix(z.rotation_deg)
        sd = np.maximum(sd, ellipsoid_sd_grid(points, np.asarray(z.center_lps, float),
                                              np.asarray(z.axes_mm, float), rot))
    return sd


def paint_ablation_zone(
    image: sitk.Image,
    zones: Sequence[Ellipsoid],
    *,
    zone_hu: float = 35.0,
    noise_hu: float = 15.0,
    heterogeneity_hu: float = 8.0,
    rim_hu: float = 125.0,
    rim_mm: float = 1.5,
    n_gas: int = 3,
    gas_radius_mm: float = 1.5,
    needle_tract: bool = True,
    tract_exit_mm: float = 0.0,
    tract_radius_mm: float = 1.0,
    blur_mm: float = 0.6,
    seed: int = 0,
) -> PaintedCase:
    """Return ``image`` with an ablation zone painted in, and the truth mask (same grid).

    Gas bubbles (``n_gas``, radius ``gas_radius_mm``) are placed at random inside the first
    ellipsoid at least 3 mm from its surface; the needle tract (radius ``tract_radius_mm``, gas)
    runs along the first ellipsoid's longest axis and stops 3 mm inside the surface; with
    ``tract_exit_mm`` > 0 a coagulated tract (``zone_hu``, same radius) continues that far
    beyond the zone's surface through the rim and parenchyma (not part of the truth: a leak path).
    """
    rng = np.random.default_rng(seed)
    pad = max(max(z.axes_mm) for z in zones) + rim_mm + 6.0
    centres = np.array([np.asarray(z.center_lps, float) for z in zones])
    box = geometry.roi_box_around_lps(image, centres, pad)
    roi_img = geometry.crop(image, box)
    pts = geometry.voxel_centers_lps(roi_img)
    sd = _union_sd(pts, zones)
    clean = sitk.GetArrayFromImage(roi_img).astype(np.float64)
    orig = clean.copy()
    spacing = geometry.spacing_zyx(image)
    het = ndimage.gaussian_filter(rng.normal(0, 1, clean.shape), sigma=4.0 / spacing)
    het *= heterogeneity_hu / max(float(het.std()), 1e-9)
    zone = sd >= 0
    rim = (sd < 0) & (sd >= -rim_mm)
    clean[rim] = np.maximum(clean[rim], rim_hu)
    clean[zone] = zone_hu + het[zone]
    z0 = zones[0]
    rot0 = geometry.rotation_matrix(z0.rotation_deg)
    c0 = np.asarray(z0.center_lps, float)
    a0 = np.asarray(z0.axes_mm, float)
    gas = np.zeros(clean.shape, bool)
    gas_centres: list[list[float]] = []
    while len(gas_centres) < n_gas:
        q = rng.uniform(-1, 1, 3) * a0
        if np.sum((q / np.maximum(a0 - 3.0 - gas_radius_mm, 0.5)) ** 2) > 1.0:
            continue
        g = c0 + rot0 @ q
        gas_centres.append([float(v) for v in g])
        gas |= np.linalg.norm(pts - g, axis=-1) <= gas_radius_mm
    if needle_tract or tract_exit_mm > 0:
        ax = int(np.argmax(a0))
        u = rot0[:, ax]
        t = (pts - c0) @ u
        perp = np.linalg.norm((pts - c0) - t[..., None] * u, axis=-1)
        if needle_tract:
            gas |= (perp <= tract_radius_mm) & (t >= 0) & (t <= a0[ax] - 3.0)
        if tract_exit_mm > 0:
            exit_ = (perp <= tract_radius_mm) & (t >= 0) & (t <= a0[ax] + tract_exit_mm) & ~zone
            clean[exit_] = zone_hu + het[exit_]
            sd = np.where(exit_, 0.0, sd)  # the painted region includes the tract
    clean[gas & zone] = -950.0
    blurred = ndimage.gaussian_filter(clean, sigma=blur_mm / spacing, mode="nearest")
    noise = ndimage.gaussian_filter(rng.normal(0, 1, clean.shape), sigma=0.6)
    noise *= noise_hu / max(float(noise.std()), 1e-9)
    painted = sd >= -rim_mm - 0.5 * blur_mm
    out = np.where(painted, blurred + noise, orig)
    arr = sitk.GetArrayFromImage(image).astype(np.int32)
    arr[box.slices] = np.clip(np.rint(out), -1024, 3071).astype(np.int32)
    img = geometry.array_to_image(arr.astype(np.int16), image)
    truth = np.zeros(arr.shape, np.uint8)
    truth[box.slices] = zone.astype(np.uint8)
    return PaintedCase(image=img, truth=geometry.array_to_image(truth, image), zones=list(zones),
                       gas_centers_lps=gas_centres)
