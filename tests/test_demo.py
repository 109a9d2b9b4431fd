"""`a0verify demo` end to end: the verdict matches the phantom's truth."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from a0verify.cli import main
from a0verify.verdict import classify


@pytest.mark.slow
def test_demo_end_to_end(tmp_path):
    r = CliRunner().invoke(main, ["demo", "--out", str(tmp_path / "demo")],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    truth = json.loads((tmp_path / "demo" / "case" / "truth.json").read_text())
    rep = json.loads((tmp_path / "demo" / "result" / "report.json").read_text())
    assert rep["verdict"] == classify(truth["min_mam_mm"], 5.0).verdict
    assert abs(rep["min_margin_mm"] - truth["min_mam_mm"]) <= max(1.0, rep["uncertainty_mm"])
    # the truth lies inside the reported band
    assert abs(rep["min_margin_mm"] - truth["min_mam_mm"]) <= rep["uncertainty_mm"]
    assert "verdict" in r.output and "report:" in r.output
