"""``a0verify report DIR``: re-render report.html from DIR/report.json and the stored artefacts."""

from __future__ import annotations

import time

import click

from a0verify.cli.options import SECOND_THRESHOLD_MM


@click.command()
@click.argument("result_dir", metavar="DIR", type=click.Path(file_okay=False))
@click.option("--pdf", is_flag=True,
              help="Also write report.pdf (needs the optional package weasyprint).")
@click.option("--second-threshold", "second_threshold_mm", type=click.FloatRange(0.0, 50.0),
              default=None, metavar="MM",
              help="Second, reading-aid threshold in mm (as for `run`/`margin`, default "
                   f"{SECOND_THRESHOLD_MM:g} there): recompute the share of the tumour surface "
                   "below it from the stored surface mesh (default: keep the report's).")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing on success.")
def report(result_dir: str, pdf: bool, second_threshold_mm: float | None, quiet: bool) -> None:
    """Re-render DIR/report.html (and the figure PNGs) from DIR/report.json, the segmentation,
    margin map, surface mesh, post-CT crop and registration QA images stored in DIR.

    report.json is validated against the packaged schema first; a missing or invalid DIR or
    report.json is a bad-input error (exit code 2).
    """
    from a0verify.report import rerender

    t0 = time.perf_counter()
    written = rerender(result_dir, pdf=pdf, second_threshold_mm=second_threshold_mm)
    if not quiet:
        for role in ("report_html", "report_pdf"):
            if role in written:
                click.echo(f"{role}: "
                           f"{click.format_filename(result_dir)}/{written[role]}")
        click.echo(f"rendered in {time.perf_counter() - t0:.1f} s")
