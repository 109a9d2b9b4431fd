"""The Snakemake workflow itself: lint, schema validation, DAG shape (dry runs only)."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Snakemake's bookkeeping (.snakemake/) goes to a temporary directory, not the checkout."""
    monkeypatch.chdir(tmp_path)


def _snakemake(*args: str) -> subprocess.CompletedProcess[str]:
    """Snakemake on the project's Snakefile in the current (temporary) directory; relative
    paths of the sample sheet resolve against the checkout unless --config base_dir= says
    otherwise, and the default sheet is the testdata one."""
    defaults = [f"cases={REPO / 'testdata' / 'cases.tsv'}", f"base_dir={REPO}"]
    if "--config" in args:
        i = args.index("--config")
        args = (*args[:i + 1], *defaults, *args[i + 1:])
    else:
        args = (*args, "--config", *defaults)
    return subprocess.run([sys.executable, "-m", "snakemake", "--snakefile",
                           str(REPO / "Snakefile"), "--cores", "2", "--nocolor", *args],
                          capture_output=True, text=True, timeout=180)


def _jobs(out: str) -> Counter[str]:
    """Job counts from a dry run's 'Job stats' table."""
    table = out.split("Job stats:", 1)[1].split("total", 1)[0]
    return Counter({m.group(1): int(m.group(2))
                    for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", table, re.M)})


def test_lint_is_clean() -> None:
    r = _snakemake("--lint")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Congratulations, your workflow is in a good condition!" in r.stdout + r.stderr
    assert "Lints for" not in r.stdout + r.stderr


def _inputs(tmp_path: Path) -> None:
    for n in ("pre.nii.gz", "post.nii.gz", "tumor.nii.gz", "abl.nii.gz", "liver.nii.gz"):
        (tmp_path / n).write_bytes(b"")


def test_dag_one_run_job_per_case_with_seeds_masks_and_missing_inputs(tmp_path: Path) -> None:
    """One `a0verify run` job per runnable case (the same stage sequence as the command line):
    seeds become repeated --tumor-seed/--ablation-seed options, blank cells are absent,
    per-case columns override the config, a case with a missing input is skipped."""
    _inputs(tmp_path)
    sheet = tmp_path / "cases.tsv"
    sheet.write_text(
        "case_id\tpre\tpost\ttumor\ttumor_seed\tablation\tablation_seed\tregistration\tliver\n"
        "masks\t pre.nii.gz \tpost.nii.gz\ttumor.nii.gz\t  \tabl.nii.gz\t\t\tliver.nii.gz\n"
        "seeds\tpre.nii.gz\tpost.nii.gz\t\t-60,5,0\t\t-60,5,0;-58,4,1\t\t\n"
        "noreg\tpre.nii.gz\tpost.nii.gz\ttumor.nii.gz\t\tabl.nii.gz\t\tnone\t\n"
        "gone\tpre.nii.gz\tmissing.nii.gz\ttumor.nii.gz\t\tabl.nii.gz\t\t\t\n")
    r = _snakemake("-n", "-p", "--config", f"cases={sheet}", f"base_dir={tmp_path}",
                   "out=res")
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout + r.stderr
    assert _jobs(out) == Counter({"run_case": 3, "summary": 1, "all": 1})
    assert "case gone skipped, missing input" in out
    seeds = next(ln for ln in out.splitlines() if "--out res/seeds" in ln)
    assert "--tumor-seed -60,5,0 --ablation-seed -60,5,0 --ablation-seed -58,4,1" in seeds
    masks = next(ln for ln in out.splitlines() if "--out res/masks" in ln)
    assert f"--tumor {tmp_path}/tumor.nii.gz --ablation {tmp_path}/abl.nii.gz" in masks
    assert f"--liver {tmp_path}/liver.nii.gz" in masks
    noreg = next(ln for ln in out.splitlines() if "--out res/noreg" in ln)
    assert "--registration none" in noreg and "--registration deformable" in masks
    assert out.count("log: res/logs/") >= 4  # every job logs


@pytest.mark.parametrize(("config", "needle"), [
    (["registration=affine"], "affine"),
    (["typo_option=1"], "typo_option"),
])
def test_config_schema_rejects(config: list[str], needle: str) -> None:
    r = _snakemake("-n", "--config", *config)
    assert r.returncode != 0
    assert needle in r.stdout + r.stderr


def test_sheet_schema_rejects_path_escape(tmp_path: Path) -> None:
    _inputs(tmp_path)
    sheet = tmp_path / "cases.tsv"
    sheet.write_text("case_id\tpre\tpost\ttumor\tablation\n"
                     "../../etc\tpre.nii.gz\tpost.nii.gz\ttumor.nii.gz\tabl.nii.gz\n")
    r = _snakemake("-n", "--config", f"cases={sheet}", f"base_dir={tmp_path}")
    assert r.returncode != 0
    assert "row 1 (case_id '../../etc'), column case_id" in r.stdout + r.stderr


def test_dag_example_sheet_with_seeds_and_overrides() -> None:
    r = _snakemake("-n", "-p", "--config", "out=/tmp/a0v-never-written",
                   f"cases={REPO / 'pipelines' / 'config' / 'cases.example.tsv'}")
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout + r.stderr
    assert ("--tumor-seed -60,5,0 --ablation-seed -63.9,10.9,-1.7 --ablation-seed -62,9,0 "
            "--registration deformable --threshold 5.0") in out
    assert "--registration rigid --threshold 5 " in out  # per-case columns win
    assert _jobs(out) == Counter({"run_case": 2, "summary": 1, "all": 1})
    assert f"run --pre {REPO}/testdata/case01/pre.nii.gz" in out


def test_config_schema_agrees_with_case_settings() -> None:
    """The workflow's config schema and a0verify's CaseSettings accept the same threshold range
    and registration methods (the batch passes them on to `a0verify run`)."""
    import yaml

    from a0verify.errors import InputError
    from a0verify.inputs import METHODS, CaseSettings

    props = yaml.safe_load((REPO / "pipelines" / "schemas" / "config.schema.yaml").read_text())[
        "properties"]
    assert tuple(props["registration"]["enum"]) == METHODS
    lo, hi = props["threshold_mm"]["minimum"], props["threshold_mm"]["maximum"]
    CaseSettings(threshold_mm=lo)
    CaseSettings(threshold_mm=hi)
    for bad in (lo - 0.1, hi + 0.1):
        with pytest.raises(InputError):
            CaseSettings(threshold_mm=bad)
