"""a0verify.margin.lp (dense LP in Numba) against scipy.optimize.linprog(method="highs"), and the
quadric-patch fit that uses it against the former linprog implementation."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import numpy as np
import pytest
from scipy.optimize import linprog

from a0verify.margin import core
from a0verify.margin.lp import (
    STATUS_INFEASIBLE,
    STATUS_NUMERICAL,
    STATUS_OPTIMAL,
    STATUS_UNBOUNDED,
    solve_lp,
)

F64 = np.ndarray


def _bounds(lo: F64, hi: F64) -> list[tuple[float | None, float | None]]:
    return [(None if np.isinf(a) else float(a), None if np.isinf(b) else float(b))
            for a, b in zip(lo, hi, strict=True)]


def _highs(c: F64, a: F64, b: F64, lo: F64, hi: F64) -> Any:
    return linprog(c, A_ub=a, b_ub=b, bounds=_bounds(lo, hi), method="highs")


def _assert_feasible(x: F64, a: F64, b: F64, lo: F64, hi: F64, rtol: float = 1e-8) -> None:
    scale = 1.0 + np.abs(a) @ np.abs(x) + np.abs(b)
    assert np.all(a @ x - b <= rtol * scale)
    assert np.all(x >= lo - rtol * (1.0 + np.abs(lo)))
    assert np.all(x <= hi + rtol * (1.0 + np.abs(hi)))


def _assert_same_optimum(c: F64, a: F64, b: F64, lo: F64, hi: F64) -> float:
    got = solve_lp(c, a, b, lo, hi)
    ref = _highs(c, a, b, lo, hi)
    assert ref.status == 0
    assert got.status == STATUS_OPTIMAL
    assert abs(got.fun - ref.fun) <= 1e-7 * max(1.0, abs(ref.fun))
    assert got.fun == pytest.approx(float(c @ got.x), rel=1e-12, abs=1e-12)
    _assert_feasible(got.x, a, b, lo, hi)
    return got.fun


def _random_bounds(rng: np.random.Generator, x0: F64) -> tuple[F64, F64]:
    """Per variable: free, lower only, upper only or both, around the feasible point x0."""
    n = len(x0)
    lo = np.full(n, -np.inf)
    hi = np.full(n, np.inf)
    kind = rng.integers(0, 4, n)
    lo[kind % 2 == 1] = (x0 - rng.uniform(0, 3, n))[kind % 2 == 1]
    hi[kind >= 2] = (x0 + rng.uniform(0, 3, n))[kind >= 2]
    return lo, hi


def test_random_feasible_problems_match_highs() -> None:
    # features of very different magnitudes (columns from 0.01 to 400), like 1, u, u^2 in mm
    rng = np.random.default_rng(0)
    for _ in range(60):
        n = int(rng.integers(2, 12))
        m = int(rng.integers(5, 1500))
        x0 = rng.normal(size=n) * rng.uniform(0.1, 20.0)
        a = rng.normal(size=(m, n)) * rng.uniform(0.01, 400.0, n)
        b = a @ x0 + rng.uniform(0.0, 5.0, m)
        lo, hi = _random_bounds(rng, x0)
        _assert_same_optimum(rng.normal(size=n), a, b, lo, hi)


def test_infeasible_problems_agree_with_highs() -> None:
    rng = np.random.default_rng(1)
    for _ in range(25):
        n = int(rng.integers(2, 11))
        m = int(rng.integers(5, 600))
        x0 = rng.normal(size=n) * 5.0
        a = rng.normal(size=(m, n)) * rng.uniform(0.01, 400.0, n)
        b = a @ x0 + rng.uniform(0.0, 1.0, m)
        d = rng.normal(size=n)
        t = float(d @ x0)  # d.x <= t and d.x >= t + gap cannot both hold
        a2 = np.vstack([a, d, -d])
        b2 = np.r_[b, t, -t - rng.uniform(1e-3, 1.0)]
        lo, hi = _random_bounds(rng, x0)
        c = rng.normal(size=n)
        assert _highs(c, a2, b2, lo, hi).status == 2
        got = solve_lp(c, a2, b2, lo, hi)
        assert got.status == STATUS_INFEASIBLE
        assert np.all(np.isnan(got.x)) and np.isnan(got.fun)


def test_unbounded_problems_agree_with_highs() -> None:
    rng = np.random.default_rng(2)
    for _ in range(25):
        n = int(rng.integers(2, 11))
        m = int(rng.integers(5, 600))
        d = rng.normal(size=n)
        a = rng.normal(size=(m, n))
        # make every row decrease along d: x0 + t d stays feasible for all t >= 0
        a -= np.outer(a @ d + np.abs(rng.normal(size=m)), d) / (d @ d)
        x0 = rng.normal(size=n)
        b = a @ x0 + 1.0
        lo = np.where(d > 0, x0 - 1.0, -np.inf)  # one-sided bounds that do not block d
        hi = np.where(d < 0, x0 + 1.0, np.inf)
        c = -d + 0.01 * rng.normal(size=n)
        if c @ d >= 0:
            c = -d
        assert _highs(c, a, b, lo, hi).status == 3
        assert solve_lp(c, a, b, lo, hi).status == STATUS_UNBOUNDED


def test_degenerate_vertex_with_many_active_and_duplicate_constraints() -> None:
    # every row passes through x*, rows repeated and rescaled; c in the cone of active normals,
    # so x* is optimal with objective c.x* (known exactly) and dozens of active constraints.
    rng = np.random.default_rng(3)
    for _ in range(25):
        n = int(rng.integers(2, 11))
        m = int(rng.integers(n + 1, 400))
        xs = rng.normal(size=n) * 3.0
        a = rng.normal(size=(m, n)) * rng.uniform(0.1, 50.0, n)
        a = np.vstack([a, a[: m // 3], 2.0 * a[: m // 4], a[:1]])
        b = a @ xs
        slack = rng.random(len(b)) < 0.3
        b[slack] += rng.uniform(0.0, 1.0, int(slack.sum()))
        act = np.flatnonzero(~slack)
        lam = np.zeros(len(b))
        k = min(len(act), n)
        lam[rng.choice(act, size=k, replace=False)] = rng.uniform(0.1, 1.0, k)
        c = -(a.T @ lam)
        lo = xs - rng.uniform(0.0, 2.0, n) * (rng.random(n) < 0.5)  # some bounds active too
        hi = xs + rng.uniform(0.5, 2.0, n)
        fun = _assert_same_optimum(c, a, b, lo, hi)
        assert fun == pytest.approx(float(c @ xs), rel=1e-9, abs=1e-9)


def test_small_cases_and_input_checks() -> None:
    empty = np.zeros((0, 2))
    r = solve_lp([1.0, -1.0], empty, [], [0.0, 0.0], [1.0, 2.0])  # bounds only
    assert r.status == STATUS_OPTIMAL
    np.testing.assert_allclose(r.x, [0.0, 2.0])
    assert r.fun == pytest.approx(-2.0)
    assert solve_lp([1.0, 1.0], empty, [], [0.0, -np.inf], [1.0, 1.0]).status == STATUS_UNBOUNDED
    r = solve_lp([0.0, 0.0], empty, [])  # free variables, zero objective: any point
    assert r.status == STATUS_OPTIMAL and r.fun == 0.0
    r = solve_lp([1.0, -1.0], [[1.0, 1.0]], [2.0], [0.0, 0.0], None)  # linprog's classic
    np.testing.assert_allclose(r.x, [0.0, 2.0], atol=1e-12)
    # fixed variable, +inf rows ignored, zero rows checked
    r = solve_lp([1.0, 1.0], [[0.0, 0.0], [1.0, 1.0]], [0.5, np.inf], [3.0, -1.0], [3.0, 4.0])
    assert r.status == STATUS_OPTIMAL and r.fun == pytest.approx(2.0)
    assert solve_lp([1.0], [[0.0]], [-1.0]).status == STATUS_INFEASIBLE
    assert solve_lp([1.0], np.zeros((0, 1)), [], [2.0], [1.0]).status == STATUS_INFEASIBLE
    # primal and dual both infeasible: reported infeasible, like HiGHS
    a = np.array([[1.0, 0.0], [-1.0, 0.0]])
    b = np.array([0.0, -1.0])
    assert solve_lp([0.0, -1.0], a, b).status == STATUS_INFEASIBLE
    assert linprog([0.0, -1.0], A_ub=a, b_ub=b, bounds=[(None, None)] * 2).status == 2
    assert solve_lp([np.nan, 1.0], a, b).status == STATUS_NUMERICAL
    # iteration limit
    rng = np.random.default_rng(4)
    a = rng.normal(size=(300, 8))
    assert solve_lp(rng.normal(size=8), a, np.ones(300), max_iter=1).status == STATUS_NUMERICAL
    with pytest.raises(ValueError):
        solve_lp([1.0, 1.0], [[1.0, 1.0]], [1.0, 2.0])


# --------------------------------------------------------------------------- quadric patches
def _reference_fit(points: F64, inside: F64, origin: F64, frame: F64, tol_mm: float = 0.02
                   ) -> tuple[F64, float, float] | None:
    """The former fit_quadric_patch, on scipy's linprog (HiGHS), kept as the test reference."""
    if inside.sum() < 4 or (~inside).sum() < 4:
        return None
    q = (points - origin) @ frame.T
    phi = core.quadric_features(q)
    w = q[:, 2]
    nf = phi.shape[1]
    sgn = np.where(inside, 1.0, -1.0)
    s, k, x = core.QUAD_SLOPE_MAX, core.QUAD_CURV_MAX, core.QUAD_CROSS_MAX
    cb = [(None, None), (-s, s), (-s, s), (-k, k), (-k, k), (-k, k), (-x, x), (-x, x), (-k, k)]
    tie = np.zeros((2, nf))
    tie[0, [3, 5, 8]] = [-0.5, -0.5, 1.0]
    tie[1] = -tie[0]
    a1 = np.vstack([np.hstack([-sgn[:, None] * phi, -np.ones((len(w), 1))]),
                    np.hstack([tie, np.zeros((2, 1))])])
    b1 = np.r_[-sgn * w, core.QUAD_TIE, core.QUAD_TIE]
    a2 = np.vstack([-sgn[:, None] * phi, tie])
    e0 = np.zeros(nf)
    e0[0] = 1.0

    def extremes(slack: float) -> tuple[Any, Any]:
        b2 = np.r_[-sgn * w + slack, core.QUAD_TIE, core.QUAD_TIE]
        return (linprog(e0, A_ub=a2, b_ub=b2, bounds=cb, method="highs"),
                linprog(-e0, A_ub=a2, b_ub=b2, bounds=cb, method="highs"))

    slack0 = 0.0
    lo, hi = extremes(tol_mm)
    if lo.status != 0 or hi.status != 0:
        r1 = linprog(np.r_[np.zeros(nf), 1.0], A_ub=a1, b_ub=b1, bounds=[*cb, (0.0, None)],
                     method="highs")
        if r1.status != 0:
            return None
        slack0 = float(r1.x[nf])
        lo, hi = extremes(slack0 + tol_mm)
    if lo.status != 0 or hi.status != 0:
        return None
    return 0.5 * (lo.x + hi.x), 0.5 * float(hi.x[0] - lo.x[0]), slack0


def _ellipsoid_patches(rng: np.random.Generator, spacing: F64, noise: float, n_patch: int
                       ) -> list[tuple[F64, F64, F64, F64]]:
    """Voxel centres near a randomly rotated ellipsoid rasterised by centre inclusion at
    ``spacing`` (mm), as patches (points, inside, origin on the surface, frame with outward n).
    ``noise`` flips that fraction of labels (no separating quadric then)."""
    axes = rng.uniform(6.0, 15.0, 3)
    rot, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    cen = rng.uniform(-1.0, 1.0, 3)
    ext = (axes.max() + 2.0) / spacing
    grids = [np.arange(-int(e) - 1, int(e) + 2) for e in ext]
    pts = np.stack(np.meshgrid(*grids, indexing="ij"), -1).reshape(-1, 3) * spacing
    rad = np.sqrt(np.sum((((pts - cen) @ rot) / axes) ** 2, axis=1))
    inside = rad <= 1.0
    inside ^= rng.random(len(inside)) < noise
    near = np.abs(rad - 1.0) * axes.min() < 1.5 * spacing.max()
    pts, inside = pts[near], inside[near]
    out: list[tuple[F64, F64, F64, F64]] = []
    while len(out) < n_patch:
        d = rng.normal(size=3)
        p = d / np.sqrt(np.sum((d / axes) ** 2))
        normal = rot @ (p / axes**2)
        origin = cen + rot @ p
        sel = np.sum((pts - origin) ** 2, axis=1) <= rng.uniform(3.5, 9.0) ** 2
        if sel.sum() >= 20:
            out.append((pts[sel], inside[sel], origin, core.local_frame(normal)))
    return out


@pytest.mark.parametrize("spacing", [(0.8, 0.8, 2.5), (2.5, 0.8, 0.8), (0.7, 0.7, 0.7)])
@pytest.mark.parametrize("noise", [0.0, 0.01])
def test_quadric_patch_matches_linprog_reference(spacing: tuple[float, ...], noise: float
                                                 ) -> None:
    rng = np.random.default_rng(int(10 * sum(spacing) + 1000 * noise))
    sp = np.asarray(spacing)
    n_slack = 0
    for pts, inside, origin, frame in _ellipsoid_patches(rng, sp, noise, 6):
        got = core.fit_quadric_patch(pts, inside, origin, frame)
        ref = _reference_fit(pts, inside, origin, frame)
        assert (got is None) == (ref is None)
        if got is None or ref is None:
            continue
        c, half, slack = got
        # the objective-determined outputs agree; other coefficients may be another optimum
        assert half == pytest.approx(ref[1], abs=1e-6)
        assert slack == pytest.approx(ref[2], abs=1e-6)
        assert c[0] == pytest.approx(ref[0][0], abs=1e-6)
        n_slack += slack > 0
        # the returned quadric is consistent with the data within slack + tolerance, in bounds
        q = (pts - origin) @ frame.T
        sgn = np.where(inside, 1.0, -1.0)
        assert np.min(sgn * core.quadric_value(c, q)) >= -(slack + 0.02) - 1e-7
        assert abs(c[8] - 0.5 * (c[3] + c[5])) <= core.QUAD_TIE + 1e-9
        assert np.all(np.abs(c[1:3]) <= core.QUAD_SLOPE_MAX + 1e-9)
        assert np.all(np.abs(c[6:8]) <= core.QUAD_CROSS_MAX + 1e-9)
        assert abs(core.quadric_height(c, 0, 0)) <= half + slack + 0.02 + 1e-6
    if noise > 0:
        assert n_slack > 0  # the relaxed (slack) program was exercised


def test_importing_margin_does_not_import_scipy_optimize() -> None:
    code = ("import sys, a0verify.margin, a0verify.margin.lp; "
            "sys.exit('scipy.optimize' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
