"""Benchmark: registration on clinical-like pairs with known truth, per difficulty.

Pairs come from :mod:`a0verify.registration.synthetic_sets` (real CT from ``../shared/data``:
HCC_048 and the TotalSegmentator CT; contrast-phase change, short thick-slice post scans, probe
with metal streaks and gas, sliding organs; known transform and exact true margin). Methods, each
in its own subprocess (threads bounded to ``--threads``; wall and CPU seconds are its own):

* ``a0verify``: this checkout's ``register`` (default settings, masks: zone + tumour);
* ``baseline``: the registration of git revision ``--baseline-rev`` (default ``ac26cf8``, main
  before issue 15), extracted with ``git archive`` and run from there, same call;
* ``elastix-default``: elastix's default rigid + B-spline maps on the whole images (no masks),
  on the first ``--default-per-difficulty`` pairs of each difficulty (minutes per pair).

Per pair: TRE (mm) near the zone (zone dilated by 15 mm, inside the organs that carry the
lesion and at least 3 mm from their surface: at a sliding interface the true motion is
discontinuous), TRE inside the zone, TRE on the true tumour surface, end-to-end MAM error
(tumour carried with the level-set transfer, continuous margin), whether the reported band
(margin and registration uncertainty combined) holds the true MAM, its half-width, the verdict
against the true verdict (threshold 5 mm). Per difficulty: the aggregates.

    .venv/bin/python benchmarks/bench_registration.py [--sets calibration,heldout]
        [--methods a0verify,baseline,elastix-default] [--default-per-difficulty 1]
        [--threads 2] [--cache DIR] [--out RESULTS_registration.md] [--rows rows.json]

Pairs are cached in ``--cache`` (default ``benchmarks/.cache/pairs``); per-pair rows are written
to ``--rows`` as they finish (default next to the results file, ``.json``) and re-used on a
re-run unless ``--fresh``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
THRESHOLD_MM = 5.0


def _cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _worker(method: str, pair_dir: Path, out: Path, threads: int) -> None:
    """Register one cached pair with ``method``; writes ``out``.h5 and ``out``.json."""
    import SimpleITK as sitk

    post = sitk.ReadImage(str(pair_dir / "post.nrrd"), sitk.sitkFloat32)
    pre = sitk.ReadImage(str(pair_dir / "pre.nrrd"), sitk.sitkFloat32)
    zone = sitk.ReadImage(str(pair_dir / "ablation.nrrd"))
    tumor = sitk.ReadImage(str(pair_dir / "tumor.nrrd"))
    info: dict[str, Any] = {}
    t0, c0 = time.perf_counter(), _cpu()
    try:
        if method == "a0verify":
            from a0verify.registration import RegistrationMasks, RegistrationSettings, register

            res = register(post, pre, RegistrationMasks(zone=zone, tumor=tumor),
                           RegistrationSettings(threads=threads))
            tx = res.transform
            m = res.metrics
            info = {"uncertainty_mm": res.uncertainty_mm, "warnings": res.warnings,
                    "timings_s": res.timings_s, "reliable": res.reliable,
                    "reliability_notes": res.reliability_notes,
                    "features": {
                        "max_spacing": max(post.GetSpacing()),
                        "spread_p95": max([d.get("p95", 0.0) for d in
                                           m.get("restart_disagreement_mm", [])] or [0.0]),
                        "zone_deform_p95": m.get("deformable_displacement_zone_mm",
                                                 {}).get("p95", 0.0),
                        "ncc_after": m["similarity_roi"]["after"]["ncc"],
                        "zone_volume_change": m.get("zone_volume_change", 0.0),
                        "attempts": len(m["attempts"]),
                        "organ_mask": m.get("automatic_masks", {}).get("organ_mask", {})
                        .get("used", False)}}
        elif method == "baseline":  # the old API (run from the extracted baseline tree)
            from a0verify.registration import register

            try:  # the baseline's own thread bound
                from a0verify.registration import set_threads  # type: ignore[attr-defined]
            except ImportError:
                from a0verify.parallel import limit_threads as set_threads
            set_threads(threads)
            res = register(post, pre, method="deformable", focus_mask=zone,  # type: ignore[call-arg]
                           moving_exclude_mask=tumor, threads=threads)
            tx = res.transform
            info = {"uncertainty_mm": res.uncertainty_mm, "warnings": res.warnings,
                    "timings_s": res.timings_s}
        else:
            tx = _elastix_default(post, pre, threads)
            info = {"uncertainty_mm": 0.0}
    except Exception as exc:  # a failure is a result (A0Error, elastix error)
        info = {"failed": f"{type(exc).__name__}: {exc}"[:300]}
        tx = None
    info["wall_s"], info["cpu_s"] = time.perf_counter() - t0, _cpu() - c0
    # the restart's worker process is not this process's child: a0verify counts its CPU itself
    info["cpu_s"] = max(info["cpu_s"], info.get("timings_s", {}).get("registration_cpu", 0.0))
    import a0verify

    info["code"] = str(Path(a0verify.__file__).parent)  # which checkout ran (baseline or this)
    if tx is not None:
        sitk.WriteTransform(tx, str(out.with_suffix(".h5")))
    out.with_suffix(".json").write_text(json.dumps(info, default=str))


def _elastix_default(post: Any, pre: Any, threads: int) -> Any:
    import SimpleITK as sitk

    from a0verify.parallel import limit_threads
    from a0verify.registration import elastix, elastix_backend

    limit_threads(threads)
    e = elastix_backend.load()
    po = e.parameter_object()
    po.AddParameterMap(po.GetDefaultParameterMap("rigid"))
    po.AddParameterMap(po.GetDefaultParameterMap("bspline"))
    with tempfile.TemporaryDirectory() as tmp:
        elx = e.registration(post, pre)
        elx.SetParameterObject(po)
        elx.SetLogToConsole(False)
        elx.SetLogToFile(True)
        elx.SetOutputDirectory(tmp)
        elx.UpdateLargestPossibleRegion()
        tpo = elx.GetTransformParameterObject()
    maps = [{k: list(v) for k, v in tpo.GetParameterMap(i).items()}
            for i in range(tpo.GetNumberOfParameterMaps())]
    return sitk.CompositeTransform([elastix.bspline_from_map(maps[1]),
                                    elastix.euler_from_map(maps[0])])


def _baseline_tree(repo: Path, rev: str, dest: Path) -> Path:
    """``git archive`` of ``a0verify/`` at ``rev`` into ``dest`` (a PYTHONPATH root: the
    workers run as scripts, so it comes before the editable install's finder)."""
    if not (dest / "a0verify").is_dir():
        dest.mkdir(parents=True, exist_ok=True)
        tar = dest / "src.tar"
        subprocess.run(["git", "-C", str(repo), "archive", "-o", str(tar), rev, "a0verify"],
                       check=True)
        with tarfile.open(tar) as tf:
            tf.extractall(dest, filter="data")
        tar.unlink()
    return dest


def _ensure_pair(cache: Path, source: str, difficulty: str, seed: int,
                 sources: dict[str, Any]) -> Path:
    from a0verify.registration.synthetic_pairs import make_pair, save_pair
    from a0verify.registration.synthetic_sets import load_source, make_spec

    d = cache / f"{source}-{difficulty}-{seed}"
    if not (d / "truth.json").is_file():
        if source not in sources:
            sources[source] = load_source(source)
        t0 = time.perf_counter()
        pair = make_pair(sources[source], make_spec(sources[source], difficulty, seed))
        save_pair(pair, d)
        print(f"  generated {d.name} in {time.perf_counter() - t0:.0f} s", flush=True)
    return d


def evaluate(pair_dir: Path, result: Path) -> dict[str, Any]:
    """Accuracy of one registration result against the pair's truth (see the module doc)."""
    import numpy as np
    import SimpleITK as sitk

    from a0verify import verdict
    from a0verify.errors import InputError
    from a0verify.margin import compute_margin
    from a0verify.registration.roi import dilate, erode
    from a0verify.registration.synthetic import transform_points, tre_stats
    from a0verify.registration.synthetic_pairs import load_pair
    from a0verify.transfer import tumor_levelsets_to_post

    info = json.loads(result.with_suffix(".json").read_text())
    pair = load_pair(pair_dir)
    truth = json.loads((pair_dir / "truth.json").read_text())["true_mam_mm"]
    row: dict[str, Any] = {"true_mam_mm": truth, "wall_s": info["wall_s"],
                           "cpu_s": info["cpu_s"]}
    true_v = verdict.classify(truth, THRESHOLD_MM).verdict
    row["true_verdict"] = true_v
    if "failed" in info:
        row.update(failed=info["failed"], verdict="indeterminate", covered=True, band_mm=None,
                   reason="registration failed")
        return row
    tx = sitk.ReadTransform(str(result.with_suffix(".h5")))
    zone = sitk.Cast(pair.ablation, sitk.sitkUInt8)
    # inside the organ carrying the lesion, >= 3 mm from its surface: at a sliding interface
    # the true motion is discontinuous, which no smooth transform represents
    near = dilate(zone, 15.0) & erode(pair.organs_post, 3.0) & (pair.post > -400)
    if not sitk.GetArrayViewFromImage(near).any():
        near = dilate(zone, 15.0) & (pair.post > -400)
    row["tre_near"] = tre_stats(pair.post_to_pre, tx, near, step=2)
    row["tre_zone"] = tre_stats(pair.post_to_pre, tx, zone, step=2)
    surf = pair.tumor_surface_post()[::4]
    err = np.linalg.norm(transform_points(tx, surf) - pair.post_to_pre(surf), axis=1)
    row["tre_tumor"] = {"mean": float(err.mean()), "p95": float(np.percentile(err, 95)),
                        "max": float(err.max())}
    try:
        margin = compute_margin(tumor_levelsets_to_post(pair.tumor, pair.post, tx),
                                pair.ablation, THRESHOLD_MM)
    except InputError as exc:  # the pipeline stops here with exit 2 and this message
        row.update(failed=str(exc), verdict="indeterminate", covered=True, band_mm=None,
                   reason="no margin: " + str(exc))
        return row
    les = margin.lesions[0]
    band = verdict.combine_uncertainty(les.uncertainty_mm, float(info["uncertainty_mm"]))
    v = verdict.classify(les.min_margin_mm, THRESHOLD_MM, band)
    row.update(mam_mm=les.min_margin_mm, mam_error_mm=les.min_margin_mm - truth, band_mm=band,
               reg_uncertainty_mm=float(info["uncertainty_mm"]),
               margin_uncertainty_mm=les.uncertainty_mm, features=info.get("features", {}),
               covered=abs(les.min_margin_mm - truth) <= band, verdict=v.verdict,
               reason=v.reason, warnings=info.get("warnings", []),
               reliable=info.get("reliable", True))
    return row


def _run(method: str, pair_dir: Path, out: Path, threads: int, env: dict[str, str]) -> None:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", method, "--pair",
           str(pair_dir), "--result", str(out), "--threads", str(threads)]
    subprocess.run(cmd, check=True, env={**os.environ, **env})


def _pct(v: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(v, q)) if v else float("nan")


def summary(rows: list[dict[str, Any]]) -> list[str]:
    """Markdown table per (method, set, difficulty)."""
    import numpy as np

    out = ["| method | set | difficulty | n | TRE near mean / p95 / max (mm) | TRE zone p95 "
           "(mm) | TRE tumour surface p95 / max (mm) | MAM error mean abs / max abs (mm) | "
           "band coverage | band median (mm) | "
           "wrong decisive verdicts | indeterminate (true clear) | failed | wall s mean / max "
           "| CPU s mean |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    keys = sorted({(r["method"], r["set"], r["difficulty"]) for r in rows},
                  key=lambda k: (k[0], k[1], _order(k[2])))
    groups = [(k, [r for r in rows if (r["method"], r["set"], r["difficulty"]) == k])
              for k in keys]
    for m in sorted({r["method"] for r in rows}):
        for st in sorted({r["set"] for r in rows if r["method"] == m}):
            g = [r for r in rows if r["method"] == m and r["set"] == st]
            groups.append(((m, st, "**all**"), g))
    groups.sort(key=lambda kg: (kg[0][0], kg[0][1], _order(kg[0][2])))
    for (m, st, diff), g in groups:
        ok = [r for r in g if "failed" not in r]
        near = [r["tre_near"] for r in ok]
        err = [abs(r["mam_error_mm"]) for r in ok]
        bands = [r["band_mm"] for r in ok]
        cover = sum(bool(r["covered"]) for r in g)
        wrong = sum(r["verdict"] not in ("indeterminate", r["true_verdict"]) for r in g)
        indet_clear = sum(r["verdict"] == "indeterminate" and _clear(r) for r in g)
        out.append(
            f"| {m} | {st} | {diff} | {len(g)} | "
            + (f"{np.mean([t['mean'] for t in near]):.2f} / "
               f"{np.mean([t['p95'] for t in near]):.2f} / {max(t['max'] for t in near):.2f} | "
               f"{np.mean([r['tre_zone']['p95'] for r in ok]):.2f} | "
               f"{np.mean([r['tre_tumor']['p95'] for r in ok]):.2f} / "
               f"{max(r['tre_tumor']['max'] for r in ok):.2f} | "
               f"{np.mean(err):.2f} / {max(err):.2f} | " if ok else "- | - | - | - | ")
            + f"{cover}/{len(g)} | " + (f"{np.median(bands):.2f} | " if bands else "- | ")
            + f"{wrong} | {indet_clear} | {len(g) - len(ok)} | "
            f"{np.mean([r['wall_s'] for r in g]):.1f} / {max(r['wall_s'] for r in g):.1f} | "
            f"{np.mean([r['cpu_s'] for r in g]):.1f} |")
    return out


def _order(d: str) -> int:
    from a0verify.registration.synthetic_pairs import DIFFICULTIES

    return DIFFICULTIES.index(d) if d in DIFFICULTIES else 99


def _clear(r: dict[str, Any]) -> bool:
    """True MAM at least 1 mm from 0 and from the threshold (a case that should be decided)."""
    t = r["true_mam_mm"]
    return abs(t) >= 1.0 and abs(t - THRESHOLD_MM) >= 1.0


def band_with(row: dict[str, Any], floor: float, spread: float, deform: float,
              spread_unreliable: float) -> float:
    """The band a row would have had with other :class:`~a0verify.registration.qa.BandModel`
    factors (from the evidence recorded by the registration)."""
    import math

    f = row["features"]
    k = spread if row.get("reliable", True) else spread_unreliable
    u = math.sqrt((floor * f["max_spacing"]) ** 2 + (k * f["spread_p95"]) ** 2
                  + (deform * f["zone_deform_p95"]) ** 2)
    return math.hypot(row["margin_uncertainty_mm"], u)


def rescore(row: dict[str, Any]) -> dict[str, Any]:
    """An ``a0verify`` row re-scored with this checkout's band factors and reliability rules
    from the evidence its registration recorded (the transform does not depend on them)."""
    from a0verify import verdict
    from a0verify.registration import qa

    f = row.get("features")
    if row["method"] != "a0verify" or not f or "failed" in row:
        return row
    metrics = {"similarity_roi": {"after": {"ncc": f["ncc_after"]}},
               "deformable_displacement_zone_mm": {"p95": f["zone_deform_p95"]},
               "zone_volume_change": f.get("zone_volume_change", 0.0)}
    notes = qa.reliability_notes(metrics, [f["spread_p95"]])
    terms = qa.uncertainty_terms((f["max_spacing"],), "deformable", [f["spread_p95"]],
                                 f["zone_deform_p95"], reliable=not notes)
    u = qa.uncertainty(terms)
    band = verdict.combine_uncertainty(row["margin_uncertainty_mm"], u)
    caveat = "registration unreliable: " + "; ".join(notes) if notes else None
    v = verdict.classify(row["mam_mm"], THRESHOLD_MM, band, caveat)
    return {**row, "reg_uncertainty_mm": u, "band_mm": band, "reliable": not notes,
            "reliability_notes": notes, "covered": abs(row["mam_error_mm"]) <= band,
            "verdict": v.verdict, "reason": v.reason, "rescored": True}


def fit_band(rows: list[dict[str, Any]], fit_set: str = "calibration",
             target: float = 1.0) -> list[str]:
    """Grid search of the band factors on the ``fit_set`` rows of ``a0verify``: the narrowest
    (median) band whose coverage of the true MAM is >= ``target``; the other sets are only
    evaluated with it (held out). Returns Markdown lines."""
    import itertools

    import numpy as np

    from a0verify.registration.qa import BAND

    ours = [rescore(r) for r in rows
            if r["method"] == "a0verify" and "failed" not in r and "features" in r]
    fit = [r for r in ours if r["set"] == fit_set]
    if not fit:
        return [f"(no {fit_set} rows to fit the band on)"]
    best: tuple[float, float, tuple[float, ...]] | None = None
    for fl, sp, de in itertools.product((0.25, 0.3, 0.35, 0.5), (1.0, 1.5, 2.0, 2.5, 3.0),
                                        (0.0, 0.1, 0.2, 0.3)):
        bands = [band_with(r, fl, sp, de, BAND.spread_unreliable) for r in fit]
        cover = np.mean([abs(r["mam_error_mm"]) <= b for r, b in zip(fit, bands, strict=True)])
        if cover >= target and (best is None or float(np.median(bands)) < best[1]):
            best = (float(cover), float(np.median(bands)), (fl, sp, de))
    if best is None:
        return [f"(no factors reach coverage {target} on {fit_set})"]
    fl, sp, de = best[2]
    out = [f"Band fitted on `{fit_set}` (target coverage {target:.2f}): floor {fl}, restarts "
           f"{sp}, deformation {de} (shipped: floor {BAND.floor}, restarts {BAND.spread}, "
           f"deformation {BAND.deform}).", "",
           "| set | n | coverage (fitted) | median band (fitted) | coverage (shipped) | "
           "median band (shipped) |", "|---|---|---|---|---|---|"]
    for st in sorted({r["set"] for r in ours}):
        g = [r for r in ours if r["set"] == st]
        bf = [band_with(r, fl, sp, de, BAND.spread_unreliable) for r in g]
        cf = sum(abs(r["mam_error_mm"]) <= b for r, b in zip(g, bf, strict=True))
        cs = sum(bool(r["covered"]) for r in g)
        out.append(f"| {st} | {len(g)} | {cf}/{len(g)} | {np.median(bf):.2f} | {cs}/{len(g)} | "
                   f"{np.median([r['band_mm'] for r in g]):.2f} |")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", default="calibration,heldout",
                    help="pair sets to run ('none': only tables from --rows / --merge)")
    ap.add_argument("--methods", default="a0verify,baseline,elastix-default")
    ap.add_argument("--default-per-difficulty", type=int, default=1)
    ap.add_argument("--baseline-rev", default="ac26cf8")
    ap.add_argument("--repo", type=Path, default=ROOT, help="git checkout holding the baseline")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache", type=Path, default=HERE / ".cache" / "pairs")
    ap.add_argument("--out", default="RESULTS_registration.md")
    ap.add_argument("--rows", type=Path, default=None)
    ap.add_argument("--fresh", action="store_true", help="re-run rows already in --rows")
    ap.add_argument("--merge", default=None,
                    help="comma-separated row files of other runs to include in the tables "
                    "(a0verify rows re-scored with this checkout's band factors)")
    ap.add_argument("--default-sources", default="hcc048,totalseg",
                    help="sources whose pairs also get the (slow) elastix default maps")
    ap.add_argument("--only", default=None, help="comma-separated pair names (debugging)")
    ap.add_argument("--rescore", action="store_true",
                    help="re-score this run's a0verify rows with this checkout's band factors "
                         "and reliability rules (from the evidence each registration recorded)")
    ap.add_argument("--fit", action="store_true",
                    help="only refit the band factors on the rows in --rows and print them")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--pair", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--result", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        _worker(args.worker, args.pair, args.result, args.threads)
        return 0
    from a0verify.registration.synthetic_sets import pair_set

    rows_path = args.rows or (HERE / args.out).with_suffix(".json")
    rows: list[dict[str, Any]] = [] if args.fresh or not rows_path.is_file() else \
        json.loads(rows_path.read_text())
    if args.fit:
        print("\n".join(fit_band(rows)))
        return 0
    done = {(r["method"], r["pair"]) for r in rows}
    methods = args.methods.split(",")
    load0 = os.getloadavg()
    sources: dict[str, Any] = {}
    base_env: dict[str, str] = {}
    work = Path(tempfile.mkdtemp(prefix="a0v-bench-reg-"))
    if "baseline" in methods:
        base = _baseline_tree(args.repo, args.baseline_rev,
                              args.cache.parent / f"baseline-{args.baseline_rev}")
        base_env = {"PYTHONPATH": str(base)}
    per_diff: dict[tuple[str, str], int] = {}
    for set_name in [] if args.sets == "none" else args.sets.split(","):
        for source, diff, seed in pair_set(set_name):
            name = f"{source}-{diff}-{seed}"
            if args.only and name not in args.only.split(","):
                continue
            pair_dir = _ensure_pair(args.cache, source, diff, seed, sources)
            for m in methods:
                if m == "elastix-default":
                    if source not in args.default_sources.split(","):
                        continue
                    k = (set_name, f"{source}-{diff}")
                    per_diff[k] = per_diff.get(k, 0) + 1
                    if per_diff[k] > args.default_per_difficulty:
                        continue
                if (m, name) in done:
                    continue
                out = work / f"{m}-{name}"
                load = os.getloadavg()[0]
                _run(m, pair_dir, out, args.threads, base_env if m == "baseline" else {})
                row = {"method": m, "set": set_name, "pair": name, "difficulty": diff,
                       "load_1min": load, **evaluate(pair_dir, out)}
                rows.append(row)
                rows_path.write_text(json.dumps(rows, indent=1, default=float))
                print(f"{m:16s} {name:32s} MAM err "
                      f"{row.get('mam_error_mm', float('nan')):+.2f} band "
                      f"{row.get('band_mm') or 0:.2f} {row['verdict']}/{row['true_verdict']} "
                      f"near p95 {row.get('tre_near', {}).get('p95', float('nan')):.2f} "
                      f"wall {row['wall_s']:.0f}s {row.get('failed', '')}", flush=True)
    if args.rescore:
        rows = [rescore(r) for r in rows]
    for extra in (args.merge or "").split(","):
        if extra:
            seen = {(r["method"], r["pair"]) for r in rows}
            rows += [rescore(r) for r in json.loads(Path(extra).read_text())
                     if (r["method"], r["pair"]) not in seen]
    lines = [
        "# Registration benchmark: clinical-like pairs per difficulty",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M')}; threads {args.threads}; machine "
        f"{os.cpu_count()} cores SHARED with other engineers (1-min load at start "
        f"{load0[0]:.1f}, per run in {rows_path.name}): wall times are inflated by contention, "
        "CPU seconds are the steadier figure. Baseline = git "
        f"{args.baseline_rev} (main before issue 15). elastix-default: the first "
        f"{args.default_per_difficulty} pair(s) of each difficulty and set only."
        + (" a0verify rows re-scored with this checkout's band and reliability rules "
           "(`--rescore`)." if args.rescore else ""),
        "",
        "TRE near = zone dilated 15 mm, inside the organs carrying the lesion, >= 3 mm from "
        "their surface; TRE tumour surface = on the true tumour surface; MAM error = "
        "measured - true minimal margin (continuous margin after level-set transfer); band = "
        "margin and registration uncertainty combined (registration failures count as "
        "indeterminate and covered); 'indeterminate (true clear)': true MAM >= 1 mm away "
        "from 0 and 5 mm but reported indeterminate.",
        "",
        *summary(rows),
        "",
        *fit_band(rows),
        "",
    ]
    text = "\n".join(lines)
    print(text)
    (HERE / args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
