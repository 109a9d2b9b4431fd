"""Verdict per lesion and per case, with an uncertainty band.

``A0``            MAM - u >= threshold                  (margin sufficient everywhere)
``insufficient``  0 <= MAM + ... band entirely in [0, threshold)
``incomplete``    MAM + u < 0                           (tumour outside the zone)
``indeterminate`` the band [MAM - u, MAM + u] straddles 0 or the threshold

where u is the combined 95 % half-width (mm) of discretisation and registration uncertainty.
With u = 0 this reduces to the plain rule of DESIGN.md section 5. The case verdict is the worst
lesion verdict in the order A0 < indeterminate < insufficient < incomplete.

A ``caveat`` (e.g. "registration unreliable: restarts disagree by 2.4 mm near the zone") is
never silent: it is appended to the reason, and it turns an ``A0`` into ``indeterminate`` (an A0
verdict is the one that ends the treatment, so it must not rest on weak evidence).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

VERDICTS = ("A0", "indeterminate", "insufficient", "incomplete")
_SEVERITY = {v: i for i, v in enumerate(VERDICTS)}


@dataclass(frozen=True)
class Verdict:
    verdict: str
    reason: str


def combine_uncertainty(*half_widths_mm: float) -> float:
    """Independent 95 % half-widths combine in quadrature (mm)."""
    return math.sqrt(sum(float(u) ** 2 for u in half_widths_mm))


def classify(mam_mm: float, threshold_mm: float, uncertainty_mm: float = 0.0,
             caveat: str | None = None) -> Verdict:
    """Classify one lesion from its minimal ablative margin (mm, positive = inside the zone);
    ``caveat``: see the module docstring."""
    v = _classify(mam_mm, threshold_mm, max(0.0, float(uncertainty_mm)))
    if not caveat:
        return v
    if v.verdict == "A0":
        return Verdict("indeterminate", f"{v.reason}, but {caveat}")
    return Verdict(v.verdict, f"{v.reason} ({caveat})")


def _classify(mam_mm: float, threshold_mm: float, u: float) -> Verdict:
    lo, hi = mam_mm - u, mam_mm + u
    if lo >= threshold_mm:
        return Verdict("A0", f"minimal margin {mam_mm:.1f} mm >= {threshold_mm:g} mm")
    if hi < 0:
        return Verdict("incomplete", f"tumour extends {-mam_mm:.1f} mm beyond the ablation zone")
    if lo >= 0 and hi < threshold_mm:
        return Verdict("insufficient",
                       f"minimal margin {mam_mm:.1f} mm < {threshold_mm:g} mm")
    edge = "0 mm (complete coverage)" if lo < 0 <= hi else f"{threshold_mm:g} mm"
    return Verdict(
        "indeterminate",
        f"minimal margin {mam_mm:.1f} ± {u:.1f} mm straddles {edge}",
    )


def worst(verdicts: Iterable[str]) -> str:
    """Case verdict: the most severe lesion verdict."""
    vs = list(verdicts)
    if not vs:
        raise ValueError("no lesion verdicts")
    return max(vs, key=lambda v: _SEVERITY[v])


@dataclass(frozen=True)
class LesionVerdict:
    """Verdict of one lesion: its MAM (mm) and the combined 95 % half-width ``uncertainty_mm``
    (discretisation and registration in quadrature) the verdict was drawn with."""

    lesion_id: int
    min_margin_mm: float
    verdict: str
    reason: str
    uncertainty_mm: float
    discretisation_uncertainty_mm: float


@dataclass(frozen=True)
class CaseVerdict:
    """Stage ``verdict``: per-lesion verdicts, the case verdict (the worst lesion verdict) and the
    lesion with the smallest margin (``worst``), whose MAM is the case MAM."""

    verdict: str
    threshold_mm: float
    lesions: tuple[LesionVerdict, ...]
    worst: LesionVerdict

    def warnings(self) -> list[str]:
        """One line explaining an indeterminate case verdict ([] otherwise)."""
        if self.verdict != "indeterminate":
            return []
        return ["verdict indeterminate: " + "; ".join(
            f"lesion {v.lesion_id}: {v.reason}" for v in self.lesions
            if v.verdict == "indeterminate")]


def judge(margins: Iterable[tuple[int, float, float]], threshold_mm: float,
          registration_uncertainty_mm: float = 0.0,
          registration_caveat: str | None = None) -> CaseVerdict:
    """Stage ``verdict``: classify each lesion ``(id, MAM mm, discretisation half-width mm)``
    with the registration half-width (mm) combined in quadrature, and the case;
    ``registration_caveat`` (e.g. "registration unreliable: ...") goes to every lesion's
    :func:`classify`. Raises ValueError without lesions."""
    out = []
    for lid, mam, u_disc in margins:
        u = combine_uncertainty(u_disc, registration_uncertainty_mm)
        v = classify(mam, threshold_mm, u, registration_caveat)
        out.append(LesionVerdict(int(lid), float(mam), v.verdict, v.reason, u, float(u_disc)))
    if not out:
        raise ValueError("no lesions to judge")
    return CaseVerdict(verdict=worst(v.verdict for v in out), threshold_mm=float(threshold_mm),
                       lesions=tuple(out), worst=min(out, key=lambda v: v.min_margin_mm))
