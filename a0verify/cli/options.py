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

#: Default second (reading-aid) threshold in mm.
SECOND_THRESHOLD_MM = 10.0

second_threshold_option = click.option(
    "--second-threshold", "second_threshold_mm", type=click.FloatRange(0.0, 50.0),
    default=SECOND_THRESHOLD_MM, show_default=True,
    help="Second, reading-aid threshold in mm: the report gives the share of the tumour "
         "surface with a margin below it (margins of 5-10 mm still carry several times the "
         "recurrence risk of margins over 10 mm). It does not change the verdict.")
