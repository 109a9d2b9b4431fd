"""Seeded segmentation on full phantoms and on real anatomy with painted zones (slow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from a0verify import geometry
from a0verify.errors import SegmentationError
from a0verify.phantom import LesionSpec, PhantomSpec, make_phantom
from a0verify.segmentation import (
    dice_coefficient,
    hausdorff95_mm,
    segment_ablation,
    segment_tumor,
)
from a0verify.segmentation.synth import HCC048_LIVER_POINT_LPS, Ellipsoid, paint_ablation_zone

HCC048 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "hcc048" / \
    "HCC048_portal_venous"

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("spec", [
    PhantomSpec(spacing=[0.8, 0.8, 2.5], size=[220, 200, 48]),
    PhantomSpec(spacing=[1.0, 1.0, 1.5], size=[170, 150, 70], direction_deg=[10.0, -5.0, 20.0],
                noise_hu=18.0, seed=3),
    PhantomSpec(spacing=[0.8, 0.8, 2.0], size=[220, 200, 60], lesions=[
        LesionSpec(center_lps=[-75.0, 5.0, -15.0], radius_mm=8.0, target_margin_mm=5.0),
        LesionSpec(center_lps=[-35.0, -10.0, 20.0], radius_mm=6.0, target_margin_mm=4.0,
                   zone_rotation_deg=[-10.0, 25.0, 5.0])]),
], ids=["default", "oblique-noisy", "two-lesions"])
def test_phantom_ablation_and_tumor(spec: PhantomSpec) -> None:
    case = make_phantom(spec)
    abl = segment_ablation(case.post, [t.zone_center_post_lps for t in case.truth])
    assert dice_coefficient(abl.mask, case.ablation) >= 0.90
    assert hausdorff95_mm(abl.mask, case.ablation) <= 2.0
    assert abl.stats["n_components"] == float(len(case.truth))
    for t in case.truth:
        tum = segment_tumor(case.pre, t.tumor_center_pre_lps)
        truth = sitk.Cast(case.tumor == t.id, sitk.sitkUInt8)
        assert dice_coefficient(tum.mask, truth) >= 0.85


@pytest.fixture(scope="module")
def hcc048() -> sitk.Image:
    if not HCC048.exists():
        pytest.skip(f"real CT not available at {HCC048}")
    from a0verify.io import read_image

    return read_image(HCC048)


def _c() -> np.ndarray:
    return np.asarray(HCC048_LIVER_POINT_LPS)


def test_liver_point_is_liver(hcc048: sitk.Image) -> None:
    """The hard-coded location sits in liver parenchyma (HU ~ 100-130 within 25 mm)."""
    box = geometry.roi_box_around_lps(hcc048, _c()[None], 25.0)
    roi = geometry.crop(hcc048, box)
    d = np.linalg.norm(geometry.voxel_centers_lps(roi) - _c(), axis=-1)
    vals = sitk.GetArrayViewFromImage(roi)[d <= 25.0]
    assert 95 <= np.median(vals) <= 135 and np.percentile(vals, 2) > 50


@pytest.mark.parametrize(("name", "zones", "seed_offset", "kw"), [
    ("ellipsoid", [((0, 0, 0), (16, 12, 14), (20, -15, 30))], None, {}),
    ("small", [((0, 0, 0), (9, 7, 8), (0, 30, 10))], None, {"n_gas": 1, "seed": 2}),
    ("off-centre-seed", [((0, 0, 0), (16, 12, 14), (20, -15, 30))], (0.0, 0.0, 8.0),
     {"seed": 1}),
    ("confluent-one-seed", [((-7, 0, 0), (13, 11, 12), (0, 0, 20)),
                            ((7, 0, 0), (13, 11, 12), (0, 0, 20))], (-7.0, 0.0, 0.0),
     {"seed": 4}),
    ("tract-exits-zone", [((0, 0, 0), (16, 12, 14), (20, -15, 30))], None,
     {"tract_exit_mm": 30.0, "tract_radius_mm": 2.0, "seed": 9}),
    ("noisy-no-rim", [((0, 0, 0), (15, 13, 12), (40, 0, 0))], None,
     {"noise_hu": 25.0, "rim_hu": -2000.0, "heterogeneity_hu": 15.0, "seed": 7}),
])
def test_painted_zone_on_real_anatomy(hcc048: sitk.Image, name: str, zones: list,
                                      seed_offset: tuple[float, float, float] | None,
                                      kw: dict) -> None:
    ell = [Ellipsoid(_c() + np.asarray(c, float), a, r) for c, a, r in zones]
    pc = paint_ablation_zone(hcc048, ell, **kw)
    seed = _c() + (np.zeros(3) if seed_offset is None else np.asarray(seed_offset))
    res = segment_ablation(pc.image, [seed.tolist()])
    assert dice_coefficient(res.mask, pc.truth) >= 0.90, name
    assert hausdorff95_mm(res.mask, pc.truth) <= 2.0, name
    gas_seed = segment_ablation(pc.image, [pc.gas_centers_lps[0]])  # seed on a gas bubble
    assert dice_coefficient(gas_seed.mask, pc.truth) >= 0.90, name


def test_seed_in_unablated_liver_fails(hcc048: sitk.Image) -> None:
    with pytest.raises(SegmentationError, match="ablation"):
        segment_ablation(hcc048, [_c().tolist()])


@pytest.mark.parametrize("tumor_hu", [60.0, 175.0])
def test_painted_tumor_on_real_anatomy(hcc048: sitk.Image, tumor_hu: float) -> None:
    """Hypo- and hyperdense lesions (no rim, heterogeneous) painted into real liver."""
    ell = [Ellipsoid(_c(), (11, 9, 10), (10, 20, 30))]
    pc = paint_ablation_zone(hcc048, ell, zone_hu=tumor_hu, heterogeneity_hu=10.0,
                             rim_hu=-2000.0, n_gas=0, needle_tract=False, seed=8)
    res = segment_tumor(pc.image, _c().tolist())
    assert dice_coefficient(res.mask, pc.truth) >= 0.85
