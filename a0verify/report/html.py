"""Self-contained HTML report (inline CSS, images embedded as base64, no external references)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import SimpleITK as sitk

from a0verify.io import write_text_atomic
from a0verify.margin import MarginResult
from a0verify.report import figures


def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("a0verify.report", "templates"),
        autoescape=True,  # all text from inputs is escaped
        undefined=jinja2.StrictUndefined,
    )


def write_html_report(report: dict[str, Any], out_dir: Path, *, post: sitk.Image | None,
                      margin: MarginResult, tumor_post: sitk.Image | None,
                      ablation: sitk.Image, extra: dict[str, Any]) -> Path:
    """Render ``report.html`` into ``out_dir`` atomically and return its path."""
    figs: list[tuple[str, str]] = []
    png = figures.triplanar_png(post, tumor_post, ablation, report["min_margin_point_lps"],
                                title="post-ablation CT through the thinnest margin")
    figs.append(("Axial / coronal / sagittal through the thinnest margin",
                 base64.b64encode(png).decode()))
    allm = np.concatenate([les.surface.margin_mm for les in margin.lesions
                           if les.surface is not None])
    figs.append(("Tumour-surface margins",
                 base64.b64encode(figures.histogram_png(allm, margin.threshold_mm)).decode()))
    html = _env().get_template("report.html.j2").render(
        r=report, figures=figs,
        provenance=json.dumps(report["provenance"], indent=2, sort_keys=True),
    )
    return write_text_atomic(Path(out_dir) / "report.html", html)
