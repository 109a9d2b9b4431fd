"""Plain words for the report page: the registration in sentences a radiologist reads without
knowing the metric names (the raw metrics stay in a collapsed table), and the method tag."""

from __future__ import annotations

from typing import Any

from a0verify.margin.results import BORDER_VOXEL_DESCRIPTION, METHOD_DESCRIPTION, METHOD_NAME

_METHODS = {
    "none": "none: the scans were taken to share one physical space",
    "rigid": "rigid alignment (rotation and shift) of the pre-ablation scan onto the "
             "post-ablation scan, focused on the region around the ablation zone",
    "deformable": "rigid alignment followed by a smooth local (deformable) correction, focused "
                  "on the region around the ablation zone (the tumour and the zone are kept out "
                  "of the similarity measure)",
}


def _get(d: Any, *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def registration_sentences(reg: dict[str, Any]) -> list[str]:
    """Sentences describing a registration record (report.json ``registration``); only what the
    record holds is said (any metric may be missing)."""
    m = reg.get("metrics", {}) or {}
    out = [f"Method: {_METHODS.get(str(reg.get('method')), str(reg.get('method')))}."]
    sim = _get(m, "similarity_roi")
    if isinstance(sim, dict):
        parts = []
        for key, label in (("before", "before"), ("after_rigid", "after the rigid step"),
                           ("after", "after registration")):
            v = _num(_get(sim, key, "ncc"))
            if v is not None:
                parts.append(f"{v:.2f} {label}")
        if parts:
            out.append("How well the two scans match around the ablation zone (correlation of "
                       "CT intensities; 1 = identical, above about 0.7 is good): "
                       + ", ".join(parts) + ".")
    for key, lead, tail in (
            ("displacement_mm", "The pre-ablation scan was moved by",
             " to line up with the post-ablation scan."),
            ("deformable_displacement_mm", "The local correction moved tissue by a further", ".")):
        disp = _get(m, key)
        if isinstance(disp, dict) and _num(disp.get("p50")) is not None:
            s = f"{lead} {float(disp['p50']):.1f} mm (median)"
            if _num(disp.get("max")) is not None:
                s += f", at most {float(disp['max']):.1f} mm"
            out.append(s + tail)
    jr, jz = _get(m, "jacobian_roi"), _get(m, "jacobian_zone")
    fold = _num(m.get("jacobian_folding_fraction"))
    if isinstance(jr, dict) and _num(jr.get("min")) is not None and _num(jr.get("max")) is not None:
        s = (f"Local volume change of the tissue: {100 * (float(jr['min']) - 1):+.0f} % to "
             f"{100 * (float(jr['max']) - 1):+.0f} % around the zone")
        if isinstance(jz, dict) and _num(jz.get("min")) is not None:
            zmax = _num(jz.get("max"))
            s += (f", {100 * (float(jz['min']) - 1):+.0f} % to "
                  f"{100 * ((zmax if zmax is not None else float(jz['min'])) - 1):+.0f} % "
                  "inside the zone")
        if fold is not None:
            s += ("; no folding (physically plausible)" if fold == 0 else
                  f"; FOLDING in {100 * fold:.2f} % of the region (implausible: check the "
                  "images)")
        out.append(s + ".")
    rd = m.get("restart_disagreement_mm")
    if isinstance(rd, list) and rd and _num(_get(rd[0], "p95")) is not None:
        out.append("A second registration from another start agrees within "
                   f"{float(rd[0]['p95']):.1f} mm (95 % of points).")
    att = m.get("attempts")
    if isinstance(att, list) and len(att) > 1:
        out.append(f"It succeeded after {len(att)} attempts with different settings.")
    u = _num(reg.get("uncertainty_mm"))
    if u is not None:
        out.append(f"Estimated registration uncertainty ± {u:.1f} mm (95 %); it is included in "
                   "the margin's uncertainty.")
    return out


def method_tag(report: dict[str, Any]) -> dict[str, Any]:
    """Method tag of the headline number (report.json ``margin_method``; reports written before
    it existed get the current method's words and the worst lesion's border-voxel MAM when they
    hold it): name, text, border_voxel_mm (or None), border_voxel_text."""
    rec = report.get("margin_method") or {}
    bv = _num(rec.get("border_voxel_min_margin_mm"))
    if bv is None:
        lid = report.get("min_margin_lesion_id")
        les: dict[str, Any] = next(
            (d for d in report.get("lesions", []) if d.get("id") == lid), {})
        bv = _num(les.get("border_voxel_min_margin_mm"))
    return {"name": rec.get("name", METHOD_NAME), "text": rec.get("description",
                                                                  METHOD_DESCRIPTION),
            "border_voxel_mm": bv,
            "border_voxel_text": "border-voxel methods ("
            + rec.get("border_voxel_description", BORDER_VOXEL_DESCRIPTION) + ") would report"}
