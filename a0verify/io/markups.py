"""Read 3D Slicer markups files (``.mrk.json``): point lists and lines, in LPS millimetres.

The one reader of markups in a0verify (the writer of the thinnest-margin point list lives in
:mod:`a0verify.report.slicer`). Slicer stores control points in the file's
``coordinateSystem`` ("LPS", the default since Slicer 4.11, or "RAS"); both are returned in LPS.
Only ``coordinateUnits`` "mm" is accepted. Control points whose ``positionStatus`` is not
"defined" (placed but not yet dropped) are skipped.

Outside clicks for the tumour are points whose markup node *name* or point *label* starts with
"out" (case-insensitive, e.g. a point list named "outside" or points labelled "out-1"); every
other point is an inside click. A markup of type "Line" is a diameter line (its two points).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from a0verify import geometry
from a0verify.errors import InputError

F64 = npt.NDArray[np.float64]


@dataclass
class Markups:
    """Points and lines of one markups file, LPS mm. ``points``: (label, position, outside?);
    ``lines``: (name, end A, end B)."""

    points: list[tuple[str, F64, bool]] = field(default_factory=list)
    lines: list[tuple[str, F64, F64]] = field(default_factory=list)

    @property
    def inside(self) -> list[list[float]]:
        return [p.tolist() for _, p, out in self.points if not out]

    @property
    def outside(self) -> list[list[float]]:
        return [p.tolist() for _, p, out in self.points if out]


def _doc(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise InputError(f"{path}: markups file does not exist")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not a 3D Slicer markups file (.mrk.json): {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("markups"), list):
        raise InputError(f"{path}: not a 3D Slicer markups file (no 'markups' list)")
    return doc


def read_markups(path: str | Path) -> Markups:
    """All point lists and lines of a ``.mrk.json`` file, in LPS mm (see the module docstring).

    Raises InputError naming the file when it is missing, not JSON, not a markups file, uses
    units other than mm, or holds a malformed control point. An empty file (no markups) gives an
    empty :class:`Markups`; other markup types (curves, planes, ROIs, angles) are ignored.
    """
    p = Path(path)
    out = Markups()
    for k, m in enumerate(_doc(p)["markups"]):
        if not isinstance(m, dict):
            raise InputError(f"{p}: markup {k} is not an object")
        kind = str(m.get("type", ""))
        units = str(m.get("coordinateUnits", "mm"))
        if units != "mm":
            raise InputError(f"{p}: markup {k} uses units {units!r}; only mm is supported")
        ras = str(m.get("coordinateSystem", "LPS")).upper() == "RAS"
        name = str(m.get("name", ""))
        pts: list[tuple[str, F64]] = []
        for i, cp in enumerate(m.get("controlPoints") or []):
            if cp.get("positionStatus", "defined") != "defined":
                continue
            try:
                pos = np.asarray(cp["position"], dtype=np.float64).reshape(3)
            except (KeyError, TypeError, ValueError):
                raise InputError(f"{p}: markup {k} control point {i} has no 3-D position") \
                    from None
            if not np.all(np.isfinite(pos)):
                raise InputError(f"{p}: markup {k} control point {i} is not finite")
            pts.append((str(cp.get("label", "")), geometry.ras_to_lps(pos) if ras else pos))
        if kind == "Fiducial":
            node_out = name.lower().startswith("out")
            out.points += [(lab, pos, node_out or lab.lower().startswith("out"))
                           for lab, pos in pts]
        elif kind == "Line":
            if len(pts) == 2:
                out.lines.append((name or f"line {len(out.lines) + 1}", pts[0][1], pts[1][1]))
            elif pts:
                raise InputError(f"{p}: line {name or k} has {len(pts)} point(s), needs 2")
    return out


def read_markups_lps(path: str | Path) -> list[tuple[str, F64]]:
    """Labels and LPS positions (mm) of every point-list control point of a ``.mrk.json``."""
    return [(label, pos) for label, pos, _ in read_markups(path).points]
