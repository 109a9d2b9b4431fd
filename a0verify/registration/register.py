"""Lesion-focused registration, fixed = post CT, moving = pre CT.

The transform maps **post-space (fixed) LPS points to pre-space (moving) LPS points** (ITK
convention), so ``sitk.Resample(pre_image, post_image, transform)`` carries pre-grid images onto
the post grid.

:func:`register` (``method="deformable"``; ``"rigid"`` stops after step 3):

0. Inputs (:mod:`~a0verify.registration.inputs`): the user's masks and the automatic ones
   (:mod:`~a0verify.registration.artefacts`: probe, metal streaks, gas; the liver around the zone).
1. Start (:mod:`~a0verify.registration.initial`): user landmarks, else a cranio-caudal search
   (short post scans) or the body's centre of mass, then a coarse whole-volume rigid at 5 mm,
   then the organ search (the liver may have slid against the body wall).
2. ROI and metric masks (:mod:`~a0verify.registration.roi`): a box around the ablation zone; the
   metric leaves out the zone, the tumour and what changes between the scans, and stays in the
   liver.
3. elastix rigid (Euler, Mattes MI) inside the ROI (:mod:`~a0verify.registration.elastix`).
4. elastix cubic B-spline with a bending-energy penalty inside the ROI.
5. QA and restarts (:mod:`~a0verify.registration.qa`); a failed check moves one rung down the
   retry ladder (:data:`LADDER`); after the last rung a
   :class:`~a0verify.errors.RegistrationError` is raised. An accepted result carries its 95 %
   half-width and, when the evidence is weak, reliability notes (the verdict's caveat).

Parameter maps are the files in ``a0verify/registration/params`` (recorded with their sha256);
the random samplers are seeded, each elastix run uses one thread (:data:`ELASTIX_THREADS`) and
the start is rounded (:func:`~a0verify.registration.initial.settled`), so the same inputs give
the same registration, run after run.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

from a0verify import geometry, parallel
from a0verify.errors import InputError, RegistrationError
from a0verify.registration import elastix_backend, initial, qa, roi, slide
from a0verify.registration.elastix import (
    ElastixFailed,
    ElastixRun,
    ParamMap,
    cap_pyramid,
    load_map,
    metric_window,
    parameter_file,
    run_from_maps,
    run_job,
    run_maps,
)
from a0verify.registration.inputs import Case, prepare_case
from a0verify.registration.result import RegistrationResult, write_registration_outputs

METHODS = ("none", "rigid", "deformable")
#: After a slide, the metric keeps only the tissue shown to move with the lesion when it holds at
#: least this much (ml; a 16 mm block is ~4 ml); else the organ mask stays as it is.
MIN_SLIDE_METRIC_ML = 25.0
#: Restart iterations as a fraction of the main run's (the restart runs beside the main run, so
#: full iterations cost CPU time, not wall time).
RESTART_ITERATIONS = 1.0
RESTART_FAIL_MM = 5.0  # p95 disagreement between restarts above this -> QA failure
#: Threads of each elastix run. Multi-threaded elastix is not reproducible (its per-thread
#: metric sums are added in a run-dependent order and the stochastic optimiser amplifies the
#: difference: on case02, MAM 2.43 and 3.41 mm from two identical runs); the second core runs
#: the restart beside the main run instead.
ELASTIX_THREADS = 1


@dataclass(frozen=True)
class Attempt:
    """One rung of the retry ladder: what changes against the first attempt."""

    pad_extra_mm: float = 0.0  # added to the ROI padding
    seed_offset: int = 0  # added to the sampler seed
    sampler: str = "RandomCoordinate"  # elastix ImageSampler
    samples_factor: int = 1  # x NumberOfSpatialSamples
    bending_factor: float = 1.0  # x the B-spline bending-energy weight (folding, wild fields)


#: The retry ladder: bigger ROI, other samples, a sparse-mask-aware sampler, more samples and a
#: stiffer B-spline on each retry.
LADDER: tuple[Attempt, ...] = (
    Attempt(),
    Attempt(15.0, 1000, "RandomSparseMask", 2, 4.0),
    Attempt(30.0, 2000, "RandomSparseMask", 3, 16.0),
)


@dataclass(frozen=True)
class RegistrationSettings:
    """How to register (validated on creation; InputError on bad values).

    ``method``: ``none`` (identity), ``rigid`` or ``deformable``; ``roi_pad_mm``: ROI padding
    around the zone (mm); ``threads``: bound on SimpleITK/Numba threads and on elastix runs side by
    side (each on :data:`ELASTIX_THREADS`, for reproducibility) (None: all usable
    CPUs); ``seed``: sampler seed; ``restarts``: extra runs (other seed, perturbed start) whose
    disagreement feeds the uncertainty; ``ladder``: the attempts; ``param_overrides``:
    ``{"rigid"|"bspline": {elastix parameter: [values]}}`` on top of the shipped maps;
    ``auto_exclude``: leave probe / metal streaks / gas out of the metric
    (:func:`~a0verify.registration.artefacts.artefact_mask`); ``organ_metric``: without a liver
    mask, restrict the metric to the organ around the zone
    (:func:`~a0verify.registration.artefacts.zone_organ_mask`)."""

    method: str = "deformable"
    roi_pad_mm: float = 35.0
    threads: int | None = None
    seed: int = 121212
    restarts: int = 1
    ladder: tuple[Attempt, ...] = LADDER
    param_overrides: Mapping[str, Mapping[str, Sequence[str]]] = field(default_factory=dict)
    auto_exclude: bool = True
    organ_metric: bool = True

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise InputError(f"unknown registration method {self.method!r}; use one of "
                             f"{METHODS}")
        if self.restarts < 0 or not self.ladder or self.roi_pad_mm <= 0:
            raise InputError("registration settings: restarts >= 0, a non-empty ladder and a "
                             "positive ROI padding are required")


@dataclass(frozen=True)
class RegistrationMasks:
    """What the registration knows about the case besides the images (all optional).

    ``zone``: ablation zone (post grid or any grid: resampled by nearest neighbour), the ROI
    centre, excluded from the metric; ``tumor``: tumour on the pre grid (excluded there);
    ``liver``: post-grid liver (restricts the metric); ``exclude``: more post-grid exclusions;
    ``landmarks``: ``(fixed_points, moving_points)``, (N, 3) LPS mm each, corresponding pairs."""

    zone: sitk.Image | None = None
    tumor: sitk.Image | None = None
    liver: sitk.Image | None = None
    exclude: sitk.Image | None = None
    landmarks: tuple[npt.ArrayLike, npt.ArrayLike] | None = None


def _cpu_seconds() -> float:
    """CPU seconds of this process and of its finished child processes."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _stage_maps(settings: RegistrationSettings, attempt: Attempt, spacing: Sequence[float],
                seed: int) -> list[ParamMap]:
    """The elastix maps of one attempt (shipped files + overrides + the ladder's changes)."""
    over = settings.param_overrides
    maps = [load_map(parameter_file("rigid"), {"RandomSeed": [str(seed)],
                                               **{k: list(v) for k, v in
                                                  over.get("rigid", {}).items()}})]
    if settings.method == "deformable":
        bmap = load_map(parameter_file("bspline"), {"RandomSeed": [str(seed + 1)],
                                                    **{k: list(v) for k, v in
                                                       over.get("bspline", {}).items()}})
        bmap["Metric1Weight"] = [repr(float(bmap["Metric1Weight"][0]) * attempt.bending_factor)]
        maps.append(bmap)
    for pm in maps:  # one sampler / sample count per metric (bending energy has its own)
        cap_pyramid(pm, spacing)
        pm["ImageSampler"] = [attempt.sampler] * len(pm["ImageSampler"])
        pm["NumberOfSpatialSamples"] = [str(int(float(v)) * attempt.samples_factor)
                                        for v in pm["NumberOfSpatialSamples"]]
    return maps


def _restart_maps(maps: list[ParamMap], k: int) -> list[ParamMap]:
    return [dict(pm, RandomSeed=[str(int(pm["RandomSeed"][0]) + 7 * (k + 1))],
                 MaximumNumberOfIterations=[str(max(30, round(
                     int(pm["MaximumNumberOfIterations"][0]) * RESTART_ITERATIONS)))])
            for pm in maps]


@dataclass
class _Outcome:
    run: ElastixRun
    region: roi.Roi
    check: qa.QaResult
    spreads: list[float]
    info: dict[str, Any]
    elastix_range: tuple[float, float]
    mask_fraction: float


@dataclass
class _Run:
    """State of one :func:`register` call: thread budget, stage timings, the restart worker and
    what it reported (warnings, CPU seconds), start times (wall, CPU)."""

    budget: int
    worker: parallel.Worker
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    cpu_s: float = 0.0
    start: tuple[float, float] = (0.0, 0.0)


def _attempt(case: Case, init: sitk.Euler3DTransform, settings: RegistrationSettings,
             k: int, pool: _Run) -> _Outcome | str:
    """One rung of the ladder: the outcome, or the reason it failed."""
    budget, timings = pool.budget, pool.timings
    rung = settings.ladder[k]
    pad, seed = settings.roi_pad_mm + rung.pad_extra_mm, settings.seed + rung.seed_offset
    t = time.perf_counter()
    region = roi.roi_and_masks(case.fixed, case.moving, init, pad, zone=case.zone,
                               exclude=case.exclude, liver=case.liver,
                               moving_exclude=case.moving_exclude)
    if region.fixed_mask is None:
        raise RegistrationError("the metric mask is empty: the ablation zone / exclusions "
                                "cover the whole region of interest")
    maps = _stage_maps(settings, rung, case.fixed.GetSpacing(), seed)
    info: dict[str, Any] = {"attempt": k + 1, "roi_pad_mm": pad, "seed": seed,
                            "sampler": rung.sampler}
    if settings.method == "deformable":
        info["bending_weight"] = float(maps[1]["Metric1Weight"][0])
    timings["roi"] = time.perf_counter() - t
    e_fix, e_mov = metric_window(region.fixed, region.moving, region.fixed_mask)
    args = (e_fix, e_mov, region.fixed_mask, region.moving_mask)
    # Restarts (-> uncertainty): other seeds, a perturbed start. They do not depend on the main
    # run: with a budget of >= 2 threads each runs in the worker process beside the main run
    # (every elastix run on ELASTIX_THREADS; the B-spline stage gains little from a 2nd thread).
    rstarts = [(initial.perturb(init, 2.0 * (j + 1), 1.0), _restart_maps(maps, j))
               for j in range(settings.restarts)]
    use_worker = bool(rstarts) and budget > len(rstarts) and pool.worker.active
    jobs = [pool.worker.submit(run_job, *args, rinit, rmaps, ELASTIX_THREADS,
                               name=f"registration restart {j + 1}")
            for j, (rinit, rmaps) in enumerate(rstarts)] if use_worker else []
    try:
        out, secs = run_maps(*args, init, maps, ELASTIX_THREADS)
        run = run_from_maps(out, len(maps), init, secs)
    except ElastixFailed as exc:
        if jobs:  # the restart belongs to the failed attempt: stop it
            pool.worker.reset()
        return f"elastix: {exc}"
    finally:
        elastix_backend.set_threads(budget)
    timings["elastix"] = run.seconds
    t = time.perf_counter()
    zone_roi = roi.crop_like(case.zone, region.fixed)
    check = qa.check(region.fixed, region.moving, region.fixed_mask, zone_roi, run,
                     settings.method == "deformable")
    timings["qa"] = time.perf_counter() - t
    t = time.perf_counter()
    spreads: list[float] = []
    near = roi.near_region(zone_roi)
    for j, (rinit, rmaps) in enumerate(rstarts):
        if jobs:
            status, payload, rsecs = jobs[j].result(warnings=pool.warnings)
            pool.cpu_s += jobs[j].cpu_seconds if jobs[j].where == "worker" else 0.0
        else:
            status, payload, rsecs = run_job(*args, rinit, rmaps, ELASTIX_THREADS)
        try:
            if status != "ok":
                raise ElastixFailed(payload)
            rrun = run_from_maps(payload, len(rmaps), rinit, rsecs)
        except ElastixFailed as exc:
            check.failures.append(f"restart {j + 1} failed: {exc}")
            break
        st = qa.disagreement(run.transform, rrun.transform, region.fixed, near)
        check.metrics.setdefault("restart_disagreement_mm", []).append(st)
        spreads.append(st.get("p95", 0.0))
    elastix_backend.set_threads(budget)  # the restarts in this process set 1
    timings["restarts"] = time.perf_counter() - t
    if spreads and max(spreads) > RESTART_FAIL_MM:
        check.failures.append(f"restarts disagree by {max(spreads):.1f} mm (95th percentile) "
                              "near the zone: the optimum is not stable")
    if check.failures:
        return "; ".join(check.failures)
    window = sitk.GetArrayViewFromImage(e_fix)
    return _Outcome(run, region, check, spreads, info, (float(window.min()), float(window.max())),
                    float(np.mean(sitk.GetArrayViewFromImage(region.fixed_mask))))


def register(fixed: sitk.Image, moving: sitk.Image, masks: RegistrationMasks | None = None,
             settings: RegistrationSettings | None = None,
             restart_worker: parallel.Worker | None = None) -> RegistrationResult:
    """Register ``moving`` (pre CT) onto ``fixed`` (post CT); the transform maps post -> pre.

    Steps as in the module docstring; ``masks`` and ``settings`` default to none and to
    :class:`RegistrationSettings` (deformable). ``restart_worker``: a
    :class:`~a0verify.parallel.Worker` started earlier by the caller (warmed with
    ``elastix_backend.load``) for the restarts; None starts one here. A worker process that
    dies is reported in the warnings (its restart then runs here). Raises InputError for
    unusable inputs and RegistrationError when the scans cannot be registered (different
    regions, no overlap, every attempt of the ladder failed its checks).
    """
    masks = masks or RegistrationMasks()
    settings = settings or RegistrationSettings()
    t0, c0 = time.perf_counter(), _cpu_seconds()
    if settings.method == "none":
        return RegistrationResult("none", sitk.Euler3DTransform(), {}, 0.0, [], [],
                                  {"registration": 0.0})
    parallel.limit_threads(settings.threads)
    budget = int(settings.threads) if settings.threads else parallel.usable_cpus()
    elastix_backend.preload()
    worker = restart_worker or parallel.Worker(  # started now: its start-up overlaps step 1
        "registration restart", warm=elastix_backend.load,
        start=bool(settings.restarts) and budget > settings.restarts)
    pool = _Run(budget, worker, start=(t0, c0))
    try:
        return _register(fixed, moving, masks, settings, pool)
    finally:
        if restart_worker is None:
            worker.close()


def _register(fixed: sitk.Image, moving: sitk.Image, masks: RegistrationMasks,
              settings: RegistrationSettings, pool: _Run) -> RegistrationResult:
    t = time.perf_counter()
    case = prepare_case(
        fixed, moving, zone=masks.zone, tumor=masks.tumor, liver=masks.liver,
        exclude=masks.exclude, auto_exclude=settings.auto_exclude,
        organ_metric=settings.organ_metric,
        box_pad_mm=settings.roi_pad_mm + max(a.pad_extra_mm for a in settings.ladder) + 5.0)
    pool.timings["masks"] = time.perf_counter() - t
    t = time.perf_counter()
    if masks.landmarks is not None:
        init, init_kind = initial.landmark_start(masks.landmarks, case.center), "landmarks"
    else:
        init, init_kind = initial.coarse_start(case.fixed, case.moving, case.center,
                                               settings.seed)
    init = initial.settled(init)
    if case.liver is not None and case.zone is not None and masks.landmarks is None:
        init, init_kind = _organ_search(case, init, init_kind, settings.roi_pad_mm)
        init = initial.settled(init)
    pool.timings["init"] = time.perf_counter() - t
    failures: list[str] = []
    log: list[dict[str, Any]] = []
    for k in range(len(settings.ladder)):
        got = _attempt(case, init, settings, k, pool)
        if isinstance(got, str):
            failures.append(f"attempt {k + 1}: {got}")
            log.append({"attempt": k + 1, "failure": got})
            continue
        log.append(got.info)
        got.check.metrics.update(initialisation=init_kind, attempts=log,
                                 automatic_masks=case.found)
        return _result(case, settings, got, init, failures, pool)
    raise RegistrationError(f"{settings.method} registration failed after "
                            f"{len(settings.ladder)} attempts: " + " | ".join(failures)[:600])


def _organ_search(case: Case, init: sitk.Euler3DTransform, kind: str,
                  pad_mm: float) -> tuple[sitk.Euler3DTransform, str]:
    """:func:`slide.organ_slide` on the organ's interior (3 mm inside it) in the ROI, without
    the zone and exclusions. When it finds a slide, the organ mask (hence the metric) keeps
    only the blocks of its ``metric_mask`` (when they hold >= MIN_SLIDE_METRIC_ML)."""
    assert case.zone is not None and case.liver is not None
    box = geometry.roi_box_around_lps(case.fixed, roi.mask_points(case.zone), pad_mm)
    zone = geometry.crop(case.zone, box)
    hole = zone if case.exclude is None else zone | geometry.crop(case.exclude, box)
    sample = roi.erode(geometry.crop(case.liver, box), 3.0) & (roi.dilate(hole, 3.0) == 0)
    found = slide.organ_slide(geometry.crop(case.fixed, box), case.moving, sample, zone, init)
    case.found["organ_search"] = found.info
    if found.transform is init:
        return init, kind
    if found.metric_mask is not None:
        kept = case.liver & sitk.Resample(found.metric_mask, case.liver, sitk.Transform(),
                                          sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
        ml = float(np.sum(sitk.GetArrayViewFromImage(kept))) * geometry.voxel_volume_ml(kept)
        case.found["organ_search"]["metric_ml"] = ml
        if ml >= MIN_SLIDE_METRIC_ML:
            case.liver = kept
    return found.transform, (f"{kind}; organ search {found.info['dz_mm']:+.0f} mm "
                             "cranio-caudal")


def _result(case: Case, settings: RegistrationSettings, got: _Outcome,
            init: sitk.Euler3DTransform, failures: list[str], pool: _Run) -> RegistrationResult:
    timings = pool.timings
    pfiles = [parameter_file("rigid")] + ([parameter_file("bspline")]
                                          if settings.method == "deformable" else [])
    metrics = got.check.metrics
    metrics.update({
        "initial_transform": {"center_lps": list(init.GetCenter()),
                              "parameters": list(init.GetParameters())},
        "rigid_transform": {"center_lps": list(got.run.rigid.GetCenter()),
                            "parameters_rad_mm": list(got.run.rigid.GetParameters())},
        "roi_size_voxels": list(got.region.fixed.GetSize()),
        "roi_origin_lps": list(got.region.fixed.GetOrigin()),
        "metric_window_hu": list(got.elastix_range),
        "metric_mask_fraction": got.mask_fraction,
        "parameter_sha256": {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in pfiles},
        "threads": settings.threads,
        "param_overrides": {k: {n: list(v) for n, v in m.items()}
                            for k, m in settings.param_overrides.items()},
    })
    warns = list(got.check.warnings)
    if settings.method == "rigid":
        warns.append("rigid registration: local (non-rigid) motion near the zone is not "
                     "modelled and not included in uncertainty_mm")
    if failures:
        warns.append(f"registration needed {len(failures) + 1} attempts ({failures[0]})")
    warns += pool.warnings
    timings["registration"] = time.perf_counter() - pool.start[0]
    timings["registration_cpu"] = _cpu_seconds() - pool.start[1] + pool.cpu_s  # with workers
    zone_deform = metrics.get("deformable_displacement_zone_mm", {}).get("p95", 0.0)
    notes = qa.reliability_notes(metrics, got.spreads)
    terms = qa.uncertainty_terms(case.fixed.GetSpacing(), settings.method, got.spreads,
                                 zone_deform, reliable=not notes)
    if notes:
        warns.append("registration unreliable near the zone: " + "; ".join(notes))
    return RegistrationResult(
        method=settings.method, transform=got.run.transform, metrics=metrics,
        uncertainty_mm=qa.uncertainty(terms), parameter_files=[p.name for p in pfiles],
        warnings=warns, timings_s=timings, qa_images=got.check.images,
        uncertainty_terms=terms, reliability_notes=notes)


__all__ = ["LADDER", "METHODS", "Attempt", "RegistrationMasks", "RegistrationResult",
           "RegistrationSettings", "register", "write_registration_outputs"]
