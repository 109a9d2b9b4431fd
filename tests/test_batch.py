"""Cohort batches: sample-sheet validation, summary rows/HTML, progress parsing, batch CLI errors.

Fast tests only (no case is computed); the end-to-end batch runs are in test_batch_run.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from a0verify import summary as summ
from a0verify.batch import ProgressParser, resolve_profile
from a0verify.cli import main
from a0verify.errors import InputError
from a0verify.workflow import read_sample_sheet, workflow_root

REPO = Path(__file__).resolve().parents[1]
HEADER = "case_id\tpre\tpost\ttumor\tablation\n"


def _sheet(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "cases.tsv"
    p.write_text(text)
    return p


def test_testdata_sheet_is_valid() -> None:
    rows = read_sample_sheet(REPO / "testdata" / "cases.tsv")
    assert [r["case_id"] for r in rows] == ["case01", "case02", "case03"]
    assert rows[0]["ablation"] == "testdata/case01/ablation.nii.gz"


def test_example_sheet_is_valid() -> None:
    rows = read_sample_sheet(REPO / "pipelines" / "config" / "cases.example.tsv")
    assert rows[1]["ablation_seed"] == "-63.9,10.9,-1.7;-62,9,0" and "tumor" not in rows[1]


def test_sheet_with_seeds_comments_and_blank_cells(tmp_path: Path) -> None:
    p = _sheet(tmp_path, "# cohort A\ncase_id\tpre\tpost\ttumor\tablation\tablation_seed\n"
               "a1\tp.nii\tq.nii\tt.nii\t\t-60,5,0; -58.5,4,1.25\n"
               "a.2-b_3\tp.nii\tq.nii\tt.nii\tz.nii\t\n")
    rows = read_sample_sheet(p)
    assert rows[0] == {"case_id": "a1", "pre": "p.nii", "post": "q.nii", "tumor": "t.nii",
                       "ablation_seed": "-60,5,0; -58.5,4,1.25"}
    assert "ablation_seed" not in rows[1]


@pytest.mark.parametrize("case_id", ["../evil", "a/b", "..", "x..y", ".hidden", "-dash",
                                     "logs", "summary.html", "a b", "a" * 65, "é"])
def test_unsafe_case_ids_are_rejected(tmp_path: Path, case_id: str) -> None:
    p = _sheet(tmp_path, HEADER + f"{case_id}\tp\tq\tt\tz\n")
    with pytest.raises(InputError) as ei:
        read_sample_sheet(p)
    msg = str(ei.value)
    assert str(p) in msg and "row 1" in msg and "\n" not in msg


@pytest.mark.parametrize(("extra_header", "row", "needle"), [
    ("", "c1\tp\tq\t\tz\n", "exactly one of tumor/tumor_seed"),
    ("\ttumor_seed", "c1\tp\tq\tt\tz\t1,2,3\n", "exactly one of tumor/tumor_seed"),
    ("\tablation_seed", "c1\tp\tq\tt\t\t1,2\n", "ablation_seed"),
    ("\tregistration", "c1\tp\tq\tt\tz\taffine\n", "registration"),
    ("\tthreshold_mm", "c1\tp\tq\tt\tz\tfive\n", "threshold_mm"),
    ("", "c1\t\tq\tt\tz\n", "pre"),
])
def test_invalid_rows_are_rejected(tmp_path: Path, extra_header: str, row: str,
                                   needle: str) -> None:
    p = _sheet(tmp_path, HEADER.rstrip("\n") + extra_header + "\n" + row)
    with pytest.raises(InputError, match=needle):
        read_sample_sheet(p)


def test_duplicate_missing_and_empty_sheets(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="duplicate case_id 'c1'"):
        read_sample_sheet(_sheet(tmp_path, HEADER + "c1\tp\tq\tt\tz\nc1\tp\tq\tt\tz\n"))
    with pytest.raises(InputError, match="has no cases"):
        read_sample_sheet(_sheet(tmp_path, HEADER))
    with pytest.raises(InputError, match="does not exist"):
        read_sample_sheet(tmp_path / "nope.tsv")
    with pytest.raises(InputError, match="header"):
        read_sample_sheet(_sheet(tmp_path, "a,b,c\n1,2,3\n"))


def test_profiles_resolve() -> None:
    root = workflow_root()
    assert resolve_profile("local", root) == (root / "pipelines/profiles/local").resolve()
    assert (resolve_profile("slurm", root) or Path()).name == "slurm"
    with pytest.raises(InputError, match=r"no config\.yaml"):
        resolve_profile("/nonexistent/profile", root)


# --- summary -----------------------------------------------------------------------------------

def _report(verdict: str, mam: float, warnings: list[str]) -> dict:
    return {
        "verdict": verdict, "threshold_mm": 5.0, "min_margin_mm": mam, "warnings": warnings,
        "registration": {"method": "rigid", "uncertainty_mm": 0.7,
                         "metrics": {"ncc_before": 0.41, "ncc_after": 0.93}},
        "lesions": [
            {"id": 1, "verdict": verdict, "min_margin_mm": mam, "uncertainty_mm": 0.5,
             "surface_fraction": {"below_zero": 0.0, "below_threshold": 0.25,
                                  "at_or_above_threshold": 0.75},
             "tumor_volume_ml": 4.0, "residual_volume_ml": 0.0},
            {"id": 2, "verdict": "incomplete", "min_margin_mm": -1.5, "uncertainty_mm": 0.5,
             "surface_fraction": {"below_zero": 0.1, "below_threshold": 0.9,
                                  "at_or_above_threshold": 0.0},
             "tumor_volume_ml": 2.0, "residual_volume_ml": 0.5},
        ],
    }


@pytest.fixture
def fake_results(tmp_path: Path) -> tuple[Path, Path]:
    """Sheet with 3 cases: one with a report, one whose margin stage logged an error, one with a
    missing input file."""
    for n in ("p.nii", "q.nii", "t.nii", "z.nii"):
        (tmp_path / n).write_text("x")
    sheet = _sheet(tmp_path, HEADER + "good\tp.nii\tq.nii\tt.nii\tz.nii\n"
                   "bad\tp.nii\tq.nii\tt.nii\tz.nii\nlost\tp.nii\tgone.nii\tt.nii\tz.nii\n")
    res = tmp_path / "results"
    (res / "good").mkdir(parents=True)
    (res / "good" / "report.json").write_text(json.dumps(
        _report("incomplete", 3.25, ["<script>alert(1)</script> tab\there"])))
    (res / "logs" / "bad").mkdir(parents=True)
    (res / "logs" / "bad" / "register.log").write_text("registering...\nok\n")
    (res / "logs" / "bad" / "margin.log").write_text(
        "reading\na0verify: error: /x/t.nii: tumour mask is empty\n")
    return sheet, res


def test_summary_rows(fake_results: tuple[Path, Path]) -> None:
    sheet, res = fake_results
    rows = summ.collect(summ.read_case_list(sheet, sheet.parent), res)
    assert [(r["case_id"], r["status"], r["lesion_id"]) for r in rows] == [
        ("good", "ok", 1), ("good", "ok", 2), ("bad", "failed", None), ("lost", "failed", None)]
    l1, l2 = rows[0], rows[1]
    assert l1["coverage_pct"] == pytest.approx(100.0)
    assert l2["coverage_pct"] == pytest.approx(75.0)  # 0.5 of 2 ml unablated
    assert l2["surface_below_zero_pct"] == pytest.approx(10.0)
    assert l1["surface_at_or_above_threshold_pct"] == pytest.approx(75.0)
    assert l1["registration_qa"] == "ncc_after=0.93; ncc_before=0.41"
    assert l1["report"] == "good/report.html"
    assert rows[2]["failure_reason"] == "margin: a0verify: error: /x/t.nii: tumour mask is empty"
    assert rows[3]["failure_reason"].startswith("missing input post: ")
    assert summ.case_outcomes(rows) == {"good": "incomplete", "bad": "failed", "lost": "failed"}


def test_summary_files_tsv_and_escaped_html(fake_results: tuple[Path, Path]) -> None:
    sheet, res = fake_results
    summ.write_summary(sheet, res, base_dir=sheet.parent)
    lines = (res / "summary.tsv").read_text().splitlines()
    assert lines[0].split("\t") == list(summ.COLUMNS)
    assert len(lines) == 5 and all(len(ln.split("\t")) == len(summ.COLUMNS) for ln in lines)
    good = dict(zip(summ.COLUMNS, lines[1].split("\t"), strict=True))
    assert good["min_margin_mm"] == "3.250" and good["case_verdict"] == "incomplete"
    assert "tab here" in good["warnings"]  # tab inside a value cannot break the columns
    html_text = (res / "summary.html").read_text()
    assert "<script>alert" not in html_text and "&lt;script&gt;alert(1)" in html_text
    assert '<a href="good/report.html">good</a>' in html_text
    assert "<b>2</b> failed" in html_text and "<b>1</b> incomplete" in html_text
    assert "<svg" in html_text  # MAM distribution plot, inline


def test_summary_cli_entry(fake_results: tuple[Path, Path]) -> None:
    sheet, res = fake_results
    out = subprocess.run([sys.executable, "-m", "a0verify.summary", "--cases", str(sheet),
                          "--results", str(res), f"--base-dir={sheet.parent}"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "failed=2 incomplete=1"
    assert (res / "summary.tsv").is_file() and (res / "summary.html").is_file()


def test_summary_of_unreadable_report(tmp_path: Path) -> None:
    sheet = _sheet(tmp_path, HEADER + "c1\tp\tq\tt\tz\n")
    (tmp_path / "r" / "c1").mkdir(parents=True)
    (tmp_path / "r" / "c1" / "report.json").write_text("{truncated")
    rows = summ.collect(summ.read_case_list(sheet, tmp_path), tmp_path / "r")
    assert rows[0]["status"] == "failed" and "unreadable report" in rows[0]["failure_reason"]


# --- progress -----------------------------------------------------------------------------------

SNAKEMAKE_LOG = """\
[Sat Nov 21 21:07:15 2026]
localrule margin:
    input: a.nii, b.nii
    output: /r/c7/report.json
    log: /r/logs/c7/margin.log
    jobid: 3
    reason: Missing output files: /r/c7/report.json
    wildcards: case=c7
    threads: 1
    resources: tmpdir=/tmp, mem_mb=3000
[Sat Nov 21 21:07:16 2026]
rule register:
    input: a.nii
    output: /r/c8/work/registration/transform.h5
    log: /r/logs/c8/register.log
    jobid: 5
    wildcards: case=c8
    resources: tmpdir=/tmp
Job 5 has been submitted with SLURM jobid 42 (log: /r/.snakemake/slurm_logs/5.log).
[Sat Nov 21 21:07:18 2026]
Error in rule margin:
    message: None
    jobid: 3
    log: /r/logs/c7/margin.log (check log file(s) for error details)
[Sat Nov 21 21:07:35 2026]
Finished jobid: 5 (Rule: register)
1 of 4 steps (25%) done
"""


def test_progress_parser() -> None:
    lines: list[str] = []
    p = ProgressParser(lines.append)
    for ln in SNAKEMAKE_LOG.splitlines():
        p.feed(ln)
    assert lines == [
        "start  c7: margin",
        "start  c8: register",
        "queued c8: register as Slurm job 42",
        "FAILED c7: margin (log /r/logs/c7/margin.log); other cases go on",
        "done   c8: register  [1/4 steps, 25%]",
    ]


# --- CLI ----------------------------------------------------------------------------------------

def test_batch_cli_bad_sheet_is_one_line_exit_2(tmp_path: Path) -> None:
    p = _sheet(tmp_path, HEADER + "../up\tp\tq\tt\tz\n")
    r = CliRunner().invoke(main, ["batch", str(p), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2
    err = r.stderr.strip() if hasattr(r, "stderr") else r.output.strip()
    assert err.count("\n") == 0 and "case_id" in err and str(p) in err
    assert not (tmp_path / "o").exists()


def test_batch_cli_help_lists_options() -> None:
    r = CliRunner().invoke(main, ["batch", "--help"])
    assert r.exit_code == 0
    for opt in ("--out", "--cores", "--profile", "--dry-run"):
        assert opt in r.output


def test_batch_lock_refuses_live_batch_and_detects_stale(tmp_path: Path) -> None:
    from a0verify.batch import _BatchLock

    dead = subprocess.Popen(["true"])
    dead.wait()
    (tmp_path / ".a0verify-batch.pid").write_text(f"{dead.pid}\n")
    with _BatchLock(tmp_path) as lock:
        assert lock.stale
        assert (tmp_path / ".a0verify-batch.pid").read_text().strip() == str(os.getpid())
    assert not (tmp_path / ".a0verify-batch.pid").exists()
    live = subprocess.Popen(["bash", "-c", "exec -a a0verify-batch sleep 30"])
    try:
        time.sleep(0.3)
        (tmp_path / ".a0verify-batch.pid").write_text(f"{live.pid}\n")
        with pytest.raises(InputError, match=f"another batch \\(pid {live.pid}\\)"), \
                _BatchLock(tmp_path):
            pass
    finally:
        live.kill()
        live.wait()


def test_batch_cli_dry_run_plans_every_case(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "a0verify", "batch", "testdata/cases.tsv",
                        "--out", str(tmp_path / "o"), "--dry-run"], cwd=REPO,
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    for cid in ("case01", "case02", "case03"):
        assert f"to run {cid}: " in r.stdout
    assert "to run -: summary" in r.stdout
    assert not list((tmp_path / "o").glob("case0*"))  # nothing computed


def test_batch_refuses_directory_locked_by_another_snakemake(tmp_path: Path) -> None:
    out = tmp_path / "o"
    (out / ".snakemake" / "locks").mkdir(parents=True)
    (out / ".snakemake" / "locks" / "0.input.lock").write_text("x")
    r = CliRunner().invoke(main, ["batch", str(REPO / "testdata" / "cases.tsv"),
                                  "--out", str(out)])
    assert r.exit_code == 2
    assert "locked by another Snakemake run" in r.output and "--unlock" in r.output
    assert not (out / ".a0verify-batch.pid").exists()
