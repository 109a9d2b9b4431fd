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
    mam, unc, true_mam = rep["min_margin_mm"], rep["uncertainty_mm"], truth["min_mam_mm"]
    # The verdict is never wrong: the true one (A0 for the demo's 8.5 mm), or "indeterminate"
    # exactly when the reported band straddles the threshold (about +-2-3 mm after deformable
    # registration of this low-texture phantom; 8.5 mm is chosen to show a clear A0).
    if rep["verdict"] == "indeterminate":
        assert mam - unc < 5.0 <= mam + unc, (mam, unc)
    else:
        assert rep["verdict"] == classify(true_mam, 5.0).verdict
    assert abs(mam - true_mam) <= 1.0  # end-to-end accuracy after registration (issue 4)
    assert abs(mam - true_mam) <= unc  # the truth lies inside the reported band
    assert "verdict" in r.output and "report:" in r.output
