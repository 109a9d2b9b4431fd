"""Quality checks of a registration result and its uncertainty estimate.

:func:`check` measures similarity before/after (NCC, Mattes MI) in the metric region, the
displacement and (deformable) its Jacobian determinant, and returns failures (reasons to retry)
and warnings. :func:`disagreement` compares two transforms (restarts) on a region;
:func:`uncertainty` turns the evidence into the 95 % half-width of the registration error.
Distances are mm; transforms map post-space LPS points to pre-space points.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

from a0verify import geometry
from a0verify.registration.elastix import ElastixRun
from a0verify.registration.initial import HU_WINDOW

F64 = npt.NDArray[np.float64]

JACOBIAN_FOLD = 0.05  # det J below this = folding -> QA failure
JACOBIAN_WARN = (0.8, 1.25)  # 1st / 99th percentile outside -> warning
ZONE_VOLUME_WARN = 0.10  # |det J - 1| mean inside the zone above this -> warning
MAX_DEFORMATION_MM = 30.0  # deformable displacement beyond this -> QA failure
NCC_FAIL = 0.2  # NCC after registration below this, without a clear gain -> QA failure
NCC_GAIN = 0.03  # a low-NCC result (noisy, featureless ROI) passes only with this much gain
#: NCC after registration below this always fails, whatever the gain (pure noise: 0.00-0.05).
NCC_FLOOR = 0.1
#: QA similarity (NCC, Mattes MI) is evaluated on at most this many fixed-image voxels.
QA_SIMILARITY_VOXELS = 300_000


@dataclass
class QaResult:
    """QA figures (JSON-ready), failures (retry), warnings and images (checkerboard,
    difference: float32 HU on the fixed ROI grid)."""

    metrics: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    images: dict[str, sitk.Image] = field(default_factory=dict)


def _fmt3(v: float | None) -> str:
    return "undefined" if v is None else f"{v:.3f}"


def ncc(a: F64, b: F64) -> float | None:
    """Normalised cross-correlation of two equally long samples; None if < 10 or constant."""
    if a.size < 10:
        return None
    a = a - a.mean()
    b = b - b.mean()
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 0 else None


def mattes(fixed: sitk.Image, moving: sitk.Image, tx: sitk.Transform,
           mask: sitk.Image) -> float | None:
    """Mattes MI (32 bins; lower is better) of ``moving`` through ``tx`` on ``fixed``'s masked
    voxels; None when undefined."""
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(32)
    reg.SetMetricSamplingStrategy(reg.NONE)
    reg.SetMetricFixedMask(mask)
    reg.SetMetricUseFixedImageGradientFilter(False)  # the value needs no gradients
    reg.SetMetricUseMovingImageGradientFilter(False)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetInitialTransform(tx)
    try:
        return float(reg.MetricEvaluate(fixed, moving))
    except RuntimeError:
        return None


def subsample(img: sitk.Image, max_voxels: int) -> sitk.Image:
    """Every k_i-th voxel along axis i, the k_i making the spacing as isotropic as possible with
    at most ``max_voxels`` voxels (unchanged if it already fits; origin and direction kept)."""
    size = np.asarray(img.GetSize())
    sp = np.asarray(img.GetSpacing(), np.float64)
    target = float(sp.min())
    steps = np.ones(3, int)
    while int(np.prod(-(-size // steps))) > max_voxels:
        target *= 1.1
        steps = np.maximum(1, np.floor(target / sp + 1e-9)).astype(int)
    if steps.max() == 1:
        return img
    return img[::int(steps[0]), ::int(steps[1]), ::int(steps[2])]


def displacement_field(tx: sitk.Transform, ref: sitk.Image,
                       mm: float = 2.5) -> tuple[sitk.Image, sitk.Image]:
    """Displacement field of ``tx`` (T(x) - x, mm, vector float64) on a ~``mm`` grid covering
    ``ref``'s extent, and that grid (an empty UInt8 image)."""
    sp = np.maximum(np.asarray(ref.GetSpacing()), mm)
    size = np.maximum(np.round(np.asarray(ref.GetSize()) * np.asarray(ref.GetSpacing()) / sp)
                      .astype(int), 2)
    grid = sitk.Image([int(v) for v in size], sitk.sitkUInt8)
    grid.SetSpacing(sp.tolist())
    grid.SetDirection(ref.GetDirection())
    d = geometry.direction_matrix(ref)
    corner = np.asarray(ref.GetOrigin()) - d @ (0.5 * np.asarray(ref.GetSpacing()))
    grid.SetOrigin((corner + d @ (0.5 * sp)).tolist())
    fld = sitk.TransformToDisplacementField(tx, sitk.sitkVectorFloat64, grid.GetSize(),
                                            grid.GetOrigin(), grid.GetSpacing(),
                                            grid.GetDirection())
    return fld, grid


def stats(v: F64) -> dict[str, float]:
    """min, p1, mean, p50, p95, p99, max of ``v`` ({} when empty)."""
    if v.size == 0:
        return {}
    return {"min": float(v.min()), "p1": float(np.percentile(v, 1)), "mean": float(v.mean()),
            "p50": float(np.median(v)), "p95": float(np.percentile(v, 95)),
            "p99": float(np.percentile(v, 99)), "max": float(v.max())}


def _on(mask: sitk.Image, grid: sitk.Image) -> npt.NDArray[np.bool_]:
    return sitk.GetArrayFromImage(
        sitk.Resample(mask, grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0)) != 0


def check(f_roi: sitk.Image, m_roi: sitk.Image, f_mask: sitk.Image, zone: sitk.Image | None,
          run: ElastixRun, deformable: bool) -> QaResult:
    """QA of ``run`` on the ROI (``zone`` on the ROI grid or None)."""
    qa = QaResult()
    # similarity on a subsampled fixed grid (the statistics need no millions of voxels)
    f_q, mask_q = subsample(f_roi, QA_SIMILARITY_VOXELS), subsample(f_mask, QA_SIMILARITY_VOXELS)
    farr = sitk.GetArrayViewFromImage(f_q)
    marr = sitk.GetArrayViewFromImage(mask_q) != 0
    sim: dict[str, Any] = {}
    for name, tx in (("before", sitk.Transform()), ("after_rigid", run.rigid),
                     ("after", run.transform)):
        w = sitk.Resample(m_roi, f_q, tx, sitk.sitkLinear, HU_WINDOW[0], sitk.sitkFloat32)
        warr = sitk.GetArrayViewFromImage(w)
        sim[name] = {"ncc": ncc(farr[marr].astype(np.float64), warr[marr].astype(np.float64)),
                     "mattes_mi": mattes(f_q, m_roi, tx, mask_q)}
    qa.metrics["similarity_roi"] = sim
    qa.metrics["similarity_grid_step"] = [round(a / b) for a, b in
                                          zip(f_q.GetSpacing(), f_roi.GetSpacing(), strict=True)]
    n_after, n_before = sim["after"]["ncc"], sim["before"]["ncc"]
    improved = n_after is not None and n_before is not None and n_after >= n_before + NCC_GAIN
    if n_after is None or n_after < NCC_FLOOR or (n_after < NCC_FAIL and not improved):
        qa.failures.append(f"normalised correlation in the ROI after registration is "
                           f"{_fmt3(n_after)} (before {_fmt3(n_before)})")
    elif n_before is not None and n_after < n_before - 0.02:
        qa.failures.append(f"similarity in the ROI got worse (NCC {n_before:.3f} -> "
                           f"{n_after:.3f})")
    elif n_after < 0.5:
        qa.warnings.append(f"low similarity in the ROI after registration (NCC {n_after:.2f})")

    fld, grid = displacement_field(run.transform, f_roi)
    disp = sitk.GetArrayFromImage(fld)
    mask_g = _on(f_mask, grid)
    if not mask_g.any():
        mask_g = np.ones(mask_g.shape, bool)
    qa.metrics["displacement_mm"] = stats(np.linalg.norm(disp[mask_g], axis=1))
    if deformable:
        _check_deformation(qa, run, f_roi, fld, disp, grid, mask_g, zone)
    warped = sitk.Resample(m_roi, f_roi, run.transform, sitk.sitkLinear, HU_WINDOW[0],
                           sitk.sitkFloat32)
    qa.images = {"checkerboard": sitk.CheckerBoard(f_roi, warped, [6, 6, 3]),
                 "difference": sitk.Subtract(f_roi, warped)}
    return qa


def _check_deformation(qa: QaResult, run: ElastixRun, f_roi: sitk.Image, fld: sitk.Image,
                       disp: F64, grid: sitk.Image, mask_g: npt.NDArray[np.bool_],
                       zone: sitk.Image | None) -> None:
    rf, _ = displacement_field(run.rigid, f_roi)
    local = np.linalg.norm(disp - sitk.GetArrayViewFromImage(rf), axis=-1)
    qa.metrics["deformable_displacement_mm"] = stats(local[mask_g])
    if float(local.max()) > MAX_DEFORMATION_MM:
        qa.failures.append(f"implausible deformation of {float(local.max()):.1f} mm in the ROI")
    jac = sitk.GetArrayFromImage(sitk.DisplacementFieldJacobianDeterminant(fld))
    qa.metrics["jacobian_roi"] = stats(jac[mask_g])
    qa.metrics["jacobian_folding_fraction"] = float(np.mean(jac <= 0.0))
    if float(jac.min()) < JACOBIAN_FOLD:
        qa.failures.append(f"folding: Jacobian determinant down to {float(jac.min()):.3f}")
    else:
        lo, hi = float(np.percentile(jac[mask_g], 1)), float(np.percentile(jac[mask_g], 99))
        if lo < JACOBIAN_WARN[0] or hi > JACOBIAN_WARN[1]:
            qa.warnings.append(f"strong local volume change in the ROI (Jacobian 1st-99th "
                               f"percentile {lo:.2f}-{hi:.2f})")
    if zone is not None:
        zg = _on(zone, grid)
        if zg.any():
            qa.metrics["jacobian_zone"] = stats(jac[zg])
            qa.metrics["deformable_displacement_zone_mm"] = stats(local[zg])
            change = float(np.mean(np.abs(jac[zg] - 1.0)))
            qa.metrics["zone_volume_change"] = change
            if change > ZONE_VOLUME_WARN:
                qa.warnings.append(f"the registration changes the ablation-zone volume locally "
                                   f"by {100 * change:.0f} % on average")


def disagreement(a: sitk.Transform, b: sitk.Transform, ref: sitk.Image,
                 region: sitk.Image | None) -> dict[str, float]:
    """Statistics (:func:`stats`) of |a(x) - b(x)| (mm) over ``region`` (all of ``ref`` if None
    or empty), on a 2.5 mm grid."""
    fa, grid = displacement_field(a, ref)
    fb, _ = displacement_field(b, ref)
    diff = np.linalg.norm(sitk.GetArrayViewFromImage(fa) - sitk.GetArrayViewFromImage(fb), axis=-1)
    if region is not None:
        sel = _on(region, grid)
        if sel.any():
            diff = diff[sel]
    return stats(diff.ravel())


@dataclass(frozen=True)
class BandModel:
    """How the evidence becomes the 95 % half-width of the registration error at the tumour:
    ``hypot(floor * largest post spacing, spread * restart disagreement p95 near the zone,
    deform * non-rigid displacement p95 inside the zone)`` (mm); when the registration is
    flagged unreliable the restart term uses ``spread_unreliable`` instead of ``spread``.

    Calibrated (``benchmarks/bench_registration.py``, calibration set: 18 HCC_048 pairs, 3 per
    difficulty): registrations whose restarts agreed within 0.7 mm erred by at most 0.46 mm in
    MAM (the voxel floor, 0.9 mm at 2.5 mm slices, dominates their band); the four whose
    restarts disagreed by 1.7-2.3 mm (sliding liver, all difficulties combined) erred by 6-15 mm
    at the tumour surface - 5-6.5 times the disagreement - so an unreliable registration gets
    6 x its disagreement. The non-rigid displacement inside the zone did not separate good
    from bad registrations (up to 4.9 mm on good ones): its factor is 0."""

    floor: float = 0.35
    floor_rigid: float = 0.5
    spread: float = 1.5
    spread_unreliable: float = 6.0
    deform: float = 0.0


BAND = BandModel()
#: Evidence that the registration near the zone is unreliable (-> wide band, verdict caveat):
#: restarts that disagree by more than this (p95 near the zone, mm; calibration: good <= 0.7,
#: failed 1.7-2.3), or a similarity after registration below UNRELIABLE_NCC.
UNRELIABLE_SPREAD_MM = 1.2
#: A disagreement between UNRELIABLE_SPREAD_MM and this counts only together with a non-rigid
#: displacement inside the zone above UNRELIABLE_DEFORM_WITH_SPREAD_MM: alone it is what
#: low-texture images give (phantoms: 0.9-1.3 mm with true errors <= 1.25 mm), with a large
#: deformation it is what the failed clinical-like pairs gave (1.3-1.7 mm with 5.9-9.4 mm).
UNRELIABLE_SPREAD_ALONE_MM = 2.0
UNRELIABLE_DEFORM_WITH_SPREAD_MM = 4.5
UNRELIABLE_NCC = 0.35
#: ... or non-rigid displacement inside the zone (p95, mm) above this: the metric cannot see
#: inside the zone, so such a field is an extrapolation of a large deformation around it
#: (30 clinical-like pairs: good registrations <= 5.0 mm; the failed ones, MAM off by 2-4.4 mm
#: with restarts that agreed, 6.6-9.4 mm).
UNRELIABLE_ZONE_DEFORM_MM = 6.0


def uncertainty_terms(spacing: tuple[float, ...], method: str, spreads: list[float],
                      zone_deform_mm: float, reliable: bool = True,
                      model: BandModel = BAND) -> dict[str, float]:
    """The terms of the band (mm; :class:`BandModel`): floor, restarts, deformation."""
    sp = float(max(spacing))
    factor = model.spread if reliable else model.spread_unreliable
    return {"floor": (model.floor_rigid if method == "rigid" else model.floor) * sp,
            "restarts": factor * (max(spreads) if spreads else 0.0),
            "deformation": model.deform * zone_deform_mm}


def uncertainty(terms: dict[str, float]) -> float:
    """95 % half-width (mm) of the registration error near the zone from its terms."""
    return float(np.sqrt(sum(v * v for v in terms.values())))


def reliability_notes(metrics: dict[str, Any], spreads: list[float]) -> list[str]:
    """Reasons to distrust an accepted registration near the zone (empty: no such evidence)."""
    notes = []
    deform = metrics.get("deformable_displacement_zone_mm", {}).get("p95")
    spread = max(spreads) if spreads else 0.0
    if spread > UNRELIABLE_SPREAD_ALONE_MM or (
            spread > UNRELIABLE_SPREAD_MM and deform is not None
            and deform > UNRELIABLE_DEFORM_WITH_SPREAD_MM):
        notes.append(f"restarts disagree by {spread:.1f} mm near the zone")
    n_after = metrics.get("similarity_roi", {}).get("after", {}).get("ncc")
    if n_after is not None and n_after < UNRELIABLE_NCC:
        notes.append(f"low similarity after registration (NCC {n_after:.2f})")
    if deform is not None and deform > UNRELIABLE_ZONE_DEFORM_MM:
        notes.append(f"{deform:.1f} mm of non-rigid displacement inside the zone, where the "
                     "images cannot be compared")
    return notes
