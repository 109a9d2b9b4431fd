"""The report.json model: typed stage results in, the canonical JSON dictionary out
(DESIGN.md section 6; schema ``report.schema.json``, validated by
:func:`a0verify.report.validate_report`).

Nothing is computed here: every number comes from the margin result and the verdict stage.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from a0verify import SIGN_CONVENTION, __version__
from a0verify.margin import MarginResult
from a0verify.verdict import CaseVerdict

SCHEMA_VERSION = "1.0"

#: Packages whose versions every report records.
PACKAGES = ("SimpleITK", "itk-elastix", "numpy", "numba", "scipy", "scikit-image", "pyvista",
            "click")


def package_versions() -> dict[str, str]:
    """Installed versions of :data:`PACKAGES` ("not installed" where missing)."""
    from importlib import metadata

    out = {}
    for pkg in PACKAGES:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def lesion_entries(margin: MarginResult, verdict: CaseVerdict) -> list[dict[str, Any]]:
    """One JSON object per lesion: the margin figures and the lesion's verdict."""
    by_id = {v.lesion_id: v for v in verdict.lesions}
    out = []
    for les in margin.lesions:
        v = by_id[les.id]
        d = les.to_dict()
        d.update({"verdict": v.verdict, "verdict_reason": v.reason,
                  "uncertainty_mm": v.uncertainty_mm,
                  "discretisation_uncertainty_mm": v.discretisation_uncertainty_mm})
        out.append(d)
    return out


def build_report(
    margin: MarginResult,
    verdict: CaseVerdict,
    *,
    command: str,
    inputs: Mapping[str, str | None],
    input_sha256: Mapping[str, str | None] | None = None,
    parameters: Mapping[str, Any],
    timings_s: Mapping[str, float],
    warnings: Sequence[str] = (),
    registration: dict[str, Any] | None = None,
    segmentation: dict[str, Any] | None = None,
    outputs: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The report.json dictionary of a case (``outputs`` is completed by the writer)."""
    lesions = lesion_entries(margin, verdict)
    worst = next(d for d in lesions if d["id"] == verdict.worst.lesion_id)
    report: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "command": command,
        "verdict": verdict.verdict,
        "threshold_mm": margin.threshold_mm,
        "min_margin_mm": worst["min_margin_mm"],
        "min_margin_lesion_id": worst["id"],
        "min_margin_point_lps": worst["min_margin_point_lps"],
        "min_margin_point_ras": worst["min_margin_point_ras"],
        "uncertainty_mm": worst["uncertainty_mm"],
        "lesions": lesions,
        "warnings": [*warnings, *verdict.warnings()],
        "registration": registration,
        "outputs": dict(outputs or {}),
        "provenance": {
            "a0verify_version": __version__,
            "package_versions": package_versions(),
            "parameters": dict(parameters),
            "inputs": dict(inputs),
            "input_sha256": dict(input_sha256 or {k: None for k in inputs}),
            "sign_convention": SIGN_CONVENTION,
            "coordinate_system": "LPS mm (RAS given alongside where labelled)",
            "timings_s": dict(timings_s),
        },
    }
    if segmentation:
        report["segmentation"] = segmentation
    return report


def lesion_point_summary(report: Mapping[str, Any]) -> str:
    """One human line: verdict, MAM and where (LPS and RAS)."""
    p = report["min_margin_point_lps"]
    r = report["min_margin_point_ras"]
    return (f"verdict {report['verdict']}: minimal margin {report['min_margin_mm']:.1f} mm "
            f"(± {report['uncertainty_mm']:.1f}) at LPS ({p[0]:.1f}, {p[1]:.1f}, {p[2]:.1f}) / "
            f"RAS ({r[0]:.1f}, {r[1]:.1f}, {r[2]:.1f}) mm, threshold {report['threshold_mm']:g} mm")
