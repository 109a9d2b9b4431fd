"""The segmentation's compiled filters and morphology against scipy (independent implementations):
the same voxels, not just close ones, so that speeding them up cannot change a mask."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from a0verify.segmentation import filters, morph

SPACINGS = [(2.5, 0.703125, 0.703125), (1.0, 1.0, 1.0), (5.0, 0.6, 0.9)]


def _blobs(rng: np.random.Generator, shape: tuple[int, int, int], frac: float) -> np.ndarray:
    m = ndimage.gaussian_filter(rng.normal(size=shape), 1.5)
    return np.asarray(m > np.quantile(m, 1.0 - frac))


@pytest.mark.parametrize("size", [3, 5, 7])
def test_median_slices_is_scipys_median_per_slice(size: int) -> None:
    rng = np.random.default_rng(size)
    a = rng.normal(50.0, 40.0, (4, 23, 31)).astype(np.float32)
    a[:, ::3] = np.round(a[:, ::3] / 20.0) * 20.0  # many ties
    ref = np.stack([ndimage.median_filter(s, size=size, mode="nearest") for s in a])
    assert np.array_equal(filters.median_slices(a, size), ref)
    assert filters.median_slices(a[:0], size).shape == (0, 23, 31)
    with pytest.raises(ValueError):
        filters.median_slices(a, 4)


def test_median_wrap_columns_is_scipys_periodic_median() -> None:
    rng = np.random.default_rng(3)
    a = rng.normal(0.0, 50.0, (360, 40)).astype(np.float32)
    a[::4] = np.round(a[::4] / 25.0) * 25.0
    sizes = (rng.integers(1, 200, 40) // 2) * 2 + 1
    sizes[:2] = (1, 359)
    ref = np.empty_like(a)
    for c, sz in enumerate(sizes):
        ref[:, c] = ndimage.median_filter(a[:, [c]], size=(int(sz), 1), mode="wrap")[:, 0]
    assert np.array_equal(filters.median_wrap_columns(a, sizes), ref)
    with pytest.raises(ValueError):
        filters.median_wrap_columns(a, np.full(40, 4))


@pytest.mark.parametrize("sp", SPACINGS)
def test_edt_erosion_and_dilation_match_scipy_and_the_ball_element(sp: tuple) -> None:
    spacing = np.asarray(sp)
    rng = np.random.default_rng(int(sp[0] * 10))
    m = _blobs(rng, (14, 40, 36), 0.35)
    ref = ndimage.distance_transform_edt(m, sampling=spacing)
    assert np.allclose(morph.edt(m, spacing), ref, atol=1e-4, rtol=0)
    # radii that fall exactly on voxel distances (ties) and between them
    for r in (2.0 * sp[2], sp[0], 1.5, 2.6, 4.0):
        el = morph.ball_element(r, spacing)
        big = np.pad(m, 12)
        assert np.array_equal(morph.dilate(big, r, spacing),
                              ndimage.binary_dilation(big, structure=el)), r
        assert np.array_equal(morph.erode(big, r, spacing),
                              ndimage.binary_erosion(big, structure=el, border_value=1)), r


def test_fill_holes_is_scipys() -> None:
    rng = np.random.default_rng(5)
    for _ in range(60):
        shape = tuple(int(v) for v in rng.integers(1, 14, 3))
        m = rng.random(shape) < rng.uniform(0.2, 0.9)
        assert np.array_equal(morph.fill_holes(m), ndimage.binary_fill_holes(m))
    shell = np.zeros((9, 9, 9), bool)
    shell[2:7, 2:7, 2:7] = True
    shell[3:6, 3:6, 3:6] = False  # a closed cavity
    assert morph.fill_holes(shell).sum() == 125
    assert not morph.fill_holes(np.zeros((3, 3, 3), bool)).any()
    assert morph.fill_holes(np.ones((3, 3, 3), bool)).all()
