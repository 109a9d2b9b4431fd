"""Cohort batches for people who do not know Snakemake: ``a0verify batch CASES.tsv --out DIR``.

The batch is the project's Snakemake workflow (``Snakefile`` + ``pipelines/``) run with
``--keep-going --rerun-incomplete`` into ``DIR`` (Snakemake's bookkeeping lives in
``DIR/.snakemake``), so:

* one failed case does not stop the others, and every case appears in ``DIR/summary.tsv`` and
  ``DIR/summary.html`` (a failed one with its reason);
* a batch that was interrupted (Ctrl-C, ``kill``, a lost node) is completed by running the same
  command again: finished cases are not redone, half-written outputs are redone (every stage
  writes atomically and ``report.json`` last; Snakemake marks unfinished jobs incomplete), and a
  lock left by a killed run is released when its process is gone.

The sample sheet is validated here against the same JSON schema the workflow uses
(``pipelines/schemas/samples.schema.yaml``) so that a bad sheet is one clear line before anything
runs. Relative paths in the sheet are resolved against ``base_dir`` (default: the current
directory).
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from a0verify.errors import InputError
from a0verify.workflow import read_sample_sheet, workflow_root

PROFILES: dict[str, str] = {"local": "pipelines/profiles/local",
                            "slurm": "pipelines/profiles/slurm"}
"""Profile names accepted by ``--profile`` (else a profile directory)."""


def resolve_profile(profile: str | None, root: Path) -> Path | None:
    """``local`` / ``slurm`` / a directory holding ``config.yaml`` -> profile directory."""
    if profile is None:
        return None
    d = root / PROFILES[profile] if profile in PROFILES else Path(profile)
    if not (d / "config.yaml").is_file():
        raise InputError(f"--profile {profile}: no config.yaml in {d} (known: "
                         f"{', '.join(PROFILES)})")
    return d.resolve()


@dataclass
class BatchResult:
    """What a batch left: counts per case outcome, failed cases with reasons, files."""

    out_dir: Path
    n_cases: int
    outcomes: dict[str, str]
    failed: dict[str, str]
    snakemake_returncode: int
    log: Path
    summary_tsv: Path
    summary_html: Path
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def _pid_alive(pid: int) -> bool:
    """True when process ``pid`` exists and (where /proc tells) is an a0verify batch."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc: trust the pid
    return b"batch" in cmdline  # a reused pid of another program is not a running batch


class _BatchLock:
    """``DIR/.a0verify-batch.pid``: refuses a second live batch into the same directory and
    tells a restart that a Snakemake lock left behind is stale."""

    def __init__(self, out: Path) -> None:
        self.path = out / ".a0verify-batch.pid"
        self.stale = False

    def __enter__(self) -> _BatchLock:
        with contextlib.suppress(FileNotFoundError, ValueError):
            pid = int(self.path.read_text().split()[0])
            if pid != os.getpid() and _pid_alive(pid):
                raise InputError(f"{self.path.parent}: another batch (pid {pid}) is running into "
                                 "this directory")
            self.stale = True
        self.path.write_text(f"{os.getpid()}\n")
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is not None and issubclass(exc_type, KeyboardInterrupt):
            return  # interrupted: the pid file tells the next run that locks left are stale
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


_RULE_RE = re.compile(r"^\s*(?:local)?rule (\w+):")
_JOBID_RE = re.compile(r"^\s*jobid: (\d+)")
_WILD_RE = re.compile(r"^\s*wildcards: .*\bcase=([^,\s]+)")
_LOG_RE = re.compile(r"^\s*log: (\S+)")
_RESOURCES_RE = re.compile(r"^\s*resources: ")
_FINISHED_RE = re.compile(r"Finished job(?:id)?:? (\d+)")
_STEPS_RE = re.compile(r"(\d+) of (\d+) steps \((\d+%)\) done")
_ERROR_RE = re.compile(r"^\s*Error in rule (\w+):")
_SUBMITTED_RE = re.compile(r"Job (\d+) has been submitted with SLURM jobid (\d+)")


@dataclass
class _Job:
    rule: str
    case: str | None = None
    log: str | None = None


class ProgressParser:
    """Turns Snakemake's log lines into short progress lines: job start (case, stage), job done
    with the step count, and failures with the stage log to read."""

    def __init__(self, echo: Callable[[str], None], start_word: str = "start ") -> None:
        self.echo = echo
        self.start_word = start_word
        self.jobs: dict[str, _Job] = {}
        self._block: _Job | None = None
        self._jid: str | None = None
        self._in_error = False
        self._pending: str | None = None

    def feed(self, line: str) -> None:
        """Consume one line of Snakemake output (newline optional)."""
        if m := _RULE_RE.match(line):
            self._block, self._jid, self._in_error = _Job(m.group(1)), None, False
        elif m := _ERROR_RE.match(line):
            self._block, self._jid, self._in_error = None, None, True
        elif m := _JOBID_RE.match(line):
            if self._in_error:
                job = self.jobs.get(m.group(1), _Job("?"))
                where = f" (log {job.log})" if job.log else ""
                self.echo(f"FAILED {job.case or '-'}: {job.rule}{where}; other cases go on")
                self._in_error = False
            elif self._block is not None:
                self._jid = m.group(1)
        elif self._block is not None:
            if m := _WILD_RE.match(line):
                self._block.case = m.group(1)
            elif m := _LOG_RE.match(line):
                self._block.log = m.group(1)
            elif _RESOURCES_RE.match(line) or (line.strip() == "" and self._jid is not None):
                if self._jid is not None:
                    self.jobs[self._jid] = self._block
                    if self._block.rule != "all":
                        self.echo(f"{self.start_word} {self._block.case or '-'}: "
                                  f"{self._block.rule}")
                self._block, self._jid = None, None
        if m := _SUBMITTED_RE.search(line):
            job = self.jobs.get(m.group(1), _Job("?"))
            self.echo(f"queued {job.case or '-'}: {job.rule} as Slurm job {m.group(2)}")
        if m := _FINISHED_RE.search(line):
            self._pending = m.group(1)
        elif (m := _STEPS_RE.search(line)) and self._pending is not None:
            job = self.jobs.get(self._pending, _Job("?"))
            if job.rule != "all":
                self.echo(f"done   {job.case or '-'}: {job.rule}  [{m.group(1)}/{m.group(2)} "
                          f"steps, {m.group(3)}]")
            self._pending = None


def snakemake_command(sheet: Path, out: Path, *, root: Path, cores: int,
                      profile: Path | None, base_dir: Path,
                      config: dict[str, Any], dry_run: bool = False) -> list[str]:
    """The Snakemake command line a batch runs (absolute paths; workdir = ``out``)."""
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(root / "Snakefile"),
           "--directory", str(out), "--cores", str(cores), "--keep-going",
           "--rerun-incomplete", "--nocolor"]
    if profile is not None:
        cmd += ["--profile", str(profile)]
    cfg = {"cases": str(sheet), "out": str(out), "base_dir": str(base_dir), **config}
    cmd += ["--config", *[f"{k}={v if isinstance(v, str | bool) else json.dumps(v)}"
                          for k, v in cfg.items()]]
    if dry_run:
        cmd.append("--dry-run")
    return cmd


def run_batch(sheet: str | Path, out_dir: str | Path, *, cores: int = 2,
              profile: str | None = None, base_dir: str | Path | None = None,
              threshold_mm: float | None = None, registration: str | None = None,
              dry_run: bool = False,
              echo: Callable[[str], None] = print, verbose: bool = False) -> BatchResult:
    """Run (or resume) a cohort batch and write its summary. See the module docstring.

    Raises InputError for a bad sample sheet, profile or output directory; failed cases do not
    raise (they are in the result's ``failed`` and in the summary).
    """
    from a0verify import summary as summ

    t0 = time.perf_counter()
    import importlib.util

    if importlib.util.find_spec("snakemake") is None:
        raise InputError("a0verify batch needs Snakemake, which is not installed: "
                         "pip install 'a0verify[batch]'")
    root = workflow_root()
    sheet_p = Path(sheet).resolve()
    rows = read_sample_sheet(sheet_p, root)
    out = Path(out_dir).resolve()
    base = Path(base_dir).resolve() if base_dir else Path.cwd()
    prof = resolve_profile(profile, root)
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "logs").mkdir(exist_ok=True)
    except OSError as exc:
        raise InputError(f"{out}: output directory cannot be created ({exc.strerror})") from None
    config: dict[str, Any] = {}
    if threshold_mm is not None:
        config["threshold_mm"] = float(threshold_mm)
    if registration is not None:
        config["registration"] = registration
    cmd = snakemake_command(sheet_p, out, root=root, cores=cores, profile=prof, base_dir=base,
                            config=config, dry_run=dry_run)
    log = out / "logs" / f"batch-{time.strftime('%Y%m%d-%H%M%S')}.log"
    notes: list[str] = []
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.setdefault("MPLBACKEND", "Agg")
    with _BatchLock(out) as lock:
        locks = out / ".snakemake" / "locks"
        held = locks.is_dir() and any(locks.iterdir())
        if held and not lock.stale and not dry_run:
            raise InputError(f"{out}: locked by another Snakemake run; if none is running, "
                             f"release it with: snakemake --unlock --directory {out} "
                             f"--snakefile {root / 'Snakefile'} --config cases={sheet_p}")
        if lock.stale and held:
            # the previous batch into this directory was interrupted: its Snakemake lock is stale
            subprocess.run([*cmd, "--unlock"], cwd=out, env=env, capture_output=True,
                           check=False)
            notes.append("released the lock of an interrupted earlier batch")
            echo("resuming: released the lock left by an interrupted batch")
        echo(f"batch: {len(rows)} cases -> {out} (log {log})")
        rc, started = _run_streaming(cmd, out, env, log, echo, verbose,
                                     start_word="to run" if dry_run else "start ")
    if rc != 0 and not started:  # the workflow itself could not start: say why, in one line
        raise InputError(f"the batch workflow could not start: {_startup_error(log)} "
                         f"(full log: {log})")
    tsv, html_p = out / "summary.tsv", out / "summary.html"
    if dry_run:
        return BatchResult(out, len(rows), {}, {}, rc, log, tsv, html_p,
                           time.perf_counter() - t0, notes)
    summary_fresh = (rc == 0 and tsv.is_file() and html_p.is_file())
    if summary_fresh:
        result_rows = summ.collect(summ.read_case_list(sheet_p, base), out)
    else:
        result_rows = summ.write_summary(sheet_p, out, tsv=tsv, html_path=html_p, base_dir=base)
    outcomes = summ.case_outcomes(result_rows)
    failed = {r["case_id"]: str(r["failure_reason"]) for r in result_rows
              if r["status"] != "ok"}
    if rc != 0 and not failed:
        notes.append(f"snakemake exited with code {rc} although every case has a report")
    return BatchResult(out, len(rows), outcomes, failed, rc, log, tsv, html_p,
                       time.perf_counter() - t0, notes)


_CAUSE_RE = re.compile(r"^\s*(?:\w+\.)*(\w*(?:Error|Exception))\b:?(.*)$")


def _startup_error(log: Path) -> str:
    """The first error Snakemake reported in ``log`` (its type and message), one line."""
    try:
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines()]
    except OSError:
        return "no log"
    for i, ln in enumerate(lines):
        if m := _CAUSE_RE.match(ln):
            msg = m.group(2).strip()
            if msg.startswith("in file") or not msg:  # the message is on the next line
                nxt = next((x for x in lines[i + 1:] if x), "")
                msg = f"{msg.split(':')[0]}: {nxt}" if msg else nxt
            return f"{m.group(1)}: {msg}"[:400]
    tail = [ln for ln in lines if ln]
    return tail[-1][:400] if tail else "snakemake printed nothing"


def _run_streaming(cmd: Sequence[str], cwd: Path, env: dict[str, str], log: Path,
                   echo: Callable[[str], None], verbose: bool,
                   start_word: str = "start ") -> tuple[int, bool]:
    """Run Snakemake, copy its output to ``log`` and show progress; forward SIGTERM/SIGINT.
    Returns Snakemake's exit code and whether any job started (or was planned, dry run)."""
    parser = ProgressParser((lambda _line: None) if verbose else echo, start_word)
    with open(log, "w") as fh:
        proc = subprocess.Popen(list(cmd), cwd=cwd, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, bufsize=1)

        interrupted: list[int] = []

        def forward(signum: int, _frame: object) -> None:
            interrupted.append(signum)
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signum)

        old = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                fh.write(line)
                fh.flush()
                if verbose:
                    echo(line.rstrip("\n"))
                parser.feed(line)
            rc = proc.wait()
        finally:
            for s, h in old.items():
                signal.signal(s, h)
    if rc < 0 or interrupted:  # interrupted, not failed: run the same command again to resume
        raise KeyboardInterrupt
    return rc, bool(parser.jobs)


def write_phantom_cohort(out_dir: str | Path, margins_mm: Sequence[float], *,
                         moving: bool = True, size: Sequence[int] = (64, 64, 20),
                         spacing: Sequence[float] = (1.0, 1.0, 2.5),
                         seed: int = 0) -> tuple[Path, dict[str, float]]:
    """Write one small synthetic case per entry of ``margins_mm`` (true MAM in mm, one lesion of
    radius 8 mm) under ``out_dir/<case_id>/`` and a sample sheet ``out_dir/cases.tsv`` with
    absolute paths. ``moving=False`` makes pre and post share one pose (no rotation, translation
    or deformation), so ``registration: none`` is exact. Case ids are ``ph000``, ``ph001``, ...

    Returns (sheet path, {case_id: true MAM in mm}). An empty ``margins_mm`` writes a sheet with
    the header only.
    """
    from a0verify import phantom as ph

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    truth: dict[str, float] = {}
    rows = []
    for i, m in enumerate(margins_mm):
        cid = f"ph{i:03d}"
        kw: dict[str, Any] = {} if moving else {"rotation_deg": [0.0, 0.0, 0.0],
                                                 "translation_mm": [0.0, 0.0, 0.0],
                                                 "deformation_mm": 0.0}
        spec = ph.PhantomSpec(
            spacing=list(spacing), size=list(size), center_lps=[-62.0, 8.0, 0.0],
            seed=seed + i, lesions=[ph.LesionSpec(center_lps=[-60.0, 5.0, 0.0], radius_mm=8.0,
                                                  target_margin_mm=float(m))], **kw)
        case = ph.make_phantom(spec)
        paths = ph.write_case(case, out / cid)
        truth[cid] = case.min_mam_mm
        rows.append([cid, *(str(paths[k].resolve()) for k in ("pre", "post", "tumor",
                                                                "ablation"))])
    sheet = out / "cases.tsv"
    with open(sheet, "w", newline="") as fh:
        w = csv.writer(fh, delimiter="\t", lineterminator="\n")
        w.writerow(["case_id", "pre", "post", "tumor", "ablation"])
        w.writerows(rows)
    return sheet, truth
