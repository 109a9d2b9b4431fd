"""Self-contained HTML report (inline CSS, images embedded as base64 PNG, no external references).

The page is rendered from the report.json dictionary plus :class:`ReportData` (the images and
meshes behind the figures), which comes either from the pipeline's objects in memory or from the
artefacts stored in an output directory (:func:`load_report_data`, used by ``a0verify report``),
so both paths draw the same pictures.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
import numpy as np
import SimpleITK as sitk

from a0verify import geometry
from a0verify.errors import InputError
from a0verify.io import atomic_path, write_text_atomic
from a0verify.report import figures
from a0verify.report.slicer import Surface

if TYPE_CHECKING:
    from a0verify import viz
    from a0verify.parallel import Task, Worker

VERDICT_TEXT = {
    "A0": "A0 — margin sufficient",
    "insufficient": "INSUFFICIENT margin",
    "incomplete": "INCOMPLETE ablation — tumour outside the zone",
    "indeterminate": "INDETERMINATE — cannot decide within the uncertainty",
}
VERDICT_COLOUR = {"A0": "#1b7f3b", "insufficient": "#b35c00", "incomplete": "#b3261e",
                  "indeterminate": "#4a4a8f"}

#: figure role -> file name written next to report.html
FIGURE_FILES = {"views": "figure_views.png", "histogram": "figure_histogram.png",
                "render_a": "figure_3d_a.png", "render_b": "figure_3d_b.png",
                "registration": "figure_registration.png"}


@dataclass
class ReportData:
    """Images and meshes behind the figures (all LPS mm; masks on the post grid or a crop of it).

    ``background`` is the post CT (or a crop of it around the lesions; None: no CT available),
    ``surfaces`` the tumour meshes with per-vertex margin, ``qa_images`` registration QA images.
    """

    ablation: sitk.Image
    tumor: sitk.Image | None = None
    margin_map: sitk.Image | None = None
    background: sitk.Image | None = None
    surfaces: list[Surface] = field(default_factory=list)
    qa_images: dict[str, sitk.Image] = field(default_factory=dict)


def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("a0verify.report", "templates"),
        autoescape=True,  # all text from inputs (file names, DICOM tags, warnings) is escaped
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _fmt(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, list | tuple) and all(isinstance(x, int | float) for x in v):
        return "(" + ", ".join(_fmt(x) for x in v) + ")"
    return str(v)


def flatten(d: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Nested dict/list -> [(dotted key, formatted value)] for metric tables (floats to 4
    significant digits; list items keyed by their position)."""
    rows: list[tuple[str, str]] = []
    if isinstance(d, dict):
        for k in sorted(d, key=str):
            rows += flatten(d[k], f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(d, list | tuple) and any(isinstance(x, dict | list) for x in d):
        for i, x in enumerate(d):
            rows += flatten(x, f"{prefix}[{i}]")
    else:
        rows.append((prefix, _fmt(d)))
    return rows


#: registration metrics shown first (dotted keys of ``metrics``; others go to the details list)
KEY_METRICS = ("similarity_roi.before.ncc", "similarity_roi.after.ncc",
               "similarity_roi.before.mattes_mi", "similarity_roi.after.mattes_mi",
               "displacement_mm.p95", "displacement_mm.max", "deformable_displacement_mm.p95",
               "deformable_displacement_mm.max", "jacobian_roi.min", "jacobian_roi.max",
               "jacobian_zone.mean", "jacobian_folding_fraction")


def _key_metrics(reg: dict[str, Any]) -> list[tuple[str, str]]:
    flat = dict(flatten(reg.get("metrics", {})))
    rows = [(k, flat[k]) for k in KEY_METRICS if k in flat]
    if "uncertainty_mm" in reg:
        rows.append(("uncertainty_mm (95 % half-width)", _fmt(reg["uncertainty_mm"])))
    return rows


def _ras(p: Any) -> list[float]:
    return [float(v) for v in geometry.lps_to_ras(np.asarray(p, float))]


def _fraction_below(report: dict[str, Any]) -> float | None:
    """Surface-area fraction of all lesions with margin < threshold (from report.json)."""
    area = below = 0.0
    for les in report["lesions"]:
        a = float(les.get("surface_area_mm2", 0.0))
        f = les["surface_fraction"]
        area += a
        below += a * (float(f["below_zero"]) + float(f["below_threshold"]))
    return below / area if area > 0 else None


def figures_2d(report: dict[str, Any], data: ReportData) -> dict[str, tuple[str, bytes]]:
    """The matplotlib figures: {role: (caption, PNG bytes)} for "views", "histogram" and, with
    QA images, "registration"."""
    thr = float(report["threshold_mm"])
    lid = int(report["min_margin_lesion_id"])
    pt = report["min_margin_point_lps"]
    out: dict[str, tuple[str, bytes]] = {}
    out["views"] = ("Axial, coronal and sagittal views of the post-ablation CT through the "
                    "thinnest-margin point", figures.triplanar_png(
                        background=data.background, tumor=data.tumor, ablation=data.ablation,
                        margin_map=data.margin_map, surfaces=data.surfaces, lesion_id=lid,
                        point_lps=pt, min_margin_mm=float(report["min_margin_mm"]),
                        threshold_mm=thr))
    out["histogram"] = ("Margins over the tumour surface (area-weighted)",
                        figures.histogram_png(data.surfaces, thr, _fraction_below(report)))
    if data.qa_images:
        surf = next((s for s in data.surfaces if s.lesion_id == lid), None)
        centre = surf.vertices_lps.mean(axis=0) if surf is not None else np.asarray(pt, float)
        qa_png = figures.registration_png(data.qa_images, data.ablation, pt, centre)
        if qa_png is not None:
            out["registration"] = ("Registration QA: checkerboard of post CT and registered pre "
                                   "CT, and their difference", qa_png)
    return out


@dataclass
class FigureWorkers:
    """Worker processes for the report figures, started early so that their start-up (imports,
    an off-screen GL context) overlaps the pipeline's work: 2-D figures and 3-D views."""

    flat: Worker
    render: Worker

    def close(self) -> None:
        self.flat.close()
        self.render.close()


def start_figure_workers() -> FigureWorkers:
    """Start the figure workers now (see :class:`FigureWorkers`); ``close()`` them at the end."""
    from a0verify import parallel, viz

    return FigureWorkers(flat=parallel.Worker("2-D figures", warm=figures.warm_up, nice=5),
                         render=viz.warm_render_worker())


@dataclass
class FigureJobs:
    """Every figure of a report being drawn in worker processes (:mod:`a0verify.parallel`): the
    2-D figures in one, the 3-D views in another, while the caller writes the other files."""

    flat: Task[dict[str, tuple[str, bytes]]]
    renders: viz.RenderJob

    @classmethod
    def start(cls, report: dict[str, Any], data: ReportData,
              workers: FigureWorkers | None = None) -> FigureJobs:
        """Start both jobs, in ``workers`` (:func:`a0verify.report.start_figure_workers`) when
        given, else in new worker processes."""
        from a0verify import viz
        from a0verify.parallel import run_in_worker

        renders = viz.RenderJob(data.surfaces, data.ablation, report["min_margin_point_lps"],
                                float(report["threshold_mm"]),
                                worker=workers.render if workers else None)
        flat = (workers.flat.submit(figures_2d, report, data) if workers else
                run_in_worker("2-D figures", figures_2d, report, data, nice=5))
        return cls(flat=flat, renders=renders)


def build_figures(report: dict[str, Any], data: ReportData,
                  jobs: FigureJobs | None = None) -> dict[str, tuple[str, bytes]]:
    """Render every figure: {role: (caption, PNG bytes)}; roles as in ``FIGURE_FILES``.
    ``jobs``: the figures already started by the caller (:meth:`FigureJobs.start` with the same
    report and data); started here when None. A figure worker that died is reported in
    ``report["warnings"]`` (its figures are then drawn in this process)."""
    jobs = jobs if jobs is not None else FigureJobs.start(report, data)
    warnings = report.setdefault("warnings", [])
    out = dict(jobs.flat.result(warnings=warnings))
    for role, (cap, png) in zip(("render_a", "render_b"), jobs.renders.result(warnings),
                                strict=False):
        out[role] = (cap, png)
    return out


def render_html(report: dict[str, Any], figs: dict[str, tuple[str, bytes]],
                render_seconds: float | None = None) -> str:
    """The report page as one string (every image inline)."""
    b64 = {role: (cap, base64.b64encode(png).decode("ascii")) for role, (cap, png) in figs.items()}
    reg = report.get("registration")
    lesions = []
    for les in report["lesions"]:
        patches = []
        for p in les.get("deficit_patches", []):
            from a0verify.viz import direction_words

            patches.append({**p, "centroid_ras": _ras(p["centroid_lps"]),
                            "toward": direction_words(p["outward_direction_lps"])})
        lesions.append({**les, "patches": patches})
    prov = report["provenance"]
    inputs = [(k, v, prov.get("input_sha256", {}).get(k)) for k, v in prov.get("inputs", {}).items()
              if v is not None]
    v = report["verdict"]
    return _env().get_template("report.html.j2").render(
        r=report, lesions=lesions, figs=b64, verdict_text=VERDICT_TEXT.get(v, v),
        verdict_colour=VERDICT_COLOUR.get(v, "#444"),
        reg=reg, reg_metrics=flatten(reg.get("metrics", {})) if reg else [],
        reg_key=_key_metrics(reg) if reg else [],
        reg_other=flatten({k: x for k, x in reg.items() if k not in ("metrics", "warnings")})
        if reg else [],
        inputs=inputs, parameters=flatten(prov.get("parameters", {})),
        versions=sorted(prov.get("package_versions", {}).items()),
        timings=flatten(prov.get("timings_s", {})), render_seconds=render_seconds,
        provenance_json=json.dumps(prov, indent=2, sort_keys=True, default=str),
        outputs=sorted(report.get("outputs", {}).items()),
    )


def write_html_report(report: dict[str, Any], out_dir: str | Path, data: ReportData,
                      *, pdf: bool = False, jobs: FigureJobs | None = None
                      ) -> dict[str, str]:
    """Render the figures (also written as PNG files) and ``report.html`` into ``out_dir``
    atomically. With ``pdf`` also ``report.pdf`` (needs weasyprint; InputError if missing).
    Returns {role: file name}."""
    t0 = time.perf_counter()
    out = Path(out_dir)
    figs = build_figures(report, data, jobs)
    written: dict[str, str] = {}
    for role, (_, png) in figs.items():
        name = FIGURE_FILES[role]
        with atomic_path(out / name) as tmp:
            tmp.write_bytes(png)
        written[f"figure_{role}"] = name
    html = render_html(report, figs, render_seconds=time.perf_counter() - t0)
    write_text_atomic(out / "report.html", html)
    written["report_html"] = "report.html"
    if pdf:
        try:
            import weasyprint
        except ImportError:
            raise InputError("--pdf needs the optional package weasyprint "
                             "(pip install weasyprint)") from None
        with atomic_path(out / "report.pdf") as tmp:
            weasyprint.HTML(string=html, base_url=None).write_pdf(str(tmp))
        written["report_pdf"] = "report.pdf"
    return written


def load_report_data(out_dir: str | Path, report: dict[str, Any]) -> ReportData:
    """Rebuild :class:`ReportData` from the artefacts listed in ``report["outputs"]``.

    Raises InputError naming the file when a needed artefact is missing or unreadable.
    """
    from a0verify.report.slicer import read_segmentation, read_surface_vtk

    out = Path(out_dir)
    outputs: dict[str, str] = report.get("outputs", {})

    def img(role: str) -> sitk.Image | None:
        name = outputs.get(role)
        if not name:
            return None
        p = out / name
        if not p.is_file():
            raise InputError(f"{p}: {role} listed in report.json is missing")
        try:
            return sitk.ReadImage(str(p))
        except RuntimeError:
            raise InputError(f"{p}: cannot read {role}") from None

    if "segmentation" not in outputs:
        raise InputError(f"{out / 'report.json'}: lists no segmentation (written by an older "
                         "a0verify? re-run the case)")
    masks, _ = read_segmentation(out / outputs["segmentation"])
    surfaces = (read_surface_vtk(out / outputs["tumor_surface"])
                if "tumor_surface" in outputs else [])
    qa = {}
    image_suffixes = (".nrrd", ".nii", ".nii.gz", ".mha", ".mhd")
    for role, name in outputs.items():
        if (role.startswith("registration_") and role != "registration_transform"
                and str(name).endswith(image_suffixes)):
            im = img(role)
            if im is not None:
                qa[role[len("registration_"):]] = im
    return ReportData(ablation=masks["ablation"], tumor=masks.get("tumor"),
                      margin_map=img("margin_map"), background=img("post_ct_roi"),
                      surfaces=surfaces, qa_images=qa)
