"""Benchmark of the margin step (issue #3): one command, prints tables, writes RESULTS_margin.md.

    .venv/bin/python benchmarks/bench_margin.py            # speed + accuracy (10 per row)
    .venv/bin/python benchmarks/bench_margin.py --accuracy 0    # speed only

Speed case: 512 x 512 x 300 voxels at 0.78 x 0.78 x 2.5 mm, a 3 cm spherical tumour inside a
5 cm spherical ablation zone (true MAM known). Every item runs in a fresh subprocess that reads
the masks from disk, so the peak memory (ru_maxrss above the process baseline after reading) and
the wall time belong to that item alone; timings are the median of repeats after one warm-up
(Numba kernels come from the on-disk cache). Compared in the same run:

* the whole margin step (``compute_margin``) against scipy's full-volume EDT;
* the EDT kernel alone on the margin step's region of interest against scipy, ``edt`` (PyPI)
  and SimpleITK's SignedMaurerDistanceMap (2 threads where the library allows);
* the whole ``a0verify margin`` process against reading the masks plus scipy's full-volume EDT.

Accuracy (``--accuracy N``): N random cases per spacing and orientation (spheres in ellipsoids,
ellipsoids in spheres, rasterised by voxel-centre inclusion, exact MAM by root finding), with the
mean / max |error|, the reported uncertainty band's coverage and mean half-width.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
SHAPE_ZYX = (300, 512, 512)
SPACING_XYZ = (0.78, 0.78, 2.5)
R_TUMOR, R_ZONE = 15.0, 25.0
C_TUMOR = np.array([3.3, -2.1, 1.7])
C_ZONE = C_TUMOR + np.array([2.0, 1.0, 3.0])
THREADS = 2


# --------------------------------------------------------------------------- case
def _ball(img: Any, c: np.ndarray, r: float) -> np.ndarray:
    from a0verify import geometry

    arr = np.zeros(SHAPE_ZYX, np.uint8)
    sp = geometry.spacing_zyx(img)
    idx = geometry.lps_to_zyx_index(img, c[None])[0]
    rad = np.ceil(r / sp).astype(int) + 1
    lo = np.maximum(np.floor(idx).astype(int) - rad, 0)
    hi = np.minimum(np.ceil(idx).astype(int) + rad + 1, SHAPE_ZYX)
    zz, yy, xx = np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi, strict=True)],
                             indexing="ij")
    pts = geometry.zyx_index_to_lps(img, np.stack([zz, yy, xx], -1).astype(float))
    arr[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = np.sum((pts - c) ** 2, -1) <= r * r
    return arr


def make_case(d: Path) -> dict[str, Any]:
    import SimpleITK as sitk

    from a0verify import geometry
    from a0verify.io import write_image

    grid = geometry.make_grid(SHAPE_ZYX[::-1], SPACING_XYZ)
    t = geometry.array_to_image(_ball(grid, C_TUMOR, R_TUMOR), grid)
    a = geometry.array_to_image(_ball(grid, C_ZONE, R_ZONE), grid)
    write_image(t, d / "tumor.nrrd")
    write_image(a, d / "ablation.nrrd")
    del sitk
    return {"truth_mam_mm": R_ZONE - float(np.linalg.norm(C_ZONE - C_TUMOR)) - R_TUMOR}


# --------------------------------------------------------------------------- items (subprocess)
def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _timeit(fn: Any, repeat: int) -> float:
    """Median wall time of ``repeat`` calls after one warm-up call (``repeat`` 0: one call)."""
    if repeat <= 0:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0
    fn()
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def run_item(name: str, d: Path, repeat: int) -> dict[str, Any]:
    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(THREADS)
    t0 = time.perf_counter()
    tum = sitk.ReadImage(str(d / "tumor.nrrd"))
    abl = sitk.ReadImage(str(d / "ablation.nrrd"))
    read_s = time.perf_counter() - t0
    from scipy import ndimage

    from a0verify import geometry
    from a0verify.margin import compute_margin, core

    sp = geometry.spacing_zyx(abl)
    out: dict[str, Any] = {"item": name, "read_s": read_s}
    # region of interest of the margin step (tumour box + threshold + safety band)
    res0 = compute_margin(tum, abl)
    mm = res0.margin_map
    assert mm is not None
    lo = np.rint(geometry.lps_to_zyx_index(abl, np.array([mm.GetOrigin()]))[0]).astype(int)
    hi = lo + np.asarray(mm.GetSize()[::-1])
    roi = np.ascontiguousarray(
        sitk.GetArrayViewFromImage(abl)[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] != 0)
    out["roi_shape"] = list(roi.shape)
    full = sitk.GetArrayViewFromImage(abl) != 0
    base = _rss_mb()
    if name == "margin_step":
        holder: dict[str, Any] = {}

        def f() -> None:
            holder["r"] = compute_margin(tum, abl)

        out["wall_s"] = _timeit(f, repeat)
        r = holder["r"]
        out["reported_timings_s"] = r.timings_s
        out["mam_mm"] = r.min_margin_mm
        out["uncertainty_mm"] = r.lesions[0].uncertainty_mm
    elif name == "edt_roi_a0verify":
        out["wall_s"] = _timeit(lambda: core.edt(roi, sp), repeat)
    elif name == "edt_roi_scipy":
        out["wall_s"] = _timeit(lambda: ndimage.distance_transform_edt(roi, sampling=sp), repeat)
    elif name == "edt_roi_edt":
        import edt

        out["wall_s"] = _timeit(lambda: edt.edt(roi, anisotropy=tuple(sp), parallel=THREADS),
                                repeat)
    elif name == "edt_roi_sitk_maurer":
        img = sitk.GetImageFromArray(roi.astype(np.uint8))
        img.SetSpacing(abl.GetSpacing())
        out["wall_s"] = _timeit(lambda: sitk.SignedMaurerDistanceMap(
            img, insideIsPositive=True, squaredDistance=False, useImageSpacing=True), repeat)
    elif name == "edt_full_scipy":
        out["wall_s"] = _timeit(lambda: ndimage.distance_transform_edt(full, sampling=sp), 0)
    elif name == "edt_full_a0verify":
        out["wall_s"] = _timeit(lambda: core.edt(full, sp), 1)
    else:
        raise SystemExit(f"unknown item {name}")
    out["peak_mb"] = max(0.0, _rss_mb() - base)
    return out


def spawn(name: str, d: Path, repeat: int) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--item", name, "--dir", str(d), "--repeat", str(repeat)]
    p = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if p.returncode != 0:
        return {"item": name, "error": p.stderr.strip().splitlines()[-1:] or ["?"]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def time_process(cmd: list[str]) -> tuple[float, float, str, float]:
    """(wall s, max RSS MB, last stderr line on failure, CPU s user+system) of one process."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    err = p.stderr.read() if p.stderr else ""
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    msg = (err.strip().splitlines() or [""])[-1] if p.returncode else ""
    return wall, ru.ru_maxrss / 1024.0, msg, ru.ru_utime + ru.ru_stime


def read_plus_scipy(d: Path) -> None:
    import SimpleITK as sitk
    from scipy import ndimage

    t = sitk.ReadImage(str(d / "tumor.nrrd"))
    a = sitk.ReadImage(str(d / "ablation.nrrd"))
    del t
    ndimage.distance_transform_edt(sitk.GetArrayViewFromImage(a) != 0,
                                   sampling=a.GetSpacing()[::-1])


# --------------------------------------------------------------------------- accuracy
def accuracy_table(n: int, seed: int) -> list[dict[str, Any]]:
    """Random analytic cases per (spacing, orientation): MAM errors and band coverage."""
    sys.path.insert(0, str(HERE.parent / "tests"))
    from test_margin_api import allowed_error, analytic_case

    from a0verify.margin import compute_margin

    rng = np.random.default_rng(seed)
    rows = []
    for spacing in [(0.7, 0.7, 0.7), (0.8, 0.8, 1.6), (0.8, 0.8, 2.5), (0.8, 0.8, 3.0)]:
        for oblique in (False, True):
            errs, cov, width, ok = [], [], [], []
            for i in range(n):
                kind = "sphere_in_ellipsoid" if i % 2 == 0 else "ellipsoid_in_sphere"
                tum, abl, truth = analytic_case(rng, spacing, oblique, kind)
                les = compute_margin(tum, abl).lesions[0]
                e = les.min_margin_mm - truth
                errs.append(abs(e))
                cov.append(abs(e) <= les.uncertainty_mm)
                width.append(les.uncertainty_mm)
                ok.append(abs(e) <= allowed_error([spacing]))
            rows.append({"spacing": "x".join(f"{s:g}" for s in spacing),
                         "orientation": "oblique" if oblique else "axis-aligned", "n": n,
                         "mean_abs_err": float(np.mean(errs)), "max_abs_err": float(np.max(errs)),
                         "coverage": float(np.mean(cov)), "mean_halfwidth": float(np.mean(width)),
                         "within_bound": float(np.mean(ok))})
            print(json.dumps(rows[-1]), flush=True)
    return rows


# --------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--item")
    ap.add_argument("--dir")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--accuracy", type=int, default=10, help="cases per spacing/orientation")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--no-speed", action="store_true")
    ap.add_argument("--read-plus-scipy")
    args = ap.parse_args()
    if args.item:
        print(json.dumps(run_item(args.item, Path(args.dir), args.repeat)))
        return
    if args.read_plus_scipy:
        read_plus_scipy(Path(args.read_plus_scipy))
        return
    lines = ["# Margin benchmark (issue #3)", "",
             f"Machine: {os.cpu_count()} CPUs (shared), Python {sys.version.split()[0]}; "
             f"{THREADS} threads where configurable. Generated by `benchmarks/bench_margin.py`.",
             ""]
    if not args.no_speed:
        with tempfile.TemporaryDirectory(prefix="a0v-bench-margin-") as td:
            d = Path(td)
            info = make_case(d)
            items = ["margin_step", "edt_roi_a0verify", "edt_roi_edt", "edt_roi_sitk_maurer",
                     "edt_roi_scipy", "edt_full_a0verify", "edt_full_scipy"]
            res = {it: spawn(it, d, args.repeat) for it in items}
            exe = str(Path(sys.executable).with_name("a0verify"))
            cli_cmd = [exe, "margin", "--tumor", str(d / "tumor.nrrd"), "--ablation",
                       str(d / "ablation.nrrd"), "--out", str(d / "out"), "--quiet"]
            time_process(cli_cmd)  # warm caches (Numba on-disk cache, file cache)
            ref_cmd = [sys.executable, __file__, "--read-plus-scipy", str(d)]
            # interleaved, so that both see the same load on a shared machine
            cli, refs = [], []
            for k in range(3):
                refs.append(time_process(ref_cmd))
                cli += [time_process(cli_cmd) for _ in range(2 if k < 2 else 1)]
            report = None
            rp = d / "out" / "report.json"
            if rp.exists():
                report = json.loads(rp.read_text())
        ms = res["margin_step"]
        full = res["edt_full_scipy"].get("wall_s", float("nan"))
        lines += [f"## Clinical-size case: 512 x 512 x 300 at 0.78 x 0.78 x 2.5 mm, 3 cm tumour, "
                  f"5 cm zone (true MAM {info['truth_mam_mm']:.3f} mm)", "",
                  f"Margin-step ROI: {ms.get('roi_shape')} voxels (z, y, x).", "",
                  "| item | wall time (s) | peak memory (MB) | ratio |",
                  "|---|---:|---:|---|"]

        def row(label: str, r: dict[str, Any], ratio: str = "") -> None:
            if "error" in r:
                lines.append(f"| {label} | failed: {r['error']} | | |")
            else:
                lines.append(f"| {label} | {r['wall_s']:.4f} | {r['peak_mb']:.0f} | {ratio} |")

        row("margin step (`compute_margin`, whole)", ms,
            f"{full / ms['wall_s']:.0f}x faster than full-volume scipy EDT" if "wall_s" in ms
            else "")
        roi_items = ["edt_roi_a0verify", "edt_roi_edt", "edt_roi_sitk_maurer", "edt_roi_scipy"]
        fastest_lib = min((res[k]["wall_s"] for k in roi_items[1:] if "wall_s" in res[k]),
                          default=float("nan"))
        for k in roi_items:
            r = res[k]
            ratio = ""
            if "wall_s" in r and k == "edt_roi_a0verify":
                ratio = f"{fastest_lib / r['wall_s']:.2f}x the fastest library's speed"
            row(f"EDT on ROI: {k.removeprefix('edt_roi_')}", r, ratio)
        row("EDT full volume: a0verify", res["edt_full_a0verify"])
        row("EDT full volume: scipy (reference)", res["edt_full_scipy"])
        cli_wall = statistics.median(c[0] for c in cli)
        cli_cpu = statistics.median(c[3] for c in cli)
        ref_wall = statistics.median(r[0] for r in refs)
        ref_cpu = statistics.median(r[3] for r in refs)
        lines.append(f"| `a0verify margin` process (median of {len(cli)}) | {cli_wall:.3f} | "
                     f"{max(c[1] for c in cli):.0f} (max RSS) | {ref_wall / cli_wall:.1f}x faster "
                     f"than read masks + scipy full EDT (CPU time: {cli_cpu:.2f} s, "
                     f"{ref_cpu / cli_cpu:.1f}x) |")
        lines.append(f"| read masks + scipy full-volume EDT (process, median of {len(refs)}) | "
                     f"{ref_wall:.3f} | {max(r[1] for r in refs):.0f} (max RSS) | "
                     f"CPU time {ref_cpu:.2f} s |")
        lines.append("")
        lines.append("Single runs, wall s: `a0verify margin` "
                     + ", ".join(f"{c[0]:.2f}" for c in cli) + "; reference "
                     + ", ".join(f"{r[0]:.2f}" for r in refs) + ".")
        if cli[0][2]:
            lines.append(f"\n`a0verify margin` failed: {cli[0][2]}")
        if "wall_s" in ms:
            lines += ["", f"compute_margin: MAM {ms['mam_mm']:.3f} mm (truth "
                      f"{info['truth_mam_mm']:.3f}), uncertainty {ms['uncertainty_mm']:.3f} mm; "
                      f"reported timings_s {json.dumps(ms['reported_timings_s'])}; "
                      f"read masks {ms['read_s']:.2f} s."]
        if report is not None:
            prov = report.get("provenance", {}).get("timings_s")
            lines.append(f"report.json provenance.timings_s: {json.dumps(prov)}")
    if args.accuracy:
        rows = accuracy_table(args.accuracy, args.seed)
        lines += ["", f"## Accuracy on analytic cases ({args.accuracy} per row, seed {args.seed})",
                  "", "| spacing (mm) | orientation | n | mean abs err (mm) | max abs err (mm) | "
                  "band coverage | mean band half-width (mm) | within issue bound |",
                  "|---|---|---:|---:|---:|---:|---:|---:|"]
        for r in rows:
            lines.append(f"| {r['spacing']} | {r['orientation']} | {r['n']} | "
                         f"{r['mean_abs_err']:.3f} | {r['max_abs_err']:.3f} | "
                         f"{r['coverage']:.2f} | {r['mean_halfwidth']:.3f} | "
                         f"{r['within_bound']:.2f} |")
        allm = np.mean([r["mean_abs_err"] for r in rows])
        allc = np.mean([r["coverage"] for r in rows])
        lines.append(f"\nOverall: mean |err| {allm:.3f} mm, coverage {allc:.3f}.")
    text = "\n".join(lines) + "\n"
    print(text)
    (HERE / "RESULTS_margin.md").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
