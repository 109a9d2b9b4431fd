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


def test_caveat_is_never_silent_and_blocks_a0():
    """A registration caveat stops an A0 (the verdict that ends treatment) and is named in the
    reason of every verdict; without a caveat nothing changes."""
    note = "registration unreliable: restarts disagree by 2.4 mm near the zone"
    v = classify(8.0, 5.0, 1.0, caveat=note)
    assert v.verdict == "indeterminate" and note in v.reason and "8.0" in v.reason
    for mam, expected in ((-4.0, "incomplete"), (2.5, "insufficient"), (4.9, "indeterminate")):
        v = classify(mam, 5.0, 1.0, caveat=note)
        assert v.verdict == expected and note in v.reason
    assert classify(8.0, 5.0, 1.0, caveat=None) == classify(8.0, 5.0, 1.0)
