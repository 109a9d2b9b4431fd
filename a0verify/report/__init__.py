"""Reports: report.json model (built in :mod:`a0verify.pipeline`) and the self-contained HTML."""

from a0verify.report.html import write_html_report

__all__ = ["write_html_report"]
