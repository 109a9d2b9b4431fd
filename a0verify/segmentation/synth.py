"""Paint realistic post-ablation zones (and lesions) of known shape into real CT.

Used by the segmentation tests and benchmark: real anatomy around, a known truth inside. The
appearance follows DESIGN §9 and what post-ablation CT shows:

* **Shape**: a union of ellipsoids (one per probe; two or three overlapping for multi-probe
  ablations), clipped to liver-like tissue (the zone stops at fat, gallbladder, kidney, muscle)
  and kept ``cooling_mm`` away from large enhancing vessels (the heat-sink notch a vessel cools
  into the zone). The truth is voxel-centre inclusion in that shape (the seed's component).
* **Zone**: hypodense (``zone_hu``, 30-45 HU) with smooth heterogeneity; an enhancing rim
  ``rim_mm`` (1-3 mm) at ``rim_hu`` (90-130 HU) just outside it, painted over liver only.
* **Artefacts**: gas bubbles (-700..-900 HU) and a gas-filled needle tract inside; optionally
  a metal needle (> 2000 HU) through the zone with bright/dark streaks across the axial slices it
  crosses, and a coagulated tract leaving the zone (a thin leak path).
* **Scanner**: partial volume from an anisotropic point-spread function (in-plane
  ``psf_xy_mm``, slice profile ``psf_z_mm``), correlated noise of ``noise_hu`` inside the
  painted region, and an optional contrast-phase change of the whole scan (soft tissue HU
  multiplied by ``phase_scale``; the zone, which does not enhance, keeps its HU).

The partial volume is computed from signed distances (mm) to each painted layer:
``Phi(sd / sigma_n)`` with ``sigma_n`` the PSF width along the surface normal, the exact blur of
a locally flat edge. ``HCC048_LIVER_POINT_LPS`` is a verified liver location in the TCIA HCC_048
portal-venous series (within 28 mm: 1st percentile 70 HU, median 113 HU).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk
from scipy import ndimage
from scipy.special import ndtr

from a0verify import geometry
from a0verify.phantom import ellipsoid_sd_grid

F64 = npt.NDArray[np.float64]

HCC048_LIVER_POINT_LPS: tuple[float, float, float] = (-80.0, -40.0, -262.0)


@dataclass
class Ellipsoid:
    """Ellipsoid with semi-axes ``axes_mm`` along the columns of R(rotation_deg), centre LPS mm."""

    center_lps: npt.ArrayLike
    axes_mm: Sequence[float]
    rotation_deg: Sequence[float] = (0.0, 0.0, 0.0)


@dataclass
class ZoneSpec:
    """Everything that defines one painted zone (HU, mm, LPS). See the module docstring."""

    probes: list[Ellipsoid]
    zone_hu: float = 38.0
    heterogeneity_hu: float = 6.0
    rim_mm: float = 2.0
    rim_hu: float = 110.0
    noise_hu: float = 14.0
    n_gas: int = 3
    gas_radius_mm: tuple[float, float] = (1.0, 2.5)
    gas_hu: float = -800.0
    tract: bool = True
    tract_radius_mm: float = 1.0
    tract_exit_mm: float = 0.0
    needle: bool = False
    needle_radius_mm: float = 0.9
    streak_hu: float = 400.0
    n_streaks: int = 10
    phase_scale: float = 1.0
    cooling_mm: float = 2.5
    clip_to_tissue: bool = True
    psf_xy_mm: float = 0.5
    psf_z_mm: float | None = None  # default: slice spacing / 3
    seed: int = 0


@dataclass
class PaintedCase:
    image: sitk.Image  # Int16 HU on the source grid
    truth: sitk.Image  # UInt8 0/1, voxel-centre inclusion
    spec: ZoneSpec
    deepest_lps: list[float] = field(default_factory=list)
    gas_centers_lps: list[list[float]] = field(default_factory=list)
    tissue_hu: float = 0.0  # median parenchyma HU around the zone (after the phase change)

    def click_points(self, n: int, rng: np.random.Generator, min_depth_mm: float = 5.0
                     ) -> list[list[float]]:
        """``n`` random points a user could click: truth voxels at least ``min(min_depth_mm,
        0.4 x the deepest depth)`` inside the zone (gas, tract and needle voxels included)."""
        full = sitk.GetArrayViewFromImage(self.truth)
        box = geometry.nonzero_index_box(full)
        if box is None:
            return []
        m = np.pad(full[box.slices] != 0, 1)
        sp = geometry.spacing_zyx(self.truth)
        depth = ndimage.distance_transform_edt(m, sampling=sp)
        ok = np.argwhere(depth >= min(min_depth_mm, 0.4 * float(depth.max())))
        pick = ok[rng.choice(len(ok), size=n, replace=len(ok) < n)] - 1 + np.asarray(box.lo_zyx)
        return [geometry.zyx_index_to_lps(self.truth, p.astype(float)).tolist() for p in pick]


def phase_change(image: sitk.Image, scale: float) -> sitk.Image:
    """Contrast-phase change: every voxel above 0 HU multiplied by ``scale`` (fat, air and
    water-like voxels keep theirs). Returns Int16."""
    if scale == 1.0:
        return image
    a = sitk.GetArrayFromImage(image).astype(np.float32)
    a = np.where(a > 0, a * scale, a)
    return geometry.array_to_image(np.clip(np.rint(a), -1024, 3071).astype(np.int16), image)


def _sd_mask(mask: npt.NDArray[np.bool_], sp: F64) -> F64:
    """Signed distance (mm, positive inside) of a voxel mask, boundary half-way between voxel
    centres (approximately: half the smallest spacing)."""
    h = 0.5 * float(sp.min())
    if mask.all():
        return np.full(mask.shape, 1e3)
    if not mask.any():
        return np.full(mask.shape, -1e3)
    din = ndimage.distance_transform_edt(mask, sampling=sp)
    dout = ndimage.distance_transform_edt(~mask, sampling=sp)
    return np.where(mask, din - h, -(dout - h))


def _sigma_n(sd: F64, sp: F64, sxy: float, sz: float) -> F64:
    """PSF width (mm) along the local normal of the level sets of ``sd`` (array order z, y, x)."""
    g = np.gradient(sd, *sp)
    n2 = g[0] ** 2 + g[1] ** 2 + g[2] ** 2 + 1e-12
    return np.sqrt((g[0] ** 2 * sz * sz + (g[1] ** 2 + g[2] ** 2) * sxy * sxy) / n2)


def _streaks(shape: tuple[int, ...], pts_lps: F64, needle_a: F64, needle_b: F64,
             radius_mm: float, amp: float, n: int, rng: np.random.Generator,
             slab_mm: float) -> F64:
    """Metal streaks: in each axial slice the needle crosses, ``n`` thin (1.2 mm) straight lines
    through the needle's cross-section, alternately bright and dark, amplitude ``amp`` decaying
    as 8 / (8 + r) with distance r (mm); plus a dark band along the needle's in-plane course."""
    out = np.zeros(shape)
    u = needle_b - needle_a
    length = float(np.linalg.norm(u))
    u = u / length
    zs = pts_lps[:, 0, 0, 2]
    for k, z in enumerate(zs):
        if abs(u[2]) > 1e-6:
            t0, t1 = sorted(((z - slab_mm / 2 - needle_a[2]) / u[2],
                             (z + slab_mm / 2 - needle_a[2]) / u[2]))
        else:
            if abs(z - needle_a[2]) > slab_mm / 2:
                continue
            t0, t1 = 0.0, length
        t0, t1 = max(t0, 0.0), min(t1, length)
        if t1 <= t0:
            continue
        c = needle_a + 0.5 * (t0 + t1) * u
        xy = pts_lps[k, :, :, :2] - c[:2]
        r = np.hypot(xy[..., 0], xy[..., 1])
        decay = 6.0 / (6.0 + r)
        angles = rng.uniform(0, np.pi, n)
        for j, th in enumerate(angles):
            dperp = np.abs(xy[..., 0] * np.sin(th) - xy[..., 1] * np.cos(th))
            sign = 1.0 if j % 2 == 0 else -1.0
            a = amp * rng.uniform(0.4, 1.0) * sign
            out[k] += a * np.exp(-0.5 * (dperp / 0.6) ** 2) * decay
        if np.hypot(u[0], u[1]) > 0.3:  # in-plane needle: dark band along it
            th = np.arctan2(u[1], u[0])
            dperp = np.abs(xy[..., 0] * np.sin(th) - xy[..., 1] * np.cos(th))
            out[k] -= 0.5 * amp * np.exp(-0.5 * (dperp / 1.5) ** 2) * decay
        out[k][r <= radius_mm + 0.5] = 0.0
    return out


def paint_zone(image: sitk.Image, spec: ZoneSpec) -> PaintedCase:
    """Return ``image`` (after the contrast-phase change) with the zone of ``spec`` painted in,
    and the truth mask on the same grid. Raises ValueError when the first probe's centre is not
    in liver-like tissue (the zone would be empty)."""
    rng = np.random.default_rng(spec.seed)
    src = phase_change(image, spec.phase_scale)
    sp = geometry.spacing_zyx(image)
    sxy = spec.psf_xy_mm
    sz = spec.psf_z_mm if spec.psf_z_mm is not None else float(sp[0]) / 3.0
    reach = max(max(p.axes_mm) for p in spec.probes)
    pad = reach + spec.rim_mm + 8.0 + (35.0 if spec.needle else 0.0)
    centres = np.array([np.asarray(p.center_lps, float) for p in spec.probes])
    box = geometry.roi_box_around_lps(image, centres, pad)
    roi = geometry.crop(src, box)
    pts = geometry.voxel_centers_lps(roi)
    bg = sitk.GetArrayFromImage(roi).astype(np.float64)
    smb = ndimage.gaussian_filter(bg, 1.2 / sp)
    c0 = centres[0]
    ci = np.clip(np.rint(geometry.lps_to_zyx_index(roi, c0)).astype(int), 0,
                 np.asarray(bg.shape) - 1)
    ball = np.linalg.norm(pts - c0, axis=-1) <= 10.0
    tissue = float(np.median(smb[ball]))
    # --- allowed region: liver-like tissue, away from large enhancing vessels
    shape_sd = np.full(bg.shape, -np.inf)
    for p in spec.probes:
        rot = geometry.rotation_matrix(p.rotation_deg)
        shape_sd = np.maximum(shape_sd, ellipsoid_sd_grid(
            pts, np.asarray(p.center_lps, float), np.asarray(p.axes_mm, float), rot))
    sd = shape_sd
    liver_like = np.ones(bg.shape, bool)
    if spec.clip_to_tissue:
        liver_like = (smb > tissue - 40.0) & (smb < tissue + 45.0)
        liver_like = ndimage.binary_opening(liver_like, iterations=1)
        bright = ndimage.binary_opening(smb >= tissue + 45.0, iterations=1)
        lab, _ = ndimage.label(liver_like | bright)
        if lab[tuple(ci)] == 0:
            raise ValueError(f"zone centre {c0.tolist()} is not in liver-like tissue")
        organ = lab == lab[tuple(ci)]
        # the organ's own partial-volume layer towards fat belongs to it (midpoint boundary)
        organ |= ndimage.binary_dilation(organ, iterations=1) & (smb > 0.5 * (tissue - 100.0))
        allowed = organ & ~bright
        if spec.cooling_mm > 0 and bright.any():
            allowed &= ndimage.distance_transform_edt(~bright, sampling=sp) > spec.cooling_mm
        sd = np.minimum(sd, _sd_mask(allowed, sp))
        liver_like = organ & liver_like
    truth = sd >= 0
    lab, _ = ndimage.label(truth)
    if lab[tuple(ci)] == 0:
        raise ValueError(f"zone centre {c0.tolist()} was cut away (vessel or organ edge)")
    truth = lab == lab[tuple(ci)]
    sd = np.where(truth | (sd < 0), sd, -0.5 * float(sp.min()))  # drop detached bits
    sig = np.maximum(_sigma_n(sd, sp, sxy, sz), 0.25)
    # --- layers
    het = ndimage.gaussian_filter(rng.normal(0, 1, bg.shape), sigma=4.0 / sp)
    het *= spec.heterogeneity_hu / max(float(het.std()), 1e-9)
    zone_val = spec.zone_hu + het
    rim_val = np.maximum(bg, spec.rim_hu + 0.5 * het)
    a_rim = ndtr((sd + spec.rim_mm) / sig) * ndimage.gaussian_filter(
        liver_like.astype(float), 0.5 / sp)
    a_zone = ndtr(sd / sig)
    v = bg + a_rim * (rim_val - bg)
    v = v + a_zone * (zone_val - v)
    # gas bubbles strictly inside (centres at depth >= radius + 1 mm), and the tract
    depth = ndimage.distance_transform_edt(truth, sampling=sp)
    gas_sd = np.full(bg.shape, -np.inf)
    gas_centres: list[list[float]] = []
    # gas scaled to the zone: radius <= 20 % of its depth, count ~ volume
    dmax = float(depth.max())
    g_hi = min(spec.gas_radius_mm[1], 0.2 * dmax)
    g_lo = min(spec.gas_radius_mm[0], g_hi)
    n_gas = min(spec.n_gas, max(1, int(truth.sum() * float(np.prod(sp)) / 2000.0)))
    deep_enough = np.argwhere(depth >= g_hi + 1.0)
    for _ in range(n_gas if len(deep_enough) and spec.n_gas else 0):
        g = geometry.zyx_index_to_lps(roi, deep_enough[rng.integers(len(deep_enough))]
                                      .astype(float))
        r = float(rng.uniform(g_lo, g_hi))
        gas_centres.append([float(x) for x in g])
        gas_sd = np.maximum(gas_sd, r - np.linalg.norm(pts - g, axis=-1))
    p0 = spec.probes[0]
    rot0 = geometry.rotation_matrix(p0.rotation_deg)
    ax = int(np.argmax(p0.axes_mm))
    u = rot0[:, ax]
    half = float(p0.axes_mm[ax])
    t = (pts - c0) @ u
    perp = np.linalg.norm((pts - c0) - t[..., None] * u, axis=-1)
    tract_r = min(spec.tract_radius_mm, 0.15 * dmax)
    if spec.tract:
        tr = tract_r - perp
        tr = np.where((t >= -half) & (t <= half), tr, -np.inf)
        gas_sd = np.maximum(gas_sd, np.minimum(tr, sd - 1.0))  # stays 1 mm inside the zone
    if spec.tract_exit_mm > 0:  # coagulated tract through rim and parenchyma (not in truth)
        ex = np.where((t >= 0) & (t <= half + spec.tract_exit_mm),
                      tract_r + 0.5 - perp, -np.inf)
        a_ex = ndtr(ex / sig) * (sd < 0)
        v = v + a_ex * (zone_val - v)
    a_gas = ndtr(gas_sd / sig)
    gas_val = spec.gas_hu + rng.normal(0, 40, bg.shape)
    v = v + a_gas * (gas_val - v)
    painted = np.maximum(a_rim, a_zone)
    if spec.needle:
        # metal along the probe axis from beyond the zone (skin side) to 5 mm short of the far end
        na, nb = c0 - (half + 40.0) * u, c0 + max(half - 5.0, 0.0) * u
        tn = (pts - na) @ (nb - na) / np.linalg.norm(nb - na)
        perp_n = np.linalg.norm((pts - na) - tn[..., None] * (nb - na)
                                / np.linalg.norm(nb - na), axis=-1)
        n_sd = np.where((tn >= 0) & (tn <= np.linalg.norm(nb - na)),
                        spec.needle_radius_mm - perp_n, -np.inf)
        a_n = ndtr(n_sd / np.maximum(sig, sxy))
        v = v + a_n * (2800.0 - v)
        st = _streaks(bg.shape, pts, na, nb, spec.needle_radius_mm, spec.streak_hu,
                      spec.n_streaks, rng, float(sp[0]))
        v = v + st
        painted = np.maximum(painted, (np.abs(st) > 5).astype(float))
    noise = ndimage.gaussian_filter(rng.normal(0, 1, bg.shape), 0.7)
    noise *= spec.noise_hu / max(float(noise.std()), 1e-9)
    v = v + painted * noise
    out = np.where(painted > 1e-3, v, bg)
    arr = sitk.GetArrayFromImage(src).astype(np.int32)
    arr[box.slices] = np.clip(np.rint(out), -1024, 3071).astype(np.int32)
    img = geometry.array_to_image(arr.astype(np.int16), image)
    tfull = np.zeros(arr.shape, np.uint8)
    tfull[box.slices] = truth.astype(np.uint8)
    deep = np.unravel_index(int(np.argmax(depth)), depth.shape)
    deepest = geometry.zyx_index_to_lps(roi, np.asarray(deep, float)).tolist()
    return PaintedCase(image=img, truth=geometry.array_to_image(tfull, image), spec=spec,
                       deepest_lps=deepest, gas_centers_lps=gas_centres, tissue_hu=tissue)


def paint_lesion(image: sitk.Image, shape: Sequence[Ellipsoid], *, lesion_hu: float,
                 heterogeneity_hu: float = 8.0, noise_hu: float = 12.0,
                 necrosis_hu: float | None = None, rim_hu: float | None = None,
                 rim_mm: float = 2.0, seed: int = 0) -> PaintedCase:
    """A tumour-like lesion (no gas, no needle): ``lesion_hu`` with heterogeneity, optional
    necrotic core (inner half of the lesion at ``necrosis_hu``) and an enhancing rim *inside*
    the lesion's boundary (``rim_mm`` at ``rim_hu``; part of the tumour). Not clipped."""
    spec = ZoneSpec(probes=list(shape), zone_hu=lesion_hu, heterogeneity_hu=heterogeneity_hu,
                    rim_mm=0.0, rim_hu=-2000.0, noise_hu=noise_hu, n_gas=0, tract=False,
                    clip_to_tissue=False, cooling_mm=0.0, seed=seed)
    case = paint_zone(image, spec)
    if necrosis_hu is None and rim_hu is None:
        return case
    # second pass: inner structure, on the painted image, inside the truth only
    arr = sitk.GetArrayFromImage(case.image).astype(np.float64)
    m = sitk.GetArrayViewFromImage(case.truth).astype(bool)
    sp = geometry.spacing_zyx(image)
    depth = ndimage.distance_transform_edt(m, sampling=sp)
    sm = np.zeros_like(arr)
    if rim_hu is not None:
        w = ndtr((rim_mm - depth) / 0.6) * m
        sm += w * (rim_hu - lesion_hu)
    if necrosis_hu is not None:
        w = ndtr((depth - 0.5 * float(depth.max())) / 1.0) * m
        sm += w * (necrosis_hu - lesion_hu)
    arr = arr + ndimage.gaussian_filter(sm, 0.5 / sp)
    case.image = geometry.array_to_image(np.clip(np.rint(arr), -1024, 3071).astype(np.int16),
                                         image)
    return case
