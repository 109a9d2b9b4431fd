"""Cohort throughput and Snakemake overhead: N small phantom cases on C cores.

    .venv/bin/python benchmarks/bench_batch.py [--cases 20] [--cores 2] [--registration none]
                                               [--out benchmarks/RESULTS_batch.md]

Phases, each in a fresh child process (wall time, peak RSS of the largest process):

* ``direct``   the reference: ``a0verify run`` per case, C cases at a time (a process pool,
               no workflow manager) -- what a user would script by hand;
* ``batch``    ``a0verify batch`` (Snakemake, one ``a0verify run`` job per case, C jobs at a
               time) -- the overhead of Snakemake itself;
* ``noop``     the same batch again when every case is done: Snakemake's fixed cost (start-up,
               DAG, up-to-date checks) with no case work.

Overhead = wall(phase) / wall(direct) - 1. Cases with ``registration none`` are phantoms whose
pre and post share one pose (registration is then exact and skipped); with rigid/deformable they
move. The table is printed and written to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def _phase(name: str, sheet: Path, out: Path, cores: int, registration: str) -> dict:
    """Run one phase here (called in a child process); return wall time and failures."""
    env = {**os.environ, "MPLBACKEND": "Agg",
           "NUMBA_CACHE_DIR": os.environ.get("NUMBA_CACHE_DIR", str(REPO / ".cache/numba"))}
    t0 = time.perf_counter()
    failures = 0
    if name == "direct":
        rows = [ln.split("\t") for ln in sheet.read_text().splitlines()[1:]]
        # the same schedule as Snakemake's: jobs of the rule's thread count, cores // threads
        # of them at a time
        cfg = yaml.safe_load((REPO / "pipelines" / "config" / "config.yaml").read_text())
        threads = min(cores, int(cfg["resources"]["run"]["threads"]))

        def one(row: list[str]) -> int:
            cid, pre, post, tumor, abl = row
            return subprocess.run(
                [sys.executable, "-m", "a0verify", "run", "--pre", pre, "--post", post,
                 "--tumor", tumor, "--ablation", abl, "--out", str(out / cid),
                 "--registration", registration, "--threads", str(threads), "--quiet"],
                env={**env, "NUMBA_NUM_THREADS": str(threads)},  # as the Snakemake rule sets it
                capture_output=True, check=False).returncode

        with ThreadPoolExecutor(max_workers=max(1, cores // threads)) as pool:
            failures = sum(rc != 0 for rc in pool.map(one, rows))
    else:
        rc = subprocess.run(
            [sys.executable, "-m", "a0verify", "batch", str(sheet), "--out", str(out),
             "--cores", str(cores), "--registration", registration],
            env=env, capture_output=True, check=False).returncode
        failures = sum(1 for ln in (out / "summary.tsv").read_text().splitlines()[1:]
                       if "\tfailed\t" in ln) if (out / "summary.tsv").exists() else -1
        if rc not in (0, 5):
            failures = -1
    wall = time.perf_counter() - t0
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"wall_s": wall, "peak_mb": peak_kb / 1024.0, "failures": failures}


def _check(out: Path, truth: dict[str, float]) -> int:
    """Cases whose report verdict disagrees with the analytic truth (threshold 5 mm)."""
    from a0verify.verdict import classify

    bad = 0
    for cid, mam in truth.items():
        p = out / cid / "report.json"
        if not p.exists() or json.loads(p.read_text())["verdict"] != classify(mam, 5.0).verdict:
            bad += 1
    return bad


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=20)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--registration", default="none", choices=["none", "rigid", "deformable"])
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "RESULTS_batch.md"))
    ap.add_argument("--phase", help=argparse.SUPPRESS)
    ap.add_argument("--sheet", help=argparse.SUPPRESS)
    ap.add_argument("--dir", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.phase:  # child process
        print(json.dumps(_phase(a.phase, Path(a.sheet), Path(a.dir), a.cores, a.registration)))
        return

    from a0verify.batch import write_phantom_cohort

    margins = [(-2.0, 2.0, 6.5, 9.0)[i % 4] for i in range(a.cases)]
    phases = ["direct", "batch", "noop"]
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="a0v-bench-batch-") as tmp:
        t0 = time.perf_counter()
        sheet, truth = write_phantom_cohort(Path(tmp) / "cohort", margins,
                                            moving=a.registration != "none")
        make_s = time.perf_counter() - t0
        for ph in phases:
            out = Path(tmp) / f"out_{'batch' if ph == 'noop' else ph}"
            r = subprocess.run([sys.executable, __file__, "--phase", ph, "--sheet", str(sheet),
                                "--dir", str(out), "--cores", str(a.cores),
                                "--registration", a.registration],
                               capture_output=True, text=True, check=True)
            results[ph] = json.loads(r.stdout.strip().splitlines()[-1])
            results[ph]["wrong_verdicts"] = _check(out, truth)
            print(f"{ph}: {results[ph]}", file=sys.stderr)
    ref = results["direct"]["wall_s"]
    lines = [
        f"# Batch throughput ({a.cases} phantom cases, {a.cores} cores, registration "
        f"{a.registration})",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs (shared; timings are noisy), "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Phantom cases: 64 x 64 x 20 "
        f"voxels, 1 x 1 x 2.5 mm, one lesion (generated in {make_s:.0f} s, not timed below).",
        "",
        "| phase | wall (s) | cases/hour | s/case | peak RSS (MB) | failed | wrong verdicts "
        "| overhead vs direct |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    names = {"direct": "direct `a0verify run` x N (reference)",
             "batch": "`a0verify batch` (Snakemake, run)",
             "noop": "same batch again, all done (Snakemake's fixed cost)"}
    for ph in phases:
        r = results[ph]
        if ph == "noop":
            lines.append(f"| {names[ph]} | {r['wall_s']:.1f} | - | {r['wall_s'] / a.cases:.2f} "
                         f"| {r['peak_mb']:.0f} | {r['failures']} | {r['wrong_verdicts']} | "
                         f"{100 * r['wall_s'] / ref:.1f} % of direct |")
            continue
        lines.append(
            f"| {names[ph]} | {r['wall_s']:.1f} | {a.cases / r['wall_s'] * 3600:.0f} | "
            f"{r['wall_s'] / a.cases:.2f} | {r['peak_mb']:.0f} | {r['failures']} | "
            f"{r['wrong_verdicts']} | {100 * (r['wall_s'] / ref - 1):+.1f} % |")
    lines += ["", "The direct reference runs on Snakemake's schedule (the `run` rule's threads per "
              "case from `pipelines/config/config.yaml`, cores // threads cases at a time), so "
              "the overhead column is what Snakemake itself costs."]
    text = "\n".join(lines) + "\n"
    print(text)
    Path(a.out).write_text(text)


if __name__ == "__main__":
    main()
