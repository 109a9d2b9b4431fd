"""What differs between a planning CT and an intraprocedural control CT, painted into real CT.

Building blocks of :mod:`a0verify.registration.synthetic_pairs` (test and calibration pairs with a
known transform). Each function states its units; images are SimpleITK (LPS mm), arrays (z, y, x).

* :func:`moving_organs_mask` - the abdominal organs that move with breathing (liver, and with it
  stomach / spleen), from a seed point in the liver, for CTs without an organ mask.
* :func:`sliding_field` - a displacement that moves those organs by a few mm cranio-caudally
  while the body wall and spine stay: discontinuous in the tangential direction at the organ
  boundary (a 3 mm transition), made invertible (Jacobian determinant >= 0.3) by smoothing it
  only where the organ boundary faces the motion (diaphragm dome, liver tip).
* :func:`contrast_change` - another contrast phase: liver +20-35 HU, vessels -60..+80 HU (two
  vessel territories with their own change), other soft tissue a little.
* :func:`paint_zone`, :func:`paint_probe`, :func:`paint_gas` - ablation zone (hypodense centre,
  enhancing rim), probe (> 2000 HU) with in-plane metal streaks, gas bubbles.
* :func:`thick_short_scan` - a short post scan (+-H mm around the lesion) with thick slices
  (slice-profile blur, then resampling; slice positions not aligned with the source).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk
from scipy import ndimage

from a0verify import geometry
from a0verify.phantom import ellipsoid_sd_grid
from a0verify.registration.synthetic import box_points

F64 = npt.NDArray[np.float64]
F32 = npt.NDArray[np.float32]


def _radius(img: sitk.Image, mm: float) -> list[int]:
    return [max(1, round(mm / s)) for s in img.GetSpacing()]


def moving_organs_mask(ct: sitk.Image, seed_lps: npt.ArrayLike, lo_hu: float = 70.0,
                       hi_hu: float = 180.0) -> sitk.Image:
    """UInt8 mask of the enhancing abdominal organs connected to ``seed_lps`` (a point in the
    liver of a portal-venous CT): smoothed HU in [lo_hu, hi_hu], away from bone, opened by 3 mm
    to cut thin bridges, the seed's component, closed by 5 mm and hole-filled. It covers the
    liver and what touches it broadly (stomach wall, spleen): organs that move with the
    diaphragm; the body wall, ribs and spine stay outside."""
    sm = sitk.SmoothingRecursiveGaussian(sitk.Cast(ct, sitk.sitkFloat32), [1.5] * 3)
    bone = sitk.BinaryDilate(sitk.Cast(sm > 250, sitk.sitkUInt8), _radius(ct, 4.0),
                             sitk.sitkBall)
    cand = sitk.Cast((sm > lo_hu) & (sm < hi_hu), sitk.sitkUInt8) & (bone == 0)
    opened = sitk.BinaryMorphologicalOpening(cand, _radius(ct, 3.0), sitk.sitkBall)
    cc = sitk.ConnectedComponent(opened)
    idx = [round(v) for v in geometry.lps_to_index(ct, np.asarray(seed_lps, float)[None])[0]]
    label = cc[idx]
    if label == 0:
        raise ValueError(f"seed {list(np.asarray(seed_lps, float))} is not in an enhancing organ")
    organ = sitk.BinaryDilate(sitk.Cast(cc == label, sitk.sitkUInt8), _radius(ct, 3.0),
                              sitk.sitkBall) & cand
    organ = sitk.BinaryMorphologicalClosing(organ, _radius(ct, 5.0), sitk.sitkBall)
    return sitk.Cast(sitk.BinaryFillhole(organ), sitk.sitkUInt8)


def jacobian_determinant(d: F64, spacing_zyx: F64) -> F64:
    """det(I + grad d) of a displacement array (z, y, x, 3) with components (x, y, z) in mm."""
    g = np.empty((*d.shape[:3], 3, 3))
    for comp in range(3):
        gz, gy, gx = np.gradient(d[..., comp], *spacing_zyx)
        g[..., comp, 0], g[..., comp, 1], g[..., comp, 2] = gx, gy, gz
    g += np.eye(3)
    return np.asarray(np.linalg.det(g), np.float64)


def organ_envelope(organs: sitk.Image, close_mm: float = 12.0) -> sitk.Image:
    """The region that moves as one with ``organs`` (UInt8): closed by ``close_mm`` and
    hole-filled, so the fat in fissures and at the hilum moves with the organ around it, while
    gaps to structures outside the mask (body wall) stay open."""
    from a0verify.registration.roi import dilate, erode

    pad = [math.ceil(close_mm / s) + 1 for s in organs.GetSpacing()]
    m = sitk.ConstantPad(sitk.Cast(organs != 0, sitk.sitkUInt8), pad, pad, 0)
    closed = sitk.BinaryFillhole(erode(dilate(m, close_mm), close_mm) | m)
    out = sitk.Crop(closed, pad, pad)
    out.CopyInformation(organs)
    return sitk.Cast(out, sitk.sitkUInt8)


def sliding_field(organs: sitk.Image, grid: sitk.Image, shift_mm: npt.ArrayLike,
                  transition_mm: float = 3.0, min_det: float = 0.3) -> F64:
    """Displacement (z, y, x, 3; components x, y, z in mm) on ``grid``: ``shift_mm`` inside
    ``organs`` (their :func:`organ_envelope`), 0 outside, with a ``transition_mm`` wide smooth
    step at the boundary. Where the step would fold or tear the tissue (det(I + grad d) <
    ``min_det``: boundaries facing the motion) the field is smoothed locally until it does not;
    along boundaries parallel to the motion the step stays sharp (sliding)."""
    m = sitk.Resample(sitk.Cast(organ_envelope(organs), sitk.sitkFloat32), grid,
                      sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32) > 0.5
    phi = sitk.GetArrayFromImage(sitk.SignedMaurerDistanceMap(
        m, insideIsPositive=True, squaredDistance=False, useImageSpacing=True))
    t = np.clip((phi + 0.5 * transition_mm) / transition_mm, 0.0, 1.0)
    w = t * t * (3.0 - 2.0 * t)
    d = w[..., None] * np.asarray(shift_mm, np.float64)
    sp = geometry.spacing_zyx(grid)
    for _ in range(80):
        bad = jacobian_determinant(d, sp) < min_det
        if not bad.any():
            break
        bad = ndimage.binary_dilation(bad, iterations=2)
        smooth = np.stack([ndimage.gaussian_filter(d[..., c], 1.0) for c in range(3)], -1)
        d[bad] = smooth[bad]
    return d


def contrast_change(ct: sitk.Image, organ: sitk.Image, rng: np.random.Generator) -> sitk.Image:
    """``ct`` as seen in another contrast phase (float32 HU): parenchyma of ``organ`` +20-35 HU;
    vessels (organ voxels > 25 HU brighter than its median, or > 10 HU darker in a native-phase
    CT) changed by two values in -60..+80 HU, one per half of the organ (split by a random
    plane, 25 mm blend); other soft tissue (0-200 HU) +0-15 HU."""
    arr = sitk.GetArrayFromImage(sitk.Cast(ct, sitk.sitkFloat32))
    om = sitk.GetArrayViewFromImage(organ) != 0
    box = geometry.nonzero_index_box(om)
    if box is None:
        raise ValueError("empty organ mask")
    sp = geometry.spacing_zyx(ct)
    sub = arr[box.slices]
    osub = om[box.slices]
    sm = ndimage.gaussian_filter(sub, 0.7 / sp)
    core = ndimage.binary_erosion(osub, iterations=2)
    med = float(np.median(sm[core if core.any() else osub]))
    near = ndimage.binary_dilation(osub, iterations=2)
    bright = np.clip((sm - (med + 25.0)) / 30.0, 0.0, 1.0) * (sm < 400)
    dark = np.clip(((med - 10.0) - sm) / 15.0, 0.0, 1.0) * (sm > -50)
    vessel = np.where(med > 80.0, bright, dark) * near
    pts = geometry.zyx_index_to_lps(ct, np.argwhere(osub)[::50].astype(float)
                                    + np.asarray(box.lo_zyx, float))
    centre = pts.mean(0)
    normal = rng.normal(size=3)
    normal /= np.linalg.norm(normal)
    zz, yy, xx = np.meshgrid(*[np.arange(lo, hi) for lo, hi in zip(box.lo_zyx, box.hi_zyx,
                                                                      strict=True)],
                             indexing="ij", sparse=True)
    origin = geometry.zyx_index_to_lps(ct, np.zeros((1, 3)))[0]
    # signed distance (mm) of each voxel centre to the plane through the organ's centre
    a = geometry.zyx_index_to_lps(ct, np.eye(3)) - origin  # LPS step per z, y, x index
    dist = ((zz * (a[0] @ normal)) + (yy * (a[1] @ normal)) + (xx * (a[2] @ normal))
            + float((origin - centre) @ normal))
    s = 1.0 / (1.0 + np.exp(-dist / 12.5))
    v1, v2 = rng.uniform(-60.0, 80.0, 2)
    liver_gain = rng.uniform(20.0, 35.0)
    soft = rng.uniform(0.0, 15.0)
    ow = ndimage.gaussian_filter(osub.astype(np.float32), 1.0 / sp)
    delta = (ow * (1.0 - vessel) * liver_gain + vessel * (v1 * (1 - s) + v2 * s)
             + (1.0 - ow) * soft * ((sm > 0) & (sm < 200)))
    sub += delta.astype(np.float32)
    arr[box.slices] = sub
    return geometry.array_to_image(arr, ct)


def paint_zone(arr: F32, img: sitk.Image, center: F64, axes: F64, rot: F64,
               rng: np.random.Generator) -> None:
    """Ablation zone into ``arr`` (on ``img``'s grid, in place): ellipsoid (semi-axes ``axes``
    mm along the columns of ``rot``) at 30-45 HU with a mottled centre, an enhancing rim of
    1-3 mm at 90-130 HU just outside it, partial volume over ~0.7 mm."""
    rim_w, rim_hu = rng.uniform(1.0, 3.0), rng.uniform(90.0, 130.0)
    box = geometry.roi_box_around_lps(img, center[None], float(axes.max()) + rim_w + 3.0)
    sd = ellipsoid_sd_grid(box_points(img, box), center, axes, rot)
    sub = arr[box.slices]
    inner = np.clip(0.5 + sd / 0.7, 0.0, 1.0)
    rim = np.clip(0.5 + (sd + rim_w) / 0.7, 0.0, 1.0) - inner
    tex = ndimage.gaussian_filter(rng.normal(0.0, 1.0, sub.shape), 1.5) * 15.0
    zone_hu = rng.uniform(30.0, 45.0) + tex
    sub[...] = (sub * (1.0 - inner - rim) + rim * np.maximum(sub, rim_hu)
                + inner * zone_hu).astype(np.float32)
    arr[box.slices] = sub


def _seg_dist(p: F64, a: F64, b: F64) -> tuple[F64, F64]:
    """Distance (mm) from points p (..., 3) to segment a-b, and the closest points."""
    ab = b - a
    t = np.clip(((p - a) @ ab) / max(float(ab @ ab), 1e-12), 0.0, 1.0)
    q = a + t[..., None] * ab
    return np.linalg.norm(p - q, axis=-1), q


def paint_probe(arr: F32, img: sitk.Image, tip: F64, outward: F64, length_mm: float,
                rng: np.random.Generator, radius_mm: float = 0.9) -> tuple[F64, F64]:
    """Probe (3071 HU, partial volume) from ``tip`` along ``outward`` for ``length_mm``, with
    metal streaks in every axial slice it crosses: radial bright/dark bands around the probe's
    in-slice segment, +-200-500 HU at the probe, decaying as 8 / (8 + r) and over ~100 mm,
    inside the body only. Axis-aligned images. Returns the probe's end points (LPS)."""
    u = outward / np.linalg.norm(outward)
    end = tip + length_mm * u
    box = geometry.roi_box_around_lps(img, np.stack([tip, end]), 100.0)
    pts = box_points(img, box)
    sub = arr[box.slices]
    dist, _ = _seg_dist(pts, tip, end)
    metal = np.clip(0.5 + (radius_mm - dist) / 0.5, 0.0, 1.0)
    amp = rng.uniform(200.0, 500.0)
    harmonics = [(rng.uniform(0.3, 1.0), int(rng.integers(2, 13)), rng.uniform(0, 2 * math.pi))
                 for _ in range(3)]
    half = 0.5 * float(img.GetSpacing()[2])
    for k in range(sub.shape[0]):
        z = float(pts[k, 0, 0, 2])
        if abs(u[2]) > 1e-6:  # the part of the probe inside this slice's slab
            t0, t1 = sorted(((z - half - tip[2]) / u[2], (z + half - tip[2]) / u[2]))
        else:
            t0, t1 = (0.0, length_mm) if abs(z - tip[2]) <= half else (1.0, 0.0)
        t0, t1 = max(t0, 0.0), min(t1, length_mm)
        if t1 < t0:
            continue
        a, b = tip + t0 * u, tip + t1 * u
        a[2] = b[2] = z
        rho, q = _seg_dist(pts[k], a, b)
        theta = np.arctan2((pts[k] - q)[..., 1], (pts[k] - q)[..., 0])
        pattern = sum(w * np.cos(n * theta + ph) for w, n, ph in harmonics) / 2.0
        streak = amp * pattern * (8.0 / (8.0 + rho)) * np.exp(-rho / 100.0)
        sl = sub[k]
        sub[k] = np.where(sl > -500, sl + streak, sl).astype(np.float32)
    sub[...] = (sub * (1 - metal) + 3071.0 * metal).astype(np.float32)
    arr[box.slices] = sub
    return tip, end


def paint_gas(arr: F32, img: sitk.Image, centers: F64, radii: F64) -> None:
    """Gas bubbles (-850 HU, partial volume) of ``radii`` mm at ``centers`` (N, 3) LPS."""
    for c, r in zip(centers, radii, strict=True):
        box = geometry.roi_box_around_lps(img, c[None], float(r) + 2.0)
        if box.empty:
            continue
        d = np.linalg.norm(box_points(img, box) - c, axis=-1)
        w = np.clip(0.5 + (r - d) / 0.7, 0.0, 1.0)
        sub = arr[box.slices]
        sub[...] = (sub * (1 - w) - 850.0 * w).astype(np.float32)
        arr[box.slices] = sub


def thick_short_scan(img: sitk.Image, center_lps: F64, half_mm: float | None,
                     slice_mm: float, inplane_mm: float | None, offset_mm: float) -> sitk.Image:
    """Resample ``img`` (float32 HU) as a scan with ``slice_mm`` slices (slice-profile blur: a
    Gaussian along z bringing the effective thickness to ~``slice_mm``), covering
    ``center_lps[2] +- half_mm`` (the whole z range if None), in-plane spacing ``inplane_mm``
    (unchanged if None), slice positions shifted by ``offset_mm``. Axis-aligned images only."""
    sp = np.asarray(img.GetSpacing(), float)
    src = sp[2]
    sigma = math.sqrt(max(slice_mm ** 2 - src ** 2, 0.0)) / 2.355
    blurred = sitk.SmoothingRecursiveGaussian(img, [1e-3, 1e-3, sigma]) if sigma > 0.05 else img
    lo, hi = geometry.physical_bounds(img)
    if half_mm is not None:
        lo[2] = max(lo[2], center_lps[2] - half_mm)
        hi[2] = min(hi[2], center_lps[2] + half_mm)
    new_sp = np.array([inplane_mm or sp[0], inplane_mm or sp[1], slice_mm])
    off = offset_mm % slice_mm
    ext = hi - lo
    ext[2] -= off
    size = np.maximum(np.floor(ext / new_sp).astype(int), 1)
    center = lo + 0.5 * size * new_sp
    center[2] += off
    grid = geometry.make_grid(size.tolist(), new_sp.tolist(), geometry.direction_matrix(img),
                              center.tolist(), sitk.sitkFloat32)
    return sitk.Resample(blurred, grid, sitk.Transform(), sitk.sitkLinear, -1024.0,
                         sitk.sitkFloat32)
