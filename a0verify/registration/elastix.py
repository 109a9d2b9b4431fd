"""elastix parameter maps, one elastix run, and the conversion of its result to SimpleITK.

Parameter maps are plain ``{name: [str, ...]}`` dicts (what itk-elastix's ParameterObject holds),
so they can be recorded, modified per attempt and handed to a worker process. The transforms
built from elastix's output map **post-space LPS points (mm) to pre-space points** and equal
transformix's own deformation field (tested). :mod:`a0verify.registration.elastix_backend` loads
the itk-elastix classes; this module only uses them.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from a0verify.registration import elastix_backend
from a0verify.registration.initial import compose_rigid

ParamMap = dict[str, list[str]]

#: Coarsest pyramid voxel (mm) per axis: shrink factors are capped at round(this / spacing).
PYRAMID_MAX_VOXEL_MM = 4.0
#: Percentiles (of the fixed ROI inside the metric mask) that bound the intensities elastix sees.
METRIC_WINDOW_PCT = (1.0, 99.0)


class ElastixFailed(Exception):
    """elastix stopped with an error, or its result is unusable (message: its last error line)."""


@dataclass
class ElastixRun:
    """One registration: the rigid part (initialisation included), the final transform (rigid,
    or B-spline o rigid), elastix's seconds and its output maps (initial transform's map first)."""

    rigid: sitk.Euler3DTransform
    transform: sitk.Transform
    seconds: float
    elastix_maps: list[ParamMap] = field(default_factory=list)


def parameter_file(name: str) -> Path:
    """Path of a parameter map shipped in the package (``rigid``, ``bspline``)."""
    return Path(str(resources.files("a0verify.registration") / "params" / f"{name}.txt"))


def load_map(path: Path, overrides: ParamMap | None = None) -> ParamMap:
    """The parameter map in ``path`` with ``overrides`` applied on top."""
    po = elastix_backend.load().parameter_object()
    po.ReadParameterFile(str(path))
    pm = {k: list(v) for k, v in po.GetParameterMap(0).items()}
    pm.update(overrides or {})
    return pm


def cap_pyramid(pm: ParamMap, spacing: Sequence[float]) -> None:
    """Cap the pyramid shrink factors of ``pm`` (in place) so that no level's voxel is coarser
    than about :data:`PYRAMID_MAX_VOXEL_MM` along any axis (factor <= round(4 mm / spacing)).

    The shipped schedules suit 0.7-0.8 mm in-plane CT (a factor of 4 gives ~3 mm voxels); on a
    1.9 mm grid the same factor gives 7.6 mm voxels, which blurs the 2-5 mm liver vessels (the
    only texture near the zone) away and lets the coarsest rigid level drift (seen: 30 mm)."""
    cap = [max(1, round(PYRAMID_MAX_VOXEL_MM / float(sp))) for sp in spacing]
    for key in ("FixedImagePyramidSchedule", "MovingImagePyramidSchedule"):
        if key in pm:
            vals = [int(float(v)) for v in pm[key]]
            pm[key] = [str(min(v, cap[i % 3])) for i, v in enumerate(vals)]


def metric_window(f_roi: sitk.Image, m_roi: sitk.Image,
                  f_mask: sitk.Image) -> tuple[sitk.Image, sitk.Image]:
    """Copies of the ROIs clamped to the :data:`METRIC_WINDOW_PCT` percentiles (HU) of the fixed
    ROI inside the metric mask, for elastix only (QA uses the unclamped ROIs).

    Mattes MI spreads its bins over the image's intensity range; a few air / fat / bone voxels
    stretch it to ~2500 HU (~80 HU per bin), so liver and vessels would share 1-2 bins."""
    vals = sitk.GetArrayViewFromImage(f_roi)[sitk.GetArrayViewFromImage(f_mask) != 0]
    if vals.size < 100:
        return f_roi, m_roi
    lo, hi = (float(v) for v in np.percentile(vals, METRIC_WINDOW_PCT))
    if not hi > lo:
        return f_roi, m_roi
    return (sitk.Clamp(f_roi, sitk.sitkFloat32, lo, hi),
            sitk.Clamp(m_roi, sitk.sitkFloat32, lo, hi))


def init_map(init: sitk.Euler3DTransform, fixed: sitk.Image) -> ParamMap:
    """elastix transform-parameter map of an Euler initial transform (fixed-image geometry)."""
    return {
        "Transform": ["EulerTransform"],
        "NumberOfParameters": ["6"],
        "TransformParameters": [repr(float(v)) for v in init.GetParameters()],
        "CenterOfRotationPoint": [repr(float(v)) for v in init.GetCenter()],
        "ComputeZYX": ["false"],
        "InitialTransformParameterFileName": ["NoInitialTransform"],
        "HowToCombineTransforms": ["Compose"],
        "FixedImageDimension": ["3"],
        "MovingImageDimension": ["3"],
        "FixedInternalImagePixelType": ["float"],
        "MovingInternalImagePixelType": ["float"],
        "UseDirectionCosines": ["true"],
        "Size": [str(v) for v in fixed.GetSize()],
        "Index": ["0", "0", "0"],
        "Spacing": [repr(float(v)) for v in fixed.GetSpacing()],
        "Origin": [repr(float(v)) for v in fixed.GetOrigin()],
        "Direction": [repr(float(v)) for v in fixed.GetDirection()],
        "ResampleInterpolator": ["FinalLinearInterpolator"],
        "Resampler": ["DefaultResampler"],
        "DefaultPixelValue": ["-1000"],
        "ResultImagePixelType": ["float"],
        "ResultImageFormat": ["nrrd"],
    }


def bspline_from_map(pm: ParamMap) -> sitk.BSplineTransform:
    """SimpleITK B-spline transform with exactly the coefficient grid of an elastix map."""
    size = [int(v) for v in pm["GridSize"]]
    spacing = [float(v) for v in pm["GridSpacing"]]
    origin = [float(v) for v in pm["GridOrigin"]]
    direction = [float(v) for v in pm["GridDirection"]]
    order = int(pm.get("BSplineTransformSplineOrder", ["3"])[0])
    params = np.asarray([float(v) for v in pm["TransformParameters"]], np.float64)
    n = int(np.prod(size))
    coeffs = []
    for d in range(3):  # elastix: all x coefficients (x fastest), then y, then z
        c = sitk.GetImageFromArray(params[d * n:(d + 1) * n].reshape(size[::-1]))
        c.SetOrigin(origin)
        c.SetSpacing(spacing)
        c.SetDirection(direction)
        coeffs.append(c)
    return sitk.BSplineTransform(coeffs, order)


def euler_from_map(pm: ParamMap) -> sitk.Euler3DTransform:
    """SimpleITK Euler3D transform of an elastix EulerTransform map."""
    p = [float(v) for v in pm["TransformParameters"]]
    tx = sitk.Euler3DTransform()
    tx.SetCenter([float(v) for v in pm["CenterOfRotationPoint"]])
    if pm.get("ComputeZYX", ["false"])[0] == "true":
        tx.SetComputeZYX(True)
    tx.SetRotation(p[0], p[1], p[2])
    tx.SetTranslation(p[3:6])
    return tx


def run_maps(f_roi: sitk.Image, m_roi: sitk.Image, f_mask: sitk.Image,
             m_mask: sitk.Image | None, init: sitk.Euler3DTransform, maps: list[ParamMap],
             threads: int | None = None) -> tuple[list[ParamMap], float]:
    """Run elastix; returns its output parameter maps (the initial transform's map first, then
    one per stage: plain data, so a worker process can send it back) and the seconds it took.

    ``threads`` sets ITK's default thread count first (``None``: unchanged). Raises
    :class:`ElastixFailed` with elastix's last error line."""
    elastix = elastix_backend.load()
    if threads:
        elastix_backend.set_threads(threads)
    t0 = time.perf_counter()
    pobj = elastix.parameter_object()
    for pm in maps:
        pobj.AddParameterMap(pm)
    ipobj = elastix.parameter_object()
    ipobj.AddParameterMap(init_map(init, f_roi))
    with tempfile.TemporaryDirectory(prefix="a0v-elx-") as tmp:
        elx = elastix.registration(f_roi, m_roi)
        elx.SetParameterObject(pobj)
        elx.SetInitialTransformParameterObject(ipobj)
        elx.SetFixedMask(elastix.image(f_mask, "UC"))
        if m_mask is not None:
            elx.SetMovingMask(elastix.image(m_mask, "UC"))
        elx.SetLogToConsole(False)
        elx.SetLogToFile(True)
        elx.SetOutputDirectory(tmp)
        try:
            elx.UpdateLargestPossibleRegion()
        except Exception as exc:  # elastix raises RuntimeError with a long log
            log = Path(tmp, "elastix.log")
            text = log.read_text(errors="replace") if log.exists() else str(exc)
            lines = [ln.strip() for ln in text.splitlines() if "rror" in ln or "samples" in ln]
            if os.environ.get("A0VERIFY_DEBUG"):
                print(text[-3000:])
            tail = str(exc).strip().splitlines()[-1:] or ["?"]
            raise ElastixFailed((lines[-1] if lines else tail[0])[:200]) from None
        tpo = elx.GetTransformParameterObject()
        out_maps = [{k: list(v) for k, v in tpo.GetParameterMap(i).items()}
                    for i in range(tpo.GetNumberOfParameterMaps())]
    return out_maps, time.perf_counter() - t0


def run_from_maps(all_maps: list[ParamMap], n_stages: int, init: sitk.Euler3DTransform,
                  seconds: float) -> ElastixRun:
    """SimpleITK transforms (post -> pre) from elastix's output maps (see :func:`run_maps`);
    raises :class:`ElastixFailed` on non-finite parameters (divergence)."""
    out_maps = all_maps[len(all_maps) - n_stages:]
    for pm in out_maps:
        if not all(math.isfinite(float(v)) for v in pm["TransformParameters"]):
            raise ElastixFailed("non-finite transform parameters (divergence)")
    rigid = compose_rigid(euler_from_map(out_maps[0]), init)
    # elastix composition: T(x) = B(R(I(x))); SimpleITK composite applies the last first.
    final: sitk.Transform = rigid
    if len(out_maps) > 1:
        final = sitk.CompositeTransform([bspline_from_map(out_maps[1]), rigid])
    return ElastixRun(rigid=rigid, transform=final, seconds=seconds, elastix_maps=all_maps)


def run_elastix(f_roi: sitk.Image, m_roi: sitk.Image, f_mask: sitk.Image,
                m_mask: sitk.Image | None, init: sitk.Euler3DTransform, maps: list[ParamMap],
                threads: int | None = None) -> ElastixRun:
    """One elastix registration in this process (:func:`run_maps` + :func:`run_from_maps`)."""
    out, seconds = run_maps(f_roi, m_roi, f_mask, m_mask, init, maps, threads)
    return run_from_maps(out, len(maps), init, seconds)


def run_job(f_roi: sitk.Image, m_roi: sitk.Image, f_mask: sitk.Image, m_mask: sitk.Image | None,
            init: sitk.Euler3DTransform, maps: list[ParamMap],
            threads: int | None) -> tuple[str, Any, float]:
    """:func:`run_maps` for a worker process: ``("ok", maps, s)`` or ``("failed", msg, 0)`` (an
    elastix failure is a result, not a reason to recompute elsewhere)."""
    try:
        out, seconds = run_maps(f_roi, m_roi, f_mask, m_mask, init, maps, threads)
    except ElastixFailed as exc:
        return "failed", str(exc), 0.0
    return "ok", out, seconds
