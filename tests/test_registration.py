"""Registration: transform conventions, QA/failure handling and accuracy.

Accuracy is measured as target registration error (TRE, mm) against the known transform on
(1) the analytic phantom and (2) real CT anatomy (TCIA HCC_048) warped by a known rigid +
smooth deformation with a painted ablation zone and fresh noise.
"""

from __future__ import annotations

import importlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import SimpleITK as sitk
from click.testing import CliRunner

from a0verify import geometry
from a0verify.errors import InputError, RegistrationError
from a0verify.registration import (
    LADDER,
    RegistrationMasks,
    RegistrationResult,
    RegistrationSettings,
    elastix,
    elastix_backend,
    initial,
    qa,
    register,
    roi,
    write_registration_outputs,
)
from a0verify.registration.synthetic import tre_stats
from a0verify.transfer import tumor_levelsets_to_post

HCC048 = Path(__file__).resolve().parents[2] / "shared" / "data" / "hcc048" / "HCC048_portal_venous"
needs_hcc048 = pytest.mark.skipif(not HCC048.is_dir(),
                                  reason=f"real CT test data not found at {HCC048}")


# --------------------------------------------------------------------------- fast: conventions
def test_landmark_init_recovers_rigid() -> None:
    rng = np.random.default_rng(3)
    rot = geometry.rotation_matrix([3.0, -4.0, 2.0])
    t = np.array([5.0, -7.0, 2.0])
    f = rng.uniform(-60, 60, size=(6, 3))
    m = f @ rot.T + t
    tx = initial.landmark_start((f, m), np.array([10.0, 0.0, -5.0]))
    q = rng.uniform(-50, 50, size=(5, 3))
    got = np.array([tx.TransformPoint(tuple(p)) for p in q])
    np.testing.assert_allclose(got, q @ rot.T + t, atol=1e-9)
    one = initial.landmark_start(([[0.0, 0.0, 0.0]], [[1.0, 2.0, 3.0]]), np.zeros(3))
    np.testing.assert_allclose(one.TransformPoint((5.0, 5.0, 5.0)), (6.0, 7.0, 8.0))
    with pytest.raises(InputError):
        initial.landmark_start(([[0.0, 0.0, 0.0]], [[1.0, 2.0, 3.0], [1, 1, 1]]), np.zeros(3))


def test_euler_composition_matches_sitk_composite() -> None:
    a = sitk.Euler3DTransform((1.0, 2.0, 3.0), 0.05, -0.02, 0.1, (3.0, -1.0, 2.0))
    b = sitk.Euler3DTransform((-4.0, 0.0, 7.0), -0.03, 0.04, 0.02, (-2.0, 5.0, 1.0))
    c = initial.compose_rigid(a, b)
    comp = sitk.CompositeTransform([a, b])
    for p in [(0.0, 0.0, 0.0), (50.0, -20.0, 10.0), (-30.0, 40.0, -60.0)]:
        np.testing.assert_allclose(c.TransformPoint(p), comp.TransformPoint(p), atol=1e-9)
        np.testing.assert_allclose(comp.TransformPoint(p), a.TransformPoint(b.TransformPoint(p)))


def test_method_none_and_bad_method() -> None:
    img = geometry.make_grid([8, 8, 8], [1, 1, 1], pixel_type=sitk.sitkFloat32)
    res = register(img, img, settings=RegistrationSettings(method="none"))
    assert isinstance(res, RegistrationResult) and res.method == "none"
    json.dumps(res.to_dict())
    with pytest.raises(InputError):
        RegistrationSettings(method="affine")


def test_write_outputs_atomic_roundtrip(tmp_path: Path) -> None:
    tx = sitk.Euler3DTransform((0.0, 0.0, 0.0), 0.1, 0.0, 0.0, (1.0, 2.0, 3.0))
    qa = geometry.make_grid([5, 5, 5], [1, 1, 1], pixel_type=sitk.sitkFloat32)
    res = RegistrationResult("rigid", tx, {"a": 1}, 1.0, ["rigid.txt"], [], {},
                             qa_images={"difference": qa})
    paths = write_registration_outputs(res, tmp_path / "o")
    assert paths["transform"].name == "transform.h5" and paths["difference"].suffix == ".nrrd"
    back = sitk.ReadTransform(str(paths["transform"]))
    q = (4.0, 5.0, 6.0)
    np.testing.assert_allclose(back.TransformPoint(q), tx.TransformPoint(q))
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["qa_difference.nrrd",
                                                                   "transform.h5"]


def test_cli_bad_input_exit_2(tmp_path: Path) -> None:
    from a0verify.cli import main

    r = CliRunner().invoke(main, ["register", "--fixed", str(tmp_path / "nope.nii.gz"),
                                  "--moving", str(tmp_path / "nope2.nii.gz"),
                                  "--out", str(tmp_path / "o")])
    assert r.exit_code == 2, r.output
    assert "nope.nii.gz" in r.output
    assert not (tmp_path / "o").exists()


# --------------------------------------------------------------------------- slow: elastix
def _phantom_pair() -> Any:
    from a0verify.phantom import PhantomSpec, make_phantom

    return make_phantom(PhantomSpec(seed=2))


@pytest.mark.slow
def test_bspline_conversion_matches_transformix_and_is_deterministic(tmp_path: Path) -> None:
    """Our SimpleITK rebuild of elastix's initial o rigid o B-spline result equals transformix's
    own deformation field (independent implementation); repeat runs agree."""
    case = _phantom_pair()
    f = initial.prepare(case.post)
    m = initial.prepare(case.pre)
    zone = sitk.Cast(case.ablation, sitk.sitkUInt8)
    init = sitk.Euler3DTransform((-40.0, 0.0, 0.0), 0.01, -0.02, 0.03, (1.0, -2.0, 0.5))
    region = roi.roi_and_masks(f, m, init, 30.0, zone=zone)
    f_roi, f_mask, m_roi = region.fixed, region.fixed_mask, region.moving
    assert f_mask is not None
    few = {"MaximumNumberOfIterations": ["30"]}
    maps = [elastix.load_map(elastix.parameter_file("rigid"), few),
            elastix.load_map(elastix.parameter_file("bspline"), few)]
    run = elastix.run_elastix(f_roi, m_roi, f_mask, None, init, maps)
    # seeded samplers: a repeat run gives the same transform (up to the floating-point
    # summation order of the 2 threads, ~1e-10)
    again = elastix.run_elastix(f_roi, m_roi, f_mask, None, init, maps)
    fa = sitk.GetArrayFromImage(qa.displacement_field(run.transform, f_roi, 4.0)[0])
    fb = sitk.GetArrayFromImage(qa.displacement_field(again.transform, f_roi, 4.0)[0])
    np.testing.assert_allclose(fa, fb, atol=1e-6)
    elx_classes = elastix_backend.load()  # the same classes as ``itk.*``, without the 17 s load
    tpo = elx_classes.parameter_object()
    for pm in run.elastix_maps:
        tpo.AddParameterMap(pm)
    for i in range(1, tpo.GetNumberOfParameterMaps()):  # chain maps as transformix expects
        tpo.SetParameter(i, "InitialTransformParameterFileName", "NoInitialTransform")
    transformix = importlib.import_module("itk.itkTransformixFilterPython") \
        .itkTransformixFilterIF3.New(elx_classes.image(m_roi))
    transformix.SetTransformParameterObject(tpo)
    transformix.SetComputeDeformationField(True)
    transformix.SetLogToConsole(False)
    transformix.SetOutputDirectory(str(tmp_path))  # it writes deformationField.* there
    transformix.UpdateLargestPossibleRegion()
    field_itk = transformix.GetOutputDeformationField()
    elx = importlib.import_module("itk.itkPyBufferPython").itkPyBufferIVF33 \
        .GetArrayFromImage(field_itk).astype(np.float64)
    ours = sitk.GetArrayFromImage(sitk.TransformToDisplacementField(
        run.transform, sitk.sitkVectorFloat64, f_roi.GetSize(), f_roi.GetOrigin(),
        f_roi.GetSpacing(), f_roi.GetDirection()))
    assert elx.shape == ours.shape
    np.testing.assert_allclose(ours[::3, ::3, ::3], elx[::3, ::3, ::3], atol=1e-3)


@pytest.mark.slow
def test_phantom_deformable_tre() -> None:
    """Analytic phantom, issue-4 targets: TRE in the zone dilated by 20 mm (within the body)
    mean <= 1.0 mm and p95 <= 1.5 mm (checked with the suite's 1.2 / 1.8 mm headroom). Every
    elastix run is single-threaded and the start rounded, so the run is reproducible (with
    multi-threaded elastix it read 0.56-0.69 mm mean and a rigid stage of 0.62-1.10 mm from run
    to run, which once made the stage comparison below fail in CI). Measured: 0.71 / 1.26 mm
    (max 1.58 mm), rigid stage 0.95 mm, the same with 1 or 2 threads. The true transform is exactly
    rigid near the zone but not over the whole ROI (the best rigid fit over the ROI leaves ~1 mm
    near the zone), so the B-spline stage must beat the rigid stage. The phantom is well posed
    because of its liver vessel tree: with the vessels removed the same registration ends at
    3.1-3.3 mm (see tests/test_phantom.py::test_liver_vessels_surround_lesions_but_stay_clear)."""
    from a0verify.phantom import post_to_pre

    case = _phantom_pair()
    res = register(case.post, case.pre, RegistrationMasks(zone=case.ablation),
                   RegistrationSettings(threads=2, restarts=0))
    zone = sitk.Cast(case.ablation, sitk.sitkUInt8)
    near = roi.dilate(zone, 20.0) & (case.post > -500)

    def truth(p: np.ndarray) -> np.ndarray:
        return post_to_pre(p, case.spec)

    tre = tre_stats(truth, res.transform, near, step=3)
    before = tre_stats(truth, sitk.Euler3DTransform(), near, step=3)
    rigid_stage = tre_stats(truth, _rigid_stage(res), near, step=3)
    assert tre["mean"] <= 1.2 and tre["p95"] <= 1.8, tre
    assert tre["mean"] * 4.0 < before["mean"], (tre, before)
    assert tre["mean"] < rigid_stage["mean"], (tre, rigid_stage)
    sim = res.metrics["similarity_roi"]
    # Mattes MI (lower is better) improves at each stage. NCC is only checked against the start:
    # over the whole ROI it is dominated by a few hundred voxels at the ROI corner where the
    # spine edge sits (far from the zone, weakly constrained), and jitters by +-0.1 run to run.
    mi = {k: v["mattes_mi"] for k, v in sim.items()}
    assert mi["after"] < mi["after_rigid"] < mi["before"], sim
    assert sim["after"]["ncc"] > sim["before"]["ncc"]
    assert res.metrics["jacobian_roi"]["min"] > 0.5
    assert res.uncertainty_mm > 0
    json.dumps(res.to_dict())


def _rigid_stage(res: RegistrationResult) -> sitk.Euler3DTransform:
    """The rigid stage (initialisation included) of a registration, from its metrics."""
    rp = res.metrics["rigid_transform"]
    tx = sitk.Euler3DTransform()
    tx.SetCenter(rp["center_lps"])
    tx.SetParameters(rp["parameters_rad_mm"])
    return tx


@pytest.mark.slow
def test_garbage_moving_raises_registration_error() -> None:
    case = _phantom_pair()
    rng = np.random.default_rng(0)
    noise = geometry.array_to_image(
        rng.normal(0, 300, sitk.GetArrayViewFromImage(case.pre).shape).astype(np.float32),
        case.pre)
    with pytest.raises(RegistrationError, match=r"attempt|overlap"):
        register(case.post, noise, RegistrationMasks(zone=case.ablation),
                 RegistrationSettings(method="rigid", restarts=0, ladder=LADDER[:2], threads=2))


@pytest.fixture(scope="module")
def hcc048_ct() -> sitk.Image:
    if not HCC048.is_dir():
        pytest.skip(f"real CT test data not found at {HCC048}")
    from a0verify.io import read_image

    return read_image(HCC048)


@pytest.mark.slow
@needs_hcc048
@pytest.mark.parametrize("seed", [11])
def test_real_anatomy_tre_and_mam(hcc048_ct: sitk.Image, seed: int, tmp_path: Path) -> None:
    """Full-size real CT warped by 10 mm / 5 deg + 5 mm smooth deformation: TRE near the zone
    mean <= 1.0 mm, p95 <= 1.5 mm; end-to-end MAM within 1.0 mm of the exact value; the
    reported uncertainty covers the p95 error in the zone. Measured (reproducible): TRE 0.15 /
    0.29 mm, MAM error +0.16 mm, uncertainty 0.94 mm."""
    from a0verify.margin import compute_margin
    from a0verify.registration.synthetic import make_ct_pair

    pair = make_ct_pair(hcc048_ct, seed=seed)
    res = register(pair.post, pair.pre, RegistrationMasks(zone=pair.ablation, tumor=pair.tumor),
                   RegistrationSettings(threads=2))
    zone = sitk.Cast(pair.ablation, sitk.sitkUInt8)
    near = roi.dilate(zone, 25.0) & (pair.post > -400)
    tre = tre_stats(pair.true_post_to_pre, res.transform, near, step=3)
    tre_zone = tre_stats(pair.true_post_to_pre, res.transform, zone, step=2)
    assert tre["mean"] <= 1.2 and tre["p95"] <= 1.8, tre
    assert tre_zone["p95"] <= res.uncertainty_mm, (tre_zone, res.uncertainty_mm)
    ident = tre_stats(pair.true_post_to_pre, sitk.Euler3DTransform(), near, step=6)
    assert ident["mean"] > 4.0
    levelsets = tumor_levelsets_to_post(pair.tumor, pair.post, res.transform)
    mam = compute_margin(levelsets, pair.ablation).min_margin_mm
    truth = pair.true_mam_mm()
    assert abs(mam - truth) <= 1.0, (mam, truth)
    paths = write_registration_outputs(res, tmp_path)
    assert {"transform", "checkerboard", "difference"} <= set(paths)
    assert math.isfinite(res.timings_s["registration"])


@pytest.mark.slow
def test_cli_register_phantom(tmp_path: Path) -> None:
    from a0verify.cli import main
    from a0verify.phantom import write_case

    case = _phantom_pair()
    p = write_case(case, tmp_path / "case")
    r = CliRunner().invoke(main, ["register", "--fixed", str(p["post"]), "--moving",
                                  str(p["pre"]), "--ablation", str(p["ablation"]), "--method",
                                  "rigid", "--out", str(tmp_path / "o"), "--threads", "2"])
    assert r.exit_code == 0, r.output
    summary = json.loads((tmp_path / "o" / "registration.json").read_text())
    assert summary["method"] == "rigid" and summary["uncertainty_mm"] > 0
    assert (tmp_path / "o" / "transform.h5").exists()


@pytest.mark.slow
@pytest.mark.parametrize("case_id", ["case02"])
def test_committed_testdata_tre_and_mam(case_id: str) -> None:
    """Committed coarse test case (whole-torso phantom, 1.9 x 1.9 x 2.5 mm, 22 slices = 55 mm in
    z; exact transform in truth.json), default deformable call: TRE near the zone mean <= 1.2 mm,
    p95 <= 1.8 mm; end-to-end MAM within 1.0 mm of the truth and inside the reported band; at
    most one retry. Measured (case01/02/03): TRE near 0.52/0.71/0.53 mean, 0.96/1.17/0.89 p95 mm;
    MAM error +0.42/-0.03/+0.32 mm. With multi-threaded elastix case02 was not reproducible
    (nine runs here gave mean 0.70-0.93 / p95 1.18-1.36 mm, one CI run 0.98 / 1.54 mm); now
    every run reads 0.62 / 1.01 mm and MAM error +0.90 mm in a 1.14 mm band, after one retry
    (the first attempt folds: Jacobian 0.041).
    Before the spacing-aware pyramid and the metric intensity
    window: case01 rigid stage diverged (30 mm, retried), case02 folded (retried) and ended at
    TRE p95 3.2 mm, MAM error +1.55 mm."""
    from a0verify import verdict
    from a0verify.io import read_image, read_mask
    from a0verify.margin import compute_margin
    from a0verify.phantom import load_truth, post_to_pre, spec_from_dict

    d = Path(__file__).resolve().parents[1] / "testdata" / case_id
    truth = load_truth(d / "truth.json")
    spec = spec_from_dict(truth["spec"])
    post = read_image(d / "post.nii.gz")
    pre = read_image(d / "pre.nii.gz")
    tumor = read_mask(d / "tumor.nii.gz")
    abl = read_mask(d / "ablation.nii.gz", reference=post)
    res = register(post, pre, RegistrationMasks(zone=abl, tumor=tumor),
                   RegistrationSettings(threads=2))
    zone = sitk.Cast(abl, sitk.sitkUInt8)
    near = roi.dilate(zone, 20.0) & (post > -500)

    def true_map(p: np.ndarray) -> np.ndarray:
        return post_to_pre(p, spec)

    tre = tre_stats(true_map, res.transform, near, step=1)
    assert tre["mean"] <= 1.2 and tre["p95"] <= 1.8, tre
    # the first attempt passes QA, or (case02: its Jacobian minimum lies near the folding
    # check) the ladder's second rung does; the accuracy above holds either way
    assert len(res.metrics["attempts"]) <= 2, res.metrics["attempts"]
    margin = compute_margin(tumor_levelsets_to_post(tumor, post, res.transform), abl)
    true_mam = float(truth["lesions"][0]["mam_mm"])
    err = abs(margin.min_margin_mm - true_mam)
    band = verdict.combine_uncertainty(margin.lesions[0].uncertainty_mm, res.uncertainty_mm)
    assert err <= 1.0, (margin.min_margin_mm, true_mam)
    assert err <= band, (margin.min_margin_mm, true_mam, band)


@pytest.mark.slow
def test_same_inputs_give_the_same_registration_for_any_thread_count() -> None:
    """Reproducibility: the committed case01, registered twice with a budget of 2 threads (the
    restart in its worker process) and once with 1 thread (all in this process), gives the same
    transform to the last bit. Before every elastix run was pinned to one thread and the start
    rounded, two identical `a0verify run`s on case02 read MAM 2.43 and 3.41 mm."""
    from a0verify.io import read_image, read_mask

    d = Path(__file__).resolve().parents[1] / "testdata" / "case01"
    post = read_image(d / "post.nii.gz")
    pre = read_image(d / "pre.nii.gz")
    masks = RegistrationMasks(zone=read_mask(d / "ablation.nii.gz", reference=post),
                              tumor=read_mask(d / "tumor.nii.gz"))
    fields = []
    for threads in (2, 2, 1):
        res = register(post, pre, masks, RegistrationSettings(threads=threads))
        fields.append(sitk.GetArrayFromImage(sitk.TransformToDisplacementField(
            res.transform, sitk.sitkVectorFloat64, post.GetSize(), post.GetOrigin(),
            post.GetSpacing(), post.GetDirection())))
        assert res.metrics["threads"] == threads
    assert np.array_equal(fields[0], fields[1])
    assert np.array_equal(fields[0], fields[2])
