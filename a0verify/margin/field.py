"""The per-vertex margin field: one field behind every figure of a lesion.

``margin(p)`` at each tumour-surface vertex p is the signed distance (mm, positive inside the
zone) to the *continuous* zone surface (the zero level of the zone's level set), not to the
nearest voxel of a binarised lattice:

1. the lattice EDT gives an estimate d0 and, from its gradient, the direction to the boundary;
2. a ray from p in that direction finds the zero crossing q of the level set near |d0|;
3. the ray is cast again along the level set's normal at q (the direction from a point to its
   closest surface point is the surface normal there) and the distance is |p - q|.

Where no crossing is found (e.g. on the zone's medial surface) d0 stands.
:func:`a0verify.margin.refinement.refine_field` then carries the refined MAM(s) into the field
(:class:`FieldCorrection`), so the smallest per-vertex margin is the reported MAM.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from a0verify.margin.levelset import LevelSet

F64 = npt.NDArray[np.float64]
#: Samples per ray bracket, and the bracket half-width in lattice voxels around |d0|.
RAY_SAMPLES = 12
RAY_HALF_WIDTH_VOXELS = 1.5


def _gradient(fn: Callable[[F64], F64], pts: F64, h: float) -> F64:
    """Central-difference gradient (N, 3) along the LPS axes of a scalar field at points."""
    g = np.empty_like(pts)
    for k in range(3):
        e = np.zeros(3)
        e[k] = h
        g[:, k] = (fn(pts + e) - fn(pts - e)) / (2.0 * h)
    return g


def _unit(v: F64) -> tuple[F64, npt.NDArray[np.bool_]]:
    n = np.linalg.norm(v, axis=1)
    ok = n > 1e-9
    return v / np.where(ok, n, 1.0)[:, None], ok


def _ray_crossing(level: LevelSet, p: F64, u: F64, sign: F64, lo: F64, hi: F64) -> F64:
    """Smallest t in [lo, hi] where the level set along ``p + t u`` (LPS mm, unit u) changes
    from ``sign`` (linear between samples, then one secant step); NaN where it does not."""
    n = len(p)
    ip = level.lattice.lps_to_index(p)  # the lattice map is affine: march in index space
    iu = level.lattice.lps_to_index(p + u) - ip
    s = np.linspace(0.0, 1.0, RAY_SAMPLES)
    t = lo[:, None] + (hi - lo)[:, None] * s[None, :]
    q = ip[:, None, :] + t[..., None] * iu[:, None, :]
    vals = level.sample_index(q.reshape(-1, 3), np.nan).reshape(n, RAY_SAMPLES) * sign[:, None]
    crossed = vals <= 0.0  # on or past the boundary
    j = np.argmax(crossed, axis=1)
    ok = crossed[np.arange(n), j] & (j > 0) & np.all(np.isfinite(vals), axis=1)
    j = np.maximum(j, 1)
    rows = np.arange(n)
    t0, t1 = t[rows, j - 1], t[rows, j]
    v0, v1 = vals[rows, j - 1], vals[rows, j]
    tc = t0 + (t1 - t0) * v0 / np.where(v0 - v1 > 0, v0 - v1, 1.0)
    # one secant step inside the bracket (the level set is not linear along the ray)
    vc = level.sample_index(ip + tc[:, None] * iu, np.nan) * sign
    left = vc > 0
    a_t, a_v = np.where(left, tc, t0), np.where(left, vc, v0)
    b_t, b_v = np.where(left, t1, tc), np.where(left, v1, vc)
    den = a_v - b_v
    tc2 = a_t + (b_t - a_t) * a_v / np.where(den > 0, den, 1.0)
    tc = np.where(np.isfinite(vc) & (den > 0), tc2, tc)
    return np.where(ok, tc, np.nan)


def surface_distance(zone: LevelSet, pts: F64) -> F64:
    """Signed distance (mm, positive inside) from LPS points (N, 3) to the zone's continuous
    surface (zero level of ``zone.values``), from the lattice EDT ``zone.distance`` refined by
    ray casting (module docstring). Points with no zone boundary within the lattice get the EDT
    value (``inf`` inside a lattice without background). Empty input: empty output."""
    p = np.asarray(pts, np.float64).reshape(-1, 3)
    if len(p) == 0:
        return np.zeros(0)
    d0 = zone.sample_distance(p, -np.inf)
    lev = zone.sample(p, np.nan)
    sign = np.where(np.isfinite(lev) & (lev != 0), np.sign(lev), np.where(d0 >= 0, 1.0, -1.0))
    finite = np.isfinite(d0)
    if not finite.any():
        return d0
    hs = 0.5 * float(zone.spacing.min())
    w = RAY_HALF_WIDTH_VOXELS * float(zone.spacing.max() * max(1, zone.dist_step))
    g = _gradient(lambda x: zone.sample_distance(x, np.nan), p, hs)
    u, ok = _unit(-sign[:, None] * g)
    a = np.abs(np.where(finite, d0, 0.0))
    lo, hi = np.maximum(a - w, 0.0), a + w
    t = _ray_crossing(zone, p, u, sign, lo, hi)
    hit = ok & np.isfinite(t) & finite
    q = p + np.where(hit, t, 0.0)[:, None] * u
    # second ray along the surface normal at the first hit
    n, ok2 = _unit(_gradient(lambda x: zone.sample(x, np.nan), q, hs))
    u2 = -sign[:, None] * n
    t2 = _ray_crossing(zone, p, u2, sign, lo, hi)
    hit2 = hit & ok2 & np.isfinite(t2)
    best = np.where(hit, t, np.inf)
    best = np.where(hit2, np.minimum(best, t2), best)
    d = np.where(np.isfinite(best), best, a)
    return np.where(finite, sign * d, d0)


@dataclass(frozen=True)
class FieldCorrection:
    """A refined margin carried into the field: ``delta_mm`` added within ``radius_mm`` of
    ``centre_lps`` on the surface, fading to 0 at twice that distance."""

    centre_lps: F64
    delta_mm: float
    radius_mm: float


def bump(dist: F64, radius: float) -> F64:
    """Weight 1 within ``radius``, a smooth cos^2 fall-off to 0 at ``2 radius``."""
    x = np.clip((dist - radius) / max(radius, 1e-9), 0.0, 1.0)
    return np.cos(0.5 * np.pi * x) ** 2
