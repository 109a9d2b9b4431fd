"""Run every benchmark (one command: `make bench`) and merge their tables into RESULTS.md.

Each ``bench_<area>.py`` prints its table and writes ``RESULTS_<area>.md`` beside this file;
this script runs them one after another (never in parallel: timings need the machine to
themselves) and concatenates the tables, with the machine facts, into ``RESULTS.md``.

Usage: python benchmarks/run_all.py [area ...]     (default: all areas; e.g. registration)
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = ["margin", "registration", "segmentation", "report", "batch"]
#: areas run by another area's script with extra arguments
VARIANTS: dict[str, tuple[str, list[str]]] = {}


def main(argv: list[str]) -> int:
    areas = argv or [a for a in ORDER
                     if (HERE / f"bench_{VARIANTS.get(a, (a, []))[0]}.py").exists()]
    failed = []
    for area in areas:
        base, extra = VARIANTS.get(area, (area, []))
        script = HERE / f"bench_{base}.py"
        label = " ".join([script.name, *extra])
        print(f"=== {label}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call([sys.executable, str(script), *extra], cwd=HERE.parent)
        print(f"=== {label}: exit {rc} in {time.perf_counter() - t0:.0f} s", flush=True)
        if rc:
            failed.append(area)
    merge()
    return 1 if failed else 0


def merge() -> None:
    parts = [
        "# Benchmark results\n",
        "Produced by `make bench` (`python benchmarks/run_all.py`); each section comes from "
        "`benchmarks/RESULTS_<area>.md`, written by `bench_<area>.py` in its latest run.\n",
        f"Machine: {platform.platform()}, Python {platform.python_version()}, "
        f"{os.cpu_count()} cores.\n",
        "The machine is shared with other jobs: wall times move with the host's load (the same "
        "full-volume scipy EDT took 39-54 s on different runs), so the ratios measured within "
        "one run are the fairer figures. Areas are measured at different times (see each "
        "section).\n",
    ]
    for area in ORDER:
        f = HERE / f"RESULTS_{area}.md"
        if f.exists():
            parts.append(f.read_text().strip() + "\n")
    (HERE / "RESULTS.md").write_text("\n".join(parts))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
