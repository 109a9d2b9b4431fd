"""Case outputs: artefacts for 3D Slicer and the self-contained HTML report.

The report.json dictionary itself is assembled in :mod:`a0verify.pipeline` (``build_report``);
this package writes everything else, given that dictionary.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import SimpleITK as sitk

from a0verify.io import write_image
from a0verify.margin import MarginResult


def write_case_outputs(out_dir: Path, report: dict[str, Any], *, margin: MarginResult,
                       ablation: sitk.Image, tumor_post: sitk.Image | None = None,
                       post: sitk.Image | None = None, pre: sitk.Image | None = None,
                       registration: Any = None) -> dict[str, str]:
    """Write margin map, surface mesh, masks on the post grid, transform and report.html into
    ``out_dir`` (each atomically). Returns {role: file name relative to out_dir}.

    ``report`` is the report.json dictionary (report.json itself is written by the caller, last).
    """
    from a0verify.margin import outputs as mout
    from a0verify.report.html import write_html_report

    out = Path(out_dir)
    outputs: dict[str, str] = {}
    if margin.margin_map is not None:
        mout.write_margin_map(margin, out / "margin_map.nrrd")
        outputs["margin_map"] = "margin_map.nrrd"
    mout.write_surface_mesh(margin.lesions, out / "tumor_surface.vtp")
    outputs["tumor_surface"] = "tumor_surface.vtp"
    if tumor_post is not None:
        write_image(tumor_post, out / "tumor_post.nrrd")
        outputs["tumor_post"] = "tumor_post.nrrd"
    write_image(sitk.Cast(ablation != 0, sitk.sitkUInt8), out / "ablation_post.nrrd")
    outputs["ablation_post"] = "ablation_post.nrrd"
    if registration is not None:
        from a0verify import registration as reg_mod

        if hasattr(reg_mod, "write_registration_outputs"):
            for role, p in reg_mod.write_registration_outputs(registration, out).items():
                outputs[f"registration_{role}"] = Path(p).name
    html = write_html_report(report, out, post=post, margin=margin, tumor_post=tumor_post,
                             ablation=ablation, extra={"pre": pre, "registration": registration})
    outputs["report_html"] = html.name
    return outputs


__all__ = ["write_case_outputs"]
