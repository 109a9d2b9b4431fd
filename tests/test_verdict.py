"""Verdict rules with and without an uncertainty band (DESIGN.md section 5)."""

import pytest

from a0verify.verdict import classify, combine_uncertainty, worst


@pytest.mark.parametrize(
    ("mam", "u", "expected"),
    [
        (6.0, 0.0, "A0"), (5.0, 0.0, "A0"), (4.99, 0.0, "insufficient"), (0.0, 0.0, "insufficient"),
        (-0.01, 0.0, "incomplete"), (6.0, 0.5, "A0"), (5.4, 0.5, "indeterminate"),
        (4.6, 0.5, "indeterminate"), (3.0, 0.5, "insufficient"), (0.3, 0.5, "indeterminate"),
        (-1.0, 0.5, "incomplete"), (-0.3, 0.5, "indeterminate"),
    ],
)
def test_classify(mam, u, expected):
    assert classify(mam, 5.0, u).verdict == expected


def test_indeterminate_reason_names_the_boundary():
    assert "5 mm" in classify(5.2, 5.0, 0.5).reason
    assert "0 mm" in classify(0.2, 5.0, 0.5).reason


def test_worst_and_combination():
    assert worst(["A0", "insufficient", "indeterminate"]) == "insufficient"
    assert worst(["A0", "incomplete"]) == "incomplete"
    assert worst(["A0"]) == "A0"
    assert combine_uncertainty(0.3, 0.4) == pytest.approx(0.5)
