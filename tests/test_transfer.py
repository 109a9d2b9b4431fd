"""Stage ``transfer``: the tumour carried onto the post grid as sub-voxel level sets (known
translations, analytic spheres, scipy's EDT as the independent reference)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from a0verify import geometry
from a0verify.errors import InputError
from a0verify.transfer import (
    half_voxel_signed_distance,
    labels_from_levelsets,
    transfer_tumor,
    tumor_levelsets_to_post,
)


def _translation_case() -> tuple[sitk.Image, sitk.Image, np.ndarray]:
    grid = geometry.make_grid([40, 36, 24], [1.0, 1.2, 2.0],
                              geometry.rotation_matrix([5.0, -4.0, 12.0]), (3.0, -2.0, 1.0))
    pts = geometry.voxel_centers_lps(grid)
    c = np.array([2.0, -1.0, 0.5])
    lab = (np.linalg.norm(pts - c, axis=-1) <= 8.0).astype(np.uint8)
    return geometry.array_to_image(lab, grid), grid, c


def test_levelset_translation_known_center_and_sign() -> None:
    """A pure translation t (post -> pre): the lesion appears at c - t in post space, level set
    positive inside, zero crossing on the sphere within the half-voxel discretisation."""
    tumor, _grid, c = _translation_case()
    t = np.array([3.3, -2.1, 1.7])
    tx = sitk.TranslationTransform(3, t.tolist())
    post = geometry.make_grid([50, 50, 40], [0.9, 0.9, 1.5], None, (0.0, 0.0, 0.0))
    ls = tumor_levelsets_to_post(tumor, post, tx)
    assert list(ls) == [1]
    lvl = ls[1]
    assert lvl.GetPixelID() == sitk.sitkFloat32
    arr = sitk.GetArrayFromImage(lvl)
    pts = geometry.voxel_centers_lps(lvl)
    inside = arr > 0
    centroid = pts[inside].mean(axis=0)
    np.testing.assert_allclose(centroid, c - t, atol=0.25)
    truth = 8.0 - np.linalg.norm(pts - (c - t), axis=-1)
    band = np.abs(truth) < 2.0
    # value is a distance in mm (slope ~1) and the boundary is within the voxel discretisation
    assert float(np.median(np.abs(arr[band] - truth[band]))) < 0.5
    assert float(np.corrcoef(arr[band], truth[band])[0, 1]) > 0.95
    # nearest-neighbour labels agree with the level set away from the boundary
    nn_img = sitk.Resample(tumor, lvl, tx, sitk.sitkNearestNeighbor, 0, tumor.GetPixelID())
    nn = sitk.GetArrayFromImage(nn_img)
    assert np.all(nn[arr > 1.5] == 1) and np.all(nn[arr < -1.5] == 0)


def test_half_voxel_distance_1d_exact() -> None:
    """Along a grid axis the zero crossing lies exactly half-way between centres."""
    m = np.zeros((3, 3, 20), bool)
    m[:, :, :7] = True  # inside x-index 0..6 -> boundary at 6.5 voxels
    sd = half_voxel_signed_distance(m, [2.5, 0.8, 0.7])
    row = sd[1, 1]
    np.testing.assert_allclose(row[6], 0.35, atol=1e-6)
    np.testing.assert_allclose(row[7], -0.35, atol=1e-6)
    np.testing.assert_allclose(row[3], 3.5 * 0.7, atol=1e-6)
    with pytest.raises(ValueError):
        half_voxel_signed_distance(np.ones((2, 2, 2), bool), [1, 1, 1])


def test_half_voxel_distance_vs_scipy_edt_far_field() -> None:
    """Away from the boundary the value equals scipy's EDT minus half a voxel step (isotropic)."""
    m = np.zeros((30, 30, 30), bool)
    m[5:25, 5:25, 5:25] = True
    sd = half_voxel_signed_distance(m, [1.0, 1.0, 1.0])
    edt_in = ndimage.distance_transform_edt(m)
    np.testing.assert_allclose(sd[15, 15, 8], edt_in[15, 15, 8] - 0.5, atol=1e-6)
    edt_out = ndimage.distance_transform_edt(~m)
    np.testing.assert_allclose(sd[15, 15, 1], -(edt_out[15, 15, 1] - 0.5), atol=1e-6)


def test_levelsets_split_components_like_margin() -> None:
    from a0verify.margin import split_lesions

    grid = geometry.make_grid([40, 40, 20], [1.0, 1.0, 2.0], None, (0.0, 0.0, 0.0))
    pts = geometry.voxel_centers_lps(grid)
    lab = ((np.linalg.norm(pts - [-8, 0, 0], axis=-1) <= 4)
           | (np.linalg.norm(pts - [9, 0, 0], axis=-1) <= 6)).astype(np.uint8)
    tumor = geometry.array_to_image(lab, grid)
    ls = tumor_levelsets_to_post(tumor, grid, sitk.Euler3DTransform())
    ref = split_lesions(tumor)
    assert sorted(ls) == sorted(ref) == [1, 2]
    for k, img in ls.items():
        inside = geometry.voxel_centers_lps(img)[sitk.GetArrayViewFromImage(img) > 0].mean(0)
        ref_pts = geometry.voxel_centers_lps(ref[k])[sitk.GetArrayViewFromImage(ref[k]) > 0]
        np.testing.assert_allclose(inside, ref_pts.mean(0), atol=0.3)
    with pytest.raises(InputError):
        tumor_levelsets_to_post(tumor * 0, grid, sitk.Euler3DTransform())


def test_transfer_labels_are_the_levelsets_inside() -> None:
    """The display labels on the post grid are exactly the voxels where the lesion's level set
    is positive; same grid and no transform: the labels pass through unchanged."""
    tumor, _grid, c = _translation_case()
    post = geometry.make_grid([50, 50, 40], [0.9, 0.9, 1.5], geometry.rotation_matrix(
        [0.0, 0.0, 20.0]), (-5.0, 3.0, -10.0))
    tx = sitk.TranslationTransform(3, [1.0, 2.0, -3.0])
    tr = transfer_tumor(tumor, post, tx)
    assert isinstance(tr.margin_input, dict) and list(tr.margin_input) == [1]
    lab = sitk.GetArrayFromImage(tr.labels)
    assert geometry.same_grid(tr.labels, post)
    lvl = tr.margin_input[1]
    box = geometry.box_of_crop(post, lvl)
    np.testing.assert_array_equal(lab[box.slices] == 1, sitk.GetArrayViewFromImage(lvl) > 0)
    assert int((lab == 1).sum()) == int((sitk.GetArrayViewFromImage(lvl) > 0).sum())
    # centroid of the carried labels near c - t (within a voxel)
    pts = geometry.voxel_centers_lps(post)[lab == 1]
    np.testing.assert_allclose(pts.mean(axis=0), c - np.array([1.0, 2.0, -3.0]), atol=0.6)
    same = transfer_tumor(tumor, tumor, None)
    assert same.margin_input is tumor and same.labels is tumor
    assert sitk.GetArrayViewFromImage(labels_from_levelsets({}, post)).max() == 0
