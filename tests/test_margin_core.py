"""Numeric kernels of a0verify.margin.core against scipy and hand-derived values."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from a0verify.margin import core


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("spacing", [(2.5, 0.78, 0.78), (0.7, 3.0, 1.1), (1.0, 1.0, 1.0)])
def test_edt_matches_scipy_on_random_anisotropic_volumes(seed: int, spacing: tuple) -> None:
    rng = np.random.default_rng(seed)
    shape = tuple(int(v) for v in rng.integers(5, 40, 3))
    # sparse background so that distances grow large (tens of mm)
    mask = rng.random(shape) > (0.02 if seed == 0 else 0.5)
    mask.flat[rng.integers(0, mask.size)] = False
    got = core.edt(mask, spacing)
    ref = ndimage.distance_transform_edt(mask, sampling=spacing)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=2e-7)
    got2 = core.edt(mask, spacing, per_slice=True)
    for k in range(shape[0]):
        if (~mask[k]).any():
            ref2 = ndimage.distance_transform_edt(mask[k], sampling=spacing[1:])
            np.testing.assert_allclose(got2[k], ref2, atol=1e-4, rtol=2e-7)
        else:
            assert np.all(np.isinf(got2[k]))


def test_edt_without_background_is_inf_and_scipy_agrees_on_single_zero() -> None:
    m = np.ones((4, 5, 6), bool)
    assert np.all(np.isinf(core.edt(m, (1, 1, 1))))
    m[0, 0, 0] = False
    np.testing.assert_allclose(core.edt(m, (2.0, 1.0, 0.5)),
                               ndimage.distance_transform_edt(m, sampling=(2.0, 1.0, 0.5)),
                               atol=1e-4)


def test_signed_distance_of_slab_places_boundary_between_centres() -> None:
    # slab of inside voxels x in [3, 6] at 0.5 mm (finest axis): faces at x = 2.5 and 6.5 (index)
    m = np.zeros((4, 4, 10), bool)
    m[:, :, 3:7] = True
    sd = core.signed_distance(m, (2.0, 1.0, 0.5))
    x = np.arange(10) * 0.5
    expected = np.minimum(x - 1.25, 3.25 - x)  # mm to the nearer face, positive inside
    np.testing.assert_allclose(sd[1, 1, :], expected, atol=1e-5)
    # 2-D per-slice distances ignore the other slices
    m2 = m.copy()
    m2[0] = True
    sd2 = core.signed_distance(m2, (2.0, 1.0, 0.5), per_slice=True)
    np.testing.assert_allclose(sd2[1, 1, :], expected, atol=1e-5)
    assert np.all(np.isinf(sd2[0]))


def test_trilinear_reproduces_linear_function_and_outside_value() -> None:
    z, y, x = np.meshgrid(np.arange(5), np.arange(6), np.arange(7), indexing="ij")
    vol = (2.0 * z - 3.0 * y + 0.5 * x + 1.0).astype(np.float32)
    rng = np.random.default_rng(3)
    pts = rng.uniform([0, 0, 0], [4, 5, 6], size=(50, 3))
    got = core.trilinear(vol, pts, np.nan)
    np.testing.assert_allclose(got, 2 * pts[:, 0] - 3 * pts[:, 1] + 0.5 * pts[:, 2] + 1, atol=1e-5)
    assert np.isnan(core.trilinear(vol, np.array([[-0.5, 1.0, 1.0]]), np.nan)[0])


def test_mesh_distance_to_single_triangle() -> None:
    v = np.array([[0.0, 0, 0], [4, 0, 0], [0, 4, 0]])
    f = np.array([[0, 1, 2]])
    pts = np.array([[1.0, 1, 3], [-3.0, 0, 4], [3.0, 3, 0]])
    d = core.mesh_distance(pts, v, f)
    np.testing.assert_allclose(d, [3.0, 5.0, np.sqrt(2.0)], atol=1e-12)


def test_mesh_volume_and_areas_of_a_marching_cubes_sphere() -> None:
    r = 10.0
    g = np.arange(-14, 15, dtype=np.float64)
    z, y, x = np.meshgrid(g, g, g, indexing="ij")
    lev = (r - np.sqrt(x * x + y * y + z * z)).astype(np.float32)
    v, f = core.surface_mesh(lev, (1.0, 1.0, 1.0))
    area, _ = core.face_areas_normals(v, f)
    assert abs(core.mesh_volume(v, f) - 4 / 3 * np.pi * r**3) / (4 / 3 * np.pi * r**3) < 0.01
    assert abs(area.sum() - 4 * np.pi * r * r) / (4 * np.pi * r * r) < 0.01


def test_quadric_patch_recovers_sphere_height_from_voxel_centres() -> None:
    # sphere of radius 8 mm rasterised at 0.8 x 0.8 x 2.5 mm; the patch at the +z pole (which
    # lies between slices) must find the pole height well inside half a slice.
    sp = np.array([2.5, 0.8, 0.8])
    c = np.array([0.37, 0.11, -0.23])
    idx = np.stack(np.meshgrid(*[np.arange(-8, 9)] * 1, np.arange(-15, 16), np.arange(-15, 16),
                               indexing="ij"), -1).reshape(-1, 3).astype(float)
    pts = idx * sp
    inside = np.sum((pts - c) ** 2, axis=1) <= 64.0
    pole = c + np.array([8.0, 0, 0])
    frame = core.local_frame([1.0, 0, 0])
    sel = np.sum((pts - pole) ** 2, axis=1) <= 8.0**2
    fit = core.fit_quadric_patch(pts[sel], inside[sel], pole, frame)
    assert fit is not None
    coeffs, half, slack = fit
    assert slack == 0.0
    h = core.quadric_height(coeffs, 0.0, 0.0)
    assert abs(h) <= max(half, 0.3)
    assert half < 1.25  # narrower than the half slice a border-voxel method is left with


def test_quadric_distance_of_exact_plane() -> None:
    c = np.zeros(9)
    c[0] = 2.0  # F = 2 - w: plane w = 2, inside below
    q = np.array([[0.0, 0.0, 0.0], [1.0, -2.0, 5.0]])
    np.testing.assert_allclose(core.quadric_distance(c, q), [2.0, -3.0], atol=1e-12)


def test_shape_based_level_of_cylinder_is_exact_between_slices() -> None:
    # a cylinder along the slice axis: every slice is the same disc, interpolation is exact
    yy, xx = np.meshgrid(np.arange(31), np.arange(31), indexing="ij")
    disc = (yy - 15.2) ** 2 * 0.64 + (xx - 14.7) ** 2 * 0.64 <= 7.0**2
    m = np.repeat(disc[None], 6, axis=0)
    m[0] = False
    m[-1] = False
    lev, sp = core.shape_based_level(m, (3.0, 0.8, 0.8), 4)
    assert lev.shape == (21, 31, 31)
    np.testing.assert_allclose(sp, [0.75, 0.8, 0.8])
    mid = lev[8:13]
    np.testing.assert_allclose(mid, np.repeat(mid[:1], 5, axis=0), atol=1e-5)


def test_numba_cache_dir_falls_back_when_package_is_read_only(monkeypatch: pytest.MonkeyPatch,
                                                              tmp_path: object) -> None:
    import os

    import numba

    # registered so that monkeypatch restores both after the test
    monkeypatch.setenv("NUMBA_CACHE_DIR", "")
    monkeypatch.setattr(numba.config, "CACHE_DIR", getattr(numba.config, "CACHE_DIR", ""),
                        raising=False)
    monkeypatch.setattr(os, "access", lambda *a, **k: False)
    monkeypatch.setattr(core.tempfile, "gettempdir", lambda: str(tmp_path))
    core._ensure_numba_cache_dir()
    target = os.environ["NUMBA_CACHE_DIR"]
    assert target.startswith(str(tmp_path)) and os.path.isdir(target)
    assert getattr(numba.config, "CACHE_DIR", None) == target
