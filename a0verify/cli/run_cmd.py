"""``a0verify run``, ``margin``, ``demo``, ``phantom`` and ``doctor``."""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click

from a0verify.cli.export_dicom_cmd import after_run, check_dicom_options, dicom_options
from a0verify.cli.options import (
    LINE,
    SEED,
    progress_for,
    second_threshold_option,
    threads_option,
    verbosity_options,
)
from a0verify.errors import EXIT_NOT_A0

_fail_option = click.option(
    "--fail-unless-a0", is_flag=True,
    help="Exit with code 1 when the case verdict is not A0 (for QA scripts).")
_threshold_option = click.option(
    "--threshold", "threshold_mm", type=float, default=5.0, show_default=True,
    help="Required minimal ablative margin in mm.")
_structure_options = [
    click.option("--tumor-structure", "tumor_structures", multiple=True, metavar="NAME",
                 help="ROI of an RT Structure Set given as --tumor (repeat: one lesion each)."),
    click.option("--ablation-structure", "ablation_structures", multiple=True, metavar="NAME",
                 help="ROI of an RT Structure Set given as --ablation."),
]


def _structure_option(f: Any) -> Any:
    for opt in reversed(_structure_options):
        f = opt(f)
    return f


def _conclude(result: object, progress: Any, fail_unless_a0: bool, *, post: str | None,
              anonymize: bool, dicom_out: bool, node: Any, calling_aet: str) -> None:
    """Summary lines, then the DICOM export / send when asked, then the QA exit code."""
    from a0verify.pipeline import CaseResult
    from a0verify.progress import NORMAL

    assert isinstance(result, CaseResult)
    _summarise(result, progress)
    after_run(result.out_dir, post=post, anonymize=anonymize, dicom_out=dicom_out, node=node,
              calling_aet=calling_aet, quiet=progress.level < NORMAL)
    if fail_unless_a0 and result.verdict != "A0":
        sys.exit(EXIT_NOT_A0)


def _summarise(result: object, progress: Any) -> None:
    """The verdict line and the report's path on stdout (unless ``-q``), warnings on stderr."""
    from a0verify.pipeline import CaseResult, lesion_point_summary
    from a0verify.progress import NORMAL

    assert isinstance(result, CaseResult)
    if progress.level >= NORMAL:
        for w in result.report["warnings"]:
            click.echo(f"a0verify: warning: {w}", err=True)
        click.echo(lesion_point_summary(result.report))
        click.echo(f"report: {result.out_dir / 'report.html'}")


@click.command()
@click.option("--pre", "pre", required=True, metavar="IMG",
              help="Pre-ablation contrast CT (file or DICOM directory).")
@click.option("--post", "post", required=True, metavar="IMG",
              help="Post-ablation contrast CT (file or DICOM directory); the fixed image.")
@click.option("--tumor", "tumor", metavar="MASK", help="Tumour mask on the pre CT.")
@click.option("--tumor-line", "tumor_lines", type=LINE, multiple=True,
              help="Tumour long-axis diameter X1,Y1,Z1:X2,Y2,Z2 (LPS mm, border to border, as "
                   "for RECIST) on the pre CT; one lesion per line (instead of --tumor).")
@click.option("--tumor-seed", "tumor_seeds", type=SEED, multiple=True,
              help="Point X,Y,Z (LPS mm) inside a tumour on the pre CT; with --tumor-line it "
                   "joins the nearest line's lesion, alone each point is one lesion.")
@click.option("--tumor-outside", "tumor_outside", type=SEED, multiple=True,
              help="Point X,Y,Z (LPS mm) on the pre CT that is not tumour (repeatable).")
@click.option("--tumor-markups", "tumor_markups", metavar="MRK",
              help="3D Slicer markups (.mrk.json) with tumour lines and points (points named "
                   "or labelled 'out...' are outside points).")
@click.option("--ablation", "ablation", metavar="MASK", help="Ablation-zone mask on the post CT.")
@click.option("--ablation-seed", "ablation_seeds", type=SEED, multiple=True,
              help="Ablation-zone seed X,Y,Z in LPS mm on the post CT (repeatable).")
@click.option("--ablation-markups", "ablation_markups", metavar="MRK",
              help="3D Slicer markups (.mrk.json) whose points are ablation-zone seeds.")
@click.option("--liver", "liver", metavar="MASK", help="Optional liver mask on the post CT.")
@click.option("--pre-series", "pre_series", metavar="UID",
              help="SeriesInstanceUID to use when --pre is a DICOM directory with several series.")
@click.option("--post-series", "post_series", metavar="UID",
              help="SeriesInstanceUID to use when --post is a DICOM directory.")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False),
              help="Output directory (an earlier result in it is replaced as a whole).")
@_threshold_option
@second_threshold_option
@click.option("--registration", "registration", default="deformable", show_default=True,
              type=click.Choice(["none", "rigid", "deformable"]))
@threads_option
@_structure_option
@dicom_options
@_fail_option
@verbosity_options
def run(pre: str, post: str, tumor: str | None, tumor_lines: tuple, tumor_seeds: tuple,
        tumor_outside: tuple, tumor_markups: str | None, ablation: str | None,
        ablation_seeds: tuple, ablation_markups: str | None, liver: str | None,
        pre_series: str | None, post_series: str | None, out: str, threshold_mm: float,
        second_threshold_mm: float, registration: str, threads: int | None,
        tumor_structures: tuple[str, ...],
        ablation_structures: tuple[str, ...], dicom_out: bool, send_to: str | None,
        calling_aet: str, anonymize: bool, fail_unless_a0: bool, quiet: bool,
        verbose: bool) -> None:
    """Register PRE onto POST, carry the tumour over, compute the margin, verdict and report.

    Masks may be label maps, DICOM SEG or RT Structure Sets (rasterised onto PRE / POST).
    With --dicom-out / --send the results also go to OUT/dicom / a PACS node.
    Stage lines with their seconds go to stderr (-q: none, -v: more detail); the verdict line
    and the report's path go to stdout.
    """
    from a0verify.io.markups import read_markups
    from a0verify.pipeline import run_case

    lines, seeds, outside = list(tumor_lines), list(tumor_seeds), list(tumor_outside)
    if tumor_markups:
        mk = read_markups(tumor_markups)
        lines += [(a.tolist(), b.tolist()) for _, a, b in mk.lines]
        seeds += mk.inside
        outside += mk.outside
    ablation_seeds = tuple(ablation_seeds) + tuple(
        tuple(p) for p in (read_markups(ablation_markups).inside if ablation_markups else []))
    progress = progress_for(quiet, verbose)
    node = check_dicom_options(dicom_out, send_to)
    res = run_case(pre, post, out, tumor_path=tumor, ablation_path=ablation,
                   ablation_seeds=list(ablation_seeds), tumor_seeds=seeds,
                   tumor_lines=lines, tumor_outside=outside,
                   liver_path=liver, threshold_mm=threshold_mm,
                   second_threshold_mm=second_threshold_mm,
                   registration_method=registration, threads=threads,
                   pre_series=pre_series, post_series=post_series, progress=progress,
                   anonymize=anonymize, tumor_structures=tumor_structures,
                   ablation_structures=ablation_structures)
    _conclude(res, progress, fail_unless_a0, post=post, anonymize=anonymize,
              dicom_out=dicom_out, node=node, calling_aet=calling_aet)


@click.command()
@click.option("--tumor", "tumor", required=True, metavar="MASK", help="Tumour mask.")
@click.option("--ablation", "ablation", required=True, metavar="MASK", help="Ablation-zone mask.")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False),
              help="Output directory.")
@click.option("--transform", "transform", metavar="TFM",
              help="Transform from `a0verify register` (post points -> pre points); the tumour "
                   "mask is then on the pre grid and is carried onto the ablation grid.")
@click.option("--registration-json", "registration_json", metavar="JSON",
              help="Registration record from `a0verify register` (QA, uncertainty).")
@click.option("--post", "post", metavar="IMG", help="Post CT, only as the figures' background.")
@_threshold_option
@second_threshold_option
@_structure_option
@dicom_options
@_fail_option
@verbosity_options
def margin(tumor: str, ablation: str, out: str, transform: str | None,
           registration_json: str | None, post: str | None, threshold_mm: float,
           second_threshold_mm: float, tumor_structures: tuple[str, ...],
           ablation_structures: tuple[str, ...], dicom_out: bool, send_to: str | None,
           calling_aet: str, anonymize: bool, fail_unless_a0: bool, quiet: bool,
           verbose: bool) -> None:
    """Margin of a tumour and an ablation zone: masks aligned in physical space (any grids), or
    a pre-grid tumour carried over with --transform. RT Structure Sets are rasterised onto
    --post (or the ablation mask's grid)."""
    from a0verify.pipeline import margin_case

    progress = progress_for(quiet, verbose)
    node = check_dicom_options(dicom_out, send_to)
    res = margin_case(tumor, ablation, out, threshold_mm=threshold_mm,
                      second_threshold_mm=second_threshold_mm, transform_path=transform,
                      registration_json=registration_json, post_path=post, progress=progress,
                      anonymize=anonymize, tumor_structures=tumor_structures,
                      ablation_structures=ablation_structures)
    _conclude(res, progress, fail_unless_a0, post=post, anonymize=anonymize,
              dicom_out=dicom_out, node=node, calling_aet=calling_aet)


@click.command()
@click.option("--out", "out", type=click.Path(file_okay=False), default="a0verify-demo",
              show_default=True, help="Output directory for the case and its report.")
@click.option("--margin-mm", type=float, default=8.5, show_default=True,
              help="True minimal margin of the synthetic lesion.")
@click.option("--registration", "registration", default="deformable", show_default=True,
              type=click.Choice(["none", "rigid", "deformable"]))
@threads_option
@dicom_options
@verbosity_options
def demo(out: str, margin_mm: float, registration: str, threads: int | None, dicom_out: bool,
         send_to: str | None, calling_aet: str, anonymize: bool, quiet: bool,
         verbose: bool) -> None:
    """Make a synthetic case with known truth and run the whole pipeline on it (with
    --dicom-out / --send also its DICOM outputs)."""
    from a0verify import phantom
    from a0verify.pipeline import lesion_point_summary, run_case
    from a0verify.verdict import classify

    progress = progress_for(quiet, verbose)
    node = check_dicom_options(dicom_out, send_to)
    t0 = time.perf_counter()
    out_dir = Path(out)
    case_dir = out_dir / "case"
    spec = phantom.PhantomSpec(
        lesions=[phantom.LesionSpec(center_lps=[-60.0, 5.0, 0.0], radius_mm=10.0,
                                    target_margin_mm=margin_mm)])
    case = phantom.make_phantom(spec)
    paths = phantom.write_case(case, case_dir)
    click.echo(f"synthetic case written to {case_dir} (true minimal margin "
               f"{case.min_mam_mm:.2f} mm, true verdict "
               f"{classify(case.min_mam_mm, 5.0).verdict})")
    res = run_case(paths["pre"], paths["post"], out_dir / "result", tumor_path=paths["tumor"],
                   ablation_path=paths["ablation"], registration_method=registration,
                   threads=threads, progress=progress, anonymize=anonymize)
    click.echo(lesion_point_summary(res.report))
    click.echo(f"error against truth: {res.report['min_margin_mm'] - case.min_mam_mm:+.2f} mm")
    after_run(res.out_dir, post=str(paths["post"]), anonymize=anonymize, dicom_out=dicom_out,
              node=node, calling_aet=calling_aet, quiet=False)
    click.echo(f"report: {res.out_dir / 'report.html'}  ({time.perf_counter() - t0:.0f} s)")


@click.command()
@click.option("--out", "out", required=True, type=click.Path(file_okay=False))
@click.option("--spacing", default="0.8,0.8,2.5", show_default=True, help="x,y,z spacing in mm.")
@click.option("--size", default="200,160,40", show_default=True, help="x,y,z size in voxels.")
@click.option("--direction", default="0,0,0", show_default=True,
              help="Rotation of the grid axes about x,y,z in degrees (oblique grids).")
@click.option("--margin-mm", "margins", type=float, multiple=True,
              help="True margin per lesion (repeat for several lesions).")
@click.option("--seed", type=int, default=0, show_default=True)
def phantom(out: str, spacing: str, size: str, direction: str, margins: tuple[float, ...],
            seed: int) -> None:
    """Write a synthetic case (pre/post CT, masks, truth.json) with known margins."""
    from a0verify import phantom as ph
    from a0verify.errors import InputError

    def parse(s: str, n: int, kind: type) -> list:
        try:
            vals = [kind(v) for v in s.split(",")]
        except ValueError:
            raise InputError(f"cannot parse {s!r} as {n} comma-separated numbers") from None
        if len(vals) != n:
            raise InputError(f"{s!r}: expected {n} comma-separated numbers")
        return vals

    centres = [[-60.0, 5.0, 0.0], [-85.0, -25.0, 8.0], [-35.0, 30.0, -8.0]]
    ms = list(margins) or [6.0]
    if len(ms) > len(centres):
        raise InputError(f"--margin-mm given {len(ms)} times; at most {len(centres)} lesions")
    spec = ph.PhantomSpec(
        spacing=parse(spacing, 3, float), size=parse(size, 3, int),
        direction_deg=parse(direction, 3, float), seed=seed,
        lesions=[ph.LesionSpec(center_lps=c, radius_mm=8.0 if len(ms) > 1 else 10.0,
                               target_margin_mm=m) for c, m in zip(centres, ms, strict=False)],
    )
    case = ph.make_phantom(spec)
    ph.write_case(case, out)
    click.echo(json.dumps({"out": out, "min_mam_mm": case.min_mam_mm}))


@click.command()
def doctor() -> None:
    """Check the installation: imports, elastix, off-screen rendering, Numba cache, and the
    margin pipeline on a small synthetic case. Exit 0 when healthy, 70 otherwise."""
    import importlib
    import os

    ok = True

    def report(good: bool, what: str, detail: str = "") -> None:
        nonlocal ok
        ok = ok and good
        click.echo(f"{'ok  ' if good else 'FAIL'}  {what}{(' ' + detail) if detail else ''}")

    for mod in ("SimpleITK", "numpy", "scipy", "skimage", "numba", "pyvista", "jinja2"):
        try:
            m = importlib.import_module(mod)
            report(True, mod, getattr(m, "__version__", ""))
        except Exception as exc:  # report every failure, keep going
            report(False, mod, str(exc))
    for mod, extra in (("snakemake", "batch"), ("highdicom", "dicom")):
        if importlib.util.find_spec(mod) is None:
            click.echo(f"--    {mod} not installed (optional: pip install 'a0verify[{extra}]')")
        else:
            report(True, mod)
    try:
        from a0verify.registration import elastix_backend

        t0 = time.perf_counter()
        elastix_backend.load()
        report(True, "itk-elastix", f"(classes loaded in {time.perf_counter() - t0:.1f} s)")
    except Exception as exc:
        report(False, "itk-elastix", str(exc))
    cache = os.environ.get("NUMBA_CACHE_DIR")
    if cache and not os.access(Path(cache).parent if not Path(cache).exists() else cache,
                               os.W_OK):
        report(False, "Numba cache", f"NUMBA_CACHE_DIR={cache} is not writable")
    else:
        report(True, "Numba cache", f"({cache or 'next to the package'}; the first run "
                                    "compiles the kernels, ~20 s)")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            from a0verify import phantom as ph
            from a0verify.pipeline import margin_case

            # pre and post in one pose: the masks are aligned, as `a0verify margin` expects
            spec = ph.PhantomSpec(
                size=[120, 100, 24], center_lps=[0.0, 5.0, 0.0], rotation_deg=[0.0, 0.0, 0.0],
                translation_mm=[0.0, 0.0, 0.0], deformation_mm=0.0,
                lesions=[ph.LesionSpec(center_lps=[0.0, 5.0, 0.0], radius_mm=8.0,
                                       target_margin_mm=6.0)])
            case = ph.make_phantom(spec)
            p = ph.write_case(case, tmp)
            r = margin_case(p["tumor"], p["ablation"], Path(tmp) / "out", post_path=p["post"])
            figs = [k for k in r.report["outputs"] if k.startswith("figure_render")]
            err = r.report["min_margin_mm"] - case.min_mam_mm
            report(abs(err) < 0.5, "margin pipeline",
                   f"(MAM {r.report['min_margin_mm']:.2f} mm, truth {case.min_mam_mm:.2f} mm)")
            report(bool(figs), "off-screen 3-D rendering",
                   "" if figs else "(no 3-D view was rendered)")
        except Exception as exc:
            report(False, "margin pipeline", f"{type(exc).__name__}: {exc}")
    sys.exit(0 if ok else 70)
