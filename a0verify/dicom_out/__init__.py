"""DICOM outputs of a result (extra ``dicom``): SEG, TID 1500 SR, encapsulated PDF, secondary
capture, all referencing the post-ablation CT series the margin was measured on.

Modules: :mod:`.codes` (coded concepts and why), :mod:`.reference` (the referenced CT series:
the original one, or a synthesized one for non-DICOM or anonymized results), :mod:`.ctseries`
(writes a CT image as a classic DICOM series), :mod:`.seg`, :mod:`.sr`, :mod:`.documents` (PDF
and secondary capture), :mod:`.export` (``a0verify export-dicom``:
:func:`a0verify.dicom_out.export.export_dicom`).

highdicom and pynetdicom are optional: :func:`require` raises a one-line
:class:`~a0verify.errors.InputError` naming the extra when they are missing.
"""

from __future__ import annotations

import importlib.util

from a0verify.errors import InputError

EXTRA_HINT = "pip install 'a0verify[dicom]'"


def require(*modules: str, what: str = "DICOM output") -> None:
    """Raise InputError naming the ``dicom`` extra when one of ``modules`` is not installed."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise InputError(f"{what} needs the optional package(s) {', '.join(missing)}: "
                         f"{EXTRA_HINT}")


__all__ = ["EXTRA_HINT", "require"]
