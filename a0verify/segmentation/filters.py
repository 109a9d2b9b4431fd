"""Compiled median filters on HU arrays for the metal-streak suppression of the segmentation.

:func:`median_slices` gives exactly ``scipy.ndimage.median_filter(slice, size=k,
mode="nearest")`` for each slice (the same k x k window, the border replicated, the middle of the
k^2 sorted values), with the slices and rows spread over the cores: the metal slices of a large
needle zone took 2-3 s one by one. :func:`median_wrap_columns` is the periodic 1-D median along
the angle of a polar resampling (the angular streak median), one window size per column.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from a0verify.margin import core as _numba_setup  # noqa: F401  (Numba cache directory first)

F32 = npt.NDArray[np.float32]

from numba import njit, prange  # noqa: E402


@njit(cache=True, nogil=True)
def _select(a: F32, k: int) -> float:  # pragma: no cover - compiled
    """The ``k``-th smallest value of ``a`` (Wirth's selection, in place)."""
    lo, hi = 0, a.shape[0] - 1
    while lo < hi:
        x = a[k]
        i, j = lo, hi
        while True:
            while a[i] < x:
                i += 1
            while x < a[j]:
                j -= 1
            if i <= j:
                a[i], a[j] = a[j], a[i]
                i += 1
                j -= 1
            if i > j:
                break
        if j < k:
            lo = i
        if k < i:
            hi = j
    return a[k]


@njit(parallel=True, cache=True)
def _median_kernel(stack: F32, h: int) -> F32:  # pragma: no cover - compiled
    n, ny, nx = stack.shape
    out = np.empty_like(stack)
    k = 2 * h + 1
    mid = (k * k) // 2
    for t in prange(n * ny):
        s = t // ny
        j = t % ny
        buf = np.empty(k * k, np.float32)
        for i in range(nx):
            c = 0
            for dj in range(-h, h + 1):
                jj = min(max(j + dj, 0), ny - 1)
                for di in range(-h, h + 1):
                    ii = min(max(i + di, 0), nx - 1)
                    buf[c] = stack[s, jj, ii]
                    c += 1
            out[s, j, i] = _select(buf, mid)
    return out


def median_slices(stack: npt.ArrayLike, size: int) -> F32:
    """Square ``size`` x ``size`` median (``size`` odd, in voxels) of every slice of ``stack``
    (n, y, x; float32 HU), the border replicated; an empty stack gives an empty result."""
    if size < 1 or size % 2 == 0:
        raise ValueError(f"median size must be odd and positive, got {size}")
    a = np.ascontiguousarray(stack, dtype=np.float32)
    if a.ndim != 3:
        raise ValueError(f"median_slices expects (n, y, x), got shape {a.shape}")
    if a.size == 0:
        return a.copy()
    return np.asarray(_median_kernel(a, size // 2))


@njit(parallel=True, cache=True)
def _wrap_kernel(a: F32, sizes: npt.NDArray[np.int64]) -> F32:  # pragma: no cover - compiled
    n, m = a.shape
    out = np.empty_like(a)
    for c in prange(m):
        h = sizes[c] // 2
        buf = np.empty(2 * h + 1, np.float32)
        for t in range(n):
            for d in range(-h, h + 1):
                buf[d + h] = a[(t + d) % n, c]
            out[t, c] = _select(buf, h)
    return out


def median_wrap_columns(a: npt.ArrayLike, sizes: npt.ArrayLike) -> F32:
    """Median along axis 0 of the 2-D ``a`` with wrap-around (a periodic axis, e.g. the angle
    of a polar resampling), column ``c`` over a window of ``sizes[c]`` (odd) values: exactly
    ``scipy.ndimage.median_filter(a[:, [c]], size=(sizes[c], 1), mode="wrap")`` per column."""
    arr = np.ascontiguousarray(a, dtype=np.float32)
    sz = np.ascontiguousarray(sizes, dtype=np.int64)
    if arr.ndim != 2 or sz.shape != (arr.shape[1],):
        raise ValueError(f"median_wrap_columns: shapes {arr.shape} and {sz.shape} do not match")
    if np.any(sz < 1) or np.any(sz % 2 == 0):
        raise ValueError("median_wrap_columns: window sizes must be odd and positive")
    if arr.size == 0:
        return arr.copy()
    return np.asarray(_wrap_kernel(arr, sz))
