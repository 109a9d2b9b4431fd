"""The Snakemake workflow itself: lint, schema validation, DAG shape (dry runs; nothing computed)."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _snakemake(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "snakemake", "--snakefile",
                           str(REPO / "Snakefile"), "--cores", "2", "--nocolor", *args],
                          cwd=cwd or REPO, capture_output=True, text=True, timeout=180)


def _jobs(out: str) -> Counter[str]:
    """Job counts from a dry run's 'Job stats' table."""
    table = out.split("Job stats:", 1)[1].split("total", 1)[0]
    return Counter({m.group(1): int(m.group(2))
                    for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", table, re.M)})


@pytest.mark.parametrize("pipeline", ["stages", "run"])
def test_lint_is_clean(pipeline: str) -> None:
    r = _snakemake("--lint", "--config", f"pipeline={pipeline}")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Congratulations, your workflow is in a good condition!" in r.stdout + r.stderr
    assert "Lints for" not in r.stdout + r.stderr


def _inputs(tmp_path: Path) -> None:
    for n in ("pre.nii.gz", "post.nii.gz", "tumor.nii.gz", "abl.nii.gz"):
        (tmp_path / n).write_bytes(b"")


def test_dag_stages_with_seeds_masks_and_missing_inputs(tmp_path: Path) -> None:
    _inputs(tmp_path)
    sheet = tmp_path / "cases.tsv"
    sheet.write_text(
        "case_id\tpre\tpost\ttumor\ttumor_seed\tablation\tablation_seed\tregistration\n"
        "masks\tpre.nii.gz\tpost.nii.gz\ttumor.nii.gz\t\tabl.nii.gz\t\t\n"
        "seeds\tpre.nii.gz\tpost.nii.gz\t\t-60,5,0\t\t-60,5,0;-58,4,1\t\n"
        "noreg\tpre.nii.gz\tpost.nii.gz\ttumor.nii.gz\t\tabl.nii.gz\t\tnone\n"
        "gone\tpre.nii.gz\tmissing.nii.gz\ttumor.nii.gz\t\tabl.nii.gz\t\t\n")
    r = _snakemake("-n", "-p", "--directory", str(tmp_path), "--config", f"cases={sheet}",
                   "out=res", "pipeline=stages", "render_report=False")
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout + r.stderr
    assert _jobs(out) == Counter({"register": 2, "margin": 3, "segment_tumor": 1,
                                  "segment_ablation": 1, "summary": 1, "all": 1})
    assert "case gone skipped, missing input" in out
    # seeds become repeated --seed options; the segmented mask feeds registration and margin
    assert "segment ablation --image post.nii.gz --seed -60,5,0 --seed -58,4,1" in out
    assert re.search(r"margin --tumor res/seeds/work/tumor_mask.nii.gz "
                     r"--ablation res/seeds/work/ablation_mask.nii.gz", out)
    assert re.search(r"--focus-mask res/seeds/work/ablation_mask.nii.gz", out)
    # registration none: margin without a transform
    noreg = next(ln for ln in out.splitlines() if "--out res/noreg" in ln)
    assert "--transform" not in noreg
    # every job logs
    assert out.count("log: res/logs/") >= 7


def test_dag_run_mode_on_testdata() -> None:
    r = _snakemake("-n", "-p", "--config", "pipeline=run", "out=/tmp/a0v-never-written")
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout + r.stderr
    assert _jobs(out) == Counter({"run_case": 3, "summary": 1, "all": 1})
    assert "run --pre testdata/case01/pre.nii.gz" in out


@pytest.mark.parametrize(("config", "needle"), [
    (["registration=affine"], "affine"),
    (["threshold_mm=99"], "99"),
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
    r = _snakemake("-n", "--directory", str(tmp_path), "--config", f"cases={sheet}")
    assert r.returncode != 0
    assert "Error validating row 0" in r.stdout + r.stderr
