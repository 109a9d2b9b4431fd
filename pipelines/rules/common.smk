# Helpers shared by the rules: configuration and sample-sheet validation, per-case lookups.
# No stage logic here: every rule calls the a0verify command line.
import importlib
import importlib.util
import io
import os
import shlex
import sys

import pandas as pd
from snakemake.utils import validate


validate(config, schema="../schemas/config.schema.yaml")

OUT = os.path.normpath(config["out"])
BASE = config["base_dir"]
RES = config["resources"]
A0 = config["a0verify"] or f"{shlex.quote(sys.executable)} -m a0verify"
PY = shlex.quote(sys.executable)


def _read_sheet(path):
    """Sample sheet as a DataFrame of strings, validated row by row against the schema."""
    with open(path, newline="") as fh:  # '#' starts a comment only at the start of a line
        text = "".join(ln for ln in fh if ln.strip() and not ln.lstrip().startswith("#"))
    df = pd.read_csv(io.StringIO(text), sep="\t", dtype=str, keep_default_na=False,
                     na_values=[""])
    df.columns = [c.strip() for c in df.columns]
    df = df.apply(lambda col: col.str.strip()).mask(lambda d: d.eq(""))  # blank cell = absent
    if "case_id" not in df.columns:
        raise ValueError(f"{path}: sample sheet has no case_id column")
    dups = sorted(set(df["case_id"][df["case_id"].duplicated()].dropna()))
    if dups:
        raise ValueError(f"{path}: duplicate case_id {', '.join(dups)}")
    validate(df, schema="../schemas/samples.schema.yaml")
    return df.set_index("case_id", drop=False)


CASES = _read_sheet(config["cases"])


wildcard_constraints:
    case=r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}",


def _has_cli(module):
    return importlib.util.find_spec(f"a0verify.cli.{module}") is not None


# Options the stage rules pass; auto mode uses the stage rules only when the installed commands
# accept them (commands still under development fall back to `a0verify run`).
_STAGE_OPTIONS = {
    "register_cmd": ("register", {"--fixed", "--moving", "--out", "--ablation", "--tumor",
                                  "--method", "--threads"}),
    "segment_cmd": ("segment", set()),
    "run_cmd": ("margin", {"--tumor", "--ablation", "--post", "--transform",
                           "--registration-json", "--out"}),
}


def _cli_ready(module):
    if not _has_cli(module):
        return False
    try:
        name, wanted = _STAGE_OPTIONS[module]
        cmd = getattr(importlib.import_module(f"a0verify.cli.{module}"), name)
        return wanted <= {o for p in cmd.params for o in getattr(p, "opts", [])}
    except Exception:  # a command module that does not import is not ready
        return False


def _col(case, name):
    """A cell of the sheet, or None when the column is absent or the cell empty."""
    if name not in CASES.columns:
        return None
    v = CASES.at[case, name]
    return None if pd.isna(v) or v == "" else str(v)


def _path(case, name):
    """An input path of a case, relative paths resolved against base_dir."""
    v = _col(case, name)
    if v is None:
        return None
    return v if not BASE or os.path.isabs(v) else os.path.join(BASE, v)


def _uses_seeds(kind):
    col = f"{kind}_seed"
    return col in CASES.columns and CASES[col].notna().any()


_NEEDED = {"register_cmd", "run_cmd"} | ({"segment_cmd"} if _uses_seeds("tumor")
                                         or _uses_seeds("ablation") else set())
if config["pipeline"] == "auto":
    PIPELINE = "stages" if all(_cli_ready(m) for m in _NEEDED) else "run"
else:
    PIPELINE = config["pipeline"]
RENDER_REPORT = PIPELINE == "stages" and config["render_report"] and _has_cli("report_cmd")


def registration_of(case):
    return _col(case, "registration") or config["registration"]


def threshold_of(case):
    return _col(case, "threshold_mm") or str(config["threshold_mm"])


def seeds_of(case, kind):
    """Seeds of a case as repeated '--seed X,Y,Z' options ('' when there are none)."""
    v = _col(case, f"{kind}_seed")
    if v is None:
        return ""
    pts = [",".join(c.strip() for c in p.split(",")) for p in v.split(";") if p.strip()]
    return " ".join(f"--seed {p}" for p in pts)


def tumor_input(wildcards):
    """Tumour mask: the sheet's, or the one segmented from the tumour seed."""
    if _col(wildcards.case, "tumor_seed"):
        return f"{OUT}/{wildcards.case}/work/tumor_mask.nii.gz"
    return _path(wildcards.case, "tumor")


def ablation_input(wildcards):
    """Ablation-zone mask: the sheet's, or the one segmented from the ablation seeds."""
    if _col(wildcards.case, "ablation_seed"):
        return f"{OUT}/{wildcards.case}/work/ablation_mask.nii.gz"
    return _path(wildcards.case, "ablation")


def registration_inputs(wildcards):
    """Transform and record from the register rule ({} when registration is 'none')."""
    if registration_of(wildcards.case) == "none":
        return {}
    d = f"{OUT}/{wildcards.case}/work/registration"
    return {"transform": f"{d}/transform.h5", "record": f"{d}/registration.json"}


def registration_args(wildcards, input):
    if registration_of(wildcards.case) == "none":
        return ""
    return (f"--transform {shlex.quote(input.transform)} "
            f"--registration-json {shlex.quote(input.record)}")


def mask_args(wildcards):
    """`a0verify run` options for the tumour and the ablation zone (masks or seeds)."""
    c = wildcards.case
    args = []
    for kind in ("tumor", "ablation"):
        if _col(c, f"{kind}_seed"):
            args.append(seeds_of(c, kind).replace("--seed", f"--{kind}-seed"))
        else:
            args.append(f"--{kind} {shlex.quote(_path(c, kind))}")
    return " ".join(args)


def _missing_inputs(case):
    return [p for k in ("pre", "post", "tumor", "ablation")
            if (p := _path(case, k)) is not None and not os.path.exists(p)]


# A case whose input files are missing cannot run; it must not stop the others (Snakemake would
# refuse the whole DAG), so it is left out here and reported as failed in the summary.
MISSING = {c: m for c in CASES.index if (m := _missing_inputs(c))}
for _c, _m in MISSING.items():
    print(f"a0verify workflow: case {_c} skipped, missing input {', '.join(_m)}",
          file=sys.stderr)
RUNNABLE = [c for c in CASES.index if c not in MISSING]


def all_reports():
    return [f"{OUT}/{c}/report.json" for c in RUNNABLE]


def all_html():
    return [f"{OUT}/{c}/report.html" for c in RUNNABLE] if RENDER_REPORT else []
