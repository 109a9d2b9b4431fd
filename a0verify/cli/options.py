"""Shared click parameter types and options."""

from __future__ import annotations

from typing import Any

import click

from a0verify import SECOND_THRESHOLD_MM


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


class LineType(click.ParamType):
    """A diameter line ``X1,Y1,Z1:X2,Y2,Z2`` (two LPS points in mm)."""

    name = "X1,Y1,Z1:X2,Y2,Z2"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> tuple[tuple[float, float, float],
                                                    tuple[float, float, float]]:
        if isinstance(value, tuple):
            return value
        ends = str(value).replace(" ", "").split(":")
        if len(ends) != 2:
            self.fail(f"{value!r} is not two points X1,Y1,Z1:X2,Y2,Z2 (LPS mm)", param, ctx)
        return (SEED.convert(ends[0], param, ctx), SEED.convert(ends[1], param, ctx))


LINE = LineType()

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


second_threshold_option = click.option(
    "--second-threshold", "second_threshold_mm", type=click.FloatRange(0.0, 50.0),
    default=SECOND_THRESHOLD_MM, show_default=True,
    help="Second, reading-aid threshold in mm: the report gives the share of the tumour "
         "surface with a margin below it (margins of 5-10 mm still carry several times the "
         "recurrence risk of margins over 10 mm). It does not change the verdict.")
