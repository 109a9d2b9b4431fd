"""One install: a wheel built from this checkout, installed into a fresh virtual environment with
the ``batch`` extra, runs ``a0verify doctor`` and ``a0verify batch testdata/cases.tsv`` with no
checkout on its path (the Snakemake workflow travels inside the wheel)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=False, **kw)  # type: ignore[call-overload]


def test_wheel_in_a_clean_venv_runs_doctor_and_batch(tmp_path: Path) -> None:
    src = tmp_path / "src"  # build from a copy: the checkout stays untouched
    for name in ("a0verify", "pipelines"):
        shutil.copytree(REPO / name, src / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md", "Snakefile"):
        shutil.copy2(REPO / name, src / name)
    dist = tmp_path / "dist"
    r = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist),
              str(src)], timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    (wheel,) = dist.glob("a0verify-*.whl")
    venv = tmp_path / "venv"
    r = _run([sys.executable, "-m", "venv", str(venv)], timeout=300)
    assert r.returncode == 0, r.stderr
    r = _run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
              "--disable-pip-version-check", f"{wheel}[batch]"], timeout=1500)
    if r.returncode != 0 and ("Could not find a version" in r.stderr
                              or "Failed to establish" in r.stderr):
        pytest.skip(f"the package registry is unreachable: {r.stderr.strip()[-300:]}")
    assert r.returncode == 0, r.stderr[-3000:]
    a0 = str(venv / "bin" / "a0verify")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "A0VERIFY_WORKFLOW")}
    env.update({"MPLBACKEND": "Agg", "NUMBA_CACHE_DIR": str(tmp_path / "numba"),
                "PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"})
    r = _run([a0, "doctor"], env=env, cwd=tmp_path, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "FAIL" not in r.stdout
    # the batch: relative paths in the sheet resolve against the current directory
    out = tmp_path / "batch"
    r = _run([a0, "batch", str(REPO / "testdata" / "cases.tsv"), "--out", str(out),
              "--cores", "2"], env=env, cwd=REPO, timeout=1800)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    rows = (out / "summary.tsv").read_text().splitlines()[1:]
    assert len(rows) == 3 and all("\tok\t" in row for row in rows), rows
    # the workflow came from the installed package, not from this checkout
    site = _run([str(venv / "bin" / "python"), "-c",
                 "from a0verify.workflow import workflow_root; print(workflow_root())"],
                env=env, cwd=tmp_path)
    assert site.stdout.strip().endswith("share/a0verify"), site.stdout + site.stderr
