"""Benchmark: ablation-zone and tumour segmentation against baselines (Dice, HD95, time, memory).

Run: ``.venv/bin/python benchmarks/bench_segmentation.py [--quick] [--only TEXT] [--out FILE.md]``
(default output ``benchmarks/RESULTS_segmentation.md``; ~30-40 min on 2 cores, --quick ~3 min).
``--only needle`` keeps the cases whose name or category contains the text (case-insensitive;
comma-separated alternatives, e.g. ``--only needle,gallbladder``); a filtered run is written only
to an explicit ``--out``, never over the results file.

Data (all real anatomy; nothing is copied into the repository):

* **Ablation zones painted into the real HCC_048 CT** (``/work/shared/data/hcc048``) by
  :func:`a0verify.segmentation.cases.zone_catalogue`: sizes 1-10 cm (XS-XL), 1-3 overlapping
  probes, vessel-cooling notches and clipping at fat/gallbladder/kidney from the real anatomy,
  gas, gas tracts, metal needles with streaks, tracts leaving the zone, contrast-phase changes.
  Split **dev** (used while choosing the method and its defaults) and **holdout** (drawn from a
  different random stream, never tuned on). One click per zone at a random point a user could
  click (>= min(5 mm, 40 % of the zone's depth) inside; it may land on gas or the needle).
* **Real contoured tumours**: LiTS case 117 from the PyPI package
  ``liver-ct-segmentation-package`` 1.6.0 (read from the installed package; skipped when it is
  absent), every tumour >= 1 ml with its RECIST line measured on the reference contour;
  alternate tumours form the dev and holdout halves. Voxel size assumed 1.6 mm (see
  :mod:`a0verify.segmentation.realdata`); our method is also run at 1.2 and 2.0 mm.
* **Painted lesions** on HCC_048 for the contrast categories (near-iso 12-20 HU, hypo 40 HU,
  hyper 25/50 HU, necrotic centre, enhancing rim), input = RECIST line.
* **Failures**: clicks in normal liver, in air, outside the image: the expected outcome is an
  error (exit 4 or 2), reported as such.

Methods (same inputs, same run): ``a0verify`` (ours) and the baselines of
``benchmarks/seg_baselines.py`` (ConfidenceConnected floor, geodesic active contour, random
walker). Times are wall seconds per structure with SimpleITK bound to 2 threads; peak memory is
the tracemalloc peak (NumPy allocations; ITK buffers are not seen). The load average of the
shared machine is recorded with the results.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import tracemalloc
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parent))
import seg_baselines as base

from a0verify.errors import A0Error
from a0verify.segmentation import (
    dice_coefficient,
    hausdorff95_mm,
    segment_ablation,
    segment_tumor,
)
from a0verify.segmentation.cases import HCC048_ANCHORS, zone_catalogue
from a0verify.segmentation.realdata import lits117, lits117_tumors, recist_line
from a0verify.segmentation.synth import (
    HCC048_LIVER_POINT_LPS,
    Ellipsoid,
    paint_lesion,
    paint_zone,
)

HCC048 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "hcc048" / \
    "HCC048_portal_venous"
if not HCC048.exists():
    HCC048 = Path("/work/shared/data/hcc048/HCC048_portal_venous")
DICE_TARGET = {"ablation": 0.92, "tumor": 0.85}


@dataclass
class Case:
    name: str
    kind: str  # ablation | tumor
    split: str  # dev | holdout | - (failure cases)
    image: sitk.Image
    seeds: list[list[float]] = field(default_factory=list)
    line: tuple[list[float], list[float]] | None = None
    truth: sitk.Image | None = None
    category: dict[str, str] = field(default_factory=dict)
    expect: str = "ok"


# --------------------------------------------------------------------------- cases
def ablation_cases(img: sitk.Image, n_dev: int, n_hold: int,
                   only: list[str] | None = None) -> list[Case]:
    out = []
    for split, n in (("dev", n_dev), ("holdout", n_hold)):
        for cc in zone_catalogue(split, n):
            text = " ".join([cc.name, *cc.category.values()]).lower()
            if only and not any(k in text for k in only):
                continue  # filtered out before painting (painting is the slow part)
            try:
                pc = paint_zone(img, cc.spec)
            except ValueError as exc:  # centre cut away by the anatomy: reported, not hidden
                print(f"  {cc.name}: not painted ({exc})", flush=True)
                continue
            click = pc.click_points(1, np.random.default_rng(cc.spec.seed))[0]
            out.append(Case(cc.name, "ablation", split, pc.image, [click], None, pc.truth,
                            cc.category))
            print(f"  painted {cc.name} {cc.category}", flush=True)
    return out


def lits_cases(spacing: float, tag: str = "") -> list[Case]:
    data = lits117(spacing)
    if data is None:
        return []
    img, lab = data
    out = []
    for k, t in enumerate(lits117_tumors(img, lab)):
        split = "dev" if k % 2 == 0 else "holdout"
        cat = {"source": "LiTS 117" + tag, "size": f"{t.diameter_mm:.0f} mm",
               "contrast": "hypodense (real)",
               "edge": "cut by the crop" if t.touches_crop_edge else "whole"}
        out.append(Case(f"LiTS-117 #{t.label}{tag}", "tumor", split, img, [], t.line_lps,
                        t.mask, cat))
    return out


def painted_tumor_cases(img: sitk.Image) -> list[Case]:
    c = np.asarray(HCC048_LIVER_POINT_LPS)
    specs = [
        ("near-iso hypo 12 HU", dict(lesion_hu=-12.0), (11, 9, 10)),
        ("near-iso hypo 20 HU", dict(lesion_hu=-20.0), (14, 11, 12)),
        ("hypo 40 HU", dict(lesion_hu=-40.0), (9, 8, 8)),
        ("hyper 25 HU", dict(lesion_hu=25.0), (12, 10, 11)),
        ("hyper 50 HU", dict(lesion_hu=50.0), (10, 9, 9)),
        ("necrotic centre", dict(lesion_hu=-35.0, necrosis_hu=-90.0), (16, 13, 14)),
        ("enhancing rim", dict(lesion_hu=-40.0, rim_hu=+30.0), (13, 11, 12)),
    ]
    out = []
    anchors = HCC048_ANCHORS[20]
    for k, (name, kw, axes) in enumerate(specs):
        centre = np.asarray(anchors[k % len(anchors)], float) if k else c
        tissue = 113.0
        kw2 = dict(kw)
        lesion = tissue + float(kw2.pop("lesion_hu"))
        for key in ("necrosis_hu", "rim_hu"):
            if key in kw2:
                kw2[key] = tissue + float(kw2[key])
        pc = paint_lesion(img, [Ellipsoid(centre, axes, (10.0 * k, 20.0, 30.0))],
                          lesion_hu=lesion, seed=100 + k, **kw2)  # type: ignore[arg-type]
        a, b, _ = recist_line(sitk.GetArrayViewFromImage(pc.truth).astype(bool), pc.truth)
        out.append(Case(f"painted {name}", "tumor", "holdout", pc.image, [], (a, b), pc.truth,
                        {"source": "painted on HCC_048", "contrast": name}))
    return out


def failure_cases(img: sitk.Image) -> list[Case]:
    c = list(HCC048_LIVER_POINT_LPS)
    return [
        Case("F1 click in normal liver", "ablation", "-", img, [c], expect="error"),
        Case("F2 click in air outside the body", "ablation", "-", img,
             [[-170.0, -170.0, -262.0]], expect="error"),
        Case("F3 click outside the image", "ablation", "-", img, [[0.0, 0.0, 100.0]],
             expect="error"),
        Case("F4 tumour line in normal liver", "tumor", "-", img, [],
             ([c[0] - 10, c[1], c[2]], [c[0] + 10, c[1], c[2]]), expect="error"),
        Case("F5 tumour click in normal liver", "tumor", "-", img, [c], expect="error"),
    ]


# --------------------------------------------------------------------------- methods
def _ours(case: Case) -> tuple[sitk.Image, str]:
    if case.kind == "ablation":
        r = segment_ablation(case.image, case.seeds)
    else:
        r = segment_tumor(case.image, line_lps=case.line, seeds_lps=case.seeds)
    q = r.quality
    return r.mask, "" if q is None else q.level


def _seeds_of(case: Case) -> list[list[float]]:
    if case.line is None:
        return case.seeds
    a, b = (np.asarray(v, float) for v in case.line)
    return [(a + t * (b - a)).tolist() for t in np.linspace(0.2, 0.8, 5)] + case.seeds


def _pad(case: Case) -> float:
    if case.line is None:
        return 60.0
    return 0.6 * float(np.linalg.norm(np.subtract(*case.line))) + 15.0


def _baseline(fn: Callable[..., sitk.Image]) -> Callable[[Case], tuple[sitk.Image, str]]:
    def run(case: Case) -> tuple[sitk.Image, str]:
        kw: dict[str, float] = {"pad": _pad(case)}
        if fn is base.random_walker and case.line is not None:
            kw["background_radius_mm"] = 0.6 * float(np.linalg.norm(np.subtract(*case.line))) \
                + 4.0
        return fn(case.image, _seeds_of(case), **kw), ""
    return run


METHODS: dict[str, Callable[[Case], tuple[sitk.Image, str]]] = {
    "a0verify": _ours,
    "confconn": _baseline(base.confconn),
    "gac": _baseline(base.gac),
    "random-walker": _baseline(base.random_walker),
}


def run_one(case: Case, method: str) -> dict[str, str | float]:
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        mask, level = METHODS[method](case)
        err = ""
    except A0Error as exc:
        mask, level, err = None, "", f"{type(exc).__name__}: {exc}"
    dt = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    row: dict[str, str | float] = {"time_s": dt, "peak_mb": peak, "dice": float("nan"),
                                   "hd95": float("nan"), "quality": level, "detail": err[:110]}
    if mask is None:
        row["outcome"] = "error (expected)" if case.expect == "error" else "FAILED"
        return row
    if case.truth is None:
        row["outcome"] = "MISSED (no error)"
        return row
    row["dice"] = dice_coefficient(mask, case.truth)
    arr = sitk.GetArrayViewFromImage(mask)
    row["hd95"] = hausdorff95_mm(mask, case.truth) if arr.any() else float("inf")
    row["outcome"] = "ok"
    return row


# --------------------------------------------------------------------------- report
def _f(v: object, nd: int = 3) -> str:
    return "" if isinstance(v, float) and np.isnan(v) else (f"{v:.{nd}f}" if isinstance(
        v, float) else str(v))


def summarise(rows: list[dict]) -> list[str]:
    lines = ["| kind | split | method | cases | failed | min Dice | median Dice | Dice >= target "
             "| max HD95 mm | HD95 > 2 mm | median s | max s | peak MB |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    groups: dict[tuple[str, str, str], list[dict]] = defaultdict(list)
    for r in rows:
        if r["split"] != "-":
            groups[(r["kind"], r["split"], r["method"])].append(r)
    for (kind, split, method), rs in sorted(groups.items()):
        d = np.array([r["dice"] if r["outcome"] == "ok" else 0.0 for r in rs])
        h = np.array([r["hd95"] if r["outcome"] == "ok" else np.inf for r in rs])
        t = np.array([r["time_s"] for r in rs])
        fails = sum(r["outcome"] != "ok" for r in rs)
        lines.append(
            f"| {kind} | {split} | {method} | {len(rs)} | {fails} | {d.min():.3f} | "
            f"{np.median(d):.3f} | {np.mean(d >= DICE_TARGET[kind]):.0%} | {h.max():.2f} | "
            f"{int(np.sum(h > 2.0))} | {np.median(t):.1f} | {t.max():.1f} | "
            f"{max(r['peak_mb'] for r in rs):.0f} |")
    return lines


def by_category(rows: list[dict], kind: str, keys: list[str]) -> list[str]:
    out = []
    ours = [r for r in rows if r["kind"] == kind and r["method"] == "a0verify" and
            r["split"] != "-"]
    for key in keys:
        groups: dict[str, list[dict]] = defaultdict(list)
        for r in ours:
            if key in r["category"]:
                groups[r["category"][key]].append(r)
        if not groups:
            continue
        out += ["", f"**{kind} by {key}** (a0verify, dev + holdout)", "",
                "| " + key + " | cases | min Dice | median Dice | max HD95 mm | failed |",
                "|---|---|---|---|---|---|"]
        for val, rs in sorted(groups.items()):
            d = np.array([r["dice"] if r["outcome"] == "ok" else 0.0 for r in rs])
            h = np.array([r["hd95"] if r["outcome"] == "ok" else np.inf for r in rs])
            out.append(f"| {val} | {len(rs)} | {d.min():.3f} | {np.median(d):.3f} | "
                       f"{h.max():.2f} | {sum(r['outcome'] != 'ok' for r in rs)} |")
    return out


def _keys(only: str) -> list[str]:
    return [k.strip().lower() for k in only.split(",") if k.strip()]


def _matches(case: Case, keys: list[str]) -> bool:
    text = " ".join([case.name, *case.category.values()]).lower()
    return any(k in text for k in keys)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a few cases, ours and the floor")
    ap.add_argument("--n-dev", type=int, default=20)
    ap.add_argument("--n-holdout", type=int, default=20)
    ap.add_argument("--only", default="", help="keep cases whose name or category contains "
                    "this text (comma-separated alternatives)")
    ap.add_argument("--ours-only", action="store_true", help="skip the baselines")
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name(
        "RESULTS_segmentation.md"))
    args = ap.parse_args(argv)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(2)
    load0 = os.getloadavg()
    t_start = time.time()
    cases: list[Case] = []
    if HCC048.exists():
        from a0verify.io import read_image

        img = read_image(HCC048)
        n_dev, n_hold = (3, 3) if args.quick else (args.n_dev, args.n_holdout)
        cases += ablation_cases(img, n_dev, n_hold, _keys(args.only))
        if not args.quick:
            cases += painted_tumor_cases(img)
        cases += failure_cases(img)
    else:
        print(f"HCC_048 not found at {HCC048}: painted cases skipped", file=sys.stderr)
    lits = lits_cases(1.6)
    cases += lits[:4] if args.quick else lits
    extra = [] if args.quick else lits_cases(1.2, " @1.2mm") + lits_cases(2.0, " @2.0mm")
    if args.only:
        keys = _keys(args.only)
        cases = [c for c in cases if _matches(c, keys)]
        extra = [c for c in extra if _matches(c, keys)]
    rows: list[dict] = []
    for case in cases + extra:
        methods = ["a0verify"]
        if case.split == "holdout" or (case.kind == "tumor" and "@" not in case.name):
            methods += ["confconn"] if args.quick else ["confconn", "gac", "random-walker"]
        if case.split == "-" or args.ours_only:
            methods = ["a0verify"]
        for m in methods:
            r = run_one(case, m)
            r.update(name=case.name, kind=case.kind, split=case.split if "@" not in case.name
                     else "sensitivity", method=m, category=case.category)
            rows.append(r)
            print(f"{case.name:34s} {m:14s} dice={_f(r['dice'])} hd95={_f(r['hd95'], 2)} "
                  f"t={r['time_s']:.1f}s q={r['quality']} {r['outcome']} {r['detail']}",
                  flush=True)
    load1 = os.getloadavg()
    lines = [f"# Segmentation benchmark ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})",
             "", "`.venv/bin/python benchmarks/bench_segmentation.py"
             f"{' --quick' if args.quick else ''}"
             f"{' --only ' + args.only if args.only else ''}` on {platform.machine()}, "
             f"{os.cpu_count()} CPUs visible, SimpleITK 2 threads; "
             f"load average {load0[0]:.1f} at start, {load1[0]:.1f} at the end (shared machine); "
             f"total {time.time() - t_start:.0f} s. Targets: ablation Dice >= 0.92 and HD95 <= "
             "2 mm, tumour Dice >= 0.85, <= 10 s per structure.", "",
             "## Summary", ""]
    lines += summarise(rows)
    lines += ["", "## By category", ""]
    lines += by_category(rows, "ablation", ["size", "shape", "artefacts", "phase", "place"])
    lines += by_category(rows, "tumor", ["contrast", "source", "edge"])
    sens = [r for r in rows if r["split"] == "sensitivity"]
    if sens:
        lines += ["", "**LiTS voxel-size assumption** (a0verify; 1.6 mm is the default "
                  "assumption)", "", "| assumed voxel | cases | median Dice | min Dice |",
                  "|---|---|---|---|"]
        for tag in ("@1.2mm", "@2.0mm"):
            d = np.array([r["dice"] if r["outcome"] == "ok" else 0.0 for r in sens
                          if r["name"].endswith(tag)])
            if d.size:
                lines.append(f"| {tag[1:]} | {d.size} | {np.median(d):.3f} | {d.min():.3f} |")
    lines += ["", "## Every case", "", "| case | kind | split | method | Dice | HD95 mm | s | "
              "peak MB | quality | outcome | category / detail |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        cat = ", ".join(f"{v}" for v in r["category"].values())
        lines.append(f"| {r['name']} | {r['kind']} | {r['split']} | {r['method']} | "
                     f"{_f(r['dice'])} | {_f(r['hd95'], 2)} | {r['time_s']:.1f} | "
                     f"{r['peak_mb']:.0f} | {r['quality']} | {r['outcome']} | "
                     f"{cat}{' ' + r['detail'] if r['detail'] else ''} |")
    notes = Path(__file__).with_name("NOTES_segmentation.md")
    if notes.exists():
        lines += ["", notes.read_text().strip()]
    text = "\n".join(lines) + "\n"
    print(text)
    filtered = bool(args.only) or args.ours_only
    if (not args.quick and not filtered) or "--out" in (argv or sys.argv):
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
