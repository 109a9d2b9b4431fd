"""Identity and privacy in report.json: which DICOM series the inputs were, who and when.

``report["identity"]`` (written by ``a0verify run`` / ``margin``)::

    {"anonymized": false,
     "series": {"post": {study/series/frame-of-reference/SOP instance UIDs, modality,
                         patient_name, patient_id, patient_birth_date, patient_sex, study_date,
                         study_time, study_description, accession_number, study_id,
                         series_description}, "pre": {...}}}

Only inputs that were DICOM appear under ``series``. With ``--anonymize``: ``{"anonymized": true,
"pseudonym": "A0V-ANON-...", "uids": {new study/series/frame-of-reference UIDs for the DICOM
export}}`` and nothing else; input paths in the provenance and in warnings are replaced by
``<role (anonymized)>`` (folder names often carry patient names). The report page
(templates/report.html.j2, table ``identity``) shows patient name and ID, study date and series
description of each DICOM input, escaped, and none of it when anonymized. DICOM outputs then
get the pseudonym and new UIDs (:mod:`a0verify.dicom_out.reference`).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any


def identity_record(inputs: Mapping[str, tuple[str | None, str | None]], *,
                    anonymize: bool, warnings: list[str] | None = None) -> dict[str, Any]:
    """Build ``report["identity"]`` from {role: (path, series UID or None)}.

    Not anonymized: the series record of every DICOM input
    (:func:`a0verify.io.dicom.series_identity`); a warning is appended when the pre and post CT
    carry different PatientIDs. Anonymized: a pseudonym and fresh UIDs only.
    """
    if anonymize:
        import secrets

        from pydicom.uid import generate_uid

        return {"anonymized": True, "pseudonym": "A0V-ANON-" + secrets.token_hex(4).upper(),
                "uids": {k: generate_uid() for k in ("study_instance_uid", "series_instance_uid",
                                                     "frame_of_reference_uid")}}
    from a0verify.io.dicom import series_identity

    series: dict[str, Any] = {}
    for role, (path, uid) in inputs.items():
        if path is None:
            continue
        rec = series_identity(path, uid)
        if rec is not None:
            series[role] = rec
    ids = {r["patient_id"] for r in series.values() if r.get("patient_id")}
    if len(ids) > 1 and warnings is not None:
        warnings.append("the DICOM inputs carry different Patient IDs ("
                        + ", ".join(sorted(series)) + "); check that they are the same patient")
    return {"anonymized": False, "series": series}


def anonymize_report(report: dict[str, Any], paths: Mapping[str, str | None]) -> dict[str, Any]:
    """A copy of ``report`` without patient identifiers: identity replaced by an anonymized
    record (kept when already anonymized), input paths ``paths`` ({role: path}) replaced by
    ``<role (anonymized)>`` in the provenance and in every warning."""
    out = copy.deepcopy(report)
    ident = out.get("identity") or {}
    if not ident.get("anonymized"):
        out["identity"] = identity_record({}, anonymize=True)
    subst = {str(p): f"<{role} (anonymized)>" for role, p in paths.items() if p}
    prov = out.get("provenance", {})
    prov["inputs"] = {k: (subst.get(str(v), f"<{k} (anonymized)>") if v else v)
                      for k, v in prov.get("inputs", {}).items()}

    def scrub(text: str) -> str:
        for old, new in sorted(subst.items(), key=lambda kv: -len(kv[0])):
            text = text.replace(old, new)
        return text

    out["warnings"] = [scrub(str(w)) for w in out.get("warnings", [])]
    if isinstance(out.get("registration"), dict):
        reg = out["registration"]
        reg["warnings"] = [scrub(str(w)) for w in reg.get("warnings", [])]
    return out



def attach(report: dict[str, Any], identity: dict[str, Any],
           mask_sources: Mapping[str, dict[str, Any] | None]) -> dict[str, Any]:
    """``report`` with its ``identity`` and ``mask_sources`` fields set; anonymized (see
    :func:`anonymize_report`) when ``identity`` is an anonymized record."""
    if not identity:
        return report
    report["identity"] = identity
    sources = {k: v for k, v in mask_sources.items() if v}
    if sources:
        report["mask_sources"] = sources
    if identity.get("anonymized"):
        return anonymize_report(report, report["provenance"].get("inputs", {}))
    return report
