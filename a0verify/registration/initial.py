"""Rigid starting transform for the lesion-focused registration (post = fixed, pre = moving).

Every transform here maps **post-space LPS points (mm) to pre-space LPS points** (ITK convention)
and is returned as a :class:`SimpleITK.Euler3DTransform` centred at the lesion (or image) centre.

* :func:`landmark_start` - from user landmark pairs (>= 3 pairs: least-squares rigid; 1-2 pairs:
  translation).
* :func:`coarse_start` - automatic: a cranio-caudal search for where the post scan lies in the pre
  scan (short intraprocedural post scans cover 90-120 mm of a 200-400 mm pre scan), then a
  whole-volume rigid registration at 5 mm on the overlap. Raises
  :class:`~a0verify.errors.RegistrationError` when the two scans do not show the same region.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

from a0verify import geometry
from a0verify.errors import InputError, RegistrationError

F64 = npt.NDArray[np.float64]

#: Intensities are clamped to this HU window before registration (removes -2048 padding).
HU_WINDOW = (-1000.0, 1500.0)
#: In-plane field of view below this (mm): no whole-volume coarse step (nothing to align).
COARSE_MIN_FOV_MM = 150.0
#: Grid (mm) of the coarse initialisation.
COARSE_MM = 5.0
#: Cranio-caudal search: the post scan is slid along the pre scan's z axis in these steps (mm)
#: whenever the post covers less than ``SHORT_FOV_RATIO`` of the pre scan's z extent.
Z_SEARCH_STEP_MM = 5.0
SHORT_FOV_RATIO = 0.8
#: Best correlation of body-outline profiles below this: the scans show different regions.
SAME_REGION_MIN_NCC = 0.3


def prepare(img: sitk.Image) -> sitk.Image:
    """Float32 copy clamped to :data:`HU_WINDOW` (one pass: Clamp casts to its output type)."""
    return sitk.Clamp(img, sitk.sitkFloat32, *HU_WINDOW)


def euler_from_matrix(matrix: npt.ArrayLike, center: npt.ArrayLike,
                      translation: npt.ArrayLike) -> sitk.Euler3DTransform:
    """``x -> M (x - c) + c + t`` as an Euler3D transform (M orthonormal)."""
    tx = sitk.Euler3DTransform()
    tx.SetCenter([float(v) for v in np.asarray(center, float)])
    tx.SetMatrix([float(v) for v in np.asarray(matrix, float).ravel()])
    tx.SetTranslation([float(v) for v in np.asarray(translation, float)])
    return tx


def settled(t: sitk.Euler3DTransform) -> sitk.Euler3DTransform:
    """``t`` with its angles rounded to 1e-9 rad and its translation and centre to 1e-6 mm.

    The multi-threaded sums behind a start (image moments, the coarse metric) differ in their
    last bits from run to run, and elastix's stochastic optimisation amplifies such differences
    into visibly different registrations; rounded, the same inputs give the same start."""
    out = sitk.Euler3DTransform(t)
    out.SetCenter([round(float(v), 6) for v in t.GetCenter()])
    p = [float(v) for v in t.GetParameters()]
    out.SetParameters([round(v, 9) for v in p[:3]] + [round(v, 6) for v in p[3:]])
    return out


def as_euler(tx: sitk.Transform, center: Sequence[float] | F64) -> sitk.Euler3DTransform:
    """Rigid ``tx`` (Euler/Versor/Affine with orthonormal matrix) as an Euler3D about ``center``."""
    c = np.asarray(center, np.float64)
    origin = np.asarray(tx.TransformPoint((0.0, 0.0, 0.0)))
    m = np.column_stack([np.asarray(tx.TransformPoint(tuple(e))) - origin for e in np.eye(3)])
    # x -> M x + o  ==  M (x - c) + c + t  with t = M c + o - c
    return euler_from_matrix(m, c, m @ c + origin - c)


def compose_rigid(outer: sitk.Euler3DTransform,
                  inner: sitk.Euler3DTransform) -> sitk.Euler3DTransform:
    """Euler transform equal to ``outer(inner(x))``, centred at ``inner``'s centre."""
    return as_euler(sitk.CompositeTransform([outer, inner]), inner.GetCenter())


def perturb(init: sitk.Euler3DTransform, shift_mm: float,
            angle_deg: float) -> sitk.Euler3DTransform:
    """``init`` after a small deterministic rigid perturbation (restarts)."""
    p = sitk.Euler3DTransform()
    p.SetCenter(init.GetCenter())
    a = math.radians(angle_deg)
    p.SetRotation(a, -a, a)
    p.SetTranslation([shift_mm, -shift_mm, 0.5 * shift_mm])
    return compose_rigid(init, p)


def landmark_start(landmarks: tuple[npt.ArrayLike, npt.ArrayLike],
                   center: npt.ArrayLike) -> sitk.Euler3DTransform:
    """Rigid fixed -> moving transform from corresponding LPS points ((N, 3) each): least squares
    (Kabsch) for N >= 3, the mean translation for N = 1-2. Raises InputError on bad points."""
    fpts = np.asarray(landmarks[0], np.float64).reshape(-1, 3)
    mpts = np.asarray(landmarks[1], np.float64).reshape(-1, 3)
    c = np.asarray(center, np.float64)
    if len(fpts) != len(mpts) or len(fpts) == 0 or not np.all(np.isfinite(fpts)) \
            or not np.all(np.isfinite(mpts)):
        raise InputError("landmarks: need the same number (>= 1) of finite fixed and moving points")
    if len(fpts) < 3:
        return euler_from_matrix(np.eye(3), c, (mpts - fpts).mean(axis=0))
    fc, mc = fpts.mean(0), mpts.mean(0)
    u, _, vt = np.linalg.svd((fpts - fc).T @ (mpts - mc))
    d = np.sign(np.linalg.det(vt.T @ u.T))
    r = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
    # x -> R (x - fc) + mc  ==  R (x - c) + c + t
    return euler_from_matrix(r, c, r @ (c - fc) + mc - c)


def downsample(img: sitk.Image, mm: float) -> sitk.Image:
    """``img`` on an isotropic ``mm`` grid covering it, after a Gaussian of sigma ``mm / 2``.

    Block averaging by integer factors (at most ``mm / 2`` wide) does part of the smoothing on
    the full grid cheaply; the Gaussian supplies the rest (variances add) on the ~10x smaller
    image (0.1-0.2 s instead of ~1 s for 512 x 512 x 89)."""
    sp = np.asarray(img.GetSpacing(), np.float64)
    factors = [max(1, int(mm / 2.0 // s)) for s in sp]
    if max(factors) > 1:
        img = sitk.BinShrink(img, factors)
    box_var = (np.asarray(factors) * sp) ** 2 / 12.0  # variance of a k*sp wide box (mm^2)
    sigma = np.sqrt(np.maximum((mm / 2.0) ** 2 - box_var, 0.0))
    sm = sitk.SmoothingRecursiveGaussian(img, sigma.tolist())
    lo, hi = geometry.physical_bounds(img)
    size = np.maximum(np.ceil((hi - lo) / mm).astype(int), 4)
    grid = geometry.make_grid(size.tolist(), [mm] * 3, None, ((lo + hi) / 2).tolist(),
                              sitk.sitkFloat32)
    return sitk.Resample(sm, grid, sitk.Transform(), sitk.sitkLinear, HU_WINDOW[0],
                         sitk.sitkFloat32)


def _profile(img: sitk.Image) -> tuple[F64, F64]:
    """Per-slice body-outline profile of a coarse axial image: (z mm of each slice, features
    (n, 3): body area, soft-tissue-and-denser area, bone area, each in cm^2)."""
    arr = sitk.GetArrayViewFromImage(img)
    px = float(img.GetSpacing()[0] * img.GetSpacing()[1]) / 100.0
    feats = np.stack([(arr > -400).sum((1, 2)), (arr > -150).sum((1, 2)),
                      (arr > 250).sum((1, 2))], 1).astype(np.float64) * px
    z = geometry.zyx_index_to_lps(img, np.stack([np.arange(arr.shape[0]), np.zeros(arr.shape[0]),
                                                 np.zeros(arr.shape[0])], 1).astype(float))[:, 2]
    return z, feats


def z_offset(fixed5: sitk.Image, moving5: sitk.Image) -> tuple[float, float]:
    """Cranio-caudal shift (mm, pre z - post z) that best matches the per-slice body profiles of
    two axial images on the same isotropic coarse grid spacing, and its correlation (the mean
    NCC over the overlap of the profile features that vary; 0 when none does). Shifts keeping
    at least 70 % of the post slices inside the pre scan are tried. Returns (shift, ncc)."""
    zf, ff = _profile(fixed5)
    zm, fm = _profile(moving5)
    step = float(fixed5.GetSpacing()[2])
    best = (0.0, -1.0)
    n_f = len(zf)
    lo = -(n_f - max(3, int(0.7 * n_f)))
    for k in range(lo, len(zm) - max(3, int(0.7 * n_f)) + 1):
        i0, i1 = max(0, -k), min(n_f, len(zm) - k)
        if i1 - i0 < max(3, int(0.7 * n_f)):
            continue
        a, b = ff[i0:i1], fm[i0 + k:i1 + k]
        nccs = []
        for j in range(a.shape[1]):  # features that vary along both profiles
            x, y = a[:, j] - a[:, j].mean(), b[:, j] - b[:, j].mean()
            den = math.sqrt(float((x * x).sum() * (y * y).sum()))
            if den > 1e-6 * len(x):
                nccs.append(float((x * y).sum()) / den)
        score = float(np.mean(nccs)) if nccs else 0.0
        if score > best[1]:
            best = (float(zm[0] + k * step - zf[0]), score)
    return best


def coarse_start(fixed: sitk.Image, moving: sitk.Image, center: npt.ArrayLike,
                 seed: int) -> tuple[sitk.Euler3DTransform, str]:
    """Automatic rigid start (post -> pre) about ``center`` and a description of how it was found.

    1. Both images on a 5 mm grid; a body mask (> -400 HU).
    2. When one scan covers much less cranio-caudal extent than the other (intraprocedural post
       scans: +-45-60 mm around the lesion), the shorter one's per-slice body profile is slid
       along the longer one's (:func:`z_offset`); a poor best match means the scans show
       different regions (RegistrationError). Otherwise the body masks' centres of mass.
    3. Mattes MI rigid registration at 10 then 5 mm, seeded sampling.

    A field of view inside the body (in-plane < 150 mm, or > 95 % body) has no outline to align:
    the scanner coordinates are kept (identity start).
    """
    c = np.asarray(center, np.float64)
    f5, m5 = downsample(fixed, COARSE_MM), downsample(moving, COARSE_MM)
    fb, mb = sitk.Cast(f5 > -400, sitk.sitkUInt8), sitk.Cast(m5 > -400, sitk.sitkUInt8)
    ext = [sz * sp for sz, sp in zip(fixed.GetSize(), fixed.GetSpacing(), strict=True)]
    body_fraction = float(np.mean(sitk.GetArrayViewFromImage(fb)))
    if min(ext[:2]) < COARSE_MIN_FOV_MM or body_fraction > 0.95:
        return euler_from_matrix(np.eye(3), c, np.zeros(3)), "scanner coordinates (small field " \
            "of view inside the body)"
    if not (sitk.GetArrayViewFromImage(fb).any() and sitk.GetArrayViewFromImage(mb).any()):
        raise RegistrationError("no body found in one of the scans (nothing above -400 HU)")
    ext_f = geometry.physical_bounds(fixed)
    ext_m = geometry.physical_bounds(moving)
    zf, zm = float(ext_f[1][2] - ext_f[0][2]), float(ext_m[1][2] - ext_m[0][2])
    if min(zf, zm) < SHORT_FOV_RATIO * max(zf, zm):  # the shorter scan slides along the longer
        if zf <= zm:
            dz, score = z_offset(f5, m5)
        else:
            dz, score = z_offset(m5, f5)
            dz = -dz
        if score < SAME_REGION_MIN_NCC:
            raise RegistrationError(
                f"the post scan ({zf:.0f} mm long) and the pre scan ({zm:.0f} mm) match nowhere "
                f"along the body (best body-profile correlation {score:.2f}): the scans do not "
                "show the same region")
        # in-plane: centres of mass of the body over the matched slab
        shift = np.array([0.0, 0.0, dz])
        fa, ma = sitk.GetArrayViewFromImage(fb), sitk.GetArrayViewFromImage(mb)
        fpts = geometry.zyx_index_to_lps(fb, np.argwhere(fa).astype(float))
        mpts = geometry.zyx_index_to_lps(mb, np.argwhere(ma).astype(float))
        lo_z, hi_z = fpts[:, 2].min() + dz, fpts[:, 2].max() + dz
        sel = (mpts[:, 2] >= lo_z) & (mpts[:, 2] <= hi_z)
        if sel.sum() > 10:
            shift[:2] = mpts[sel, :2].mean(0) - fpts[:, :2].mean(0)
        init = euler_from_matrix(np.eye(3), fpts.mean(0), shift)
        kind = f"cranio-caudal profile search ({dz:+.0f} mm, NCC {score:.2f}) + coarse rigid (5 mm)"
    else:
        init = sitk.Euler3DTransform(sitk.CenteredTransformInitializer(
            fb, mb, sitk.Euler3DTransform(), sitk.CenteredTransformInitializerFilter.MOMENTS))
        kind = "centre of mass + coarse rigid (5 mm)"
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(32)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(0.1, seed)
    reg.SetMetricFixedMask(sitk.BinaryDilate(fb, [2, 2, 2], sitk.sitkBall))
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(learningRate=4.0, minStep=0.05,
                                                 numberOfIterations=60, relaxationFactor=0.6)
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel([2, 1])
    reg.SetSmoothingSigmasPerLevel([4.0, 0.0])
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    reg.SetInitialTransform(init, inPlace=False)
    # one thread: the metric's per-thread sums are added in a run-dependent order otherwise, and
    # the start (hence elastix's result, QA and verdict) would change from run to run
    reg.SetNumberOfThreads(1)
    try:
        out = reg.Execute(f5, m5)
    except RuntimeError as exc:
        raise RegistrationError(f"coarse rigid initialisation failed: "
                                f"{str(exc).strip().splitlines()[-1][:160]}") from None
    return as_euler(out, c), kind

