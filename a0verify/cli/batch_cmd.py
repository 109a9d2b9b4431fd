"""``a0verify batch``: run a cohort from a sample sheet through the Snakemake workflow."""

from __future__ import annotations

import click

from a0verify.errors import BatchError


@click.command()
@click.argument("cases", metavar="CASES.tsv", type=click.Path(dir_okay=False))
@click.option("--out", "out", required=True, type=click.Path(file_okay=False),
              help="Output directory: DIR/<case_id>/report.json, DIR/summary.tsv, "
                   "DIR/summary.html, DIR/logs/.")
@click.option("--cores", type=click.IntRange(1, 1024), default=2, show_default=True,
              help="CPU cores used at once on this machine (with --profile slurm: for local "
                   "jobs only).")
@click.option("--profile", default=None, metavar="P",
              help="Snakemake profile: 'local', 'slurm' or a profile directory.")
@click.option("--threshold", "threshold_mm", type=float, default=None,
              help="Required minimal ablative margin in mm (default from the workflow config, "
                   "5 mm; a threshold_mm sheet column overrides it per case).")
@click.option("--registration", type=click.Choice(["none", "rigid", "deformable"]),
              default=None, help="Registration method (default deformable; a sheet column "
                                 "overrides it per case).")
@click.option("--base-dir", type=click.Path(file_okay=False), default=None,
              help="Directory relative paths in the sheet are resolved against "
                   "(default: the current directory).")
@click.option("--dry-run", "-n", is_flag=True, help="Show what would run, run nothing.")
@click.option("--verbose", "-v", is_flag=True, help="Show Snakemake's own output.")
def batch(cases: str, out: str, cores: int, profile: str | None, threshold_mm: float | None,
          registration: str | None, base_dir: str | None,
          dry_run: bool, verbose: bool) -> None:
    """Run every case of CASES.tsv (columns case_id, pre, post, tumor | tumor_seed,
    ablation | ablation_seed [, liver, threshold_mm, registration]; seeds X,Y,Z in LPS mm,
    several ablation seeds separated by ';') through the Snakemake workflow: one
    `a0verify run` job per case (needs the `batch` extra: pip install 'a0verify[batch]').

    A failed case does not stop the others; it is listed with its reason in DIR/summary.tsv
    and DIR/summary.html and the command exits with code 5. Run the same command again to
    resume an interrupted batch: finished cases are kept, unfinished ones redone.
    """
    from a0verify.batch import run_batch

    res = run_batch(cases, out, cores=cores, profile=profile, base_dir=base_dir,
                    threshold_mm=threshold_mm, registration=registration,
                    dry_run=dry_run, echo=click.echo, verbose=verbose)
    if dry_run:
        click.echo(f"dry run: snakemake exited with code {res.snakemake_returncode} "
                   f"(log {res.log})")
        if res.snakemake_returncode:
            raise BatchError(f"the workflow cannot run, see {res.log}")
        return
    counts: dict[str, int] = {}
    for v in res.outcomes.values():
        counts[v] = counts.get(v, 0) + 1
    click.echo(f"{res.n_cases} cases in {res.seconds:.0f} s: "
               + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    for cid, reason in res.failed.items():
        click.echo(f"failed {cid}: {reason}")
    for note in res.notes:
        click.echo(f"note: {note}")
    click.echo(f"summary: {res.summary_html}")
    if res.failed:
        raise BatchError(f"{len(res.failed)} of {res.n_cases} cases failed: "
                         f"{', '.join(sorted(res.failed))} (see {res.summary_tsv})")
    if res.snakemake_returncode:
        raise BatchError(f"snakemake exited with code {res.snakemake_returncode}, see {res.log}")
