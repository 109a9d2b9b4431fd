"""Registration on clinical-like pairs built from real CT (../shared/data; skipped when absent):
exact truth of the generator, end-to-end margin accuracy, the uncertainty band and the verdict,
and the clear outcomes when a pair cannot be analysed.

The default suite uses two small pairs (HCC_048 at 1.4 mm in-plane): ``combined`` (contrast
phase, short 2.5-3 mm-slice post, probe with streaks and gas, sliding liver) and ``sliding``.
The calibration and held-out sets are in ``benchmarks/bench_registration.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import SimpleITK as sitk
from click.testing import CliRunner

from a0verify import geometry, verdict
from a0verify.errors import RegistrationError
from a0verify.registration import (
    RegistrationMasks,
    RegistrationSettings,
    register,
)
from a0verify.registration.roi import dilate
from a0verify.registration.synthetic import transform_points, tre_stats
from a0verify.registration.synthetic_pairs import ClinicalPair, load_pair, make_pair, save_pair
from a0verify.registration.synthetic_sets import load_source, make_spec, pair_set
from a0verify.transfer import tumor_levelsets_to_post

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_data = pytest.mark.skipif(not (SHARED_DATA / "hcc048").is_dir(),
                                reason=f"shared real CT not available: {SHARED_DATA} is absent")


@pytest.fixture(scope="session")
def suite_pairs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The ``suite`` pairs, generated once per session (about 10 s each)."""
    if not (SHARED_DATA / "hcc048").is_dir():
        pytest.skip(f"shared real CT not available: {SHARED_DATA} is absent")
    root = tmp_path_factory.mktemp("clinical_pairs")
    out: dict[str, Path] = {}
    sources: dict[str, Any] = {}
    for src, diff, seed in pair_set("suite"):
        sources.setdefault(src, load_source(src, SHARED_DATA))
        d = root / f"{src}-{diff}-{seed}"
        save_pair(make_pair(sources[src], make_spec(sources[src], diff, seed)), d)
        out[diff] = d
    return out


def _newton_pre_to_post(pair: ClinicalPair, y: np.ndarray) -> np.ndarray:
    """Independent inverse of the truth: Newton iterations per point from the rigid guess."""
    x = (y - pair.center - pair.translation) @ pair.rotation + pair.center
    for _ in range(30):
        f = pair.post_to_pre(x) - y
        jac = np.stack([(pair.post_to_pre(x + 0.01 * e) - y - f) / 0.01 for e in np.eye(3)], -1)
        x = x - np.linalg.solve(jac, f[..., None])[..., 0]
    return x


@needs_data
def test_true_margin_is_exact(suite_pairs: dict[str, Path]) -> None:
    """The generator's true MAM (marching cubes on r - |T(x) - c| + Newton refinement) agrees
    with an independent computation (tumour sphere points mapped to post space by a per-point
    Newton inverse) to 0.02 mm; the zone mask is the voxel-centre inclusion of the analytic
    ellipsoid; the true MAM agrees with the target the spec asked for."""
    from a0verify.phantom import ellipsoid_sd

    pair = load_pair(suite_pairs["combined"])
    n = 20000
    i = np.arange(n) + 0.5
    phi, theta = np.arccos(1 - 2 * i / n), np.pi * (1 + 5 ** 0.5) * i
    u = np.stack([np.cos(theta) * np.sin(phi), np.sin(theta) * np.sin(phi), np.cos(phi)], 1)
    y = pair.tumor_center_pre + pair.spec.tumor_radius_mm * u
    x = _newton_pre_to_post(pair, y)
    np.testing.assert_allclose(pair.post_to_pre(x), y, atol=1e-6)
    independent = float(ellipsoid_sd(x, pair.zone_center, pair.zone_axes,
                                      pair.zone_rotation).min())
    assert pair.true_mam_mm() == pytest.approx(independent, abs=0.02)
    assert pair.true_mam_mm() == pytest.approx(pair.spec.target_mam_mm, abs=0.05)
    pts = geometry.voxel_centers_lps(pair.ablation)
    sd = ellipsoid_sd(pts[sitk.GetArrayViewFromImage(pair.ablation) != 0], pair.zone_center,
                      pair.zone_axes, pair.zone_rotation)
    assert sd.min() >= 0.0


def _evaluate(pair: ClinicalPair, res: Any) -> dict[str, float]:
    from a0verify.margin import compute_margin

    margin = compute_margin(tumor_levelsets_to_post(pair.tumor, pair.post, res.transform),
                            pair.ablation)
    les = margin.lesions[0]
    surf = pair.tumor_surface_post()[::6]
    err = np.linalg.norm(transform_points(res.transform, surf) - pair.post_to_pre(surf), axis=1)
    zone = sitk.Cast(pair.ablation, sitk.sitkUInt8)
    near = dilate(zone, 15.0) & pair.organs_post
    return {"mam": les.min_margin_mm, "truth": pair.true_mam_mm(),
            "band": verdict.combine_uncertainty(les.uncertainty_mm, res.uncertainty_mm),
            "tumor_p95": float(np.percentile(err, 95)),
            "near_p95": tre_stats(pair.post_to_pre, res.transform, near, step=2)["p95"]}


#: (tumour surface, liver near the zone) p95 TRE bounds in mm. The ``sliding`` suite pair (a
#: 13.6 mm slide, lesion under the capsule, 6 mm of differential displacement across the tumour
#: itself): with the block-vote organ search the tumour surface is registered with a p95 of
#: 2.5 mm (4.4-5.4 mm before) and the margin within 0.5 mm, while the liver near the zone
#: (which here reaches the sliding interface, where the true motion is discontinuous) reads
#: 10.5 mm p95 (8.0 before: the wall no longer pulls the capsule region along).
TRE_P95_BOUND_MM = {"combined": (1.5, 2.0), "sliding": (4.0, 12.0)}


@needs_data
@pytest.mark.parametrize("difficulty", ["combined", "sliding"])
def test_clinical_pair_margin_band_and_verdict(suite_pairs: dict[str, Path],
                                              difficulty: str) -> None:
    """Default settings, masks = zone + tumour only (probe, streaks, gas and the liver found
    automatically): end-to-end MAM within 1.5 mm of the truth (issue 15, hard cases), the
    reported band holds the truth, the verdict is the true one or indeterminate, the tumour
    surface and the liver near the zone registered within :data:`TRE_P95_BOUND_MM` (p95).
    Measured (reproducible): combined MAM error +0.14 mm in a 1.03 mm band, tumour / near p95
    0.29 / 0.52 mm; sliding +0.44 mm in a 1.80 mm band, 2.43 / 10.6 mm."""
    pair = load_pair(suite_pairs[difficulty])
    res = register(pair.post, pair.pre, RegistrationMasks(zone=pair.ablation, tumor=pair.tumor),
                   RegistrationSettings(threads=2))
    ev = _evaluate(pair, res)
    assert abs(ev["mam"] - ev["truth"]) <= 1.5, ev
    assert abs(ev["mam"] - ev["truth"]) <= ev["band"], ev
    got = verdict.classify(ev["mam"], 5.0, ev["band"],
                           caveat=None if res.reliable else "; ".join(res.reliability_notes))
    assert got.verdict in ("indeterminate", verdict.classify(ev["truth"], 5.0).verdict), (got, ev)
    tumor_p95, near_p95 = TRE_P95_BOUND_MM[difficulty]
    assert ev["tumor_p95"] <= tumor_p95 and ev["near_p95"] <= near_p95, ev
    auto = res.metrics["automatic_masks"]
    assert auto["organ_mask"]["used"]
    if pair.spec.needle:
        assert auto["artefacts"]["metal_voxels"] > 0 and auto["artefacts"]["gas_voxels"] > 0
    assert res.to_dict()["reliable"] in (True, False)
    assert set(res.uncertainty_terms) == {"floor", "restarts", "deformation"}


def test_no_overlap_is_a_registration_error_before_elastix(small_case: dict[str, Path]) -> None:
    """A start (here: landmarks 400 mm off) that puts the region of interest outside the pre
    scan: RegistrationError saying the scans do not overlap, no elastix run."""
    post, pre, zone = (sitk.ReadImage(str(small_case[k])) for k in ("post", "pre", "ablation"))
    with pytest.raises(RegistrationError, match="do not overlap"):
        register(post, pre, RegistrationMasks(zone=zone, landmarks=([[0.0, 0.0, 0.0]],
                                                                    [[0.0, 0.0, 400.0]])),
                 RegistrationSettings(threads=2))


def test_cli_register_no_overlap_exit_3(small_case: dict[str, Path], tmp_path: Path) -> None:
    """``a0verify register`` on a pair it cannot analyse: exit 3, one line naming the reason,
    no outputs."""
    from a0verify.cli import main

    p = small_case
    r = CliRunner().invoke(main, ["register", "--fixed", str(p["post"]), "--moving",
                                  str(p["pre"]), "--ablation", str(p["ablation"]),
                                  "--fixed-point", "0,0,0", "--moving-point", "0,0,400",
                                  "--out", str(tmp_path / "o")])
    assert r.exit_code == 3, r.output
    assert "do not overlap" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "o" / "transform.h5").exists()


def test_cli_run_different_regions_exit_3_without_report(small_case: dict[str, Path],
                                                         tmp_path: Path) -> None:
    """``a0verify run`` whose pre scan shows another region than the post scan (here a uniform
    cylinder, 300 mm long: nothing of the torso): exit 3, one line naming the reason, no
    report.json - never a number from a registration that could not be done."""
    from a0verify.cli import main

    pre = geometry.make_grid([70, 60, 60], [5.0, 5.0, 5.0], None, (0.0, 0.0, 0.0),
                             sitk.sitkFloat32)
    p = geometry.voxel_centers_lps(pre)
    body = np.linalg.norm(p[..., :2], axis=-1) < 80
    sitk.WriteImage(geometry.array_to_image(np.where(body, 40.0, -1000.0).astype(np.float32), pre),
                    str(tmp_path / "pre.nii.gz"))
    tumor = (np.linalg.norm(p - [0.0, 0.0, 0.0], axis=-1) < 10).astype(np.uint8)
    sitk.WriteImage(geometry.array_to_image(tumor, pre), str(tmp_path / "tumor.nii.gz"))
    r = CliRunner().invoke(main, ["run", "--pre", str(tmp_path / "pre.nii.gz"),
                                  "--post", str(small_case["post"]),
                                  "--tumor", str(tmp_path / "tumor.nii.gz"),
                                  "--ablation", str(small_case["ablation"]),
                                  "--out", str(tmp_path / "o"), "--threads", "2"])
    assert r.exit_code == 3, r.output
    assert "same region" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "o" / "report.json").exists()



@needs_data
@pytest.mark.slow
def test_one_click_zone_in_a_noisy_liver_is_not_rated_poor() -> None:
    """Benchmark pair hcc048-plain-1000 (real anatomy, post CT with 10-20 HU of added noise): the
    zone from one click at its centre is close to the truth and not rated "poor". Loosening the
    threshold by 15 % of the contrast there lets the noisy liver percolate (3.3 x the volume,
    through threads of noise); such a flood is not a leak, and only the part reached through
    bridges at least 4 mm thick counts (1.06 x). Before: rated poor at Dice 0.98, as were 4 more
    of the 30 benchmark pairs (Dice 0.96-0.98)."""
    from a0verify.segmentation import dice_coefficient, segment_ablation

    src = load_source("hcc048", SHARED_DATA)
    pair = make_pair(src, make_spec(src, "plain", 1000))
    res = segment_ablation(pair.post, [list(pair.zone_center)])
    assert dice_coefficient(res.mask, pair.ablation) >= 0.95
    assert res.quality is not None and res.quality.level != "poor", res.quality
    assert res.quality.threshold_stability < 1.5, res.quality
