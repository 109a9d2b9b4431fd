"""Cohort summary of a batch: ``summary.tsv`` (one row per case and lesion) and ``summary.html``.

The summary is built from what is on disk, so it is correct whatever ran and whatever failed:

* a case whose ``OUT/<case_id>/report.json`` exists and parses is ``ok``: one row per lesion with
  the lesion verdict, minimal ablative margin (MAM, mm, positive inside the ablation zone),
  uncertainty (mm), coverage (percent of tumour volume inside the ablation zone), surface
  fractions (percent of tumour surface *area*), volumes (ml), registration QA and warnings;
* any other case is ``failed`` (one row, lesion columns empty) with a one-line failure reason:
  a missing input file, else the error line from the first stage log under
  ``OUT/logs/<case_id>/`` that has one, else "not run".

Called by the Snakemake ``summary`` rule (``python -m a0verify.summary``) and by
``a0verify batch`` when some cases failed (Snakemake does not run the summary rule then).
Both files are written atomically.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import re
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from a0verify.io.atomic import write_text_atomic

COLUMNS: tuple[str, ...] = (
    "case_id", "status", "case_verdict", "lesion_id", "verdict", "min_margin_mm",
    "uncertainty_mm", "threshold_mm", "coverage_pct", "surface_below_zero_pct",
    "surface_below_threshold_pct", "surface_at_or_above_threshold_pct", "tumor_volume_ml",
    "residual_volume_ml", "registration_method", "registration_uncertainty_mm",
    "registration_qa", "warnings", "failure_reason", "report",
)
"""Columns of summary.tsv, in order. Lengths mm, volumes ml, fractions percent."""

VERDICT_ORDER: tuple[str, ...] = ("A0", "insufficient", "incomplete", "indeterminate")
_ERROR_RE = re.compile(r"a0verify: (?:internal )?error: .*")


@dataclass(frozen=True)
class CaseInputs:
    """A case of the sample sheet: its id and the input paths it names (as resolved)."""

    case_id: str
    paths: dict[str, str]


def read_case_list(sheet: str | Path, base_dir: str | Path | None = None) -> list[CaseInputs]:
    """Case ids and input paths of a sample sheet (read and validated by
    :func:`a0verify.workflow.read_sample_sheet`), relative paths resolved against ``base_dir``
    (default: the current directory)."""
    from a0verify.workflow import case_paths, read_sample_sheet

    return [CaseInputs(row["case_id"], case_paths(row, base_dir))
            for row in read_sample_sheet(sheet)]


def failure_reason(case: CaseInputs, results_dir: Path) -> str:
    """One line saying why ``case`` has no report: missing input, logged error, or not run."""
    for key, p in case.paths.items():
        if not Path(p).exists():
            return f"missing input {key}: {p}"
    log_dir = results_dir / "logs" / case.case_id
    logs = sorted(log_dir.glob("*.log"))
    for log in logs:
        try:
            text = log.read_text(errors="replace")
        except OSError:
            continue
        hits = _ERROR_RE.findall(text)
        if hits:
            return f"{log.stem}: {hits[-1].strip()}"
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        if lines and ("Traceback" in text or "Error" in lines[-1]):
            return f"{log.stem}: {lines[-1][:300]}"
    if logs:
        return f"stage {logs[-1].stem} did not finish (see {logs[-1]})"
    return "not run (interrupted, or an earlier stage failed without a log)"


def _pct(x: Any) -> float | None:
    return None if x is None else 100.0 * float(x)


def _qa_text(reg: dict[str, Any] | None) -> str:
    if not reg:
        return ""
    metrics = reg.get("metrics") or {}
    parts = []
    for k, v in sorted(metrics.items()) if isinstance(metrics, dict) else []:
        if isinstance(v, bool) or v is None:
            parts.append(f"{k}={v}")
        elif isinstance(v, (int, float)):
            parts.append(f"{k}={v:.3g}")
    for k in ("qa_passed", "passed", "converged"):
        if k in reg:
            parts.append(f"{k}={reg[k]}")
    return "; ".join(parts)


def case_rows(case: CaseInputs, results_dir: Path) -> list[dict[str, Any]]:
    """Summary rows of one case (one per lesion, or one failure row)."""
    report_path = results_dir / case.case_id / "report.json"
    base: dict[str, Any] = {c: None for c in COLUMNS}
    base["case_id"] = case.case_id
    try:
        rep = json.loads(report_path.read_text())
        lesions = rep["lesions"]
        if not isinstance(lesions, list) or not lesions:
            raise ValueError("no lesions")
    except FileNotFoundError:
        return [{**base, "status": "failed", "failure_reason": failure_reason(case, results_dir)}]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return [{**base, "status": "failed",
                 "failure_reason": f"unreadable report {report_path}: {exc}"}]
    reg = rep.get("registration") or {}
    common = {
        **base, "status": "ok", "case_verdict": rep.get("verdict"),
        "threshold_mm": rep.get("threshold_mm"),
        "registration_method": reg.get("method"),
        "registration_uncertainty_mm": reg.get("uncertainty_mm"),
        "registration_qa": _qa_text(reg),
        "warnings": " | ".join(str(w) for w in rep.get("warnings", [])),
        "report": f"{case.case_id}/report.html",
    }
    rows = []
    for les in lesions:
        sf = les.get("surface_fraction") or {}
        tv, rv = les.get("tumor_volume_ml"), les.get("residual_volume_ml")
        coverage = (100.0 * (1.0 - float(rv) / float(tv))
                    if tv not in (None, 0) and rv is not None else None)
        rows.append({
            **common, "lesion_id": les.get("id"), "verdict": les.get("verdict"),
            "min_margin_mm": les.get("min_margin_mm"), "uncertainty_mm": les.get("uncertainty_mm"),
            "coverage_pct": coverage, "surface_below_zero_pct": _pct(sf.get("below_zero")),
            "surface_below_threshold_pct": _pct(sf.get("below_threshold")),
            "surface_at_or_above_threshold_pct": _pct(sf.get("at_or_above_threshold")),
            "tumor_volume_ml": tv, "residual_volume_ml": rv,
        })
    return rows


def collect(cases: Sequence[CaseInputs], results_dir: str | Path) -> list[dict[str, Any]]:
    """All summary rows, in sample-sheet order."""
    res = Path(results_dir)
    return [row for c in cases for row in case_rows(c, res)]


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.3f}"
    return str(v).replace("\t", " ").replace("\r", " ").replace("\n", " ")


def to_tsv(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as TSV text (header first; floats with 3 decimals; empty = not applicable)."""
    buf = io.StringIO()
    w = csv.writer(buf, delimiter="\t", lineterminator="\n")
    w.writerow(COLUMNS)
    for r in rows:
        w.writerow([_fmt(r.get(c)) for c in COLUMNS])
    return buf.getvalue()


def case_outcomes(rows: Sequence[dict[str, Any]]) -> dict[str, str]:
    """case_id -> case verdict, or "failed"."""
    out: dict[str, str] = {}
    for r in rows:
        out[r["case_id"]] = r["case_verdict"] if r["status"] == "ok" else "failed"
    return out


def _mam_plot_svg(mams: Sequence[float], threshold_mm: float | None) -> str:
    """A histogram of lesion MAMs (mm) as inline SVG; empty string when there are none."""
    if not mams:
        return ""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(6, 2.6))
    try:
        lo, hi = min(min(mams), -1.0), max(max(mams), (threshold_mm or 5.0) + 1.0)
        bins = max(5, min(40, math.ceil(hi - lo)))
        ax.hist(mams, bins=bins, range=(math.floor(lo), math.ceil(hi)), color="#4c78a8")
        ax.axvline(0.0, color="#d62728", lw=1.2, label="0 mm (residual tumour)")
        if threshold_mm is not None:
            ax.axvline(threshold_mm, color="#2ca02c", lw=1.2, ls="--",
                       label=f"threshold {threshold_mm:g} mm")
        ax.set_xlabel("minimal ablative margin per lesion (mm, positive inside the zone)")
        ax.set_ylabel("lesions")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=7, loc="upper left")
        fig.tight_layout()
        buf = io.StringIO()
        fig.savefig(buf, format="svg")
    finally:
        plt.close(fig)
    svg = buf.getvalue()
    return svg[svg.find("<svg"):]


_SHOWN = ("case_id", "status", "case_verdict", "lesion_id", "verdict", "min_margin_mm",
          "uncertainty_mm", "coverage_pct", "residual_volume_ml", "registration_method",
          "registration_qa", "warnings", "failure_reason")


def to_html(rows: Sequence[dict[str, Any]], title: str = "a0verify cohort summary") -> str:
    """Self-contained HTML: verdict counts, MAM histogram, the table with links to case reports
    (Jinja2 template ``report/templates/summary.html.j2``; every value is HTML-escaped)."""
    import jinja2

    outcomes = case_outcomes(rows)
    counts = Counter(outcomes.values())
    order = [v for v in (*VERDICT_ORDER, "failed") if counts.get(v)] + sorted(
        k for k in counts if k not in (*VERDICT_ORDER, "failed"))
    mams = [float(r["min_margin_mm"]) for r in rows
            if r["status"] == "ok" and r["min_margin_mm"] is not None]
    thresholds = {float(r["threshold_mm"]) for r in rows if r.get("threshold_mm") is not None}
    thr = thresholds.pop() if len(thresholds) == 1 else None
    table = [[(c, _fmt(r.get(c)),
               str(r.get(c)) if c in ("verdict", "case_verdict", "status") else None,
               str(r["report"]) if c == "case_id" and r.get("report") else None)
              for c in _SHOWN] for r in rows]
    env = jinja2.Environment(loader=jinja2.PackageLoader("a0verify.report", "templates"),
                             autoescape=True, keep_trailing_newline=True)
    return env.get_template("summary.html.j2").render(
        title=title, n_cases=len(outcomes), n_lesions=len(mams),
        counts=[(k, counts[k]) for k in order], svg=_mam_plot_svg(mams, thr),
        columns=_SHOWN, rows=table)


def write_summary(sheet: str | Path, results_dir: str | Path, *, tsv: str | Path | None = None,
                  html_path: str | Path | None = None,
                  base_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """Collect the rows for every case of ``sheet`` and write summary.tsv and summary.html
    (default: into ``results_dir``), atomically. Returns the rows."""
    res = Path(results_dir)
    rows = collect(read_case_list(sheet, base_dir), res)
    tsv_p = Path(tsv) if tsv else res / "summary.tsv"
    html_p = Path(html_path) if html_path else res / "summary.html"
    for path, text in ((tsv_p, to_tsv(rows)), (html_p, to_html(rows))):
        write_text_atomic(path, text).chmod(0o644)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m a0verify.summary --cases SHEET --results DIR [--tsv F] [--html F]``."""
    ap = argparse.ArgumentParser(prog="python -m a0verify.summary", description=__doc__)
    ap.add_argument("--cases", required=True, help="sample sheet (TSV)")
    ap.add_argument("--results", required=True, help="results root (OUT)")
    ap.add_argument("--base-dir", default=None, help="base of relative paths in the sheet")
    ap.add_argument("--tsv", default=None)
    ap.add_argument("--html", default=None)
    a = ap.parse_args(argv)
    rows = write_summary(a.cases, a.results, tsv=a.tsv, html_path=a.html,
                         base_dir=a.base_dir or None)
    outcomes = case_outcomes(rows)
    print(" ".join(f"{k}={v}" for k, v in sorted(Counter(outcomes.values()).items())))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
