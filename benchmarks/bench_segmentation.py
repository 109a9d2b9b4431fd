"""Benchmark: seeded ablation-zone and tumour segmentation (accuracy, wall time, peak memory).

Run: ``.venv/bin/python benchmarks/bench_segmentation.py [--quick] [--out FILE.md]``

Cases
-----
* ``P*``: synthetic phantoms (:mod:`a0verify.phantom`) with varied spacing, direction, noise and
  lesion count; truth = the phantom's ablation ellipsoid / tumour sphere.
* ``R*``: real anatomy (TCIA HCC_048 portal-venous CT, /work/shared/data/hcc048) with ablation
  zones of known shape painted into the liver (:mod:`a0verify.segmentation.synth`); skipped when
  the data folder is absent.
* ``F*``: failure cases; the expected outcome is an error or a warning, reported as such.

Methods compared in the same run on the same cases:
* ``a0verify``: :func:`a0verify.segmentation.segment_ablation` / ``segment_tumor``.
* ``a0verify-nosmooth``: the same without the final signed-distance smoothing and closing
  (ablation of the clean-up step).
* ``sitk-confconn``: reference — SimpleITK ConfidenceConnected (statistics learned around the
  seed, multiplier 2.5, 4 iterations) on the same Gaussian-smoothed ROI, then hole filling.

Peak memory is the tracemalloc peak (NumPy allocations; SimpleITK's C++ buffers are not seen).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from a0verify import geometry
from a0verify.errors import A0Error
from a0verify.phantom import LesionSpec, PhantomSpec, make_phantom
from a0verify.segmentation import (
    SegmentationResult,
    dice_coefficient,
    hausdorff95_mm,
    segment_ablation,
    segment_tumor,
)
from a0verify.segmentation import core as segcore
from a0verify.segmentation.synth import HCC048_LIVER_POINT_LPS, Ellipsoid, paint_ablation_zone

HCC048 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "hcc048" / \
    "HCC048_portal_venous"
if not HCC048.exists():
    HCC048 = Path("/work/shared/data/hcc048/HCC048_portal_venous")


@dataclass
class Case:
    name: str
    kind: str  # "ablation" | "tumor"
    image: sitk.Image
    seeds: list[list[float]]
    truth: sitk.Image | None  # None: failure case
    expect: str = "ok"  # "ok" | "error" | "warning"
    note: str = ""


# --------------------------------------------------------------------------- cases
def _phantom_cases() -> list[Case]:
    out: list[Case] = []
    variants = [
        ("P1 0.8x0.8x2.5 n12", dict(spacing=[0.8, 0.8, 2.5], size=[220, 200, 48])),
        ("P2 1mm iso oblique n12", dict(spacing=[1.0, 1.0, 1.0], size=[170, 150, 110],
                                        direction_deg=[10.0, -5.0, 20.0])),
        ("P3 0.7x0.7x3 n20", dict(spacing=[0.7, 0.7, 3.0], size=[240, 220, 40], noise_hu=20.0)),
        ("P4 0.8x0.8x5 thick", dict(spacing=[0.8, 0.8, 5.0], size=[220, 200, 24])),
        ("P5 2 lesions", dict(spacing=[0.8, 0.8, 2.0], size=[220, 200, 60], lesions=[
            LesionSpec(center_lps=[-75.0, 5.0, -15.0], radius_mm=8.0, target_margin_mm=5.0),
            LesionSpec(center_lps=[-35.0, -10.0, 20.0], radius_mm=6.0, target_margin_mm=4.0,
                       zone_rotation_deg=[-10.0, 25.0, 5.0])])),
    ]
    for name, kw in variants:
        case = make_phantom(PhantomSpec(**kw))  # type: ignore[arg-type]
        seeds = [t.zone_center_post_lps for t in case.truth]
        out.append(Case(f"{name} abl", "ablation", case.post, seeds, case.ablation))
        tum = sitk.Cast(case.tumor > 0, sitk.sitkUInt8)
        for t in case.truth:
            lab = sitk.Cast(case.tumor == t.id, sitk.sitkUInt8)
            out.append(Case(f"{name} tum{t.id}", "tumor", case.pre, [t.tumor_center_pre_lps],
                            lab if len(case.truth) > 1 else tum))
        if name.startswith("P1"):
            t0 = case.truth[0]
            rot = np.asarray(t0.zone_rotation)
            off = np.asarray(t0.zone_center_post_lps) + rot[:, 1] * 0.6 * t0.zone_axes_mm[1]
            out.append(Case("P1 off-centre seed (60% to edge)", "ablation", case.post,
                            [off.tolist()], case.ablation))
    return out


def _real_cases() -> list[Case]:
    if not HCC048.exists():
        return []
    from a0verify.io import read_image

    img = read_image(HCC048)
    c = np.asarray(HCC048_LIVER_POINT_LPS)
    rot = (20.0, -15.0, 30.0)
    out: list[Case] = []

    def add(name: str, zones: list[Ellipsoid], seeds: Sequence[Sequence[float]] | None = None,
            **kw: float) -> None:
        pc = paint_ablation_zone(img, zones, **kw)  # type: ignore[arg-type]
        s = [list(map(float, z.center_lps)) for z in zones] if seeds is None else seeds
        out.append(Case(name, "ablation", pc.image, [list(x) for x in s], pc.truth))
        if name.startswith("R1"):
            out.append(Case("R1b seed on gas bubble", "ablation", pc.image,
                            [pc.gas_centers_lps[0]], pc.truth))

    add("R1 ellipsoid 16x12x14", [Ellipsoid(c, (16, 12, 14), rot)])
    r = np.asarray(geometry.rotation_matrix(rot))
    add("R2 seed 7 mm off-centre", [Ellipsoid(c, (16, 12, 14), rot)],
        seeds=[(c + r[:, 1] * 7.0).tolist()], seed=1)
    add("R3 small 9x7x8", [Ellipsoid(c, (9, 7, 8), (0, 30, 10))], seed=2, n_gas=1)
    add("R4 large 22x18x20", [Ellipsoid(c, (22, 18, 20), (5, 5, 60))], seed=3, n_gas=5)
    two = [Ellipsoid(c - r[:, 0] * 7, (13, 11, 12), rot), Ellipsoid(c + r[:, 0] * 7, (13, 11, 12),
                                                                    rot)]
    add("R5 confluent 2 probes, 2 seeds", two, seed=4)
    add("R6 confluent 2 probes, 1 seed", two, seeds=[list(two[0].center_lps)], seed=4)
    add("R7 noise 25 HU", [Ellipsoid(c, (16, 12, 14), rot)], seed=5, noise_hu=25.0)
    add("R8 low contrast (zone 65 HU)", [Ellipsoid(c, (16, 12, 14), rot)], seed=6,
        zone_hu=65.0)
    add("R9 no rim, heterogeneous 15", [Ellipsoid(c, (15, 13, 12), (40, 0, 0))], seed=7,
        rim_hu=-2000.0, heterogeneity_hu=15.0)
    # failures
    out.append(Case("F1 seed in normal liver (no zone)", "ablation", img, [c.tolist()], None,
                    expect="error"))
    out.append(Case("F2 seed in air outside body", "ablation", img, [[-170.0, -170.0, -262.0]],
                    None, expect="error"))
    out.append(Case("F3 seed outside image", "ablation", img, [[0.0, 0.0, 100.0]], None,
                    expect="error"))
    out.append(Case("F4 tumour seed in normal liver", "tumor", img, [c.tolist()], None,
                    expect="error"))
    return out


# --------------------------------------------------------------------------- methods
def _ours(case: Case) -> SegmentationResult:
    if case.kind == "ablation":
        return segment_ablation(case.image, case.seeds)
    return segment_tumor(case.image, case.seeds[0])


def _ours_nosmooth(case: Case) -> SegmentationResult:
    orig = segcore.SegParams.for_kind

    def patched(kind: segcore.Kind) -> segcore.SegParams:
        return dataclasses.replace(orig(kind), sdf_sigma_mm=0.0, close_radius_mm=0.0)

    segcore.SegParams.for_kind = staticmethod(patched)  # type: ignore[method-assign]
    try:
        return _ours(case)
    finally:
        segcore.SegParams.for_kind = staticmethod(orig)  # type: ignore[method-assign]


def _confconn(case: Case) -> SegmentationResult:
    img = case.image
    full = np.zeros(geometry.xyz_to_zyx(img.GetSize()).astype(int), np.uint8)
    for s in case.seeds:
        segcore.check_seed_inside(img, s, "input")
        box = geometry.roi_box_around_lps(img, np.asarray(s)[None], 45.0)
        roi = geometry.crop(sitk.Cast(img, sitk.sitkFloat32), box)
        roi = sitk.SmoothingRecursiveGaussian(roi, 0.8)
        idx = np.rint(geometry.lps_to_index(roi, s)).astype(int).tolist()
        seg = sitk.ConfidenceConnected(roi, seedList=[idx], numberOfIterations=4, multiplier=2.5,
                                       initialNeighborhoodRadius=2, replaceValue=1)
        seg = sitk.BinaryFillhole(seg)
        full[box.slices] |= sitk.GetArrayFromImage(seg).astype(np.uint8)
    full = ndimage.binary_fill_holes(full).astype(np.uint8)
    return SegmentationResult(geometry.array_to_image(full, img), "sitk ConfidenceConnected", [],
                              {})


METHODS: dict[str, Callable[[Case], SegmentationResult]] = {
    "a0verify": _ours,
    "a0verify-nosmooth": _ours_nosmooth,
    "sitk-confconn": _confconn,
}


# --------------------------------------------------------------------------- run
def _run(case: Case, fn: Callable[[Case], SegmentationResult]) -> dict[str, str]:
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        res = fn(case)
        err = ""
    except A0Error as exc:
        res, err = None, f"{type(exc).__name__}: {exc}"
    dt = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    row = {"time_s": f"{dt:.2f}", "peak_mb": f"{peak:.0f}", "dice": "", "hd95_mm": "",
           "outcome": ""}
    if res is None:
        row["outcome"] = "error (expected)" if case.expect == "error" else "ERROR"
        row["detail"] = err[:150]
        return row
    if case.truth is not None:
        row["dice"] = f"{dice_coefficient(res.mask, case.truth):.3f}"
        if sitk.GetArrayViewFromImage(res.mask).any():
            row["hd95_mm"] = f"{hausdorff95_mm(res.mask, case.truth):.2f}"
        row["outcome"] = "ok" if not res.warnings else "ok+warning"
    else:
        row["outcome"] = "warning (expected)" if res.warnings else "MISSED (no error)"
    row["detail"] = "; ".join(res.warnings)[:150]
    return row


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="phantom cases only, our method only")
    ap.add_argument("--out", type=Path, default=None, help="also write the table (Markdown)")
    args = ap.parse_args(argv)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(2)
    cases = _phantom_cases() + ([] if args.quick else _real_cases())
    methods = {"a0verify": METHODS["a0verify"]} if args.quick else METHODS
    lines = [
        f"# Segmentation benchmark ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})",
        "",
        f"`.venv/bin/python benchmarks/bench_segmentation.py` on {platform.machine()}, "
        f"{os.cpu_count()} cores (shared), SimpleITK {sitk.Version.VersionString()}, "
        f"2 SimpleITK threads. Targets: ablation Dice >= 0.90 and HD95 <= 2 mm, tumour "
        "Dice >= 0.85, <= 10 s per structure.",
        "",
        "| case | kind | method | Dice | HD95 mm | time s | peak MB | outcome | detail |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    print("\n".join(lines), flush=True)
    summary: dict[str, list[tuple[float, float, float]]] = {m: [] for m in methods}
    for case in cases:
        for mname, fn in methods.items():
            if case.truth is None and mname != "a0verify":
                continue
            row = _run(case, fn)
            line = (f"| {case.name} | {case.kind} | {mname} | {row['dice']} | {row['hd95_mm']} | "
                    f"{row['time_s']} | {row['peak_mb']} | {row['outcome']} | "
                    f"{row.get('detail', '').replace('|', '/')} |")
            print(line, flush=True)
            lines.append(line)
            if row["dice"]:
                summary[mname].append((float(row["dice"]),
                                       float(row["hd95_mm"] or "nan"), float(row["time_s"])))
    lines += ["", "| method | cases | min Dice | median Dice | max HD95 mm | median time s | "
              "max time s | time ratio vs sitk-confconn (median) |", "|---|---|---|---|---|---|---|---|"]
    ref = summary.get("sitk-confconn") or []
    ref_t = float(np.median([r[2] for r in ref])) if ref else float("nan")
    for m, rows in summary.items():
        if not rows:
            continue
        a = np.asarray(rows)
        lines.append(f"| {m} | {len(rows)} | {a[:, 0].min():.3f} | {np.median(a[:, 0]):.3f} | "
                     f"{np.nanmax(a[:, 1]):.2f} | {np.median(a[:, 2]):.2f} | {a[:, 2].max():.2f} | "
                     f"{np.median(a[:, 2]) / ref_t:.2f} |")
    print("\n".join(lines[-(len(summary) + 2):]))
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
