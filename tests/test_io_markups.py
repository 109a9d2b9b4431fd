"""3D Slicer markups reading (a0verify.io.markups): points, lines, RAS/LPS, outside points."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from a0verify.errors import InputError
from a0verify.io.markups import read_markups, read_markups_lps
from a0verify.report.slicer import write_markups


def _write(path: Path, markups: list[dict]) -> Path:
    path.write_text(json.dumps({"markups": markups}))
    return path


def test_points_lines_ras_and_outside(tmp_path: Path) -> None:
    f = _write(tmp_path / "a.mrk.json", [
        {"type": "Fiducial", "coordinateSystem": "RAS", "name": "F",
         "controlPoints": [{"label": "F-1", "position": [1.0, 2.0, 3.0]},
                           {"label": "out-2", "position": [4.0, 5.0, 6.0]},
                           {"label": "F-3", "position": [7, 8, 9], "positionStatus": "undefined"}]},
        {"type": "Fiducial", "name": "Outside vessel",
         "controlPoints": [{"label": "v", "position": [0.0, 0.0, 1.0]}]},
        {"type": "Line", "name": "L", "coordinateSystem": "LPS",
         "controlPoints": [{"position": [0, 0, 0]}, {"position": [10, 0, 0]}]},
        {"type": "Curve", "controlPoints": [{"position": [0, 0, 0]}]},
    ])
    mk = read_markups(f)
    assert mk.inside == [[-1.0, -2.0, 3.0]]  # RAS -> LPS
    assert mk.outside == [[-4.0, -5.0, 6.0], [0.0, 0.0, 1.0]]
    (name, a, b), = mk.lines
    assert name == "L" and np.allclose(a, 0) and np.allclose(b, [10, 0, 0])
    assert [lab for lab, _ in read_markups_lps(f)] == ["F-1", "out-2", "v"]


def test_round_trip_with_the_report_writer(tmp_path: Path) -> None:
    p = write_markups(tmp_path / "t.mrk.json", [("thinnest", (1.5, -2.0, 3.25), "d")])
    (label, pos), = read_markups_lps(p)
    assert label == "thinnest" and np.allclose(pos, [1.5, -2.0, 3.25])


@pytest.mark.parametrize(("content", "msg"), [
    ("[]", "no 'markups' list"),
    ('{"markups": [{"type": "Fiducial", "controlPoints": [{"position": [1, 2]}]}]}',
     "has no 3-D position"),
    ('{"markups": [{"type": "Line", "controlPoints": [{"position": [1, 2, 3]}]}]}',
     "needs 2"),
    ('{"markups": [{"type": "Fiducial", "controlPoints": [{"position": [1, "nan", 3]}]}]}',
     "not finite"),
])
def test_bad_files_name_the_file(tmp_path: Path, content: str, msg: str) -> None:
    f = tmp_path / "x.mrk.json"
    f.write_text(content)
    with pytest.raises(InputError, match=msg) as e:
        read_markups(f)
    assert str(e.value).startswith(str(f))
