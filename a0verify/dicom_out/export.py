"""``a0verify export-dicom RESULT_DIR``: the DICOM objects of an existing result.

Writes ``RESULT_DIR/dicom/``: ``seg.dcm`` (SEG), ``sr.dcm`` (TID 1500 SR), ``report_pdf.dcm``
(encapsulated PDF of the report page), ``views_sc.dcm`` (secondary capture of the key views),
``ct/`` (only when the reference series is synthesized, see :mod:`.reference`) and
``manifest.json`` (what was written, the UIDs, how the reference was chosen). The folder is built
beside the result and swapped in by renames, so it is never half-written; report.json then lists
it (``outputs.dicom``) and records the export (``dicom_export``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from a0verify.dicom_out import require
from a0verify.errors import InputError

DICOM_DIR = "dicom"


@dataclass
class ExportResult:
    """Where the objects went and how the reference series was chosen."""

    folder: Path
    files: dict[str, str]  # role -> path relative to ``folder``
    reference: str  # "original" or "synthesized"
    reason: str = ""
    uids: dict[str, str] = field(default_factory=dict)

    def all_files(self) -> list[Path]:
        """Every DICOM file of the export (CT copies first, then SEG, SR, PDF, SC)."""
        ct = sorted((self.folder / "ct").glob("*.dcm")) if (self.folder / "ct").is_dir() else []
        return ct + [self.folder / v for k, v in self.files.items() if k != "ct"]


def _reference(report: dict[str, Any], work: Path, post: str | None, anonymized: bool) -> Any:
    from a0verify.dicom_out.reference import (
        missing_attributes,
        original_reference,
        synthesized_reference,
    )
    from a0verify.io import read_image
    from a0verify.io.dicom import looks_like_dicom

    prov = report["provenance"]
    src = post or prov["inputs"].get("post")
    ident = report.get("identity") or {}
    expected = (ident.get("series") or {}).get("post")
    series_uid = prov.get("parameters", {}).get("post_series") or \
        (expected or {}).get("series_instance_uid")
    if not src or str(src).startswith("<"):
        raise InputError("the result records no usable post-ablation CT path; give it with "
                         "--post IMG")
    p = Path(src)
    if not p.exists():
        raise InputError(f"{p}: post-ablation CT recorded in report.json does not exist; give "
                         "its new location with --post")
    is_dicom = p.is_dir() or looks_like_dicom(p)
    reason = "anonymized export" if anonymized else "the post-ablation CT was not DICOM"
    patient = None
    if is_dicom and not anonymized:
        ref = original_reference(p, series_uid, expected)
        missing = missing_attributes(ref.datasets)
        if not missing:
            return ref
        reason = f"the post-ablation CT series has no {', '.join(missing)} to reference"
        patient = ref.study.patient
    image = read_image(p, what="post-ablation CT", series_uid=series_uid if is_dicom else None)
    sha = (prov.get("input_sha256") or {}).get("post")
    return synthesized_reference(image, work / "ct", anonymized=anonymized, source_sha256=sha,
                                 reason=reason, uids=ident.get("uids") if anonymized else None,
                                 pseudonym=ident.get("pseudonym") if anonymized else None,
                                 patient=patient)


def _page_pdf(d: Path, report: dict[str, Any], work: Path, sanitize: bool) -> bytes | None:
    """PDF bytes of the report page (the stored one, or printed from report.html); for an
    anonymized export of a result that was not anonymized, the page is rendered again from an
    anonymized copy of report.json. None when there is no page at all."""
    from a0verify.dicom_out.documents import html_to_pdf

    if sanitize:
        from a0verify.report.html import load_report_data, write_html_report
        from a0verify.report.identity import anonymize_report

        page = anonymize_report(report, report["provenance"].get("inputs", {}))
        tmp = work / "page"
        tmp.mkdir()
        write_html_report(page, tmp, load_report_data(d, report), pdf=True)
        return (tmp / "report.pdf").read_bytes()
    pdf = d / report["outputs"].get("report_pdf", "report.pdf")
    html = d / report["outputs"].get("report_html", "report.html")
    if pdf.is_file() and (not html.is_file() or pdf.stat().st_mtime >= html.stat().st_mtime):
        return pdf.read_bytes()
    if not html.is_file():
        return None
    return html_to_pdf(html, work / "report.pdf").read_bytes()


def export_dicom(result_dir: str | Path, *, post: str | None = None,
                 anonymize: bool = False) -> ExportResult:
    """Write the DICOM objects of the result in ``result_dir`` (see the module docstring).

    ``post``: where the post-ablation CT is now (default: the path recorded in report.json).
    ``anonymize``: no patient identifiers in any object, new UIDs (implied when the result was
    run with ``--anonymize``). Raises InputError (one line) for a missing or invalid result,
    a missing or changed post CT, or a missing ``dicom`` extra.
    """
    require("highdicom", what="DICOM export")
    from a0verify.io import write_json_atomic
    from a0verify.report import load_result
    from a0verify.report.slicer import read_segmentation

    d = Path(result_dir)
    report = load_result(d)
    was_anonymized = bool((report.get("identity") or {}).get("anonymized"))
    anonymized = anonymize or was_anonymized
    seg_name = report["outputs"].get("segmentation")
    if not seg_name:
        raise InputError(f"{d / 'report.json'}: lists no segmentation; re-run the case")
    masks, _ = read_segmentation(d / seg_name)
    work = Path(tempfile.mkdtemp(prefix=".dicom.", dir=d))
    try:
        with warnings.catch_warnings():
            # highdicom warns (Python warnings reach stderr) about header values of the source
            # series, e.g. single-component person names: not ours to fix
            warnings.simplefilter("ignore", UserWarning)
            record = _write_objects(d, report, work, masks, post=post, anonymized=anonymized,
                                    sanitize=anonymize and not was_anonymized)
        os.chmod(work, 0o777 & ~_umask())
        _swap_in(work, d / DICOM_DIR)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    report["outputs"]["dicom"] = DICOM_DIR
    report["dicom_export"] = record
    write_json_atomic(d / "report.json", report)
    return ExportResult(d / DICOM_DIR, dict(record["files"]), record["reference"],
                        record["reason"],
                        {k: v for k, v in record.items() if k.endswith("uid")})


def _write_objects(d: Path, report: dict[str, Any], work: Path, masks: dict[str, Any], *,
                   post: str | None, anonymized: bool, sanitize: bool) -> dict[str, Any]:
    """Write every object into ``work``; return the manifest record."""
    from pydicom.uid import generate_uid

    from a0verify.dicom_out.documents import encapsulated_pdf, views_secondary_capture
    from a0verify.dicom_out.seg import build_seg, plan_segments
    from a0verify.dicom_out.sr import build_sr
    from a0verify.io import write_json_atomic

    ref = _reference(report, work, post, anonymized)
    uids = {k: generate_uid() for k in ("seg_series", "seg", "sr_series", "sr",
                                        "pdf_series", "pdf", "sc_series", "sc")}
    plans = plan_segments(masks.get("tumor"), masks["ablation"],
                          [int(les["id"]) for les in report["lesions"]])
    seg = build_seg(ref, plans, series_instance_uid=uids["seg_series"],
                    sop_instance_uid=uids["seg"])
    files = {"seg": "seg.dcm", "sr": "sr.dcm"}
    seg.save_as(str(work / "seg.dcm"))
    sr = build_sr(ref, seg, plans, report, series_instance_uid=uids["sr_series"],
                  sop_instance_uid=uids["sr"])
    sr.save_as(str(work / "sr.dcm"))
    pdf = _page_pdf(d, report, work, sanitize=sanitize)
    if pdf is not None:
        encapsulated_pdf(ref, pdf, series_instance_uid=uids["pdf_series"],
                         sop_instance_uid=uids["pdf"],
                         title=f"a0verify ablation margin report ({report['verdict']})",
                         burned_in_identity=not anonymized).save_as(
                             str(work / "report_pdf.dcm"), enforce_file_format=True)
        files["pdf"] = "report_pdf.dcm"
    views = d / report["outputs"].get("figure_views", "figure_views.png")
    if views.is_file():
        views_secondary_capture(ref, views, series_instance_uid=uids["sc_series"],
                                sop_instance_uid=uids["sc"]).save_as(str(work / "views_sc.dcm"))
        files["sc"] = "views_sc.dcm"
    if ref.synthesized:
        files["ct"] = "ct"
    for leftover in ("page", "report.pdf"):
        p = work / leftover
        shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    record = {"reference": "synthesized" if ref.synthesized else "original",
              "reason": ref.reason, "anonymized": anonymized, "files": files,
              "study_instance_uid": ref.study.study_instance_uid,
              "referenced_series_instance_uid": ref.series_instance_uid,
              "frame_of_reference_uid": ref.study.frame_of_reference_uid,
              "seg_sop_instance_uid": uids["seg"], "sr_sop_instance_uid": uids["sr"],
              "segments": {str(p.number): p.label for p in plans}}
    write_json_atomic(work / "manifest.json", record)
    return record


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _swap_in(new: Path, final: Path) -> None:
    """Replace the directory ``final`` by ``new`` with renames (the old one removed after)."""
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, old)
    os.replace(new, final)
    if old is not None:
        with contextlib.suppress(OSError):
            shutil.rmtree(old)
