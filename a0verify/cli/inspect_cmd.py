"""``a0verify inspect``: list the DICOM series of a directory (or describe an image file)."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command("inspect")
@click.argument("path", type=click.Path(exists=False))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
def inspect_cmd(path: str, as_json: bool) -> None:
    """List the DICOM series found under PATH (description, modality, slices, spacing, contrast
    phase when the header says it) and mark the one a0verify uses by default (the CT series with
    the most slices; pick another with --series UID). For an image file, print its geometry.

    No patient identifiers are printed. Spacing is (row, column, slice step) in mm.
    """
    from a0verify.errors import InputError

    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: does not exist")
    if p.is_dir():
        from a0verify.io.dicom import choose_series, scan_dicom_dir

        series = scan_dicom_dir(p)
        try:
            default_uid: str | None = choose_series(series, None, path=p).uid
        except InputError:
            default_uid = None
        rows = []
        for s in series:
            d = s.summary()
            d["default"] = s.uid == default_uid
            rows.append(d)
        if as_json:
            click.echo(json.dumps(rows, indent=2))
            return
        click.echo(f"{len(series)} DICOM series in {p}:")
        for d in rows:
            ps = d["pixel_spacing_mm"]
            step = d["slice_step_mm"]
            spacing = (f"{ps[0]:.3g} x {ps[1]:.3g} x {step:.3g} mm" if ps and step
                       else (f"{ps[0]:.3g} x {ps[1]:.3g} mm" if ps else "?"))
            mark = "*" if d["default"] else " "
            uid = d["series_uid"] or "(no SeriesInstanceUID)"
            click.echo(f"{mark} {uid}")
            count = (f"{d['slices']:4d} slices" if d["slices"] else
                     f"{d['files']:4d} file(s), no image planes")
            click.echo(f"    {d['modality'] or '?':4s} {count}  {spacing}  "
                       f"phase: {d['phase'] or 'unknown'}  "
                       f"description: {d['description'] or '-'!s}")
            if d["gantry_tilt_deg"]:
                click.echo(f"    gantry tilt {d['gantry_tilt_deg']:g} deg")
        if default_uid is not None:
            click.echo("* = used by default")
        return
    from a0verify.io import read_image

    warnings: list[str] = []
    img = read_image(p, what="image", warnings=warnings)
    info = {
        "path": str(p),
        "size_xyz": list(img.GetSize()),
        "spacing_xyz_mm": list(img.GetSpacing()),
        "origin_lps_mm": list(img.GetOrigin()),
        "direction": list(img.GetDirection()),
        "pixel_type": img.GetPixelIDTypeAsString(),
        "warnings": warnings,
    }
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    for k, v in info.items():
        click.echo(f"{k}: {v}")
