"""Named sets of clinical-like registration pairs (:mod:`synthetic_pairs`) from the shared CTs.

Sources (``../shared/data`` in a checkout; never copied into the repository):

* ``hcc048`` - TCIA HCC-TACE-Seg HCC_048 portal-venous CT (CC BY 4.0), 0.70 x 0.70 x 2.5 mm,
  cropped to the body (480 x 400 x 89); the moving organs from
  :func:`~a0verify.registration.synthetic_effects.moving_organs_mask`. ``hcc048_small``: the
  same, block-averaged to 1.4 mm in-plane (fast tests).
* ``totalseg`` - TotalSegmentator's example CT (Apache-2.0), 3 mm isotropic, native phase, with
  its own liver mask (another patient, scanner, phase and resolution: the held-out source).

Sets: ``calibration`` (hcc048, 3 pairs per difficulty; the uncertainty band is fitted on it),
``heldout`` (totalseg, 1 per difficulty, and hcc048 with other seeds, 1 per difficulty; only
ever used to check), ``suite`` (2 small hcc048 pairs for the default test suite), ``dev``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from a0verify import geometry
from a0verify.registration import synthetic_effects as fx
from a0verify.registration.synthetic_pairs import DIFFICULTIES, PairSpec, Source

#: A point in HCC_048's right liver lobe (LPS mm); the organ mask grows from it.
HCC048_LIVER_SEED = (-85.0, -15.0, -285.0)
HCC048_DIR = Path("hcc048") / "HCC048_portal_venous"
TOTALSEG_CT = Path("totalsegmentator") / "example_ct.nii.gz"
TOTALSEG_LIVER = Path("totalsegmentator") / "example_seg_fast" / "liver.nii.gz"
TOTALSEG_CT_SM = Path("totalsegmentator") / "example_ct_sm.nii.gz"


def default_data_dir() -> Path:
    """``../shared/data`` beside the checkout (where the tests and benchmarks look)."""
    return Path(__file__).resolve().parents[3] / "shared" / "data"


def load_source(name: str, data_dir: Path | None = None) -> Source:
    """The source CT ``name`` (``hcc048``, ``hcc048_small``, ``totalseg``). Raises
    FileNotFoundError when the data folder lacks it."""
    from a0verify.io import read_image

    d = data_dir or default_data_dir()
    if name.startswith("hcc048"):
        if not (d / HCC048_DIR).is_dir():
            raise FileNotFoundError(d / HCC048_DIR)
        ct = sitk.Cast(read_image(d / HCC048_DIR), sitk.sitkFloat32)
        ct = geometry.crop(ct, geometry.IndexBox((0, 50, 16), (89, 450, 496)))
        if name == "hcc048_small":
            ct = sitk.BinShrink(ct, [2, 2, 1])
        ct = sitk.Clamp(ct, sitk.sitkFloat32, -1024.0, 3071.0)
        return Source(name, ct, fx.moving_organs_mask(ct, HCC048_LIVER_SEED))
    if name == "totalseg":
        if not (d / TOTALSEG_CT).is_file():
            raise FileNotFoundError(d / TOTALSEG_CT)
        ct = sitk.Clamp(sitk.Cast(sitk.ReadImage(str(d / TOTALSEG_CT)), sitk.sitkFloat32),
                        sitk.sitkFloat32, -1024.0, 3071.0)
        return Source(name, ct, _totalseg_liver(d, ct))
    raise ValueError(f"unknown source {name!r}")


def _totalseg_liver(d: Path, ct: sitk.Image) -> sitk.Image:
    """TotalSegmentator's liver mask on the full example CT. The mask lies on the grid of
    ``example_ct_sm`` - 30 slices cut from the full CT whose header kept the full CT's origin -
    so the slab is located by its voxel values (an exact match) and the mask pasted there."""
    full = sitk.GetArrayViewFromImage(ct)
    sm = sitk.GetArrayFromImage(sitk.ReadImage(str(d / TOTALSEG_CT_SM))).astype(np.float32)
    liver = sitk.GetArrayFromImage(sitk.ReadImage(str(d / TOTALSEG_LIVER))) != 0
    n = sm.shape[0]
    diffs = [float(np.abs(full[k:k + n] - np.clip(sm, -1024, 3071)).mean())
             for k in range(full.shape[0] - n + 1)]
    k = int(np.argmin(diffs))
    if diffs[k] > 1.0:
        raise ValueError("example_ct_sm is not a slab of example_ct: cannot place the liver mask")
    out = np.zeros(full.shape, np.uint8)
    out[k:k + n] = liver
    return geometry.array_to_image(out, ct)


def pick_lesion(src: Source, rng: np.random.Generator, radius_mm: float, margin_mm: float,
                near_surface: bool) -> tuple[float, float, float]:
    """A tumour centre (LPS mm) in the liver, deep enough for the tumour and its zone
    (``radius + max(margin, 0) + 3`` mm from the organ surface), within 12 mm more of the
    surface when ``near_surface`` (subcapsular: where sliding matters); hcc048: right lobe only
    (patient's right of x = -40 mm); at least 30 mm inside the scan's cranio-caudal extent."""
    mask = sitk.BinShrink(src.organs, [max(1, round(2.0 / s)) for s in src.organs.GetSpacing()])
    phi = sitk.GetArrayFromImage(sitk.SignedMaurerDistanceMap(
        mask > 0, insideIsPositive=True, squaredDistance=False, useImageSpacing=True))
    need = radius_mm + max(margin_mm, 0.0) + 3.0
    ok = (phi >= need) & ((phi <= need + 12.0) if near_surface else (phi >= need + 4.0))
    pts = geometry.zyx_index_to_lps(mask, np.argwhere(ok).astype(float))
    lo, hi = geometry.physical_bounds(src.ct)
    keep = (pts[:, 2] > lo[2] + 30.0) & (pts[:, 2] < hi[2] - 30.0)
    if src.name.startswith("hcc048"):
        keep &= pts[:, 0] < -40.0
    pts = pts[keep]
    if len(pts) == 0:
        raise ValueError(f"no place for a {radius_mm:.0f} mm tumour in {src.name}")
    p = pts[int(rng.integers(len(pts)))]
    return (float(p[0]), float(p[1]), float(p[2]))


def make_spec(src: Source, difficulty: str, seed: int) -> PairSpec:
    """The pair of ``difficulty`` for ``seed`` on ``src`` (random but reproducible draws)."""
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"unknown difficulty {difficulty!r}")
    rng = np.random.default_rng(seed)
    all_ = difficulty == "combined"
    radius = float(rng.uniform(7.0, 14.0))
    mam = float(rng.uniform(-2.0, 9.0))
    sliding = all_ or difficulty == "sliding"
    short = all_ or difficulty == "short_thick"
    needle = all_ or difficulty == "needle_gas"
    fine = float(src.ct.GetSpacing()[0]) < 1.0
    return PairSpec(
        name=f"{src.name}-{difficulty}-{seed}", difficulty=difficulty, seed=seed,
        lesion_lps=pick_lesion(src, rng, radius, mam, near_surface=sliding),
        tumor_radius_mm=radius, target_mam_mm=mam, trans_mm=float(rng.uniform(8.0, 25.0)),
        rot_deg=float(rng.uniform(2.0, 8.0)), deform_mm=float(rng.uniform(2.0, 6.0)),
        slide_mm=float(rng.uniform(8.0, 15.0)) if sliding else 0.0,
        contrast=all_ or difficulty == "contrast",
        short_half_mm=float(rng.uniform(45.0, 60.0)) if short else None,
        slice_mm=float(rng.choice([2.5, 3.0])) if short and fine else None,
        inplane_mm=float(rng.uniform(0.6, 0.9)) if short and fine else None,
        needle=needle, gas=needle)


def pair_set(name: str) -> list[tuple[str, str, int]]:
    """(source, difficulty, seed) of every pair in set ``name``."""
    if name == "calibration":
        return [("hcc048", d, 1000 + 10 * i + k) for i, d in enumerate(DIFFICULTIES)
                for k in range(3)]
    if name == "heldout":
        return [("totalseg", d, 7000 + i) for i, d in enumerate(DIFFICULTIES)] + \
            [("hcc048", d, 8000 + i) for i, d in enumerate(DIFFICULTIES)]
    if name == "suite":
        return [("hcc048_small", "combined", 3), ("hcc048_small", "sliding", 4)]
    if name == "dev":
        return [("hcc048", d, 500 + i) for i, d in enumerate(DIFFICULTIES)]
    raise ValueError(f"unknown pair set {name!r}")
