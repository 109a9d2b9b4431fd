"""End-to-end cohort batches (slow): a real ``a0verify batch`` on small phantom cases with known
margins, one corrupt case and one case with a missing file; resuming after a hard kill.

The phantoms have pre and post in one pose, so ``--registration none`` is exact and the summary
can be checked against analytic truth without depending on registration accuracy.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from a0verify.batch import write_phantom_cohort
from a0verify.verdict import classify

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _batch_cmd(sheet: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "a0verify", "batch", str(sheet), "--out", str(out),
            "--registration", "none", *extra]


def _summary(out: Path) -> list[dict[str, str]]:
    lines = (out / "summary.tsv").read_text().splitlines()
    head = lines[0].split("\t")
    return [dict(zip(head, ln.split("\t"), strict=True)) for ln in lines[1:]]


def _env() -> dict[str, str]:
    return {**os.environ, "MPLBACKEND": "Agg",
            "NUMBA_CACHE_DIR": str(REPO / ".cache" / "numba")}


def test_batch_with_failures_and_truth(tmp_path: Path) -> None:
    sheet, truth = write_phantom_cohort(tmp_path / "cohort", [6.5, 2.0, -2.0], moving=False)
    bad = tmp_path / "cohort" / "corrupt.nii.gz"
    bad.write_bytes(b"not an image")
    rows = sheet.read_text().splitlines()
    first = rows[1].split("\t")
    rows.append("\t".join(["corrupt", first[1], first[2], str(bad), first[4]]))
    rows.append("\t".join(["lost", first[1], str(tmp_path / "no_such_post.nii.gz"),
                           first[3], first[4]]))
    sheet.write_text("\n".join(rows) + "\n")
    out = tmp_path / "out"

    r = subprocess.run(_batch_cmd(sheet, out, "--cores", "2"), capture_output=True, text=True,
                       env=_env(), timeout=600)
    assert r.returncode == 5, r.stdout + r.stderr
    assert "2 of 5 cases failed: corrupt, lost" in r.stderr
    assert r.stderr.strip().count("\n") == 0  # one error line
    assert "done   ph000: run_case" in r.stdout  # progress shown
    rows_out = _summary(out)
    by_case = {row["case_id"]: row for row in rows_out}
    assert set(by_case) == {"ph000", "ph001", "ph002", "corrupt", "lost"}
    for cid, mam in truth.items():
        row = by_case[cid]
        assert row["status"] == "ok"
        assert row["verdict"] == classify(mam, 5.0).verdict, (cid, mam, row)
        assert abs(float(row["min_margin_mm"]) - mam) <= float(row["uncertainty_mm"]) + 0.3
        assert row["report"] == f"{cid}/report.html"
        rep = json.loads((out / cid / "report.json").read_text())
        assert float(row["min_margin_mm"]) == pytest.approx(rep["min_margin_mm"], abs=1e-3)
    assert by_case["corrupt"]["status"] == "failed"
    assert "cannot read tumour mask" in by_case["corrupt"]["failure_reason"]
    assert by_case["lost"]["failure_reason"].startswith("missing input post")
    html_text = (out / "summary.html").read_text()
    assert '<a href="ph000/report.html">ph000</a>' in html_text

    # a second run redoes nothing that finished and still reports the failures
    mtimes = {c: (out / c / "report.json").stat().st_mtime_ns for c in truth}
    r2 = subprocess.run(_batch_cmd(sheet, out, "--cores", "2"), capture_output=True, text=True,
                        env=_env(), timeout=600)
    assert r2.returncode == 5
    assert "start  ph0" not in r2.stdout
    assert mtimes == {c: (out / c / "report.json").stat().st_mtime_ns for c in truth}


def _complete_reports(out: Path, cases: list[str]) -> list[str]:
    """Cases whose report.json exists; asserts each parses and names outputs that exist."""
    done = []
    for c in cases:
        p = out / c / "report.json"
        if p.exists():
            rep = json.loads(p.read_text())  # never half-written
            assert rep["verdict"] in ("A0", "insufficient", "incomplete", "indeterminate")
            for name in rep.get("outputs", {}).values():
                assert (out / c / name).is_file(), (c, name)
            done.append(c)
    return done


def test_resume_after_kill(tmp_path: Path) -> None:
    sheet, truth = write_phantom_cohort(tmp_path / "cohort", [6.5, 2.0, -2.0], moving=False)
    cases = sorted(truth)
    out = tmp_path / "out"
    proc = subprocess.Popen(_batch_cmd(sheet, out, "--cores", "1"), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=_env(),
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 400
        while time.monotonic() < deadline and proc.poll() is None:
            if _complete_reports(out, cases):
                break
            time.sleep(0.5)
        assert proc.poll() is None, "batch ended before it could be interrupted"
        time.sleep(2.0)  # let the next case start
        os.killpg(proc.pid, signal.SIGKILL)  # hard kill of batch, snakemake and the case job
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    finished = _complete_reports(out, cases)
    assert 1 <= len(finished) < len(cases)
    mtimes = {c: (out / c / "report.json").stat().st_mtime_ns for c in finished}
    assert not (out / "summary.tsv").exists()

    r = subprocess.run(_batch_cmd(sheet, out, "--cores", "2"), capture_output=True, text=True,
                       env=_env(), timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "resuming" in r.stdout
    assert sorted(_complete_reports(out, cases)) == cases
    for c in finished:  # finished cases were not redone
        assert f"start  {c}:" not in r.stdout
        assert (out / c / "report.json").stat().st_mtime_ns == mtimes[c]
    rows = {row["case_id"]: row for row in _summary(out)}
    for c, mam in truth.items():
        assert rows[c]["verdict"] == classify(mam, 5.0).verdict
    assert not list(out.rglob(".report.*"))  # no temporary leftovers of atomic writes


def test_batch_with_seeds(tmp_path: Path) -> None:
    """Seeds from the sheet: the case's `a0verify run` job segments tumour and zone, then
    margin, report; then the summary."""
    sheet, truth = write_phantom_cohort(tmp_path / "cohort", [6.5], moving=False)
    case_dir = tmp_path / "cohort" / "ph000"
    t = json.loads((case_dir / "truth.json").read_text())["lesions"][0]
    tumor_seed = ",".join(f"{v:.2f}" for v in t["tumor_center_pre_lps"])
    zone_seed = ",".join(f"{v:.2f}" for v in t["zone_center_post_lps"])
    sheet.write_text("case_id\tpre\tpost\ttumor_seed\tablation_seed\n"
                     f"ph000\t{case_dir / 'pre.nii.gz'}\t{case_dir / 'post.nii.gz'}\t"
                     f"{tumor_seed}\t{zone_seed}\n")
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "a0verify", "batch", str(sheet), "--out",
                        str(out), "--registration", "none"],
                       capture_output=True, text=True, env=_env(), timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "done   ph000: run_case" in r.stdout
    assert (out / "logs" / "ph000" / "run.log").is_file()
    rep = json.loads((out / "ph000" / "report.json").read_text())
    assert {"tumor", "ablation"} <= set(rep["segmentation"])  # both segmented from the seeds
    assert all("quality" in rep["segmentation"][k] for k in ("tumor", "ablation"))
    row = _summary(out)[0]
    # seeded segmentation of a clean phantom: verdict right, MAM within a voxel of the truth
    assert row["verdict"] == classify(truth["ph000"], 5.0).verdict
    assert abs(float(row["min_margin_mm"]) - truth["ph000"]) < 2.5
