"""Figures of a tumour surface mesh carrying a per-vertex margin field (mm, positive inside the
zone): vertex normals, area fractions by margin class, deficit patches. Every function reads the
same field, so the figures agree with each other and with the MAM carried by the field."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from a0verify.margin import core
from a0verify.margin.results import DeficitPatch

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


def vertex_normals(tv: F64, tf: I64, normals: F64, area: F64) -> F64:
    """Unit area-weighted mean of the face normals around every vertex (N, 3)."""
    acc = np.zeros_like(tv)
    for j in range(3):
        np.add.at(acc, tf[:, j], normals * area[:, None])
    return acc / np.maximum(np.linalg.norm(acc, axis=1), 1e-12)[:, None]


def surface_fractions(tf: I64, area: F64, margin: F64, threshold: float) -> dict[str, float]:
    """Area fractions of the surface with margin < 0, in [0, threshold) and >= threshold (face
    margin = mean of its vertices); they sum to 1."""
    total = float(area.sum())
    fm = margin[tf].mean(axis=1)
    below0 = float(area[fm < 0].sum()) / total
    below_t = float(area[(fm >= 0) & (fm < threshold)].sum()) / total
    return {"below_zero": below0, "below_threshold": below_t,
            "at_or_above_threshold": max(0.0, 1.0 - below0 - below_t)}


def fraction_below(tf: I64, area: F64, margin: F64, level: float) -> float:
    """Area fraction of the surface with margin < ``level`` (face margin = mean of its
    vertices), e.g. below a second, reading-aid threshold."""
    fm = margin[tf].mean(axis=1)
    return float(area[fm < level].sum()) / float(area.sum())


def deficit_patches(v: F64, f: I64, margin: F64, area: F64, normals: F64,
                    threshold: float) -> list[DeficitPatch]:
    """Connected surface regions with face margin below ``threshold``, largest first."""
    fm = margin[f].mean(axis=1)
    ncomp, lab = core.face_components(f, fm < threshold, len(v))
    out = []
    cen_f = v[f].mean(axis=1)
    for c in range(ncomp):
        sel = lab == c
        fa = area[sel]
        a = float(fa.sum())
        cen = (cen_f[sel] * fa[:, None]).sum(axis=0) / max(a, 1e-12)
        d = (normals[sel] * fa[:, None]).sum(axis=0)
        d = d / max(float(np.linalg.norm(d)), 1e-12)
        verts = np.unique(f[sel])
        kmin = verts[int(np.argmin(margin[verts]))]
        out.append(DeficitPatch(
            area_mm2=a,
            min_margin_mm=float(margin[kmin]),
            centroid_lps=[float(x) for x in cen],
            outward_direction_lps=[float(x) for x in d],
            min_margin_point_lps=[float(x) for x in v[kmin]],
        ))
    out.sort(key=lambda p: -p.area_mm2)
    return out


def align_patches(patches: list[DeficitPatch], mam: float, mam_pt: F64) -> None:
    """The patch nearest to the MAM point reports the MAM and its point exactly (the field's
    smallest value there is the MAM to within its vertex sampling; the MAM point lies on the
    refined surface patch, between vertices)."""
    if not patches:
        return
    d = [float(np.linalg.norm(np.asarray(p.min_margin_point_lps) - mam_pt)) for p in patches]
    p = patches[int(np.argmin(d))]
    if p.min_margin_mm - mam < 0.1:
        p.min_margin_mm = float(mam)
        p.min_margin_point_lps = [float(v) for v in mam_pt]
