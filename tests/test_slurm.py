"""The testdata batch through a real Slurm cluster (snakemake-executor-plugin-slurm).

The cluster is a single node on localhost started by ``tests/slurm/setup_cluster.sh start``
(installs Debian slurm-wlm + munge when missing; needs root). The test starts it itself when it
is not up; when it cannot (not root, no apt, daemons do not start) the test is skipped with the
script's reason. Select it with ``pytest -m slurm``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SETUP = REPO / "tests" / "slurm" / "setup_cluster.sh"
pytestmark = [pytest.mark.slurm, pytest.mark.slow]


@pytest.fixture(scope="module")
def slurm_cluster() -> Iterator[None]:
    """A usable local Slurm cluster, or skip with the reason. A cluster this fixture started is
    stopped afterwards."""
    if shutil.which("bash") is None:
        pytest.skip("no bash to run tests/slurm/setup_cluster.sh")
    st = subprocess.run(["bash", str(SETUP), "status"], capture_output=True, text=True,
                        timeout=120)
    if st.returncode == 0:
        yield
        return
    if os.geteuid() != 0:
        pytest.skip("no Slurm cluster answering and not root, so "
                    "tests/slurm/setup_cluster.sh cannot install/start one")
    r = subprocess.run(["bash", str(SETUP), "start"], capture_output=True, text=True,
                       timeout=1800)
    if r.returncode != 0:
        reason = (r.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.skip(f"cannot start a local Slurm cluster: {reason}")
    yield
    subprocess.run(["bash", str(SETUP), "stop"], capture_output=True, timeout=120, check=False)


def test_testdata_batch_through_slurm(slurm_cluster: None, tmp_path: Path) -> None:
    out = tmp_path / "slurm_out"
    env = {**os.environ, "MPLBACKEND": "Agg",
           "NUMBA_CACHE_DIR": str(REPO / ".cache" / "numba")}
    cmd = [sys.executable, "-m", "a0verify", "batch", "testdata/cases.tsv", "--out", str(out),
           "--profile", "slurm", "--registration", "none"]
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env, timeout=1500)
    log = max((out / "logs").glob("batch-*.log")).read_text()
    assert r.returncode == 0, r.stdout + r.stderr + log[-4000:]
    # every case job went through sbatch and completed on the cluster (jobs are named by run id)
    run_id = re.search(r"SLURM run ID: (\S+)", log)
    assert run_id, log[-4000:]
    states = subprocess.run(["squeue", "-h", "-t", "all", "-n", run_id.group(1), "-o", "%T"],
                            capture_output=True, text=True, timeout=60).stdout.split()
    assert states == ["COMPLETED"] * 3, states
    lines = (out / "summary.tsv").read_text().splitlines()
    head = lines[0].split("\t")
    rows = [dict(zip(head, ln.split("\t"), strict=True)) for ln in lines[1:]]
    assert [row["case_id"] for row in rows] == ["case01", "case02", "case03"]
    for row in rows:
        rep = json.loads((out / row["case_id"] / "report.json").read_text())
        assert row["status"] == "ok"
        assert row["verdict"] == rep["lesions"][0]["verdict"]
        assert float(row["min_margin_mm"]) == pytest.approx(rep["min_margin_mm"], abs=1e-3)
        assert (out / row["case_id"] / "report.html").is_file()
