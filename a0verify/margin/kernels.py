"""Loading the compiled Numba kernels of the margin step once per process, apart from the timed
margin computation (``margin_kernel_load`` in the report's timings)."""

from __future__ import annotations

import contextlib
import threading
import time

import numpy as np
import SimpleITK as sitk

from a0verify import geometry

_kernels_lock = threading.Lock()
_kernels_loaded = False


def load_kernels() -> float:
    """Load the compiled Numba kernels once per process (from the on-disk cache; compiled on the
    very first run) by computing the margin of a tiny analytic case through the same code paths
    (UInt16 label masks, 0.8 x 0.8 x 2.5 mm voxels). Returns the seconds this call spent
    (loading, or waiting for a load already under way, e.g. by :func:`start_loading_kernels`);
    0.0 once loaded. :func:`a0verify.margin.compute_margin` calls it and reports the time as
    ``margin_kernel_load``, apart from the margin computation itself (``margin``)."""
    global _kernels_loaded
    from a0verify.margin.api import margin_of_lesions

    t0 = time.perf_counter()
    with _kernels_lock:
        if _kernels_loaded:  # loaded, or just loaded by another thread while this one waited
            waited = time.perf_counter() - t0
            return waited if waited >= 1e-3 else 0.0
        _kernels_loaded = True  # set first: the tiny case below runs the margin code
        grid = geometry.make_grid((40, 40, 14), (0.8, 0.8, 2.5), pixel_type=sitk.sitkUInt16)
        pts = geometry.voxel_centers_lps(grid)
        tumor = np.linalg.norm(pts - [0.3, -0.2, 0.4], axis=-1) <= 4.0
        zone = np.linalg.norm(pts - [1.1, 0.5, 0.9], axis=-1) <= 11.0
        margin_of_lesions(geometry.array_to_image(tumor.astype(np.uint16), grid),
                          geometry.array_to_image(zone.astype(np.uint16), grid), 5.0)
    return time.perf_counter() - t0


def start_loading_kernels() -> threading.Thread:
    """Start :func:`load_kernels` in a background thread (e.g. while the masks are read: Numba's
    cache loading and SimpleITK's file reading overlap in part). Join the thread before the
    process exits; failures are left to the later, synchronous :func:`load_kernels` call."""

    def run() -> None:
        with contextlib.suppress(Exception):
            load_kernels()

    th = threading.Thread(target=run, name="a0verify-kernel-load", daemon=True)
    th.start()
    return th
