"""itk-elastix access (fast direct loading) and restarts run in forked workers.

The fast loader must give the very same registration as ITK's lazy loader, and a restart run in
a forked worker the very same maps as one run in this process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from a0verify import geometry, parallel
from a0verify.registration import elastix, elastix_backend, initial, roi

ROOT = Path(__file__).resolve().parents[1]


def _run_py(code: str, **env: str) -> dict[str, object]:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, env={**os.environ, **env}, timeout=600, check=True)
    got: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return got


def test_fast_load_skips_the_unneeded_itk_modules() -> None:
    """The direct load gives the classes without ITK's lazy loader pulling in every declared
    dependency (e.g. the 137 MB ImageIntensity module, 6-7 s on its own)."""
    got = _run_py(
        "import json, sys, time\n"
        "t = time.perf_counter()\n"
        "from a0verify.registration import elastix_backend as eb\n"
        "e = eb.load()\n"
        "print(json.dumps({'fast': e.fast, 's': time.perf_counter() - t,\n"
        "  'intensity': 'itk._ITKImageIntensityPython' in sys.modules,\n"
        "  'cls': e.registration_cls.__name__}))\n")
    assert got["fast"] is True
    assert got["intensity"] is False
    assert got["cls"] == "itkElastixRegistrationMethodIF3IF3"


def test_image_conversion_keeps_voxels_and_oblique_geometry() -> None:
    """Voxel values (float32 and uint8), spacing (mm), origin and oblique direction cosines are
    carried over exactly."""
    rng = np.random.default_rng(3)
    arr = rng.normal(0, 100, (7, 9, 11)).astype(np.float32)  # z, y, x
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((0.73, 0.81, 2.5))
    img.SetOrigin((-120.5, 33.25, -401.0))
    rot = geometry.direction_matrix(img)
    c, s = np.cos(0.3), np.sin(0.3)
    rot = np.array([[c, -s, 0.0], [s * 0.8, c * 0.8, -0.6], [s * 0.6, c * 0.6, 0.8]])
    img.SetDirection(rot.ravel().tolist())
    e = elastix_backend.load()
    out = e.image(img)
    np.testing.assert_array_equal(e.buffer_f.GetArrayViewFromImage(out), arr)
    np.testing.assert_allclose(list(out.GetSpacing()), img.GetSpacing(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(list(out.GetOrigin()), img.GetOrigin(), rtol=0, atol=1e-12)
    d = out.GetDirection().GetVnlMatrix()
    got = np.array([[d.get(i, j) for j in range(3)] for i in range(3)])
    np.testing.assert_allclose(got, rot, rtol=0, atol=1e-12)
    mask = sitk.Cast(img > 50, sitk.sitkUInt8)
    out_m = e.image(mask, "UC")
    np.testing.assert_array_equal(e.buffer_uc.GetArrayViewFromImage(out_m),
                                  sitk.GetArrayViewFromImage(mask))
    del arr  # the ITK images own copies of their buffers
    assert float(e.buffer_f.GetArrayViewFromImage(out).sum()) == pytest.approx(
        float(sitk.GetArrayViewFromImage(img).sum()), rel=1e-6)


# --------------------------------------------------------------------------- slow: elastix
_SMALL_RUN = """
import json
import SimpleITK as sitk
from a0verify.phantom import PhantomSpec, make_phantom
from a0verify import parallel
from a0verify.registration import elastix, elastix_backend, initial, roi
parallel.limit_threads(1)
case = make_phantom(PhantomSpec(seed=2))
f, m = initial.prepare(case.post), initial.prepare(case.pre)
zone = sitk.Cast(case.ablation, sitk.sitkUInt8)
init = sitk.Euler3DTransform((-40.0, 0.0, 0.0), 0.01, -0.02, 0.03, (1.0, -2.0, 0.5))
region = roi.roi_and_masks(f, m, init, 30.0, zone=zone)
maps = [elastix.load_map(elastix.parameter_file("rigid"), {"MaximumNumberOfIterations": ["20"]}),
        elastix.load_map(elastix.parameter_file("bspline"), {"MaximumNumberOfIterations": ["20"]})]
out, _ = elastix.run_maps(region.fixed, region.moving, region.fixed_mask, None, init, maps)
print(json.dumps({"fast": elastix_backend.load().fast,
                  "params": [pm["TransformParameters"] for pm in out]}))
"""


@pytest.mark.slow
def test_fast_and_lazy_loading_give_identical_registrations() -> None:
    """Same classes either way: bit-identical elastix output (1 thread, seeded samplers).
    ``A0VERIFY_ITK_LAZY=1`` selects ITK's lazy loader (the fallback path)."""
    fast = _run_py(_SMALL_RUN)
    lazy = _run_py(_SMALL_RUN, A0VERIFY_ITK_LAZY="1")
    assert fast["fast"] is True and lazy["fast"] is False
    assert fast["params"] == lazy["params"]


@pytest.mark.slow
@pytest.mark.skipif(not parallel.enabled(), reason="worker processes disabled here")
def test_restart_in_worker_equals_restart_in_process() -> None:
    """A restart run by a worker process (what ``register`` does with >= 2 threads) returns the
    very maps the same restart gives in this process (1 thread each); an elastix failure in
    the worker comes back as a result, not as a crash."""
    from a0verify.phantom import PhantomSpec, make_phantom

    case = make_phantom(PhantomSpec(seed=2))
    f, m = initial.prepare(case.post), initial.prepare(case.pre)
    zone = sitk.Cast(case.ablation, sitk.sitkUInt8)
    init = sitk.Euler3DTransform((-40.0, 0.0, 0.0), 0.01, -0.02, 0.03, (1.0, -2.0, 0.5))
    region = roi.roi_and_masks(f, m, init, 30.0, zone=zone)
    f_roi, f_mask, m_roi = region.fixed, region.fixed_mask, region.moving
    few = {"MaximumNumberOfIterations": ["30"]}
    maps = [elastix.load_map(elastix.parameter_file("rigid"), few),
            elastix.load_map(elastix.parameter_file("bspline"), few)]
    rinit = initial.perturb(init, 2.0, 1.0)
    job = parallel.run_in_worker("restart", elastix.run_job, f_roi, m_roi, f_mask, None, rinit,
                                 maps, 1)
    status, in_worker, _ = job.result()
    assert job.where == "worker"
    status_here, here, _ = elastix.run_job(f_roi, m_roi, f_mask, None, rinit, maps, 1)
    assert status == status_here == "ok"
    assert [pm["TransformParameters"] for pm in in_worker] == \
        [pm["TransformParameters"] for pm in here]
    # too few samples: elastix fails inside the worker, reported as ("failed", message)
    tiny = sitk.Image(f_mask.GetSize(), sitk.sitkUInt8)
    tiny.CopyInformation(f_mask)
    tiny[tuple(s // 2 for s in f_mask.GetSize())] = 1
    bad = parallel.run_in_worker("restart", elastix.run_job, f_roi, m_roi, tiny, None, rinit,
                                 maps, 1)
    status, msg, _ = bad.result()
    assert status == "failed" and msg
