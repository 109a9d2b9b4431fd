"""``a0verify register``: lesion-focused pre -> post CT registration (fixed = post)."""

from __future__ import annotations

from pathlib import Path

import click

from a0verify.cli.options import SEED, threads_option


@click.command("register")
@click.option("--fixed", "fixed_path", required=True, type=click.Path(path_type=Path),
              help="Post-ablation CT (fixed image): file or DICOM series directory.")
@click.option("--moving", "moving_path", required=True, type=click.Path(path_type=Path),
              help="Pre-ablation CT (moving image): file or DICOM series directory.")
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path),
              help="Output directory (transform.h5, QA images, registration.json).")
@click.option("--method", type=click.Choice(["rigid", "deformable", "none"]),
              default="deformable", show_default=True)
@click.option("--ablation", "ablation_path", type=click.Path(path_type=Path), default=None,
              help="Ablation-zone mask on the post grid: ROI centre, excluded from the metric.")
@click.option("--tumor", "tumor_path", type=click.Path(path_type=Path), default=None,
              help="Tumour mask on the pre grid: excluded from the metric (moving mask).")
@click.option("--liver", "liver_path", type=click.Path(path_type=Path), default=None,
              help="Liver mask (post grid): restricts the metric (and the ROI without --ablation).")
@click.option("--roi-pad", "roi_pad_mm", type=click.FloatRange(5.0, 200.0), default=35.0,
              show_default=True, help="ROI padding around the ablation zone (mm).")
@click.option("--fixed-point", "fixed_points", type=SEED, multiple=True,
              help="Landmark in the post CT, X,Y,Z LPS mm (repeat; pairs with --moving-point).")
@click.option("--moving-point", "moving_points", type=SEED, multiple=True,
              help="Corresponding landmark in the pre CT, X,Y,Z LPS mm (repeat).")
@click.option("--seed", type=int, default=121212, show_default=True,
              help="Random-sampler seed (results are deterministic for a given thread count).")
@threads_option
def register(fixed_path: Path, moving_path: Path, out_dir: Path, method: str,
             ablation_path: Path | None, tumor_path: Path | None, liver_path: Path | None,
             roi_pad_mm: float, fixed_points: tuple[tuple[float, float, float], ...],
             moving_points: tuple[tuple[float, float, float], ...], seed: int,
             threads: int | None) -> None:
    """Register the pre CT (moving) onto the post CT (fixed).

    Writes DIR/transform.h5 (maps post-space LPS points to pre-space points, ITK convention),
    DIR/qa_checkerboard.nrrd, DIR/qa_difference.nrrd and DIR/registration.json (metrics,
    uncertainty_mm and its terms, reliable / reliability_notes, warnings, parameter files,
    timings). Exit code 3, with one line saying why, when the pair cannot be registered: the
    scans show different regions, do not overlap around the zone, or every attempt failed its
    checks.
    """
    from a0verify.errors import InputError
    from a0verify.io import read_image, read_mask, write_json_atomic
    from a0verify.registration import (
        RegistrationMasks,
        RegistrationSettings,
        write_registration_outputs,
    )
    from a0verify.registration import register as run_registration

    if len(fixed_points) != len(moving_points):
        raise InputError("--fixed-point and --moving-point must be given the same number of times")
    if method != "none":
        from a0verify.registration import elastix_backend

        elastix_backend.preload()  # ~1 s of module loading, overlapping the image reading
    fixed = read_image(fixed_path, what="post (fixed) image")
    moving = read_image(moving_path, what="pre (moving) image")
    zone = read_mask(ablation_path, what="ablation mask") if ablation_path else None
    tumor = read_mask(tumor_path, what="tumour mask") if tumor_path else None
    liver = read_mask(liver_path, what="liver mask") if liver_path else None
    landmarks = (fixed_points, moving_points) if fixed_points else None
    result = run_registration(
        fixed, moving,
        RegistrationMasks(zone=zone, tumor=tumor, liver=liver, landmarks=landmarks),
        RegistrationSettings(method=method, roi_pad_mm=roi_pad_mm, threads=threads, seed=seed))
    paths = write_registration_outputs(result, out_dir)
    summary = result.to_dict()
    summary["inputs"] = {"fixed": str(fixed_path), "moving": str(moving_path),
                         "ablation": str(ablation_path) if ablation_path else None,
                         "tumor": str(tumor_path) if tumor_path else None,
                         "liver": str(liver_path) if liver_path else None}
    summary["outputs"] = {k: p.name for k, p in paths.items()}
    write_json_atomic(Path(out_dir) / "registration.json", summary)
    trust = "" if result.reliable else " (UNRELIABLE near the zone)"
    click.echo(f"{method} registration: uncertainty {result.uncertainty_mm:.2f} mm{trust}, "
               f"{len(result.warnings)} warning(s); outputs in {out_dir}")
    for w in result.warnings:
        click.echo(f"warning: {w}", err=True)
