"""Registration test pairs built from real CT anatomy with a known transform.

Given one real CT volume (e.g. TCIA HCC_048), :func:`make_ct_pair` builds

* ``pre``  = the CT with a painted hypodense spherical tumour and fresh noise (moving image),
* ``post`` = the same anatomy seen through a known transform ``T`` (post-space LPS points to
  pre-space LPS points, ITK convention) with the tumour replaced by a painted ellipsoidal ablation
  zone (non-enhancing centre, enhancing rim) and fresh noise (fixed image),

where ``T(x) = R (x + d(x) - c) + c + t``: a smooth displacement ``d`` (sum of low-frequency
sinusoids, max magnitude ``max_deform_mm``) followed by a rigid motion (rotation of ``rot_deg``
about the image centre ``c``, translation ``t`` of ``trans_mm``). The truth is analytic
(:meth:`SyntheticPair.true_post_to_pre`); images are warped with a dense displacement field sampled
every ``field_spacing_mm`` (linear interpolation error < 0.05 mm for these wavelengths).

All coordinates are LPS millimetres; arrays are (z, y, x).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk
from scipy import ndimage

from a0verify import geometry
from a0verify.phantom import ellipsoid_sd, ellipsoid_sd_grid

F64 = npt.NDArray[np.float64]

#: Default lesion centre for TCIA HCC_048 portal-venous (right liver lobe, LPS mm).
HCC048_LESION_LPS = (-85.0, -15.0, -285.0)


@dataclass
class SyntheticPair:
    """A pre/post CT pair with a known post->pre transform and painted lesion/zone."""

    pre: sitk.Image  # moving, with tumour (float32 HU)
    post: sitk.Image  # fixed, with ablation zone (float32 HU)
    tumor: sitk.Image  # UInt8 label 1 on the pre grid (voxel-centre inclusion of the sphere)
    ablation: sitk.Image  # UInt8 zone mask on the post grid (voxel-centre inclusion)
    transform: sitk.Transform  # the warping transform actually used (post -> pre)
    rotation: F64  # 3x3 R
    center: F64  # c (LPS mm)
    translation: F64  # t (mm)
    waves: list[tuple[F64, F64, float]] = field(default_factory=list)  # (amp vec, k vec, phase)
    tumor_center_pre: F64 = field(default_factory=lambda: np.zeros(3))
    tumor_radius_mm: float = 10.0
    zone_center_post: F64 = field(default_factory=lambda: np.zeros(3))
    zone_axes_mm: F64 = field(default_factory=lambda: np.ones(3))
    zone_rotation: F64 = field(default_factory=lambda: np.eye(3))

    def displacement(self, x: npt.ArrayLike) -> F64:
        """Analytic smooth displacement d(x) (mm) at post-space points (..., 3)."""
        p = np.asarray(x, np.float64)
        d = np.zeros_like(p)
        for amp, k, phase in self.waves:
            d += np.sin(p @ k + phase)[..., None] * amp
        return d

    def true_post_to_pre(self, x: npt.ArrayLike) -> F64:
        """Exact T: post-space LPS points (..., 3) -> pre-space LPS points."""
        p = np.asarray(x, np.float64)
        return (p + self.displacement(p) - self.center) @ self.rotation.T + self.center \
            + self.translation

    def true_pre_to_post(self, y: npt.ArrayLike, iters: int = 60) -> F64:
        """Inverse of :meth:`true_post_to_pre` by fixed-point iteration (|grad d| << 1)."""
        q = (np.asarray(y, np.float64) - self.center - self.translation) @ self.rotation \
            + self.center  # = x + d(x)
        x = q.copy()
        for _ in range(iters):
            x = q - self.displacement(x)
        return x

    def tumor_surface_post(self, n: int = 6000) -> F64:
        """Points (n, 3) on the true tumour surface mapped into post space (LPS mm)."""
        i = np.arange(n) + 0.5
        phi = np.arccos(1 - 2 * i / n)
        theta = math.pi * (1 + 5**0.5) * i
        u = np.stack([np.cos(theta) * np.sin(phi), np.sin(theta) * np.sin(phi), np.cos(phi)], 1)
        return self.true_pre_to_post(self.tumor_center_pre + self.tumor_radius_mm * u)

    def true_mam_mm(self) -> float:
        """Exact minimal ablative margin (mm): min over the warped tumour surface of the signed
        distance to the ellipsoidal zone (positive inside)."""
        pts = self.tumor_surface_post()
        sd = ellipsoid_sd(pts, self.zone_center_post, self.zone_axes_mm, self.zone_rotation)
        return float(sd.min())


def random_rotation(rng: np.random.Generator, angle_deg: float) -> F64:
    """Rotation matrix of ``angle_deg`` about a random axis (drawn from ``rng``)."""
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    a = math.radians(angle_deg)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(a) * k + (1 - math.cos(a)) * (k @ k)


def _center_of(img: sitk.Image) -> F64:
    size = np.asarray(img.GetSize(), np.float64)
    return geometry.index_to_lps(img, (size - 1) / 2.0)


def box_points(img: sitk.Image, box: geometry.IndexBox) -> F64:
    """LPS centres (z, y, x, 3) of the voxels of ``img`` inside ``box``."""
    zz, yy, xx = np.meshgrid(*[np.arange(lo, hi) for lo, hi in zip(box.lo_zyx, box.hi_zyx,
                                                                      strict=True)],
                             indexing="ij")
    return geometry.zyx_index_to_lps(img, np.stack([zz, yy, xx], -1).astype(np.float64))


def make_ct_pair(
    ct: sitk.Image,
    *,
    seed: int = 0,
    trans_mm: float = 10.0,
    rot_deg: float = 5.0,
    max_deform_mm: float = 5.0,
    lesion_center_lps: Sequence[float] = HCC048_LESION_LPS,
    tumor_radius_mm: float = 10.0,
    margin_mm: float = 5.0,
    noise_hu: float = 10.0,
    field_spacing_mm: float = 3.0,
) -> SyntheticPair:
    """Build a :class:`SyntheticPair` from a real CT (any grid; output grids equal ``ct``'s).

    ``trans_mm`` and ``rot_deg`` are the exact magnitudes of the rigid translation (random
    direction) and rotation (random axis, about the image centre); ``max_deform_mm`` is the
    maximum of |d| over the image. The zone is an ellipsoid around the (warped) tumour whose
    minimal semi-axis is ``tumor_radius_mm + margin_mm`` (true MAM from
    :meth:`SyntheticPair.true_mam_mm`). Deterministic for a given ``seed``.
    """
    rng = np.random.default_rng(seed)
    base = sitk.Cast(ct, sitk.sitkFloat32)
    base = sitk.Clamp(base, sitk.sitkFloat32, -1024.0, 3071.0)
    c = _center_of(base)
    rot = random_rotation(rng, rot_deg)
    t_dir = rng.normal(size=3)
    t = trans_mm * t_dir / np.linalg.norm(t_dir)

    lo, hi = geometry.physical_bounds(base)
    extent = hi - lo
    waves: list[tuple[F64, F64, float]] = []
    for _ in range(3):
        wl = rng.uniform(90.0, 200.0, size=3)
        kdir = rng.normal(size=3)
        kdir /= np.linalg.norm(kdir)
        kvec = 2 * math.pi * kdir / wl
        amp = rng.normal(size=3)
        amp /= np.linalg.norm(amp)
        waves.append((amp, kvec, float(rng.uniform(0, 2 * math.pi))))
    pair = SyntheticPair(pre=base, post=base, tumor=base, ablation=base,
                         transform=sitk.Euler3DTransform(), rotation=rot, center=c,
                         translation=t, waves=waves)

    # Dense displacement field on a coarse grid covering the image (+ 20 mm), scaled to max.
    fsize = np.ceil((extent + 40.0) / field_spacing_mm).astype(int) + 1
    fgrid = geometry.make_grid(fsize.tolist(), [field_spacing_mm] * 3, None,
                               center_lps=((lo + hi) / 2).tolist(), pixel_type=sitk.sitkFloat64)
    pts = geometry.voxel_centers_lps(fgrid)
    d = pair.displacement(pts)
    scale = max_deform_mm / float(np.linalg.norm(d, axis=-1).max())
    pair.waves = [(a * scale, k, ph) for a, k, ph in waves]
    d = pair.displacement(pts)
    del pts
    fimg = sitk.GetImageFromArray(d.astype(np.float64), isVector=True)
    fimg.CopyInformation(fgrid)
    disp = sitk.DisplacementFieldTransform(fimg)
    rigid = sitk.AffineTransform(3)
    rigid.SetMatrix(rot.ravel().tolist())
    rigid.SetCenter(c.tolist())
    rigid.SetTranslation(t.tolist())
    pair.transform = sitk.CompositeTransform([rigid, disp])  # rigid(disp(x)) = R(x+d-c)+c+t

    # Pre: tumour sphere (soft-edged, -45 HU contrast) + fresh noise.
    tc = np.asarray(lesion_center_lps, np.float64)
    pre_arr = sitk.GetArrayFromImage(base).astype(np.float32)
    tumor_arr = np.zeros(pre_arr.shape, np.uint8)
    tbox = geometry.roi_box_around_lps(base, tc[None], tumor_radius_mm + 3.0)
    if tbox.empty:
        raise ValueError("lesion centre lies outside the CT volume")
    r = np.linalg.norm(box_points(base, tbox) - tc, axis=-1)
    frac = np.clip(tumor_radius_mm + 0.5 - r, 0.0, 1.0)  # ~0.5 mm soft edge (partial volume)
    pre_arr[tbox.slices] -= 45.0 * frac.astype(np.float32)
    tumor_arr[tbox.slices] = r <= tumor_radius_mm
    if not tumor_arr.any():
        raise ValueError("lesion centre lies outside the CT volume")

    # Post: warped clean anatomy, then the painted zone.
    warped = sitk.Resample(base, base, pair.transform, sitk.sitkLinear, -1024.0, sitk.sitkFloat32)
    post_arr = sitk.GetArrayFromImage(warped)
    c_post = pair.true_pre_to_post(tc[None])[0]
    b = tumor_radius_mm + margin_mm
    axes = np.array([b + 6.0, b, b + 3.0])
    zrot = random_rotation(rng, float(rng.uniform(10, 40)))
    box = geometry.roi_box_around_lps(base, c_post[None], float(axes.max()) + 8.0)
    sd = ellipsoid_sd_grid(box_points(base, box), c_post, axes, zrot)
    sub = post_arr[box.slices]
    rim = (sd < 0) & (sd >= -1.5)
    sub[rim] = np.maximum(sub[rim], 125.0)
    zone = sd >= 0
    sub[zone] = 35.0
    post_arr[box.slices] = sub
    abl = np.zeros(post_arr.shape, np.uint8)
    abl[box.slices] = zone.astype(np.uint8)

    def noisy(arr: npt.NDArray[np.float32]) -> sitk.Image:
        n = ndimage.gaussian_filter(rng.normal(0.0, 1.0, arr.shape).astype(np.float32), 0.7)
        n *= noise_hu / max(float(n.std()), 1e-6)
        return geometry.array_to_image((arr + n).astype(np.float32), base)

    pair.pre = noisy(pre_arr)
    pair.post = noisy(post_arr)
    pair.tumor = geometry.array_to_image(tumor_arr, base)
    pair.ablation = geometry.array_to_image(abl, base)
    pair.tumor_center_pre = tc
    pair.tumor_radius_mm = float(tumor_radius_mm)
    pair.zone_center_post = c_post
    pair.zone_axes_mm = axes
    pair.zone_rotation = zrot
    return pair


def tre_stats(truth_fn: Callable[[F64], F64], estimate: sitk.Transform, region: sitk.Image,
              step: int = 2) -> dict[str, float]:
    """Target registration error (mm) of ``estimate`` against ``truth_fn`` (post-space LPS points
    (N, 3) -> true pre-space points) at the voxel centres of ``region`` (nonzero voxels; every
    ``step``-th voxel along each axis). Returns mean, p95, max and n; an empty region raises
    ValueError.
    """
    arr = sitk.GetArrayViewFromImage(region)[::step, ::step, ::step] != 0
    idx = np.argwhere(arr).astype(np.float64) * step
    if len(idx) == 0:
        raise ValueError("empty TRE region")
    pts = geometry.zyx_index_to_lps(region, idx)
    err = np.linalg.norm(transform_points(estimate, pts) - truth_fn(pts), axis=1)
    return {"mean": float(err.mean()), "p95": float(np.percentile(err, 95)),
            "max": float(err.max()), "n": len(err)}


def transform_points(tx: sitk.Transform, pts: npt.ArrayLike) -> F64:
    """Apply a SimpleITK transform to LPS points (N, 3) (a Python loop; fine for ~1e5 points)."""
    p = np.asarray(pts, np.float64).reshape(-1, 3)
    return np.array([tx.TransformPoint(q) for q in p.tolist()], np.float64).reshape(-1, 3)
