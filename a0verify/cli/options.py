"""Shared click parameter types and options."""

from __future__ import annotations

from typing import Any

import click


class SeedType(click.ParamType):
    """A point ``X,Y,Z`` in LPS millimetres."""

    name = "X,Y,Z"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> tuple[float, float, float]:
        if isinstance(value, tuple):
            return value
        parts = str(value).replace(" ", "").split(",")
        try:
            vals = tuple(float(p) for p in parts)
        except ValueError:
            self.fail(f"{value!r} is not three numbers X,Y,Z (LPS mm)", param, ctx)
        if len(vals) != 3 or not all(abs(v) < 1e6 for v in vals):
            self.fail(f"{value!r} is not three finite numbers X,Y,Z (LPS mm)", param, ctx)
        return (vals[0], vals[1], vals[2])


SEED = SeedType()

threads_option = click.option(
    "--threads", type=click.IntRange(1, 256), default=None,
    help="Bound elastix, SimpleITK and Numba threads (default: all cores).")


def verbosity_options(fn: Any) -> Any:
    """``-q/--quiet`` (print nothing on success) and ``-v/--verbose`` (stage details); the
    command receives ``quiet`` and ``verbose`` (see :func:`progress_for`)."""
    fn = click.option("--verbose", "-v", "verbose", is_flag=True,
                      help="Also print when each stage starts and its details (stderr).")(fn)
    fn = click.option("--quiet", "-q", "quiet", is_flag=True,
                      help="Print nothing on success (errors still go to stderr).")(fn)
    return fn


def progress_for(quiet: bool, verbose: bool) -> Any:
    """The :class:`a0verify.progress.Progress` reporter for ``-q``/``-v``."""
    from a0verify.progress import NORMAL, QUIET, VERBOSE, Progress

    if quiet and verbose:
        raise click.UsageError("give at most one of -q/--quiet and -v/--verbose")
    return Progress(QUIET if quiet else VERBOSE if verbose else NORMAL)
