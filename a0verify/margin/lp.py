"""Small dense linear programs in Numba (a replacement for ``scipy.optimize.linprog`` on the
quadric-patch fits of :mod:`a0verify.margin.core`).

Long module: one solver (revised simplex on the dual, with its ratio tests, equilibration and
Numba-compiled pivots) whose parts only make sense together.

Problem
-------
minimise ``c . x`` subject to ``A_ub x <= b_ub`` and ``lo <= x <= hi`` (per variable, ``-inf`` /
``+inf`` allowed: free variables and one-sided bounds), for *few* variables (n of about 10) and
*many* constraints (hundreds to a few thousand). Units are whatever the caller's are (the quadric
fits use mm and mm^2 features); the solver equilibrates rows and columns itself.

Method
------
Finite bounds become rows, so the primal is ``min c.x  s.t.  G x <= h`` with x free. Its dual,
``min h.y  s.t.  G^T y = -c, y >= 0``, has only n equality rows: it is solved by a revised primal
simplex whose n x n basis is refactorised from scratch (Gauss-Jordan, partial pivoting) at every
iteration, which is cheaper than pricing the columns when n is about 10 and keeps round-off from
accumulating. Rows and columns are first equilibrated (Ruiz), so tolerances are relative. The
starting basis puts every bounded variable at the bound favoured by ``c`` (no artificial needed
for those rows); artificials for the other rows are removed by a phase 1.
Pricing is Dantzig's rule (most negative reduced cost) with a Harris two-pass ratio test; after
``STALL_ITERATIONS`` iterations without progress it falls back to Bland's rule (smallest index)
until the objective moves again. At the dual optimum the simplex multipliers are the primal
solution x (``G_B x = h_B``; nonnegative reduced costs are exactly ``G x <= h``).

Status codes mirror ``scipy.optimize.linprog``: 0 optimal, 2 infeasible, 3 unbounded, 4 numerical
trouble or iteration limit. A dual that is unbounded means an infeasible primal; a dual without a
feasible point means an unbounded or infeasible primal, told apart by a second solve with c = 0.

Only plain loops (no ``np.linalg``) run in the compiled code, so no LAPACK is needed; compiled
kernels are cached (``cache=True``) and release the GIL (``nogil=True``).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from numba import njit

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

STATUS_OPTIMAL = 0
STATUS_INFEASIBLE = 2
STATUS_UNBOUNDED = 3
STATUS_NUMERICAL = 4

#: Tolerances in the equilibrated problem (rows and columns scaled to entries of order 1).
TOL_OPTIMALITY = 1e-9  # reduced cost (= primal constraint violation) accepted as >= 0
TOL_PIVOT = 1e-9  # smallest |pivot| in the ratio test
TOL_RATIO = 1e-9  # Harris relaxation of the dual's nonnegativity
TOL_SINGULAR = 1e-11  # smallest pivot accepted when refactorising the basis
STALL_ITERATIONS = 40  # iterations without progress before switching to Bland's rule

# dual-run outcomes (internal)
_OPTIMAL = 0
_DUAL_UNBOUNDED = 1
_DUAL_INFEASIBLE = 2
_TROUBLE = 4


class LPResult(NamedTuple):
    """Outcome of :func:`solve_lp`: ``status`` (0 optimal, 2 infeasible, 3 unbounded, 4 numerical
    trouble or iteration limit), ``x`` (n,) and ``fun`` = c.x (NaN unless optimal), ``nit``
    simplex iterations."""

    status: int
    x: F64
    fun: float
    nit: int


# --------------------------------------------------------------------------- compiled kernels
@njit(cache=True, nogil=True)
def _build_rows(a: F64, b: F64, lo: F64, hi: F64
                ) -> tuple[int, F64, F64, I64, I64]:
    """Rows ``G x <= h`` from the inequalities and finite bounds. Returns (status, G, h, hi_row,
    lo_row) with ``hi_row[k]`` / ``lo_row[k]`` the row of bound ``x_k <= hi_k`` / ``-x_k <= -lo_k``
    (-1 if infinite). status 2 for trivially infeasible input, 4 for NaN, else 0."""
    m, n = a.shape
    hi_row = -np.ones(n, np.int64)
    lo_row = -np.ones(n, np.int64)
    g = np.zeros((m + 2 * n, n))
    h = np.zeros(m + 2 * n)
    status = 0
    r = 0
    for j in range(m):
        bj = b[j]
        amax = 0.0
        for k in range(n):
            v = a[j, k]
            if v != v:
                return 4, g[:0], h[:0], hi_row, lo_row
            amax = max(amax, abs(v))
        if bj != bj:
            return 4, g[:0], h[:0], hi_row, lo_row
        if bj == np.inf:
            continue
        if amax == 0.0 or bj == -np.inf:
            if bj < 0.0:
                status = 2  # 0 <= negative, or <= -inf
            continue
        for k in range(n):
            g[r, k] = a[j, k]
        h[r] = bj
        r += 1
    for k in range(n):
        if lo[k] != lo[k] or hi[k] != hi[k]:
            return 4, g[:0], h[:0], hi_row, lo_row
        if lo[k] > hi[k] or lo[k] == np.inf or hi[k] == -np.inf:
            status = 2
        if hi[k] < np.inf:
            g[r, k] = 1.0
            h[r] = hi[k]
            hi_row[k] = r
            r += 1
        if lo[k] > -np.inf:
            g[r, k] = -1.0
            h[r] = -lo[k]
            lo_row[k] = r
            r += 1
    return status, g[:r], h[:r], hi_row, lo_row


@njit(cache=True, nogil=True)
def _pow2(v: float) -> float:
    """Nearest power of two to v > 0 (scaling by it is exact)."""
    return float(2.0 ** np.round(np.log2(v)))


@njit(cache=True, nogil=True)
def _equilibrate(g: F64, passes: int) -> tuple[F64, F64]:
    """Row and column factors (powers of two) making ``diag(r) G diag(s)`` entries at most about
    1 in every row and column (Ruiz's max-norm equilibration; unlike geometric-mean scaling it is
    not skewed by near-zero entries such as u^2 close to the origin), then every row scaled to
    max |entry| close to 1."""
    m, n = g.shape
    r = np.ones(m)
    s = np.ones(n)
    cmax = np.zeros(n)
    for _ in range(passes):
        for k in range(n):
            cmax[k] = 0.0
        for j in range(m):
            vmax = 0.0
            for k in range(n):
                v = abs(g[j, k]) * r[j] * s[k]
                vmax = max(vmax, v)
                cmax[k] = max(cmax[k], v)
            if vmax > 0.0:
                r[j] /= _pow2(np.sqrt(vmax))
        for k in range(n):
            if cmax[k] > 0.0:
                s[k] /= _pow2(np.sqrt(cmax[k]))
    for j in range(m):
        vmax = 0.0
        for k in range(n):
            vmax = max(vmax, abs(g[j, k]) * r[j] * s[k])
        if vmax > 0.0:
            r[j] /= _pow2(vmax)
    return r, s


@njit(cache=True, nogil=True)
def _factor(cols: F64, basis: I64, bmat: F64, binv: F64) -> bool:
    """``binv`` = inverse of the basis matrix whose i-th column is ``cols[basis[i]]``
    (Gauss-Jordan with partial pivoting). False if the basis is numerically singular."""
    n = basis.shape[0]
    for i in range(n):
        for k in range(n):
            bmat[k, i] = cols[basis[i], k]
            binv[k, i] = 1.0 if k == i else 0.0
    for p in range(n):
        piv = p
        best = abs(bmat[p, p])
        for k in range(p + 1, n):
            if abs(bmat[k, p]) > best:
                best = abs(bmat[k, p])
                piv = k
        if best < TOL_SINGULAR:
            return False
        if piv != p:
            for i in range(n):
                t = bmat[p, i]
                bmat[p, i] = bmat[piv, i]
                bmat[piv, i] = t
                t = binv[p, i]
                binv[p, i] = binv[piv, i]
                binv[piv, i] = t
        d = 1.0 / bmat[p, p]
        for i in range(n):
            bmat[p, i] *= d
            binv[p, i] *= d
        for k in range(n):
            if k != p:
                f = bmat[k, p]
                if f != 0.0:
                    for i in range(n):
                        bmat[k, i] -= f * bmat[p, i]
                        binv[k, i] -= f * binv[p, i]
    return True


@njit(cache=True, nogil=True)
def _primal_and_multipliers(cols: F64, cost: F64, beq: F64, basis: I64, binv: F64,
                            xb: F64, pi: F64) -> float:
    """Basic solution ``xb = B^-1 beq`` and multipliers ``pi = B^-T c_B``; returns ``c_B . xb``."""
    n = basis.shape[0]
    obj = 0.0
    for i in range(n):
        t = 0.0
        for k in range(n):
            t += binv[i, k] * beq[k]
        xb[i] = t
        obj += cost[basis[i]] * t
    for k in range(n):
        t = 0.0
        for i in range(n):
            t += cost[basis[i]] * binv[i, k]
        pi[k] = t
    return obj


@njit(cache=True, nogil=True)
def _ratio(alpha: float, xb: float, pinned: bool) -> float:
    """Ratio-test step of a basic row: 0 for a pinned artificial with a nonzero pivot (it blocks
    at once, whatever the sign), xb / alpha for a positive pivot, -1 when the row cannot block."""
    if pinned and abs(alpha) > TOL_PIVOT:
        return 0.0
    if alpha > TOL_PIVOT:
        return max(xb, 0.0) / alpha
    return -1.0


@njit(cache=True, nogil=True)
def _simplex(cols: F64, cost: F64, beq: F64, basis: I64, is_basic: npt.NDArray[np.bool_],
             n_real: int, n_pin: int, max_iter: int) -> tuple[int, int]:
    """Revised primal simplex on ``min cost.y  s.t.  cols^T y = beq, y >= 0`` from the feasible
    ``basis`` (updated in place). Columns ``>= n_real`` (artificials) never enter; basic columns
    ``>= n_pin`` (artificials in phase 2) are held at 0 and leave as soon as a pivot touches
    their row. Returns (outcome, iterations). (Plain ints rather than flags or constants keep
    Numba from compiling one specialisation per literal value.)"""
    n = beq.shape[0]
    bmat = np.empty((n, n))
    binv = np.empty((n, n))
    xb = np.empty(n)
    pi = np.empty(n)
    alpha = np.empty(n)
    best = np.inf
    stall = 0
    bland = False
    nit = 0
    while True:
        if not _factor(cols, basis, bmat, binv):
            return _TROUBLE, nit
        obj = _primal_and_multipliers(cols, cost, beq, basis, binv, xb, pi)
        if obj < best - 1e-12 * (1.0 + abs(obj)):
            best = obj
            stall = 0
            bland = False
        else:
            stall += 1
            if stall > STALL_ITERATIONS:
                bland = True
        # pricing
        q = -1
        dmin = -TOL_OPTIMALITY
        for j in range(n_real):
            if is_basic[j]:
                continue
            d = cost[j]
            for k in range(n):
                d -= cols[j, k] * pi[k]
            if d < dmin:
                q = j
                if bland:
                    break
                dmin = d
        if q < 0:
            return _OPTIMAL, nit
        if nit >= max_iter:
            return _TROUBLE, nit
        for i in range(n):
            t = 0.0
            for k in range(n):
                t += binv[i, k] * cols[q, k]
            alpha[i] = t
        # ratio test; a pinned artificial (value 0) blocks at ratio 0 whatever the sign of alpha
        r = -1
        if bland:
            theta = np.inf
            for i in range(n):
                ratio = _ratio(alpha[i], xb[i], basis[i] >= n_pin)
                if ratio < 0.0:
                    continue
                if r < 0 or ratio < theta - 1e-12 or (ratio <= theta + 1e-12
                                                       and basis[i] < basis[r]):
                    theta = min(theta, ratio)
                    r = i
        else:
            theta_max = np.inf
            for i in range(n):
                if basis[i] >= n_pin and abs(alpha[i]) > TOL_PIVOT:
                    theta_max = min(theta_max, TOL_RATIO / abs(alpha[i]))
                elif alpha[i] > TOL_PIVOT:
                    theta_max = min(theta_max, (max(xb[i], 0.0) + TOL_RATIO) / alpha[i])
            if theta_max < np.inf:
                amax = 0.0
                for i in range(n):
                    ratio = _ratio(alpha[i], xb[i], basis[i] >= n_pin)
                    if ratio < 0.0:
                        continue
                    if ratio <= theta_max and abs(alpha[i]) > amax:
                        amax = abs(alpha[i])
                        r = i
        if r < 0:
            return _DUAL_UNBOUNDED, nit
        is_basic[basis[r]] = False
        basis[r] = q
        is_basic[q] = True
        nit += 1


@njit(cache=True, nogil=True)
def _drive_out_artificials(cols: F64, basis: I64, is_basic: npt.NDArray[np.bool_],
                           n_real: int) -> bool:
    """Replace basic artificials (at value 0 after phase 1) by real columns where the basis row
    allows it (degenerate pivots); rows left with an artificial are redundant. False if the
    basis is singular."""
    n = basis.shape[0]
    bmat = np.empty((n, n))
    binv = np.empty((n, n))
    for i in range(n):
        if basis[i] < n_real:
            continue
        if not _factor(cols, basis, bmat, binv):
            return False
        best = 1e-7
        q = -1
        for j in range(n_real):
            if is_basic[j]:
                continue
            t = 0.0
            for k in range(n):
                t += binv[i, k] * cols[j, k]
            if abs(t) > best:
                best = abs(t)
                q = j
        if q >= 0:
            is_basic[basis[i]] = False
            basis[i] = q
            is_basic[q] = True
    return True


@njit(cache=True, nogil=True)
def _solve_dual(cols: F64, h: F64, beq: F64, hi_row: I64, lo_row: I64, max_iter: int
                ) -> tuple[int, F64, int]:
    """Two-phase simplex on ``min h.y  s.t.  cols^T y = beq, y >= 0`` (cols (m, n), real columns
    only). Returns (outcome, multipliers pi (n,), iterations)."""
    m, n = cols.shape
    ext = np.zeros((m + n, n))
    ext[:m] = cols
    basis = np.empty(n, np.int64)
    is_basic = np.zeros(m + n, np.bool_)
    n_art = 0
    for k in range(n):
        ext[m + k, k] = 1.0 if beq[k] >= 0.0 else -1.0
        if beq[k] >= 0.0 and hi_row[k] >= 0:
            basis[k] = hi_row[k]
        elif beq[k] <= 0.0 and lo_row[k] >= 0:
            basis[k] = lo_row[k]
        else:
            basis[k] = m + k
            n_art += 1
        is_basic[basis[k]] = True
    pi = np.zeros(n)
    nit = 0
    if n_art > 0:
        cost1 = np.zeros(m + n)
        cost1[m:] = 1.0
        out, nit = _simplex(ext, cost1, beq, basis, is_basic, m, m + n, max_iter)
        if out != _OPTIMAL:
            return _TROUBLE, pi, nit
        bmat = np.empty((n, n))
        binv = np.empty((n, n))
        xb = np.empty(n)
        if not _factor(ext, basis, bmat, binv):
            return _TROUBLE, pi, nit
        infeas = _primal_and_multipliers(ext, cost1, beq, basis, binv, xb, pi)
        scale = 1.0
        for k in range(n):
            scale = max(scale, abs(beq[k]))
        if infeas > 1e-9 * scale:
            return _DUAL_INFEASIBLE, pi, nit
        if not _drive_out_artificials(ext, basis, is_basic, m):
            return _TROUBLE, pi, nit
    cost2 = np.zeros(m + n)
    cost2[:m] = h
    out, nit2 = _simplex(ext, cost2, beq, basis, is_basic, m, m, max_iter - nit)
    nit += nit2
    if out == _OPTIMAL:
        bmat = np.empty((n, n))
        binv = np.empty((n, n))
        xb = np.empty(n)
        if not _factor(ext, basis, bmat, binv):
            return _TROUBLE, pi, nit
        _primal_and_multipliers(ext, cost2, beq, basis, binv, xb, pi)
    return out, pi, nit


@njit(cache=True, nogil=True)
def _solve_lp_kernel(c: F64, a: F64, b: F64, lo: F64, hi: F64, max_iter: int
                     ) -> tuple[int, F64, float, int]:
    """Compiled core of :func:`solve_lp`: (status, x, fun, iterations)."""
    n = c.shape[0]
    x = np.full(n, np.nan)
    for k in range(n):
        if c[k] != c[k]:
            return STATUS_NUMERICAL, x, np.nan, 0
    status, g, h, hi_row, lo_row = _build_rows(a, b, lo, hi)
    if status != 0:
        return status, x, np.nan, 0
    m = g.shape[0]
    r, s = _equilibrate(g, 8)
    gs = np.empty((m, n))
    hs = np.empty(m)
    for j in range(m):
        hs[j] = h[j] * r[j]
        for k in range(n):
            gs[j, k] = g[j, k] * r[j] * s[k]
    beq = np.empty(n)
    for k in range(n):
        beq[k] = -c[k] * s[k]
    if max_iter < 0:
        max_iter = 10 * (m + n) + 1000
    out, pi, nit = _solve_dual(gs, hs, beq, hi_row, lo_row, max_iter)
    if out == _OPTIMAL:
        fun = 0.0
        for k in range(n):
            x[k] = pi[k] * s[k]
            fun += c[k] * x[k]
        return STATUS_OPTIMAL, x, fun, nit
    if out == _DUAL_UNBOUNDED:
        return STATUS_INFEASIBLE, x, np.nan, nit
    if out == _TROUBLE:
        return STATUS_NUMERICAL, x, np.nan, nit
    # dual infeasible: the primal is unbounded if it is feasible at all (feasibility: c = 0)
    out0, _, nit0 = _solve_dual(gs, hs, np.zeros(n), hi_row, lo_row, max_iter - nit)
    nit += nit0
    if out0 == _OPTIMAL:
        return STATUS_UNBOUNDED, x, np.nan, nit
    if out0 == _DUAL_UNBOUNDED:
        return STATUS_INFEASIBLE, x, np.nan, nit
    return STATUS_NUMERICAL, x, np.nan, nit


# --------------------------------------------------------------------------- Python entry point
def solve_lp(c: npt.ArrayLike, a_ub: npt.ArrayLike, b_ub: npt.ArrayLike,
             lo: npt.ArrayLike | None = None, hi: npt.ArrayLike | None = None,
             max_iter: int | None = None) -> LPResult:
    """Minimise ``c . x`` subject to ``a_ub x <= b_ub`` and ``lo <= x <= hi``.

    ``c`` (n,), ``a_ub`` (m, n), ``b_ub`` (m,) (``+inf`` rows are ignored), ``lo`` / ``hi`` (n,)
    or None for ``-inf`` / ``+inf`` (free variables; unlike ``linprog`` the default is *free*,
    not ``x >= 0``). ``m = 0`` is allowed (bounds only). ``max_iter`` caps simplex iterations
    (default ``10 (m + n) + 1000``). Returns :class:`LPResult`; status codes as
    ``scipy.optimize.linprog`` (0 optimal, 2 infeasible, 3 unbounded, 4 numerical trouble or
    iteration limit). Intended for n of about 10: the cost per iteration grows as n^3 + m n.
    """
    cv = np.ascontiguousarray(c, np.float64).ravel()
    n = cv.shape[0]
    av = np.ascontiguousarray(a_ub, np.float64).reshape(-1, n) if n else np.zeros((0, 0))
    bv = np.ascontiguousarray(b_ub, np.float64).ravel()
    if av.shape[0] != bv.shape[0]:
        raise ValueError(f"a_ub has {av.shape[0]} rows but b_ub has {bv.shape[0]} entries")
    lov = np.full(n, -np.inf) if lo is None else np.ascontiguousarray(lo, np.float64).ravel()
    hiv = np.full(n, np.inf) if hi is None else np.ascontiguousarray(hi, np.float64).ravel()
    if lov.shape[0] != n or hiv.shape[0] != n:
        raise ValueError("lo and hi must have one entry per variable")
    if n == 0:
        feasible = bool(np.all(bv >= 0.0))
        return LPResult(0 if feasible else 2, np.zeros(0), 0.0 if feasible else np.nan, 0)
    status, x, fun, nit = _solve_lp_kernel(cv, av, bv, lov, hiv,
                                           -1 if max_iter is None else int(max_iter))
    return LPResult(int(status), x, float(fun), int(nit))
