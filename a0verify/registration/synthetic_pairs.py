"""Registration test pairs that look like a hospital's, built from real CT with known truth.

A pair is a real CT (``pre``, moving, with a painted tumour) and the same anatomy seen through a
known transform ``T`` (``post``, fixed, with a painted ablation zone), where

    T(x) = R (x + d(x) - c) + c + t          (post-space LPS mm -> pre-space LPS mm)

with a rigid patient motion (R about c, t), a smooth deformation (low-frequency sinusoids) and,
for breathing, a sliding field that moves the abdominal organs against the body wall
(:func:`~a0verify.registration.synthetic_effects.sliding_field`). ``d`` is sampled on a 2.5 mm
grid and interpolated linearly, by SimpleITK when warping and by :meth:`ClinicalPair.post_to_pre`
for the truth, so both use the very same transform.

Difficulties (:data:`DIFFICULTIES`), each on top of the rigid + smooth motion of ``plain``:
``contrast`` (another contrast phase), ``short_thick`` (post +-45-60 mm around the lesion, 2.5-3
mm slices, other in-plane spacing), ``needle_gas`` (probe with metal streaks, gas in and near
the zone), ``sliding`` (organs shifted 8-15 mm cranio-caudally against the body wall; lesions
near the liver surface), ``combined`` (all of them).

The true minimal ablative margin is exact up to the surface sampling (:meth:`true_mam_mm`: the
tumour surface in post space is the zero level of r - |T(x) - c_tumour|, found by marching
cubes on a 0.5 mm grid and refined by Newton steps, then measured against the analytic zone).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk
from scipy import ndimage

from a0verify import geometry
from a0verify.phantom import ellipsoid_sd
from a0verify.registration import synthetic_effects as fx
from a0verify.registration.synthetic import box_points, random_rotation

F64 = npt.NDArray[np.float64]

DIFFICULTIES = ("plain", "contrast", "short_thick", "needle_gas", "sliding", "combined")
FIELD_MM = 2.5


@dataclass(frozen=True)
class PairSpec:
    """Everything that defines a pair (with the source CT): JSON-serialisable."""

    name: str
    difficulty: str
    seed: int
    lesion_lps: tuple[float, float, float]
    tumor_radius_mm: float = 10.0
    target_mam_mm: float = 5.0
    trans_mm: float = 15.0
    rot_deg: float = 5.0
    deform_mm: float = 4.0
    slide_mm: float = 0.0
    contrast: bool = False
    short_half_mm: float | None = None
    slice_mm: float | None = None
    inplane_mm: float | None = None
    needle: bool = False
    gas: bool = False


@dataclass
class Source:
    """A real CT (float32 HU) and the mask of the organs that move with breathing (UInt8)."""

    name: str
    ct: sitk.Image
    organs: sitk.Image


@dataclass
class ClinicalPair:
    """Images, masks and the exact transform of one pair (see the module docstring)."""

    spec: PairSpec
    pre: sitk.Image  # moving (float32 HU), tumour painted
    post: sitk.Image  # fixed (float32 HU), zone painted
    tumor: sitk.Image  # UInt8 on the pre grid (voxel-centre inclusion of the sphere)
    ablation: sitk.Image  # UInt8 on the post grid (voxel-centre inclusion of the ellipsoid)
    organs_post: sitk.Image  # UInt8 on the post grid: the moving organs (truth region)
    rotation: F64
    center: F64
    translation: F64
    field_grid: sitk.Image  # 2.5 mm grid of d (float32 image, values unused)
    disp_field: F64  # d on field_grid, (z, y, x, 3), components x, y, z (mm)
    tumor_center_pre: F64
    zone_center: F64
    zone_axes: F64
    zone_rotation: F64
    probe: list[list[float]] = field(default_factory=list)  # probe end points (LPS), if any

    def displacement(self, pts: npt.ArrayLike) -> F64:
        """d(x) (mm) at post-space LPS points (..., 3), trilinear like SimpleITK."""
        p = np.asarray(pts, np.float64)
        idx = geometry.lps_to_zyx_index(self.field_grid, p.reshape(-1, 3)).T
        out = np.stack([ndimage.map_coordinates(self.disp_field[..., c], idx, order=1,
                                                mode="nearest") for c in range(3)], -1)
        return out.reshape(p.shape)

    def post_to_pre(self, pts: npt.ArrayLike) -> F64:
        """Exact T: post-space LPS points (..., 3) -> pre-space LPS points."""
        p = np.asarray(pts, np.float64)
        return (p + self.displacement(p) - self.center) @ self.rotation.T + self.center \
            + self.translation

    def tumor_surface_post(self) -> F64:
        """Points (N, 3) on the true tumour surface in post space (sub-0.01 mm)."""
        from skimage.measure import marching_cubes

        r = self.spec.tumor_radius_mm
        c0 = self.tumor_center_post()
        h = 0.5
        n = math.ceil((r + 6.0) / h)
        ax = np.arange(-n, n + 1) * h
        grid = np.stack(np.meshgrid(ax, ax, ax, indexing="ij"), -1) + c0  # (x, y, z) order
        f = r - np.linalg.norm(self.post_to_pre(grid) - self.tumor_center_pre, axis=-1)
        verts, *_ = marching_cubes(f, 0.0, spacing=(h, h, h))
        x = verts + c0 - n * h
        for _ in range(3):  # Newton steps onto the zero level of f
            eps = 0.05
            fx0 = r - np.linalg.norm(self.post_to_pre(x) - self.tumor_center_pre, axis=-1)
            g = np.stack([(r - np.linalg.norm(self.post_to_pre(x + eps * e)
                                              - self.tumor_center_pre, axis=-1) - fx0) / eps
                          for e in np.eye(3)], -1)
            x = x - (fx0 / np.maximum((g * g).sum(-1), 1e-9))[:, None] * g
        return np.asarray(x)

    def tumor_center_post(self) -> F64:
        """Post-space point mapped onto the tumour centre (grid search + Newton)."""
        guess = (self.tumor_center_pre - self.center - self.translation) @ self.rotation \
            + self.center
        ax = np.arange(-24.0, 24.01, 1.5)
        g = np.stack(np.meshgrid(ax, ax, ax, indexing="ij"), -1).reshape(-1, 3) + guess
        x = g[np.argmin(np.linalg.norm(self.post_to_pre(g) - self.tumor_center_pre, axis=1))]
        for _ in range(20):
            y = self.post_to_pre(x[None])[0] - self.tumor_center_pre
            jac = np.stack([(self.post_to_pre((x + 0.05 * e)[None])[0] - self.tumor_center_pre
                             - y) / 0.05 for e in np.eye(3)], 1)
            x = x - np.linalg.solve(jac, y)
        return np.asarray(x)

    def true_mam_mm(self) -> float:
        """Exact minimal ablative margin (mm, positive = tumour inside the zone)."""
        sd = ellipsoid_sd(self.tumor_surface_post(), self.zone_center, self.zone_axes,
                          self.zone_rotation)
        return float(sd.min())

    def truth(self) -> dict[str, Any]:
        """JSON-ready description (spec, transform parameters, zone, true MAM)."""
        return {"spec": asdict(self.spec), "rotation": self.rotation.tolist(),
                "center": self.center.tolist(), "translation": self.translation.tolist(),
                "tumor_center_pre": self.tumor_center_pre.tolist(),
                "zone_center": self.zone_center.tolist(), "zone_axes": self.zone_axes.tolist(),
                "zone_rotation": self.zone_rotation.tolist(), "probe": self.probe,
                "true_mam_mm": self.true_mam_mm()}


def _unit(rng: np.random.Generator) -> F64:
    v = rng.normal(size=3)
    return np.asarray(v / np.linalg.norm(v))


def _smooth_field(grid: sitk.Image, rng: np.random.Generator, max_mm: float) -> F64:
    """Sum of three low-frequency sinusoids (wavelengths 90-200 mm) scaled to max |d| = max_mm."""
    pts = geometry.voxel_centers_lps(grid)
    d = np.zeros(pts.shape)
    for _ in range(3):
        k = 2 * math.pi * _unit(rng) / rng.uniform(90.0, 200.0, 3)
        d += np.sin(pts @ k + rng.uniform(0, 2 * math.pi))[..., None] * _unit(rng)
    return np.asarray(d * (max_mm / max(float(np.linalg.norm(d, axis=-1).max()), 1e-9)))


def _noisy(img: sitk.Image, rng: np.random.Generator, sigma_hu: float) -> sitk.Image:
    arr = sitk.GetArrayFromImage(img)
    n = ndimage.gaussian_filter(rng.normal(0.0, 1.0, arr.shape).astype(np.float32), 0.7)
    n *= sigma_hu / max(float(n.std()), 1e-6)
    return geometry.array_to_image((arr + n).astype(np.float32), img)


def _inside(img: sitk.Image, center: F64, axes: F64, rot: F64) -> sitk.Image:
    """UInt8 voxel-centre inclusion of an ellipsoid on ``img``'s grid."""
    box = geometry.roi_box_around_lps(img, center[None], float(axes.max()) + 2.0)
    out = np.zeros(sitk.GetArrayViewFromImage(img).shape, np.uint8)
    q = (box_points(img, box) - center) @ rot
    out[box.slices] = (np.sum(q * q / (axes * axes), axis=-1) <= 1.0)
    return geometry.array_to_image(out, img)


def make_pair(src: Source, spec: PairSpec) -> ClinicalPair:
    """Build the pair ``spec`` from ``src`` (deterministic for a given spec)."""
    rng = np.random.default_rng(spec.seed)
    ct = src.ct
    lo, hi = geometry.physical_bounds(ct)
    center = (lo + hi) / 2.0
    rot = random_rotation(rng, spec.rot_deg)
    trans = spec.trans_mm * _unit(rng)
    size = np.ceil((hi - lo + 40.0) / FIELD_MM).astype(int) + 1
    fgrid = geometry.make_grid(size.tolist(), [FIELD_MM] * 3, None, center.tolist(),
                               sitk.sitkFloat32)
    d = _smooth_field(fgrid, rng, spec.deform_mm)
    if spec.slide_mm:
        direction = np.array([0.0, rng.uniform(-0.3, 0.3), rng.choice([-1.0, 1.0])])
        d += fx.sliding_field(src.organs, fgrid, spec.slide_mm * direction
                              / np.linalg.norm(direction))
    tc = np.asarray(spec.lesion_lps, np.float64)
    pair = ClinicalPair(spec, ct, ct, ct, ct, ct, rot, center, trans, fgrid, d, tc,
                        np.zeros(3), np.ones(3), np.eye(3))
    # warp: T = rigid o (x + d)
    fimg = sitk.GetImageFromArray(d.astype(np.float64), isVector=True)
    fimg.CopyInformation(fgrid)
    rigid = sitk.AffineTransform(3)
    rigid.SetMatrix(rot.ravel().tolist())
    rigid.SetCenter(center.tolist())
    rigid.SetTranslation(trans.tolist())
    tx = sitk.CompositeTransform([rigid, sitk.DisplacementFieldTransform(fimg)])
    appearance = fx.contrast_change(ct, src.organs, rng) if spec.contrast else ct
    post_full = sitk.Resample(appearance, ct, tx, sitk.sitkLinear, -1024.0, sitk.sitkFloat32)
    moving_region = fx.organ_envelope(src.organs) if spec.slide_mm else src.organs
    organs_full = sitk.Resample(moving_region, ct, tx, sitk.sitkNearestNeighbor, 0,
                                sitk.sitkUInt8)
    # pre: tumour sphere (-40 HU, soft edge)
    r = spec.tumor_radius_mm
    pre_arr = sitk.GetArrayFromImage(ct).astype(np.float32)
    tbox = geometry.roi_box_around_lps(ct, tc[None], r + 3.0)
    rr = np.linalg.norm(box_points(ct, tbox) - tc, axis=-1)
    pre_arr[tbox.slices] -= (40.0 * np.clip(r + 0.5 - rr, 0.0, 1.0)).astype(np.float32)
    tum = np.zeros(pre_arr.shape, np.uint8)
    tum[tbox.slices] = rr <= r
    # zone around the warped tumour, grown until the true MAM is the target
    cpost = pair.tumor_center_post()
    zrot = random_rotation(rng, rng.uniform(10.0, 60.0))
    extra = rng.uniform(0.0, 7.0, 3)
    offset = _unit(rng) * rng.uniform(0.0, 3.0)
    pair.zone_center, pair.zone_rotation = cpost + offset, zrot
    surf = pair.tumor_surface_post()
    grow = r + spec.target_mam_mm
    for _ in range(6):
        axes = np.maximum(grow + extra, 3.0)
        got = float(ellipsoid_sd(surf, pair.zone_center, axes, zrot).min())
        grow += spec.target_mam_mm - got
    pair.zone_axes = np.maximum(grow + extra, 3.0)
    post_arr = sitk.GetArrayFromImage(post_full)
    fx.paint_zone(post_arr, ct, pair.zone_center, pair.zone_axes, zrot, rng)
    if spec.gas:
        _paint_gas(post_arr, ct, pair, rng)
    if spec.needle:
        outward = _unit(rng)
        outward[2] *= 0.3  # mostly in the axial plane, as placed under CT guidance
        outward /= np.linalg.norm(outward)
        tip = pair.zone_center - 0.4 * float(pair.zone_axes.min()) * outward
        ends = fx.paint_probe(post_arr, ct, tip, outward, 160.0, rng)
        pair.probe = [e.tolist() for e in ends]
    post = geometry.array_to_image(post_arr, ct)
    if spec.slice_mm or spec.short_half_mm or spec.inplane_mm:
        post = fx.thick_short_scan(post, pair.zone_center, spec.short_half_mm,
                                   spec.slice_mm or float(ct.GetSpacing()[2]), spec.inplane_mm,
                                   rng.uniform(0.0, 3.0))
        organs_full = sitk.Resample(organs_full, post, sitk.Transform(),
                                    sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    pair.pre = _noisy(geometry.array_to_image(pre_arr, ct), rng, rng.uniform(8.0, 12.0))
    pair.post = _noisy(post, rng, rng.uniform(10.0, 20.0))
    pair.tumor = geometry.array_to_image(tum, ct)
    pair.ablation = _inside(post, pair.zone_center, pair.zone_axes, zrot)
    pair.organs_post = organs_full
    return pair


def _paint_gas(arr: npt.NDArray[np.float32], img: sitk.Image, pair: ClinicalPair,
               rng: np.random.Generator) -> None:
    """5-14 bubbles inside the zone (mostly central) and 2-5 within 6 mm outside it."""
    n_in, n_out = int(rng.integers(5, 15)), int(rng.integers(2, 6))
    a = pair.zone_axes
    local = rng.normal(size=(n_in, 3)) * 0.25 * a
    inside = local @ pair.zone_rotation.T + pair.zone_center
    dirs = rng.normal(size=(n_out, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    scale = 1.0 / np.sqrt(np.sum((dirs / a) ** 2, axis=1))  # to the ellipsoid surface
    outside = (dirs * (scale + rng.uniform(1.0, 6.0, n_out))[:, None]) @ pair.zone_rotation.T \
        + pair.zone_center
    fx.paint_gas(arr, img, np.vstack([inside, outside]), rng.uniform(1.0, 3.0, n_in + n_out))


def save_pair(pair: ClinicalPair, out_dir: Path) -> None:
    """Write a pair (NRRD images, field .npz, truth.json) for re-use (benchmark cache)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for k in ("pre", "post"):
        img = sitk.Cast(sitk.Round(getattr(pair, k)), sitk.sitkInt16)
        sitk.WriteImage(img, str(out_dir / f"{k}.nrrd"), True)
    for k in ("tumor", "ablation", "organs_post"):
        sitk.WriteImage(getattr(pair, k), str(out_dir / f"{k}.nrrd"), True)
    np.savez_compressed(out_dir / "field.npz", field=pair.disp_field.astype(np.float32),
                        origin=np.asarray(pair.field_grid.GetOrigin()),
                        size=np.asarray(pair.field_grid.GetSize()))
    (out_dir / "truth.json").write_text(json.dumps(pair.truth(), indent=1))


def load_pair(out_dir: Path) -> ClinicalPair:
    """Read a pair written by :func:`save_pair`."""
    t = json.loads((out_dir / "truth.json").read_text())
    spec = PairSpec(**{**t["spec"], "lesion_lps": tuple(t["spec"]["lesion_lps"])})
    z = np.load(out_dir / "field.npz")
    fgrid = sitk.Image([int(v) for v in z["size"]], sitk.sitkFloat32)
    fgrid.SetSpacing([FIELD_MM] * 3)
    fgrid.SetOrigin([float(v) for v in z["origin"]])
    img = {k: sitk.ReadImage(str(out_dir / f"{k}.nrrd"))
           for k in ("pre", "post", "tumor", "ablation", "organs_post")}
    return ClinicalPair(
        spec, sitk.Cast(img["pre"], sitk.sitkFloat32), sitk.Cast(img["post"], sitk.sitkFloat32),
        img["tumor"], img["ablation"], img["organs_post"], np.asarray(t["rotation"]),
        np.asarray(t["center"]), np.asarray(t["translation"]), fgrid,
        z["field"].astype(np.float64), np.asarray(t["tumor_center_pre"]),
        np.asarray(t["zone_center"]), np.asarray(t["zone_axes"]),
        np.asarray(t["zone_rotation"]), t.get("probe", []))
