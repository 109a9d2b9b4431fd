# Helpers shared by the rules: configuration validation, the sample sheet (read and validated
# once, by the same reader `a0verify batch` uses) and per-case command-line options.
# No stage logic here: every rule calls the a0verify command line.
import os
import shlex
import sys

from snakemake.utils import validate

from a0verify.workflow import case_path, read_sample_sheet, seeds


validate(config, schema="../schemas/config.schema.yaml")

OUT = os.path.normpath(config["out"])
BASE = config["base_dir"] or os.getcwd()
RES = config["resources"]
A0 = config["a0verify"] or f"{shlex.quote(sys.executable)} -m a0verify"
PY = shlex.quote(sys.executable)
CASES = {row["case_id"]: row for row in read_sample_sheet(config["cases"])}


wildcard_constraints:
    case=r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}",


def _path(case, name):
    """An input path of a case (relative paths resolved against base_dir), or None."""
    return case_path(CASES[case], name, BASE)


def registration_of(case):
    return CASES[case].get("registration") or config["registration"]


def threshold_of(case):
    return CASES[case].get("threshold_mm") or str(config["threshold_mm"])


def run_args(wildcards):
    """`a0verify run` options for the tumour and the ablation zone (masks or seeds)."""
    c = wildcards.case
    args = []
    for kind in ("tumor", "ablation"):
        pts = seeds(CASES[c], kind)
        if pts:
            args += [f"--{kind}-seed {p}" for p in pts]
        else:
            args.append(f"--{kind} {shlex.quote(_path(c, kind))}")
    if _path(c, "liver"):
        args.append(f"--liver {shlex.quote(_path(c, 'liver'))}")
    return " ".join(args)


def case_inputs(wildcards):
    """The input files of a case (Snakemake re-runs a case when one of them changes)."""
    return [p for k in ("pre", "post", "tumor", "ablation", "liver")
            if (p := _path(wildcards.case, k)) is not None]


def _missing_inputs(case):
    return [p for k in ("pre", "post", "tumor", "ablation", "liver")
            if (p := _path(case, k)) is not None and not os.path.exists(p)]


# A case whose input files are missing cannot run; it must not stop the others (Snakemake would
# refuse the whole DAG), so it is left out here and reported as failed in the summary.
MISSING = {c: m for c in CASES if (m := _missing_inputs(c))}
for _c, _m in MISSING.items():
    print(f"a0verify workflow: case {_c} skipped, missing input {', '.join(_m)}",
          file=sys.stderr)
RUNNABLE = [c for c in CASES if c not in MISSING]


def all_reports():
    return [f"{OUT}/{c}/report.json" for c in RUNNABLE]
