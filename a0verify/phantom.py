"""Synthetic CT-like ablation cases with known truth (demo, tests, benchmarks).

The anatomy is an analytic function of position in the *pre* scan's physical space (LPS mm):
body, liver (~100 HU), vessels, aorta and spine; spherical tumours (~55 HU) in the liver.

The post scan is the same anatomy seen through a known transform ``T`` that maps post-space points
to pre-space points (ITK convention): ``T(x) = R (x - c) + c + t + d(x)`` with a rigid part
(rotation ``R`` about ``c``, translation ``t``) and a smooth deformation ``d`` of a few mm that is
*exactly constant* within ``lesion_rigid_radius_mm`` of every lesion, so the tumours stay exact
spheres in post space and the margin truth is analytic. Each tumour is replaced by an ellipsoidal
non-enhancing ablation zone (~35 HU) with a thin enhancing rim; noise is drawn afresh.

Truth: for a sphere tumour of radius r centred at c inside a convex zone E, the minimal ablative
margin is exactly ``MAM = sd_E(c) - r`` with sd_E the signed distance to the boundary of E
(positive inside), because sd_E is 1-Lipschitz and the sphere point towards the nearest boundary
point attains it. ``sd_E`` for an ellipsoid is found by a 1-D root find (:func:`ellipsoid_sd`).

Long module: one generator whose parts (anatomy, motion, lesions, zones, analytic truth) share
the spec and the truth model; split apart they would each need all of it.
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
from a0verify.io import write_image, write_json_atomic

F64 = npt.NDArray[np.float64]


# --------------------------------------------------------------------------- analytic geometry
def ellipsoid_sd(points: npt.ArrayLike, center: npt.ArrayLike, axes: npt.ArrayLike,
                 rotation: npt.ArrayLike | None = None) -> F64:
    """Exact signed distance (mm, positive inside) from points (N, 3) to an ellipsoid surface.

    The ellipsoid has semi-axes ``axes`` along the columns of ``rotation`` (identity if None).
    For each point the closest surface point x = (I + t A^-2)^-1 p (local frame) is found by a
    1-D root find in t (Newton with bisection safeguard).
    """
    p = np.atleast_2d(np.asarray(points, np.float64)) - np.asarray(center, np.float64)
    rot = np.eye(3) if rotation is None else np.asarray(rotation, np.float64)
    q = p @ rot  # local coordinates
    a = np.asarray(axes, np.float64)
    a2 = a * a
    inside = np.sum(q * q / a2, axis=1) <= 1.0
    y = np.where(np.abs(q) < 1e-12, 1e-12, q)

    def g(t: F64) -> F64:  # decreasing in t on (-min a2, inf); its root gives the foot point
        return np.sum(a2 * y * y / (a2 + t[:, None]) ** 2, axis=1) - 1.0

    lo = np.full(len(y), -float(a2.min()) + 1e-12)
    hi = np.full(len(y), max(1.0, 2.0 * float(a.max())) * (1.0 + np.linalg.norm(y, axis=1)))
    while np.any(g(hi) > 0):
        hi = np.where(g(hi) > 0, hi * 2, hi)
    for _ in range(200):  # vectorised bisection to machine precision
        mid = 0.5 * (lo + hi)
        pos = g(mid) > 0
        lo = np.where(pos, mid, lo)
        hi = np.where(pos, hi, mid)
        if np.all(hi - lo <= 1e-13 * np.maximum(1.0, np.abs(hi))):
            break
    t = 0.5 * (lo + hi)
    x = a2 * y / (a2 + t[:, None])
    out = np.linalg.norm(y - x, axis=1)
    return np.where(inside, out, -out)


# --------------------------------------------------------------------------- parameters / truth
@dataclass
class LesionSpec:
    """One tumour: sphere of ``radius_mm`` at ``center_lps`` (pre space) and the wanted MAM."""

    center_lps: list[float]
    radius_mm: float = 10.0
    target_margin_mm: float = 6.0
    zone_rotation_deg: list[float] = field(default_factory=lambda: [20.0, -15.0, 30.0])


@dataclass
class PhantomSpec:
    """Parameters of a synthetic case. Spacing (x, y, z) mm; direction angles in degrees."""

    spacing: list[float] = field(default_factory=lambda: [0.8, 0.8, 2.5])
    size: list[int] = field(default_factory=lambda: [384, 300, 40])
    center_lps: list[float] = field(default_factory=lambda: [0.0, 5.0, 0.0])
    direction_deg: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    post_direction_deg: list[float] | None = None
    lesions: list[LesionSpec] = field(
        default_factory=lambda: [LesionSpec(center_lps=[-60.0, 5.0, 0.0])]
    )
    rotation_deg: list[float] = field(default_factory=lambda: [2.0, -1.5, 3.0])
    translation_mm: list[float] = field(default_factory=lambda: [4.0, -3.0, 2.5])
    deformation_mm: float = 3.0
    lesion_rigid_radius_mm: float = 40.0
    noise_hu: float = 12.0
    seed: int = 0


@dataclass
class LesionTruth:
    id: int
    tumor_center_pre_lps: list[float]
    tumor_center_post_lps: list[float]
    radius_mm: float
    zone_center_post_lps: list[float]
    zone_axes_mm: list[float]
    zone_rotation: list[list[float]]
    mam_mm: float
    tumor_volume_ml: float


@dataclass
class PhantomCase:
    pre: sitk.Image
    post: sitk.Image
    tumor: sitk.Image  # labels on the pre grid
    ablation: sitk.Image  # binary on the post grid
    spec: PhantomSpec
    truth: list[LesionTruth]
    transform: sitk.Transform  # post -> pre (ITK convention)

    @property
    def min_mam_mm(self) -> float:
        return min(t.mam_mm for t in self.truth)

    def truth_dict(self) -> dict[str, Any]:
        rigid = _rigid(self.spec)
        return {
            "sign_convention": "margin positive inside the ablation zone; LPS mm",
            "transform_post_to_pre": {
                "rotation_matrix": rigid["R"].tolist(),
                "center_lps": rigid["c"].tolist(),
                "translation_mm": rigid["t"].tolist(),
                "deformation_mm": self.spec.deformation_mm,
                "lesion_rigid_radius_mm": self.spec.lesion_rigid_radius_mm,
            },
            "min_mam_mm": self.min_mam_mm,
            "lesions": [asdict(t) for t in self.truth],
            "spec": asdict(self.spec),
        }


# --------------------------------------------------------------------------- transform
def _rigid(spec: PhantomSpec) -> dict[str, F64]:
    return {
        "R": geometry.rotation_matrix(spec.rotation_deg),
        "c": np.zeros(3),
        "t": np.asarray(spec.translation_mm, np.float64),
    }


def _raw_deformation(x: F64, spec: PhantomSpec) -> F64:
    """Smooth displacement field (mm) of amplitude ~ spec.deformation_mm, before lesion locking."""
    amp = spec.deformation_mm
    k = 2 * math.pi / np.array([170.0, 150.0, 130.0])
    d = np.empty_like(x)
    d[..., 0] = amp * np.sin(k[1] * x[..., 1] + 0.3) * np.cos(k[2] * x[..., 2])
    d[..., 1] = amp * np.sin(k[2] * x[..., 2] + 1.1) * np.cos(k[0] * x[..., 0])
    d[..., 2] = 0.6 * amp * np.sin(k[0] * x[..., 0] + 2.0) * np.cos(k[1] * x[..., 1])
    return d


def _lesion_anchors_post(spec: PhantomSpec) -> F64:
    """Approximate post-space lesion centres (rigid part only) used to lock the deformation."""
    r = _rigid(spec)
    c_pre = np.array([les.center_lps for les in spec.lesions], np.float64)
    # x = R^T (y - c - t) + c
    return (c_pre - r["c"] - r["t"]) @ r["R"] + r["c"]


def _deformation(x: F64, spec: PhantomSpec) -> F64:
    """Displacement d(x), exactly constant within the lock radius of each lesion anchor."""
    d = _raw_deformation(x, spec)
    anchors = _lesion_anchors_post(spec)
    r0 = spec.lesion_rigid_radius_mm
    r1 = r0 + 40.0
    for a in anchors:
        dist = np.linalg.norm(x - a, axis=-1)
        w = np.clip((r1 - dist) / (r1 - r0), 0.0, 1.0)
        w = 0.5 - 0.5 * np.cos(np.pi * w)  # smooth step: 1 inside r0, 0 beyond r1
        d = d * (1 - w[..., None]) + _raw_deformation(a[None], spec)[0] * w[..., None]
    return d


def post_to_pre(x_post: npt.ArrayLike, spec: PhantomSpec) -> F64:
    """The true transform T: post-space LPS points (..., 3) to pre-space LPS points."""
    x = np.asarray(x_post, np.float64)
    r = _rigid(spec)
    return (x - r["c"]) @ r["R"].T + r["c"] + r["t"] + _deformation(x, spec)


def pre_to_post(y_pre: npt.ArrayLike, spec: PhantomSpec, iters: int = 50) -> F64:
    """Inverse of :func:`post_to_pre` by fixed-point iteration (contractive for small d)."""
    y = np.asarray(y_pre, np.float64)
    r = _rigid(spec)
    x = (y - r["c"] - r["t"]) @ r["R"] + r["c"]
    for _ in range(iters):
        x = (y - r["c"] - r["t"] - _deformation(x, spec)) @ r["R"] + r["c"]
    return x


# --------------------------------------------------------------------------- anatomy
def _in_cylinder(p: F64, a: F64, b: F64, radius: float) -> npt.NDArray[np.bool_]:
    ab = b - a
    t = np.clip(((p - a) @ ab) / float(ab @ ab), 0.0, 1.0)
    closest = a + t[..., None] * ab
    return np.linalg.norm(p - closest, axis=-1) <= radius


def _vessel_tree(n: int = 70, seed: int = 20261121) -> list[tuple[F64, F64, float]]:
    """Fixed (anatomy, not noise) set of straight vessel segments inside the liver: (start, end,
    radius mm). Independent of the case seed so pre and post show the same anatomy."""
    rng = np.random.default_rng(seed)
    centre = np.array([-55.0, -5.0, 0.0])
    semi = np.array([85.0, 70.0, 90.0])
    out = [
        (np.array([-100.0, -40.0, -80.0]), np.array([-30.0, 40.0, 80.0]), 4.0),
        (np.array([-20.0, -50.0, -70.0]), np.array([-110.0, 30.0, 60.0]), 3.0),
    ]
    while len(out) < n:
        p = centre + rng.uniform(-0.8, 0.8, 3) * semi
        if np.sum(((p - centre) / semi) ** 2) > 0.7:
            continue
        d = rng.normal(size=3)
        d /= np.linalg.norm(d)
        length = rng.uniform(40.0, 110.0)
        out.append((p - d * length / 2, p + d * length / 2, float(rng.uniform(2.0, 4.5))))
    return out


_VESSELS = _vessel_tree()


def _vessels_clear_of(lesions: list[LesionSpec], gap_mm: float = 6.0
                      ) -> list[tuple[F64, F64, float]]:
    """The vessel tree without segments passing within ``gap_mm`` of a tumour (keeps the
    tumour and its ablation zone free of vessel contact, so test truths stay clean)."""
    out = []
    for a, b, rad in _VESSELS:
        ok = True
        for les in lesions:
            c = np.asarray(les.center_lps, np.float64)
            ab = b - a
            t = float(np.clip((c - a) @ ab / float(ab @ ab), 0.0, 1.0))
            if np.linalg.norm(a + t * ab - c) < les.radius_mm + rad + gap_mm:
                ok = False
                break
        if ok:
            out.append((a, b, rad))
    return out


def _anatomy(y: F64, spec: PhantomSpec, with_tumors: bool) -> F64:
    """HU of the noise-free anatomy at pre-space points y (..., 3)."""
    hu = np.full(y.shape[:-1], -1000.0)
    body = (y[..., 0] / 150.0) ** 2 + ((y[..., 1] - 5) / 115.0) ** 2 <= 1.0
    hu[body] = 30.0  # soft tissue / muscle
    fat = body & ((y[..., 0] / 140.0) ** 2 + ((y[..., 1] - 5) / 105.0) ** 2 > 1.0)
    hu[fat] = -90.0
    liver = (((y[..., 0] + 55) / 85.0) ** 2 + ((y[..., 1] + 5) / 70.0) ** 2
             + (y[..., 2] / 90.0) ** 2 <= 1)
    hu[liver] = 100.0
    # Parenchymal texture (a few HU, smooth) and a tree of portal/hepatic vessel segments: the
    # structure a lesion-focused registration needs, as real livers have. Measured on
    # PhantomSpec(seed=2): TRE near the zone 0.43 mm mean with the vessels, 3.1-3.3 mm without
    # them (the texture alone changes little: 0.47 mm with vessels but no texture).
    lp = y[liver]
    hu[liver] += 4.0 * (np.sin(lp[:, 0] / 9.0) * np.cos(lp[:, 1] / 11.0)
                        + np.sin(lp[:, 2] / 13.0 + lp[:, 0] / 17.0))
    vessel = np.zeros(len(lp), bool)
    for a, b, rad in _vessels_clear_of(spec.lesions):
        vessel |= _in_cylinder(lp, a, b, rad)
    hu_l = hu[liver]
    hu_l[vessel] = 175.0
    hu[liver] = hu_l
    hu[(y[..., 0] - 25) ** 2 + (y[..., 1] - 45) ** 2 <= 11.0**2] = 190.0  # aorta
    spine = (y[..., 0] - 0) ** 2 + (y[..., 1] - 80) ** 2 <= 17.0**2
    hu[spine] = 450.0
    hu[(y[..., 0] - 0) ** 2 + (y[..., 1] - 80) ** 2 <= 11.0**2] = 250.0  # cancellous core
    if with_tumors:
        for les in spec.lesions:
            c = np.asarray(les.center_lps)
            hu[np.linalg.norm(y - c, axis=-1) <= les.radius_mm] = 55.0
    return hu


def _zone_for(les: LesionSpec, center_post: F64) -> tuple[F64, F64, F64]:
    """Ellipsoidal zone (centre, semi-axes, rotation) giving exactly ``les.target_margin_mm``.

    The zone's smallest semi-axis b lies along its local y; the zone centre is offset from the
    tumour centre along that axis by s so the minor vertex lies at distance b - s from the centre.
    """
    r, m = les.radius_mm, les.target_margin_mm
    b = r + max(m, 1.0) + 3.0
    axes = np.array([b + 7.0, b, b + 4.0])
    rot = geometry.rotation_matrix(les.zone_rotation_deg)
    s = b - (r + m)
    zone_center = center_post - rot[:, 1] * s
    return zone_center, axes, rot


def make_phantom(spec: PhantomSpec | None = None) -> PhantomCase:
    """Build a deterministic synthetic case from ``spec`` (defaults: one lesion, target 6 mm)."""
    spec = spec or PhantomSpec()
    rng = np.random.default_rng(spec.seed)
    pre_grid = geometry.make_grid(spec.size, spec.spacing,
                                  geometry.rotation_matrix(spec.direction_deg),
                                  center_lps=spec.center_lps, pixel_type=sitk.sitkInt16)
    post_dir = (spec.post_direction_deg if spec.post_direction_deg is not None
                else spec.direction_deg)
    post_grid = geometry.make_grid(spec.size, spec.spacing, geometry.rotation_matrix(post_dir),
                                   center_lps=spec.center_lps, pixel_type=sitk.sitkInt16)

    # Pre scan and tumour labels.
    y = geometry.voxel_centers_lps(pre_grid)
    pre_hu = _anatomy(y, spec, with_tumors=True)
    tumor_lab = np.zeros(pre_hu.shape, np.uint16)
    for i, les in enumerate(spec.lesions, start=1):
        tumor_lab[np.linalg.norm(y - np.asarray(les.center_lps), axis=-1) <= les.radius_mm] = i
    del y

    # Post scan: anatomy at T(x), then ablation zones in post space.
    x = geometry.voxel_centers_lps(post_grid)
    post_hu = _anatomy(post_to_pre(x, spec), spec, with_tumors=False)
    abl = np.zeros(post_hu.shape, np.uint8)
    truth: list[LesionTruth] = []
    for i, les in enumerate(spec.lesions, start=1):
        c_post = pre_to_post(np.asarray(les.center_lps, np.float64)[None], spec)[0]
        zc, axes, rot = _zone_for(les, c_post)
        sd = ellipsoid_sd_grid(x, zc, axes, rot)
        rim = (sd < 0) & (sd >= -1.5)
        post_hu[rim] = np.maximum(post_hu[rim], 125.0)
        zone = sd >= 0
        post_hu[zone] = 35.0
        abl[zone] = 1
        mam = float(ellipsoid_sd(c_post[None], zc, axes, rot)[0]) - les.radius_mm
        truth.append(LesionTruth(
            id=i,
            tumor_center_pre_lps=[float(v) for v in les.center_lps],
            tumor_center_post_lps=[float(v) for v in c_post],
            radius_mm=float(les.radius_mm),
            zone_center_post_lps=[float(v) for v in zc],
            zone_axes_mm=[float(v) for v in axes],
            zone_rotation=rot.tolist(),
            mam_mm=mam,
            tumor_volume_ml=4.0 / 3.0 * math.pi * les.radius_mm**3 / 1000.0,
        ))
    del x

    def finish(hu: F64, grid: sitk.Image) -> sitk.Image:
        sig = 0.6 / np.asarray(geometry.spacing_zyx(grid))
        hu = ndimage.gaussian_filter(hu, sigma=sig)
        noise = (ndimage.gaussian_filter(rng.normal(0, 1, hu.shape), sigma=0.6)
                 * spec.noise_hu / 0.33)
        return geometry.array_to_image(np.clip(np.rint(hu + noise), -1024, 3071).astype(np.int16),
                                       grid)

    pre = finish(pre_hu, pre_grid)
    post = finish(post_hu, post_grid)
    r = _rigid(spec)
    tx = sitk.AffineTransform(3)
    tx.SetMatrix(r["R"].ravel().tolist())
    tx.SetTranslation(r["t"].tolist())
    return PhantomCase(
        pre=pre,
        post=post,
        tumor=geometry.array_to_image(tumor_lab, pre_grid),
        ablation=geometry.array_to_image(abl, post_grid),
        spec=spec,
        truth=truth,
        transform=tx,
    )


def ellipsoid_sd_grid(points: F64, center: F64, axes: F64, rot: F64) -> F64:
    """Signed distance to an ellipsoid for a large grid of points (..., 3).

    Exact (root find) within 4 mm of the surface, where the mask edge, rim and margins live;
    elsewhere the cheap bound from the normalised radius, which has the right sign.
    """
    q = (points - center) @ rot
    rho = np.sqrt(np.sum(q * q / (axes * axes), axis=-1))
    approx = (1.0 - rho) * float(axes.min())
    out = approx.copy()
    near = np.abs((1.0 - rho) * axes.max()) < 4.0
    if near.any():
        out[near] = ellipsoid_sd(points[near], center, axes, rot)
    return out


def write_case(case: PhantomCase, out_dir: str | Path) -> dict[str, Path]:
    """Write pre/post CT, masks and truth.json into ``out_dir`` (atomic writes)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "pre": out / "pre.nii.gz",
        "post": out / "post.nii.gz",
        "tumor": out / "tumor.nii.gz",
        "ablation": out / "ablation.nii.gz",
        "truth": out / "truth.json",
    }
    write_image(case.pre, paths["pre"])
    write_image(case.post, paths["post"])
    write_image(case.tumor, paths["tumor"])
    write_image(case.ablation, paths["ablation"])
    write_json_atomic(paths["truth"], case.truth_dict())
    return paths


def spec_from_dict(d: dict[str, Any]) -> PhantomSpec:
    """Rebuild a :class:`PhantomSpec` from ``asdict`` output (e.g. truth.json["spec"])."""
    d = dict(d)
    d["lesions"] = [LesionSpec(**les) for les in d.get("lesions", [])]
    return PhantomSpec(**d)


def load_truth(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())
