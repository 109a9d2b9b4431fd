"""``a0verify export-dicom DIR``: SEG, SR, encapsulated PDF and secondary capture of a result."""

from __future__ import annotations

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
