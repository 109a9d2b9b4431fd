"""``a0verify send DIR --to AET@HOST:PORT``: C-STORE a result's DICOM objects to a PACS node."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from a0verify.pacs import Node, SendReport


@click.command()
@click.argument("result_dir", metavar="DIR", type=click.Path(file_okay=False))
@click.option("--to", "to", required=True, metavar="AET@HOST:PORT",
              help="The PACS node (called AE title, host, DICOM port).")
@click.option("--aet", "calling_aet", default="A0VERIFY", show_default=True,
              help="Our (calling) AE title, as configured on the node.")
@click.option("--retries", type=click.IntRange(0, 10), default=2, show_default=True,
              help="Further attempts for files the node did not store.")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing on success.")
def send(result_dir: str, to: str, calling_aet: str, retries: int, quiet: bool) -> None:
    """Store DIR/dicom/ (written by `a0verify export-dicom` or `run --dicom-out`) on a PACS
    node with C-STORE. Files the node refuses are retried; nothing local is removed, so a
    failed send can be repeated. Exit code 6 when not every file was stored.
    """
    from a0verify.pacs import parse_node

    node = parse_node(to)
    rep = send_result(result_dir, node, calling_aet=calling_aet, retries=retries)
    if not quiet:
        click.echo(f"sent {len(rep.stored)} file(s) to {node}")


def send_result(result_dir: str, node: Node, *, calling_aet: str = "A0VERIFY",
                retries: int = 2) -> SendReport:
    """Send every file of ``result_dir``/dicom (InputError when it has no DICOM export)."""
    import json
    from pathlib import Path

    from a0verify.dicom_out.export import DICOM_DIR, ExportResult
    from a0verify.errors import InputError
    from a0verify.pacs import send_files

    folder = Path(result_dir) / DICOM_DIR
    manifest = folder / "manifest.json"
    if not manifest.is_file():
        raise InputError(f"{folder}: no DICOM export here; run `a0verify export-dicom "
                         f"{result_dir}` first")
    rec = json.loads(manifest.read_text("utf-8"))
    res = ExportResult(folder, dict(rec.get("files", {})), str(rec.get("reference", "")))
    missing = [p for p in res.all_files() if not p.is_file()]
    if missing:
        raise InputError(f"{missing[0]}: listed in {manifest} but missing; export again")
    return send_files(res.all_files(), node, calling_aet=calling_aet, retries=retries)
