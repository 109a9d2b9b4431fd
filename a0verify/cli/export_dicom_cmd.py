"""``a0verify export-dicom DIR``: SEG, SR, encapsulated PDF and secondary capture of a result."""

from __future__ import annotations

from typing import Any

import click


@click.command("export-dicom")
@click.argument("result_dir", metavar="DIR", type=click.Path(file_okay=False))
@click.option("--post", "post", metavar="IMG",
              help="Where the post-ablation CT is now (default: the path in report.json).")
@click.option("--anonymize", is_flag=True,
              help="No patient identifiers in the DICOM objects; new study and UIDs (the CT "
                   "is sent along as an anonymized copy).")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing on success.")
def export_dicom(result_dir: str, post: str | None, anonymize: bool, quiet: bool) -> None:
    """Write DIR/dicom/: a DICOM SEG (tumour and ablation zone), a TID 1500 SR (margin, its
    uncertainty, surface fractions, volumes, verdict, thinnest point), the report page as
    encapsulated PDF and the key views as secondary capture, all referencing the post-ablation
    CT series. When that CT was not DICOM (or with --anonymize) it is converted into a new
    DICOM series in a new study and referenced instead (said on stdout and in report.json).

    Needs the extra `dicom` (pip install 'a0verify[dicom]').
    """
    from a0verify.dicom_out.export import export_dicom as run_export

    res = run_export(result_dir, post=post, anonymize=anonymize)
    if not quiet:
        _describe(res)


def _describe(res: object) -> None:
    from a0verify.dicom_out.export import ExportResult

    assert isinstance(res, ExportResult)
    names = ", ".join(v for k, v in res.files.items() if k != "ct")
    click.echo(f"dicom: {res.folder} ({names})")
    if res.reference == "synthesized":
        click.echo(f"note: new study with a DICOM copy of the post-ablation CT ({res.reason}); "
                   "it is sent along with the results")


def dicom_options(f: Any) -> Any:
    """--dicom-out, --send, --aet and --anonymize for `run`, `margin` and `demo`."""
    f = click.option("--anonymize", is_flag=True,
                     help="No patient identifiers in any output (report.json, page, DICOM; new "
                          "UIDs); input paths are replaced by their role.")(f)
    f = click.option("--aet", "calling_aet", default="A0VERIFY", show_default=True,
                     help="Our (calling) AE title for --send.")(f)
    f = click.option("--send", "send_to", metavar="AET@HOST:PORT",
                     help="Also store the DICOM outputs on this PACS node (implies "
                          "--dicom-out; exit code 6 when the node does not store them).")(f)
    f = click.option("--dicom-out", "dicom_out", is_flag=True,
                     help="Also write DICOM SEG, SR, PDF and SC into OUT/dicom (extra `dicom`)."
                     )(f)
    return f


def check_dicom_options(dicom_out: bool, send_to: str | None) -> Any:
    """Validate before the (long) run: the extra is installed, the node parses. Returns the
    parsed node or None."""
    if not (dicom_out or send_to):
        return None
    from a0verify.dicom_out import require

    require("highdicom", "pynetdicom", "weasyprint", what="--dicom-out/--send")
    if send_to:
        from a0verify.pacs import parse_node

        return parse_node(send_to)
    return None


def after_run(out_dir: Any, *, post: str | None, anonymize: bool, dicom_out: bool,
              node: Any, calling_aet: str, quiet: bool) -> None:
    """Export (and send) the DICOM objects of a finished run when asked to."""
    if not (dicom_out or node is not None):
        return
    from a0verify.dicom_out.export import export_dicom as run_export

    res = run_export(out_dir, post=post, anonymize=anonymize)
    if not quiet:
        _describe(res)
    if node is not None:
        from a0verify.cli.send_cmd import send_result

        rep = send_result(str(out_dir), node, calling_aet=calling_aet)
        if not quiet:
            click.echo(f"sent {len(rep.stored)} file(s) to {node}")
