"""Numeric margin kernels: NumPy arrays in, arrays out. No I/O, no SimpleITK.

Long module: the Numba kernels share one compilation cache, thread policy and conventions
(EDT, shape-based interpolation, trilinear sampling, mesh distances, quadric patches); splitting
them would scatter those.

Conventions
-----------
* Arrays are indexed **(z, y, x)** (or, for the shape-based interpolation, with the *thick* axis
  first); spacings are given in the same order, in **mm**.
* Signed distances are in **mm, positive inside** the mask. A binary mask stands for a continuous
  shape whose boundary lies *between* voxel centres, never on the border voxels' centres.
* Empty inputs: distance transforms of a mask without background return ``inf`` (documented per
  function); callers reject empty tumour / ablation masks before calling the kernels.

The Euclidean distance transform is the exact separable lower-envelope algorithm of Felzenszwalb &
Huttenlocher (2012) with anisotropic spacing, parallel over lines (Numba ``prange``), squared
distances stored as float32 and envelope intersections computed in float64.

Numba caches compiled kernels (``cache=True``). When the package directory is not writable,
``NUMBA_CACHE_DIR`` is pointed to a per-user directory under the system temporary directory (see
:func:`_ensure_numba_cache_dir`) so the CLI does not recompile on every start.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import numpy.typing as npt


def _ensure_numba_cache_dir() -> None:
    """Point Numba's cache to a writable directory when the package directory is read-only."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return
    here = Path(__file__).resolve().parent
    pyc = here / "__pycache__"
    target = pyc if pyc.exists() else here
    if os.access(target, os.W_OK):
        return
    uid = os.getuid() if hasattr(os, "getuid") else 0
    cache = Path(tempfile.gettempdir()) / f"a0verify-numba-cache-{uid}"
    cache.mkdir(parents=True, exist_ok=True)
    os.environ["NUMBA_CACHE_DIR"] = str(cache)
    import sys

    if "numba" in sys.modules:  # already imported elsewhere: update its config too
        import numba

        numba.config.CACHE_DIR = str(cache)  # type: ignore[attr-defined]


_ensure_numba_cache_dir()

import contextlib  # noqa: E402
from collections.abc import Iterator  # noqa: E402

import numba  # noqa: E402
from numba import njit, prange  # noqa: E402

from a0verify.margin.lp import LPResult, solve_lp  # noqa: E402

#: Below this many elements the parallel kernels run on one thread: on small regions of interest
#: thread start-up and contention (the CLI shares 2 cores) cost more than they gain.
PARALLEL_MIN_ELEMENTS = 2_000_000


@contextlib.contextmanager
def _threads_for(n_elements: int) -> Iterator[None]:
    """Run the enclosed Numba parallel kernels on one thread for small inputs."""
    if n_elements >= PARALLEL_MIN_ELEMENTS:
        yield
        return
    prev = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(prev)

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
BoolArr = npt.NDArray[np.bool_]

_INF = np.float32(np.inf)


# --------------------------------------------------------------------------- exact EDT (Numba)
@njit(cache=True, nogil=True, fastmath=False)
def _envelope_line(f: F32, s: float, out: F32, v: npt.NDArray[np.int64], z: F64) -> None:
    """1-D squared distance transform of sampled function ``f`` (squared mm) on a line of
    spacing ``s`` mm: ``out[q] = min_p ((q - p) s)^2 + f[p]``. ``inf`` entries are skipped; a line
    without finite entries gives ``inf``."""
    n = f.shape[0]
    k = -1
    for q in range(n):
        fq = f[q]
        if fq == np.inf:
            continue
        xq = q * s
        if k < 0:
            k = 0
            v[0] = q
            z[0] = -np.inf
            z[1] = np.inf
            continue
        while True:
            p = v[k]
            xp = p * s
            sq = ((fq + xq * xq) - (f[p] + xp * xp)) / (2.0 * (xq - xp))
            if sq <= z[k]:
                k -= 1
                if k < 0:
                    break
            else:
                break
        k += 1
        v[k] = q
        z[k] = -np.inf if k == 0 else sq
        z[k + 1] = np.inf
    if k < 0:
        for q in range(n):
            out[q] = np.inf
        return
    k = 0
    for q in range(n):
        x = q * s
        while z[k + 1] < x:
            k += 1
        d = x - v[k] * s
        out[q] = d * d + f[v[k]]


@njit(cache=True, nogil=True)
def _binary_line(m: npt.NDArray[np.bool_], s: float, out: F32) -> None:
    """1-D squared distance (mm^2) from each element to the nearest ``False`` element."""
    n = m.shape[0]
    last = -1
    for i in range(n):
        if not m[i]:
            last = i
            out[i] = 0.0
        elif last < 0:
            out[i] = np.inf
        else:
            d = (i - last) * s
            out[i] = d * d
    last = -1
    for i in range(n - 1, -1, -1):
        if not m[i]:
            last = i
        elif last >= 0:
            d = (last - i) * s
            if d * d < out[i]:
                out[i] = d * d


@njit(cache=True, parallel=True)
def _edt_sq_3d(mask: npt.NDArray[np.bool_], sz: float, sy: float, sx: float,
               do_z: bool) -> F32:
    """Squared EDT (mm^2) to the nearest False voxel of a (z, y, x) mask. With ``do_z`` False
    every z-slice is transformed on its own (2-D distances in the (y, x) planes)."""
    nz, ny, nx = mask.shape
    out = np.empty((nz, ny, nx), np.float32)
    for k in prange(nz):
        for j in range(ny):
            _binary_line(mask[k, j, :], sx, out[k, j, :])
        f = np.empty(ny, np.float32)
        o = np.empty(ny, np.float32)
        v = np.empty(ny, np.int64)
        zz = np.empty(ny + 1, np.float64)
        for i in range(nx):
            nonzero = False
            for j in range(ny):
                f[j] = out[k, j, i]
                if f[j] != 0.0:
                    nonzero = True
            if not nonzero:  # background column: stays 0
                continue
            _envelope_line(f, sy, o, v, zz)
            for j in range(ny):
                out[k, j, i] = o[j]
    if do_z and nz > 1:
        for j in prange(ny):
            f = np.empty(nz, np.float32)
            o = np.empty(nz, np.float32)
            v = np.empty(nz, np.int64)
            zz = np.empty(nz + 1, np.float64)
            for i in range(nx):
                nonzero = False
                for k in range(nz):
                    f[k] = out[k, j, i]
                    if f[k] != 0.0:
                        nonzero = True
                if not nonzero:
                    continue
                _envelope_line(f, sz, o, v, zz)
                for k in range(nz):
                    out[k, j, i] = o[k]
    return out


def edt(mask: npt.ArrayLike, spacing_zyx: npt.ArrayLike, per_slice: bool = False) -> F32:
    """Exact Euclidean distance (mm, float32) from every voxel to the nearest ``False`` voxel
    *centre* (0 on ``False`` voxels), like ``scipy.ndimage.distance_transform_edt(mask,
    sampling=spacing_zyx)``.

    ``mask`` is a 3-D (z, y, x) array (nonzero = foreground), ``spacing_zyx`` the voxel size in mm.
    With ``per_slice`` every z-slice is transformed independently (2-D in-plane distances).
    A mask without any ``False`` voxel (in the transformed domain) gives ``inf``.
    """
    m = np.ascontiguousarray(np.asarray(mask) != 0)
    if m.ndim != 3:
        raise ValueError(f"edt expects a 3-D array, got shape {m.shape}")
    sp = np.asarray(spacing_zyx, np.float64).reshape(3)
    with _threads_for(m.size):
        out = _edt_sq_3d(m, float(sp[0]), float(sp[1]), float(sp[2]), not per_slice)
    np.sqrt(out, out=out)
    return out


def signed_distance(mask: npt.ArrayLike, spacing_zyx: npt.ArrayLike,
                    per_slice: bool = False) -> F32:
    """Signed distance (mm, float32, positive inside) at voxel centres to the boundary of
    ``mask`` placed half-way between the nearest centres of the two classes.

    Inside voxels get ``d_out - h/2`` and outside voxels ``-(d_in - h/2)``, where ``d_out``
    (``d_in``) is the exact distance to the nearest outside (inside) centre and ``h`` the finest
    spacing of the transformed axes (exact for boundaries normal to that axis; for others the
    bias is below 0.2 h). ``per_slice`` gives 2-D in-plane distances per z-slice. An all-False
    mask gives ``-inf`` everywhere, an all-True mask ``+inf``.
    """
    m = np.ascontiguousarray(np.asarray(mask) != 0)
    sp = np.asarray(spacing_zyx, np.float64).reshape(3)
    h = float(sp[1:].min() if per_slice else sp.min())
    return _signed_from_edts(m, sp, h, per_slice)


@njit(cache=True, parallel=True)
def _combine_signed(m: npt.NDArray[np.bool_], d_out: F32, d_in: F32, h: float) -> F32:
    nz, ny, nx = m.shape
    out = np.empty((nz, ny, nx), np.float32)
    hh = np.float32(0.5 * h)
    for k in prange(nz):
        for j in range(ny):
            for i in range(nx):
                if m[k, j, i]:
                    out[k, j, i] = np.sqrt(d_out[k, j, i]) - hh
                else:
                    out[k, j, i] = hh - np.sqrt(d_in[k, j, i])
    return out


def _signed_from_edts(m: BoolArr, sp: F64, h: float, per_slice: bool) -> F32:
    with _threads_for(m.size):
        d_out = _edt_sq_3d(m, float(sp[0]), float(sp[1]), float(sp[2]), not per_slice)
        d_in = _edt_sq_3d(~m, float(sp[0]), float(sp[1]), float(sp[2]), not per_slice)
        return _combine_signed(m, d_out, d_in, h)


# --------------------------------------------------------------------------- shape-based interp.
@njit(cache=True, parallel=True)
def _sbi_kernel(s: F32, r: F32, zk: F64, u: int) -> F32:
    """Shape-based interpolation along axis 0 with curvature-aware caps.

    ``s`` (nk, ny, nx): in-plane signed distances (mm, positive inside) per slice, ``r`` the
    local inscribed radius (max of ``s`` in a window; <= 0 where the slice is locally empty),
    ``zk`` the slice positions (mm), ``u`` samples per slice gap. Output (u (nk-1) + 1, ny, nx).

    Between two locally non-empty slices the in-plane distance is interpolated linearly plus the
    curvature of the local radius profile (r^2 quadratic in z, exact for spheres and quadrics).
    Where the shape ends between two slices (cap) the cross-section is eroded by the decrease of
    the radius profile fitted on the slices below (r^2 quadratic -> pole position), never beyond
    the next (empty) slice.
    """
    nk, ny, nx = s.shape
    nf = u * (nk - 1) + 1
    out = np.empty((nf, ny, nx), np.float32)
    for j in prange(ny):
        for i in range(nx):
            for k in range(nk):
                out[k * u, j, i] = s[k, j, i]
            for k in range(nk - 1):
                r0 = r[k, j, i]
                r1 = r[k + 1, j, i]
                s0 = s[k, j, i]
                s1 = s[k + 1, j, i]
                h = zk[k + 1] - zk[k]
                for m in range(1, u):
                    t = m / u
                    z = zk[k] + t * h
                    lin = (1.0 - t) * s0 + t * s1
                    if r0 > 0 and r1 > 0:
                        # quadratic r^2 profile from neighbours on either side (average)
                        acc = 0.0
                        cnt = 0
                        if k >= 1 and r[k - 1, j, i] > 0:
                            acc += _quad3(zk[k - 1], zk[k], zk[k + 1],
                                          r[k - 1, j, i] ** 2, r0 * r0, r1 * r1, z)
                            cnt += 1
                        if k + 2 < nk and r[k + 2, j, i] > 0:
                            acc += _quad3(zk[k], zk[k + 1], zk[k + 2],
                                          r0 * r0, r1 * r1, r[k + 2, j, i] ** 2, z)
                            cnt += 1
                        if cnt > 0:
                            q = acc / cnt
                            rq = np.sqrt(q) if q > 0 else 0.0
                            corr = rq - ((1.0 - t) * r0 + t * r1)
                            # bounded: never move more than the gap in radius allows
                            lim = abs(r1 - r0) + 0.25 * h
                            if corr > lim:
                                corr = lim
                            elif corr < -lim:
                                corr = -lim
                            out[k * u + m, j, i] = lin + corr
                        else:
                            out[k * u + m, j, i] = lin
                    elif r0 > 0 and r1 <= 0:
                        out[k * u + m, j, i] = _cap(s, r, zk, k, 1, j, i, z, nk)
                    elif r0 <= 0 and r1 > 0:
                        out[k * u + m, j, i] = _cap(s, r, zk, k + 1, -1, j, i, z, nk)
                    else:
                        out[k * u + m, j, i] = lin
    return out


@njit(cache=True, nogil=True, inline="always")
def _quad3(z0: float, z1: float, z2: float, q0: float, q1: float, q2: float, z: float) -> float:
    """Lagrange quadratic through (z0, q0), (z1, q1), (z2, q2) evaluated at z."""
    return (q0 * (z - z1) * (z - z2) / ((z0 - z1) * (z0 - z2))
            + q1 * (z - z0) * (z - z2) / ((z1 - z0) * (z1 - z2))
            + q2 * (z - z0) * (z - z1) / ((z2 - z0) * (z2 - z1)))


@njit(cache=True, nogil=True)
def _cap(s: F32, r: F32, zk: F64, k: int, d: int, j: int, i: int, z: float, nk: int) -> float:
    """Value at position z beyond the last locally non-empty slice k (direction d = +1 / -1)."""
    rk = r[k, j, i]
    sk = s[k, j, i]
    hnext = abs(zk[k + d] - zk[k])
    dz = abs(z - zk[k])
    # radius profile r^2(dz) fitted on slices k, k-d, k-2d (dz < 0 there)
    q0 = rk * rk
    n = 1
    za = 0.0
    zb = 0.0
    qa = 0.0
    qb = 0.0
    if 0 <= k - d < nk and r[k - d, j, i] > 0:
        za = -abs(zk[k - d] - zk[k])
        qa = r[k - d, j, i] ** 2
        n = 2
        if 0 <= k - 2 * d < nk and r[k - 2 * d, j, i] > 0:
            zb = -abs(zk[k - 2 * d] - zk[k])
            qb = r[k - 2 * d, j, i] ** 2
            n = 3
    # pole distance t_p (mm beyond slice k) from the fitted profile
    if n == 3:
        # q(x) = q0 + b x + c x^2 through (0,q0), (za,qa), (zb,qb)
        c = ((qb - q0) / zb - (qa - q0) / za) / (zb - za)
        b = (qa - q0) / za - c * za
    elif n == 2:
        c = 0.0
        b = (qa - q0) / za
    else:
        c = -1.0  # hemisphere of radius rk
        b = 0.0
    # smallest positive root of q0 + b x + c x^2 = 0
    tp = -1.0
    if abs(c) < 1e-12:
        if b < 0:
            tp = -q0 / b
    else:
        disc = b * b - 4.0 * c * q0
        if disc >= 0:
            sd = np.sqrt(disc)
            x1 = (-b - sd) / (2.0 * c)
            x2 = (-b + sd) / (2.0 * c)
            lo = min(x1, x2)
            hi = max(x1, x2)
            if lo > 0:
                tp = lo
            elif hi > 0:
                tp = hi
    if tp <= 0:  # no closing predicted by the fit, yet the next slice is empty
        tp = 0.5 * hnext
        c = 0.0
        b = -q0 / tp
    elif tp > hnext:  # the fit closes beyond the (empty) next slice: close at that slice
        tp = hnext
        c = 0.0
        b = -q0 / tp
    if dz >= tp:
        return sk - rk - (dz - tp)
    q = q0 + b * dz + c * dz * dz
    rq = np.sqrt(q) if q > 0 else 0.0
    return sk - rk + rq


def slice_signed_distance(mask: BoolArr, spacing: npt.ArrayLike,
                          sigma_px: float = 0.8) -> F32:
    """Sub-pixel 2-D signed distance (mm, positive inside) of every slice (axis 0) of ``mask``.

    Near the boundary (within about 1.7 sigma) the distance comes from the Gaussian-blurred
    mask: blurring a straight edge by sigma gives ``0.5 (1 + erf(d / (sigma sqrt 2)))``, which is
    inverted for d, so the boundary is the blurred 0.5 level (sub-pixel, anti-aliased). Farther
    away the exact 2-D EDT with the boundary half-way between pixel centres is used; the two are
    blended over a band to stay continuous. Empty slices give -1e3.
    """
    from scipy import ndimage, special

    sp = np.asarray(spacing, np.float64).reshape(3)
    m = np.ascontiguousarray(mask != 0)
    s_edt = signed_distance(m, sp, per_slice=True)
    np.maximum(s_edt, np.float32(-1e3), out=s_edt)
    sig_mm = sigma_px * float(max(sp[1], sp[2]))
    g = ndimage.gaussian_filter(m.astype(np.float32), sigma=(0.0, sig_mm / sp[1], sig_mm / sp[2]),
                                mode="constant")
    a = np.clip(2.0 * g - 1.0, -0.999, 0.999)
    s_g = (sig_mm * np.sqrt(2.0) * special.erfinv(a)).astype(np.float32)
    # blend weight: 1 where |a| <= 0.85, 0 where |a| >= 0.97
    w = np.clip((0.97 - np.abs(a)) / 0.12, 0.0, 1.0).astype(np.float32)
    return (w * s_g + (1.0 - w) * s_edt).astype(np.float32)


def shape_based_level(mask: BoolArr, spacing: npt.ArrayLike, upsample: int,
                      window_mm: float = 10.0, sigma_px: float = 0.8) -> tuple[F32, F64]:
    """Continuous level set (mm, positive inside) of a binary mask, finer along axis 0.

    ``mask`` (nk, ny, nx) has its thickest axis first; ``spacing`` (mm) in the same order.
    Every slice gets a sub-pixel 2-D signed distance (:func:`slice_signed_distance`); slices are
    joined by :func:`_sbi_kernel` with ``upsample`` samples per gap. Returns the level array
    ``(u (nk - 1) + 1, ny, nx)`` and its spacing (mm).
    """
    from scipy import ndimage

    sp = np.asarray(spacing, np.float64).reshape(3)
    s = slice_signed_distance(mask, sp, sigma_px)
    w = (int(np.ceil(window_mm / sp[1])) * 2 + 1, int(np.ceil(window_mm / sp[2])) * 2 + 1)
    r = ndimage.maximum_filter(s, size=(1, w[0], w[1]), mode="nearest")
    zk = np.arange(s.shape[0], dtype=np.float64) * sp[0]
    u = max(1, int(upsample))
    with _threads_for(s.size * u):
        lev = _sbi_kernel(np.ascontiguousarray(s, np.float32),
                          np.ascontiguousarray(r, np.float32), zk, u)
    return lev, np.array([sp[0] / u, sp[1], sp[2]])


# --------------------------------------------------------------------------- sampling / meshes
def trilinear(volume: npt.NDArray[np.floating], index_zyx: npt.ArrayLike,
              outside_value: float) -> F64:
    """Trilinear interpolation of ``volume`` (z, y, x) at continuous array indices (N, 3);
    points outside the sample lattice get ``outside_value``."""
    vol = np.ascontiguousarray(volume, np.float32)
    idx = np.ascontiguousarray(np.asarray(index_zyx, np.float64).reshape(-1, 3))
    with _threads_for(len(idx) * 64):
        return _trilinear_kernel(vol, idx, float(outside_value))


@njit(cache=True, parallel=True)
def _trilinear_kernel(volume: F32, index_zyx: F64, outside_value: float) -> F64:
    n = index_zyx.shape[0]
    nz, ny, nx = volume.shape
    out = np.empty(n, np.float64)
    for p in prange(n):
        z = index_zyx[p, 0]
        y = index_zyx[p, 1]
        x = index_zyx[p, 2]
        if not (0.0 <= z <= nz - 1 and 0.0 <= y <= ny - 1 and 0.0 <= x <= nx - 1):
            out[p] = outside_value
            continue
        z0 = min(int(z), nz - 2) if nz > 1 else 0
        y0 = min(int(y), ny - 2) if ny > 1 else 0
        x0 = min(int(x), nx - 2) if nx > 1 else 0
        fz = z - z0
        fy = y - y0
        fx = x - x0
        z1 = min(z0 + 1, nz - 1)
        y1 = min(y0 + 1, ny - 1)
        x1 = min(x0 + 1, nx - 1)
        c00 = volume[z0, y0, x0] * (1 - fx) + volume[z0, y0, x1] * fx
        c01 = volume[z0, y1, x0] * (1 - fx) + volume[z0, y1, x1] * fx
        c10 = volume[z1, y0, x0] * (1 - fx) + volume[z1, y0, x1] * fx
        c11 = volume[z1, y1, x0] * (1 - fx) + volume[z1, y1, x1] * fx
        c0 = c00 * (1 - fy) + c01 * fy
        c1 = c10 * (1 - fy) + c11 * fy
        out[p] = c0 * (1 - fz) + c1 * fz
    return out


@njit(cache=True, nogil=True, inline="always")
def _pt_tri_dist2(p: F64, a: F64, b: F64, c: F64) -> float:
    """Squared distance from point p to triangle abc (Ericson, Real-Time Collision Detection)."""
    ab0 = b[0] - a[0]
    ab1 = b[1] - a[1]
    ab2 = b[2] - a[2]
    ac0 = c[0] - a[0]
    ac1 = c[1] - a[1]
    ac2 = c[2] - a[2]
    ap0 = p[0] - a[0]
    ap1 = p[1] - a[1]
    ap2 = p[2] - a[2]
    d1 = ab0 * ap0 + ab1 * ap1 + ab2 * ap2
    d2 = ac0 * ap0 + ac1 * ap1 + ac2 * ap2
    if d1 <= 0 and d2 <= 0:
        return ap0 * ap0 + ap1 * ap1 + ap2 * ap2
    bp0 = p[0] - b[0]
    bp1 = p[1] - b[1]
    bp2 = p[2] - b[2]
    d3 = ab0 * bp0 + ab1 * bp1 + ab2 * bp2
    d4 = ac0 * bp0 + ac1 * bp1 + ac2 * bp2
    if d3 >= 0 and d4 <= d3:
        return bp0 * bp0 + bp1 * bp1 + bp2 * bp2
    vc = d1 * d4 - d3 * d2
    if vc <= 0 and d1 >= 0 and d3 <= 0:
        v = d1 / (d1 - d3)
        q0 = ap0 - v * ab0
        q1 = ap1 - v * ab1
        q2 = ap2 - v * ab2
        return q0 * q0 + q1 * q1 + q2 * q2
    cp0 = p[0] - c[0]
    cp1 = p[1] - c[1]
    cp2 = p[2] - c[2]
    d5 = ab0 * cp0 + ab1 * cp1 + ab2 * cp2
    d6 = ac0 * cp0 + ac1 * cp1 + ac2 * cp2
    if d6 >= 0 and d5 <= d6:
        return cp0 * cp0 + cp1 * cp1 + cp2 * cp2
    vb = d5 * d2 - d1 * d6
    if vb <= 0 and d2 >= 0 and d6 <= 0:
        w = d2 / (d2 - d6)
        q0 = ap0 - w * ac0
        q1 = ap1 - w * ac1
        q2 = ap2 - w * ac2
        return q0 * q0 + q1 * q1 + q2 * q2
    va = d3 * d6 - d5 * d4
    if va <= 0 and (d4 - d3) >= 0 and (d5 - d6) >= 0:
        w = (d4 - d3) / ((d4 - d3) + (d5 - d6))
        q0 = bp0 - w * (c[0] - b[0])
        q1 = bp1 - w * (c[1] - b[1])
        q2 = bp2 - w * (c[2] - b[2])
        return q0 * q0 + q1 * q1 + q2 * q2
    denom = 1.0 / (va + vb + vc)
    v = vb * denom
    w = vc * denom
    q0 = ap0 - ab0 * v - ac0 * w
    q1 = ap1 - ab1 * v - ac1 * w
    q2 = ap2 - ab2 * v - ac2 * w
    return q0 * q0 + q1 * q1 + q2 * q2


@njit(cache=True, parallel=True)
def _refine_mesh_distance(points: F64, near: npt.NDArray[np.int64], verts: F64, faces: I64,
                          vf_ptr: I64, vf_idx: I64) -> F64:
    """Exact distance from each point to the triangles around its ``near`` candidate vertices."""
    n = points.shape[0]
    kk = near.shape[1]
    out = np.empty(n, np.float64)
    for p in prange(n):
        best = np.inf
        for c in range(kk):
            vtx = near[p, c]
            if vtx < 0:
                continue
            for e in range(vf_ptr[vtx], vf_ptr[vtx + 1]):
                f = vf_idx[e]
                d2 = _pt_tri_dist2(points[p], verts[faces[f, 0]], verts[faces[f, 1]],
                                   verts[faces[f, 2]])
                if d2 < best:
                    best = d2
        out[p] = np.sqrt(best)
    return out


def mesh_distance(points: F64, verts: F64, faces: I64, k: int = 4) -> F64:
    """Unsigned distance (mm) from points (N, 3) to a triangle mesh (vertices (V, 3), faces
    (F, 3)), all in the same physical frame. Candidates: triangles incident to the ``k`` nearest
    vertices (exact for meshes with regular vertex spacing)."""
    from scipy.spatial import cKDTree

    pts = np.ascontiguousarray(points, np.float64)
    vv = np.ascontiguousarray(verts, np.float64)
    ff = np.ascontiguousarray(faces, np.int64)
    if len(pts) == 0:
        return np.zeros(0)
    if len(vv) == 0 or len(ff) == 0:
        return np.full(len(pts), np.inf)
    tree = cKDTree(vv)
    k = min(k, len(vv))
    _, near = tree.query(pts, k=k, workers=-1)
    near = np.asarray(near, np.int64).reshape(len(pts), k)
    order = np.argsort(ff.ravel(), kind="stable")
    vf_idx = (order // 3).astype(np.int64)
    counts = np.bincount(ff.ravel(), minlength=len(vv))
    vf_ptr = np.zeros(len(vv) + 1, np.int64)
    np.cumsum(counts, out=vf_ptr[1:])
    return _refine_mesh_distance(pts, near, vv, ff, vf_ptr, vf_idx)


def surface_mesh(level: npt.NDArray[np.floating], spacing: npt.ArrayLike,
                 iso: float = 0.0) -> tuple[F64, I64]:
    """Marching-cubes surface of ``level`` (positive inside) at ``iso``.

    Returns vertices as continuous array indices of ``level`` (same axis order) and faces whose
    normals (right-hand rule) point outwards (towards decreasing level). The volume is padded
    so the surface is closed.
    """
    from skimage import measure

    lev = np.asarray(level, np.float32)
    lo = float(min(float(lev.min()), iso)) - 1.0
    padded = np.pad(lev, 1, mode="constant", constant_values=lo)
    verts, faces, _, _ = measure.marching_cubes(padded, level=iso, allow_degenerate=False)
    return verts.astype(np.float64) - 1.0, faces.astype(np.int64)


def face_areas_normals(verts: F64, faces: I64) -> tuple[F64, F64]:
    """Area (mm^2) and unit normal of each face of a mesh with vertices in mm."""
    cr = np.cross(verts[faces[:, 1]] - verts[faces[:, 0]], verts[faces[:, 2]] - verts[faces[:, 0]])
    n2 = np.linalg.norm(cr, axis=1)
    return 0.5 * n2, cr / np.maximum(n2, 1e-300)[:, None]


def mesh_volume(verts: F64, faces: I64) -> float:
    """Absolute enclosed volume (mm^3) of a closed triangle mesh (divergence theorem)."""
    a, b, c = verts[faces[:, 0]], verts[faces[:, 1]], verts[faces[:, 2]]
    return float(abs(np.einsum("ij,ij->i", a, np.cross(b, c)).sum()) / 6.0)


def face_components(faces: I64, selected: BoolArr, n_vertices: int) -> tuple[int, I64]:
    """Connected components of the selected faces (faces sharing a vertex are connected).

    Returns ``(n_components, labels)`` with ``labels[f] = -1`` for unselected faces."""
    from scipy import sparse
    from scipy.sparse import csgraph

    labels = np.full(len(faces), -1, np.int64)
    sel = np.flatnonzero(selected)
    if sel.size == 0:
        return 0, labels
    f = faces[sel]
    rows = np.repeat(np.arange(len(sel)), 3)
    inc = sparse.csr_matrix((np.ones(rows.size), (rows, f.ravel())),
                            shape=(len(sel), n_vertices))
    adj = inc @ inc.T
    ncomp, lab = csgraph.connected_components(adj, directed=False)
    labels[sel] = lab
    return int(ncomp), labels


# --------------------------------------------------------------------------- local quadric patches
def local_frame(normal: npt.ArrayLike) -> F64:
    """Orthonormal frame (3, 3): rows e1, e2, n with n the given (normalised) direction."""
    n = np.asarray(normal, np.float64)
    n = n / max(float(np.linalg.norm(n)), 1e-12)
    a = np.array([1.0, 0.0, 0.0]) if abs(n[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    e1 = np.cross(n, a)
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(n, e1)
    return np.stack([e1, e2, n])


def quadric_features(q: F64) -> F64:
    """Features (1, u, v, u^2, uv, v^2, uw, vw, w^2) of local points q = (u, v, w) (N, 3)."""
    u, v, w = q[:, 0], q[:, 1], q[:, 2]
    return np.stack([np.ones_like(u), u, v, u * u, u * v, v * v, u * w, v * w, w * w], axis=1)


def quadric_value(c: F64, q: F64) -> F64:
    """Implicit local quadric ``F(q) = features(q) . c - w`` (positive inside, dF/dw = -1 at 0)."""
    return quadric_features(q) @ c - q[:, 2]


def quadric_gradient(c: F64, q: F64) -> F64:
    """Gradient (N, 3) of :func:`quadric_value` in the local frame."""
    u, v, w = q[:, 0], q[:, 1], q[:, 2]
    gu = c[1] + 2 * c[3] * u + c[4] * v + c[6] * w
    gv = c[2] + c[4] * u + 2 * c[5] * v + c[7] * w
    gw = c[6] * u + c[7] * v + 2 * c[8] * w - 1.0
    return np.stack([gu, gv, gw], axis=1)


def quadric_height(c: F64, u: float, v: float) -> float:
    """Height w of the quadric's zero set above local (u, v): the root of the quadratic in w
    nearest to the linear estimate."""
    a2 = c[8]
    a1 = c[6] * u + c[7] * v - 1.0
    a0 = c[0] + c[1] * u + c[2] * v + c[3] * u * u + c[4] * u * v + c[5] * v * v
    if abs(a2) < 1e-12:
        return float(-a0 / a1)
    disc = a1 * a1 - 4.0 * a2 * a0
    if disc < 0:
        return float(-a0 / a1)
    r = np.sqrt(disc)
    w1 = (-a1 - r) / (2 * a2)
    w2 = (-a1 + r) / (2 * a2)
    lin = -a0 / a1
    return float(w1 if abs(w1 - lin) < abs(w2 - lin) else w2)


#: Regularisation of the local quadric: curvature terms bounded (1/mm), the curvature along the
#: normal tied to the mean tangential one within QUAD_TIE (exact for spheres, close for moderate
#: ellipsoids), cross terms u w, v w small. Without it caps seen on few slices are ambiguous.
QUAD_SLOPE_MAX = 1.0
QUAD_CURV_MAX = 0.5
QUAD_TIE = 0.015
QUAD_CROSS_MAX = 0.02


def fit_quadric_patch(points: F64, inside: BoolArr, origin: npt.ArrayLike, frame: F64,
                      tol_mm: float = 0.02) -> tuple[F64, float, float] | None:
    """Implicit quadric ``F(u, v, w) = 0`` separating inside from outside voxel centres.

    ``points`` (N, 3) are voxel centres (mm) near the surface, ``inside`` their class, and
    ``frame`` rows (e1, e2, n) a local frame at ``origin`` with n pointing out of the shape.
    F (:func:`quadric_value`, 9 coefficients, dF/dw = -1 at the origin, so F is close to a signed
    distance there) represents spheres and ellipsoids exactly. Every F with ``F > 0`` at inside
    and ``F < 0`` at outside centres is consistent with the rasterised data; linear programs
    (:func:`a0verify.margin.lp.solve_lp`) find the lowest and highest such F at the origin, and the
    midpoint of the two extreme quadrics (itself consistent, by convexity) is returned with half
    the range: ``(coeffs, half_width_mm, slack_mm)``. ``slack_mm`` > 0 means the data were not
    separable by a quadric and the constraints were relaxed by that much. None when a program
    fails.
    """
    if inside.sum() < 4 or (~inside).sum() < 4:
        return None
    q = (np.asarray(points, np.float64) - np.asarray(origin, np.float64)) @ frame.T
    phi = quadric_features(q)
    w = q[:, 2]
    nf = phi.shape[1]
    sgn = np.where(inside, 1.0, -1.0)  # require sgn (phi c - w) >= -slack
    lim = np.array([np.inf, QUAD_SLOPE_MAX, QUAD_SLOPE_MAX, QUAD_CURV_MAX, QUAD_CURV_MAX,
                    QUAD_CURV_MAX, QUAD_CROSS_MAX, QUAD_CROSS_MAX, QUAD_CURV_MAX])
    tie = np.zeros((2, nf))
    tie[0, [3, 5, 8]] = [-0.5, -0.5, 1.0]
    tie[1] = -tie[0]
    a2 = np.vstack([-sgn[:, None] * phi, tie])
    e0 = np.zeros(nf)
    e0[0] = 1.0
    slack0 = 0.0

    def extremes(slack: float) -> tuple[LPResult, LPResult]:
        b2 = np.r_[-sgn * w + slack, QUAD_TIE, QUAD_TIE]
        return solve_lp(e0, a2, b2, -lim, lim), solve_lp(-e0, a2, b2, -lim, lim)

    lo, hi = extremes(tol_mm)
    if lo.status != 0 or hi.status != 0:
        # not separable within tolerance: smallest slack that makes it so, then retry
        a1 = np.vstack([np.hstack([-sgn[:, None] * phi, -np.ones((len(w), 1))]),
                        np.hstack([tie, np.zeros((2, 1))])])
        b1 = np.r_[-sgn * w, QUAD_TIE, QUAD_TIE]
        r1 = solve_lp(np.r_[np.zeros(nf), 1.0], a1, b1, np.r_[-lim, 0.0], np.r_[lim, np.inf])
        if r1.status != 0:
            return None
        slack0 = max(float(r1.x[nf]), 0.0)
        lo, hi = extremes(slack0 + tol_mm)
    if lo.status != 0 or hi.status != 0:
        return None
    c = 0.5 * (lo.x + hi.x)
    return c, 0.5 * float(hi.x[0] - lo.x[0]), slack0


def quadric_distance(cz: F64, q: F64) -> F64:
    """Signed distance (mm, positive inside) from local points q (N, 3) to the zero set of the
    quadric ``cz``: first-order estimate refined by two Newton steps along the gradient."""
    p = np.array(q, np.float64)
    total = np.zeros(len(p))
    for _ in range(3):
        f = quadric_value(cz, p)
        g = quadric_gradient(cz, p)
        gn = np.maximum(np.linalg.norm(g, axis=1), 1e-12)
        step = f / gn
        total += step
        p = p - (step / gn)[:, None] * g
    return total


def boundary_points(mask: BoolArr) -> npt.NDArray[np.int64]:
    """(z, y, x) indices of voxels that differ from at least one 6-neighbour (both classes)."""
    m = np.asarray(mask, bool)
    b = np.zeros(m.shape, bool)
    for ax in range(3):
        d = np.diff(m, axis=ax)
        sl_lo = [slice(None)] * 3
        sl_hi = [slice(None)] * 3
        sl_lo[ax] = slice(0, -1)
        sl_hi[ax] = slice(1, None)
        b[tuple(sl_lo)] |= d
        b[tuple(sl_hi)] |= d
    return np.argwhere(b)
