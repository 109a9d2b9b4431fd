"""geometry.py against hand-derived values and SimpleITK's own index<->point transforms
(an independent implementation), with anisotropic spacing and oblique/flipped directions."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import SimpleITK as sitk

from a0verify import geometry


def oblique_image(flip: bool = False) -> sitk.Image:
    d = geometry.rotation_matrix((30.0, -20.0, 50.0))
    if flip:
        d = d @ np.diag([1.0, -1.0, 1.0])  # left-handed storage, det = -1
    return geometry.make_grid((7, 5, 4), (0.7, 0.9, 2.5), d, (10.0, -5.0, 3.0))


def test_lps_ras_by_hand() -> None:
    np.testing.assert_array_equal(geometry.lps_to_ras([1.0, 2.0, 3.0]), [-1.0, -2.0, 3.0])
    np.testing.assert_array_equal(geometry.ras_to_lps([[-1.0, 2.0, -3.0]]), [[1.0, -2.0, -3.0]])


def test_xyz_zyx_by_hand() -> None:
    np.testing.assert_array_equal(geometry.xyz_to_zyx([1, 2, 3]), [3, 2, 1])
    np.testing.assert_array_equal(geometry.zyx_to_xyz([[1, 2, 3], [4, 5, 6]]),
                                  [[3, 2, 1], [6, 5, 4]])


def test_index_to_lps_by_hand_axis_aligned() -> None:
    img = sitk.Image([4, 5, 6], sitk.sitkUInt8)
    img.SetSpacing((0.5, 2.0, 3.0))
    img.SetOrigin((10.0, 20.0, 30.0))
    np.testing.assert_allclose(geometry.index_to_lps(img, [2, 1, 3]), [11.0, 22.0, 39.0])
    np.testing.assert_allclose(geometry.zyx_index_to_lps(img, [3, 1, 2]), [11.0, 22.0, 39.0])
    np.testing.assert_allclose(geometry.spacing_zyx(img), [3.0, 2.0, 0.5])
    assert geometry.voxel_volume_ml(img) == pytest.approx(3.0 / 1000)


@pytest.mark.parametrize("flip", [False, True])
def test_index_to_lps_matches_simpleitk(flip: bool) -> None:
    img = oblique_image(flip)
    rng = np.random.default_rng(1)
    idx = rng.uniform(-1, 8, size=(20, 3))
    ours = geometry.index_to_lps(img, idx)
    ref = np.array([img.TransformContinuousIndexToPhysicalPoint(tuple(map(float, i)))
                    for i in idx])
    np.testing.assert_allclose(ours, ref, atol=1e-9)
    back = geometry.lps_to_index(img, ref)
    np.testing.assert_allclose(back, idx, atol=1e-9)
    ref_back = np.array([img.TransformPhysicalPointToContinuousIndex(tuple(map(float, p)))
                         for p in ref])
    np.testing.assert_allclose(back, ref_back, atol=1e-9)


def test_voxel_centers_and_matrices_agree() -> None:
    img = oblique_image(True)
    pts = geometry.voxel_centers_lps(img)
    assert pts.shape == (4, 5, 7, 3)
    b = geometry.zyx_index_to_lps_matrix(img)
    z, y, x = 3, 2, 6
    np.testing.assert_allclose(pts[z, y, x], (b @ [z, y, x, 1])[:3], atol=1e-12)
    np.testing.assert_allclose(pts[z, y, x], img.TransformIndexToPhysicalPoint((x, y, z)),
                               atol=1e-9)


def test_make_grid_centre_and_bounds() -> None:
    img = oblique_image()
    centre = geometry.index_to_lps(img, (np.asarray(img.GetSize()) - 1) / 2)
    np.testing.assert_allclose(centre, [10.0, -5.0, 3.0], atol=1e-9)
    lo, hi = geometry.physical_bounds(img)
    pts = geometry.voxel_centers_lps(img).reshape(-1, 3)
    assert np.all(pts >= lo) and np.all(pts <= hi)


def test_same_grid_and_roi() -> None:
    a = oblique_image()
    b = sitk.Image(a)
    assert geometry.same_grid(a, b)
    b.SetOrigin((np.asarray(a.GetOrigin()) + np.array([0.01, 0, 0])).tolist())
    assert not geometry.same_grid(a, b) and geometry.same_grid(a, b, tol_mm=0.02)
    p = geometry.index_to_lps(a, [3, 2, 1])
    box = geometry.roi_box_around_lps(a, p[None], 0.1)
    assert not box.empty
    z, y, x = 1, 2, 3
    assert all(lo <= v < hi for v, lo, hi in zip((z, y, x), box.lo_zyx, box.hi_zyx, strict=True))
    assert geometry.roi_box_around_lps(a, np.zeros((0, 3)), 5.0).empty
    sub = geometry.crop(a, box)
    np.testing.assert_allclose(sub.GetOrigin(), geometry.zyx_index_to_lps(a, box.lo_zyx),
                               atol=1e-9)
    arr = np.ones(box.shape, np.uint8)
    wrapped = geometry.array_to_image(arr, a, box)
    assert geometry.same_grid(wrapped, sub)


@pytest.mark.parametrize("dtype", [np.bool_, np.uint8, np.uint16, np.int16, np.float32])
def test_nonzero_index_box_matches_np_nonzero(dtype: Any) -> None:
    rng = np.random.default_rng(3)
    for _ in range(20):
        shape = tuple(int(v) for v in rng.integers(1, 12, 3))
        a = np.zeros(shape, dtype)
        k = int(rng.integers(0, 4))
        for _ in range(k):
            idx = tuple(int(rng.integers(0, n)) for n in shape)
            a[idx] = -2 if dtype in (np.int16, np.float32) and rng.random() < 0.5 else 1
        box = geometry.nonzero_index_box(a)
        nz = np.nonzero(a)
        if not nz[0].size:
            assert box is None
            continue
        assert box is not None
        assert box.lo_zyx == tuple(int(v.min()) for v in nz)
        assert box.hi_zyx == tuple(int(v.max()) + 1 for v in nz)
        assert np.count_nonzero(a[box.slices]) == np.count_nonzero(a)
    assert geometry.nonzero_index_box(np.zeros((0, 3, 3), dtype)) is None


def test_box_of_crop_round_trip_oblique() -> None:
    """A crop's index box in its parent is the box it was cropped with (oblique grid)."""
    grid = geometry.make_grid([30, 20, 10], [0.8, 0.9, 2.5],
                              geometry.rotation_matrix([10.0, -20.0, 35.0]), (4.0, -3.0, 7.0))
    box = geometry.IndexBox((2, 5, 7), (9, 15, 22))
    sub = geometry.crop(grid, box)
    assert geometry.box_of_crop(grid, sub) == box
