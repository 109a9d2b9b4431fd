"""Case outputs: report.json model and schema, artefacts for 3D Slicer and the self-contained
HTML report.

The report.json dictionary is assembled from the stage results by
:func:`a0verify.report.model.build_report`; this package validates it (:func:`validate_report`)
and writes everything else, given that dictionary (:func:`write_case_outputs`).
``a0verify report DIR`` re-renders the HTML from the stored artefacts (:func:`rerender`).
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import SimpleITK as sitk

from a0verify import geometry
from a0verify.errors import InputError
from a0verify.io import write_image, write_json_atomic
from a0verify.margin import MarginResult

if TYPE_CHECKING:
    from a0verify.report import html

#: Padding (mm) beyond threshold around the tumour surfaces when the post CT is cropped for the
#: report figures (their field of view reaches threshold + 12 mm beyond the tumour).
BACKGROUND_PAD_MM = 20.0


@cache
def report_schema() -> dict[str, Any]:
    """The JSON schema of report.json shipped in the package (draft 2020-12)."""
    text = (resources.files("a0verify.report") / "report.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def validate_report(report: dict[str, Any], source: str = "report.json") -> None:
    """Check ``report`` against the packaged schema; InputError naming ``source`` and the first
    problem (its JSON path) otherwise."""
    import jsonschema

    v = jsonschema.Draft202012Validator(report_schema())
    errors = sorted(v.iter_errors(report), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        where = "/".join(str(p) for p in e.absolute_path) or "(top level)"
        raise InputError(f"{source}: does not match the report schema at {where}: "
                         f"{e.message[:200]}")


def _surfaces(margin: MarginResult) -> list[Any]:
    from a0verify.report.slicer import Surface

    return [Surface(les.id, np.asarray(les.surface.vertices_lps, float),
                    np.asarray(les.surface.faces, np.int64),
                    np.asarray(les.surface.margin_mm, float))
            for les in margin.lesions if les.surface is not None]


def _background_crop(post: sitk.Image, surfaces: list[Any], point_lps: list[float],
                     threshold_mm: float) -> sitk.Image:
    """The post CT cropped to the lesions plus threshold + ``BACKGROUND_PAD_MM`` (what the
    figures show)."""
    pts = [np.asarray(point_lps, float).reshape(1, 3)] + [s.vertices_lps for s in surfaces]
    pad = max(float(threshold_mm), 2.0) + BACKGROUND_PAD_MM
    box = geometry.roi_box_around_lps(post, np.vstack(pts), pad)
    if box.empty:
        return post
    return geometry.crop(post, box)


def write_case_outputs(out_dir: Path, report: dict[str, Any], *, margin: MarginResult,
                       ablation: sitk.Image, tumor_post: sitk.Image | None = None,
                       post: sitk.Image | None = None,
                       qa_images: dict[str, sitk.Image] | None = None,
                       workers: html.FigureWorkers | None = None) -> dict[str, str]:
    """Write the report artefacts of a case into ``out_dir`` (each atomically) and return
    {role: file name relative to out_dir}:

    * ``segmentation.seg.nrrd`` — tumour (on the post grid) and ablation zone, Slicer segments
      with names and colours (cropped to their bounding box on the post lattice);
    * ``margin_map.nrrd`` — signed distance to the zone boundary (mm, positive inside);
    * ``tumor_surface.vtk`` — tumour surfaces, LPS, point arrays ``margin_mm`` and ``lesion_id``;
    * ``thinnest_margin.mrk.json`` — thinnest-margin point per lesion (Slicer point list, LPS);
    * ``post_ct_roi.nrrd`` — the post CT around the lesions (figure background; when ``post``);
    * ``qa_<name>.nrrd`` — registration QA images not yet listed in ``report["outputs"]``;
    * ``figure_*.png`` and the self-contained ``report.html``.

    ``report`` is the report.json dictionary (written by the caller, last; its ``outputs``
    already list the registration's files). Masks must be on ``ablation``'s grid.
    ``workers``: figure workers started earlier (:func:`a0verify.report.html.start_figure_workers`);
    new ones are started when None.
    """
    from a0verify.report import slicer
    from a0verify.report.html import FigureJobs, ReportData, write_html_report

    out = Path(out_dir)
    outputs: dict[str, str] = {}
    surfaces = _surfaces(margin)
    background = None
    if post is not None:
        background = _background_crop(post, surfaces, report["min_margin_point_lps"],
                                      float(report["threshold_mm"]))
    qa = dict(qa_images or {})
    data = ReportData(ablation=ablation, tumor=tumor_post, margin_map=margin.margin_map,
                      background=background, surfaces=surfaces, qa_images=qa)
    # the figures are drawn in worker processes while the files are written here
    jobs = FigureJobs.start(report, data, workers)
    if margin.margin_map is not None:
        write_image(margin.margin_map, out / "margin_map.nrrd")
        outputs["margin_map"] = "margin_map.nrrd"
    slicer.write_segmentation(out / "segmentation.seg.nrrd", ablation, tumor_post)
    outputs["segmentation"] = "segmentation.seg.nrrd"
    slicer.write_surface_vtk(out / "tumor_surface.vtk", surfaces)
    outputs["tumor_surface"] = "tumor_surface.vtk"
    order = sorted(report["lesions"], key=lambda d: d["min_margin_mm"])
    slicer.write_markups(out / "thinnest_margin.mrk.json", [
        (f"L{d['id']} {d['min_margin_mm']:.1f} mm", d["min_margin_point_lps"],
         f"thinnest margin of lesion {d['id']}: {d['min_margin_mm']:.2f} mm ({d['verdict']})")
        for d in order])
    outputs["thinnest_point"] = "thinnest_margin.mrk.json"
    if background is not None:
        write_image(background, out / "post_ct_roi.nrrd")
        outputs["post_ct_roi"] = "post_ct_roi.nrrd"
    for name, im in qa.items():  # keep the QA images for `a0verify report DIR`
        if f"registration_{name}" not in report.get("outputs", {}):
            write_image(im, out / f"qa_{name}.nrrd")
            outputs[f"registration_{name}"] = f"qa_{name}.nrrd"
    # the page lists the outputs: show the complete set (report.json is written last)
    page = {**report, "outputs": {**report.get("outputs", {}), **outputs,
                                  "report_json": "report.json"}}
    page["outputs"].setdefault("report_html", "report.html")
    written = write_html_report(page, out, data, jobs=jobs)
    outputs.update(written)
    return outputs


def load_result(out_dir: str | Path) -> dict[str, Any]:
    """The validated report.json of the result directory ``out_dir``; InputError (one line)
    when the directory or report.json is missing, unreadable or not valid."""
    d = Path(out_dir)
    if not d.is_dir():
        raise InputError(f"{d}: result directory does not exist")
    rj = d / "report.json"
    if not rj.is_file():
        raise InputError(f"{rj}: no report.json (not an a0verify result directory)")
    try:
        report = json.loads(rj.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{rj}: cannot read report.json ({exc})") from None
    if not isinstance(report, dict):
        raise InputError(f"{rj}: is not a JSON object")
    validate_report(report, str(rj))
    return report


def rerender(out_dir: str | Path, *, pdf: bool = False) -> dict[str, str]:
    """``a0verify report DIR``: validate DIR/report.json and render report.html (and the figure
    PNGs; ``report.pdf`` with ``pdf``) again from the stored artefacts. Returns {role: file}.

    Raises InputError when DIR or report.json is missing or invalid, or an artefact is missing.
    """
    from a0verify.report.html import load_report_data, write_html_report

    d = Path(out_dir)
    rj = d / "report.json"
    report = load_result(d)
    data = load_report_data(d, report)
    written = write_html_report(report, d, data, pdf=pdf)
    new = {k: v for k, v in written.items() if report["outputs"].get(k) != v}
    if new:  # list new files (e.g. report.pdf) so a later run into DIR removes them
        report["outputs"].update(new)
        write_json_atomic(rj, report)
    return written


__all__ = ["load_result", "report_schema", "rerender", "validate_report", "write_case_outputs"]
