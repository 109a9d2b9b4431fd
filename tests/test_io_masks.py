"""Mask import (label maps, Slicer .seg.nrrd, DICOM SEG) and align_mask in physical space.

Orientation: a mask stored with flipped/permuted axes, or on a larger grid with the same voxel
centres, must give exactly the canonical result; on a genuinely different grid (finer, rotated)
it must agree up to resampling error.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from a0verify import geometry
from a0verify.errors import InputError
from a0verify.io import align_mask, read_image, read_mask, read_mask_with_segments

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"  # ../shared/data


def need(sub: str) -> Path:
    p = DATA / sub
    if not p.exists():
        pytest.skip(f"shared test data {p} is absent")
    return p


def sphere_on(grid: sitk.Image, centre, radius: float, label: int = 1) -> sitk.Image:
    """Label image on ``grid``: voxel centres within ``radius`` mm of ``centre`` (LPS)."""
    pts = geometry.voxel_centers_lps(grid)
    inside = np.linalg.norm(pts - np.asarray(centre, float), axis=-1) <= radius
    return geometry.array_to_image((inside * label).astype(np.uint16), grid)


def restore_as(image: sitk.Image, perm: tuple[int, int, int], flips: tuple[bool, bool, bool]
               ) -> sitk.Image:
    """Same voxels, stored with index axes permuted (new axis a = old axis perm[a], (x, y, z))
    and then reversed where ``flips``; physical positions of every voxel unchanged."""
    arr = sitk.GetArrayFromImage(image)  # (z, y, x)
    # to (x, y, z), permute, flip, back to (z, y, x)
    axyz = np.transpose(arr, (2, 1, 0))
    axyz = np.transpose(axyz, perm)
    for a, f in enumerate(flips):
        if f:
            axyz = np.flip(axyz, axis=a)
    out = sitk.GetImageFromArray(np.ascontiguousarray(np.transpose(axyz, (2, 1, 0))))
    d = geometry.direction_matrix(image)[:, list(perm)]
    sp = np.asarray(image.GetSpacing())[list(perm)]
    size = np.asarray(image.GetSize())[list(perm)]
    # origin = physical position of the new index (0, 0, 0)
    old_index = np.zeros(3)
    for a in range(3):
        old_index[perm[a]] = (size[a] - 1) if flips[a] else 0
    origin = geometry.index_to_lps(image, old_index)
    for a, f in enumerate(flips):
        if f:
            d[:, a] = -d[:, a]
    out.SetDirection(d.ravel().tolist())
    out.SetSpacing(sp.tolist())
    out.SetOrigin(origin.tolist())
    return out


OBLIQUE = geometry.rotation_matrix((25.0, -10.0, 40.0))


@pytest.fixture()
def oblique_grid() -> sitk.Image:
    return geometry.make_grid((30, 26, 14), (0.8, 0.9, 2.5), OBLIQUE, (10.0, -20.0, 5.0))


@pytest.mark.parametrize("perm,flips", [((0, 1, 2), (False, True, False)),
                                        ((2, 0, 1), (True, False, True)),
                                        ((1, 0, 2), (True, True, True))])
def test_flipped_permuted_storage_gives_identical_mask(oblique_grid: sitk.Image, perm, flips
                                                       ) -> None:
    canon = sphere_on(oblique_grid, (11.0, -19.0, 6.0), 7.0)
    stored = restore_as(canon, perm, flips)
    # sanity: the storage really differs, the physical content does not
    assert stored.GetDirection() != canon.GetDirection()
    out = align_mask(stored, oblique_grid, what="tumour mask", path="t.nii.gz")
    assert geometry.same_grid(out, oblique_grid, tol_mm=1e-6)
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(out),
                                  sitk.GetArrayViewFromImage(canon))


def test_same_grid_is_returned_as_is(oblique_grid: sitk.Image) -> None:
    canon = sphere_on(oblique_grid, (10.0, -20.0, 5.0), 6.0)
    assert align_mask(canon, oblique_grid, what="mask", path="m.nrrd") is canon
    # sub-tolerance origin noise (float32 NIfTI headers): geometry copied, voxels unchanged
    noisy = sitk.Image(canon)
    noisy.SetOrigin((np.asarray(canon.GetOrigin()) + 1e-4).tolist())
    out = align_mask(noisy, oblique_grid, what="mask", path="m.nrrd")
    assert out.GetOrigin() == oblique_grid.GetOrigin()
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(out),
                                  sitk.GetArrayViewFromImage(canon))


def test_larger_grid_with_same_centres_gives_identical_mask(oblique_grid: sitk.Image) -> None:
    canon = sphere_on(oblique_grid, (10.0, -20.0, 5.0), 6.0, label=3)
    big = geometry.make_grid((40, 36, 20), (0.8, 0.9, 2.5), OBLIQUE, (10.0, -20.0, 5.0))
    # shift the big grid's centre by whole voxels so centres coincide but extents differ
    shift = geometry.direction_matrix(big) @ (np.array([5.0, 5.0, 3.0]) * big.GetSpacing())
    big.SetOrigin((np.asarray(big.GetOrigin()) + shift).tolist())
    m = sphere_on(big, (10.0, -20.0, 5.0), 6.0, label=3)
    w: list[str] = []
    out = align_mask(m, oblique_grid, what="mask", path="m.mha", warnings=w)
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(out),
                                  sitk.GetArrayViewFromImage(canon))
    assert any("resampled" in x for x in w)


def test_other_grid_agrees_within_resampling_error(oblique_grid: sitk.Image) -> None:
    canon = sphere_on(oblique_grid, (10.0, -20.0, 5.0), 7.0)
    fine = geometry.make_grid((60, 60, 60), (0.5, 0.5, 0.5), np.eye(3), (10.0, -20.0, 5.0))
    m = sphere_on(fine, (10.0, -20.0, 5.0), 7.0, label=1)
    out = align_mask(m, oblique_grid, what="mask", path="m.mha")
    a = sitk.GetArrayViewFromImage(out) > 0
    b = sitk.GetArrayViewFromImage(canon) > 0
    dice = 2 * np.count_nonzero(a & b) / (a.sum() + b.sum())
    assert dice > 0.93
    assert set(np.unique(sitk.GetArrayViewFromImage(out))) == {0, 1}


def test_labels_are_kept(oblique_grid: sitk.Image) -> None:
    a = sphere_on(oblique_grid, (4.0, -20.0, 5.0), 3.0, label=2)
    b = sphere_on(oblique_grid, (16.0, -20.0, 5.0), 3.0, label=7)
    both = sitk.Add(a, b)
    out = align_mask(restore_as(both, (0, 2, 1), (True, False, False)), oblique_grid,
                     what="tumour mask", path="t.nrrd")
    assert set(np.unique(sitk.GetArrayViewFromImage(out))) == {0, 2, 7}


def test_margin_identical_for_flipped_storage(oblique_grid: sitk.Image) -> None:
    from a0verify.margin import compute_margin

    grid = geometry.make_grid((40, 40, 24), (0.8, 0.8, 1.5), OBLIQUE, (0.0, 0.0, 0.0))
    tumour = sphere_on(grid, (0.0, 0.0, 0.0), 5.0)
    ablation = sphere_on(grid, (1.0, 0.0, 0.0), 10.0)
    ref = compute_margin(tumour, ablation).min_margin_mm
    t2 = align_mask(restore_as(tumour, (2, 1, 0), (False, True, True)), grid, what="tumour",
                    path="t")
    a2 = align_mask(restore_as(ablation, (1, 0, 2), (True, False, False)), grid,
                    what="ablation", path="a")
    assert compute_margin(t2, a2).min_margin_mm == pytest.approx(ref, abs=1e-6)
    assert ref == pytest.approx(4.0, abs=1.0)


def test_no_overlap_is_an_error(oblique_grid: sitk.Image) -> None:
    far = geometry.make_grid((10, 10, 10), (1.0, 1.0, 1.0), None, (500.0, 0.0, 0.0))
    m = sphere_on(far, (500.0, 0.0, 0.0), 3.0)
    with pytest.raises(InputError, match=r"far\.nii\.gz: ablation mask does not overlap"):
        align_mask(m, oblique_grid, what="ablation mask", path="far.nii.gz")


def test_partial_overlap_warns(oblique_grid: sitk.Image) -> None:
    big = geometry.make_grid((80, 80, 40), (1.0, 1.0, 1.0), None, (10.0, -20.0, 5.0))
    m = sphere_on(big, (10.0, -20.0, 5.0), 30.0)  # much larger than the 24 x 23 x 35 mm grid
    w: list[str] = []
    align_mask(m, oblique_grid, what="liver mask", path="liver.nrrd", warnings=w)
    assert any("lies outside the image" in x for x in w)


def test_empty_mask_is_an_error(oblique_grid: sitk.Image) -> None:
    empty = sitk.Image(oblique_grid)
    with pytest.raises(InputError, match="empty"):
        align_mask(empty, oblique_grid, what="tumour mask", path="t.nrrd")


# --------------------------------------------------------------------------- file formats


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
def test_label_map_round_trip(tmp_path: Path, oblique_grid: sitk.Image, suffix: str) -> None:
    lab = sitk.Add(sphere_on(oblique_grid, (4.0, -20.0, 5.0), 3.0, 1),
                   sphere_on(oblique_grid, (16.0, -20.0, 5.0), 3.0, 2))
    f = tmp_path / f"lab{suffix}"
    sitk.WriteImage(sitk.Cast(lab, sitk.sitkUInt8), str(f))
    m, segs = read_mask_with_segments(f)
    assert m.GetPixelID() == sitk.sitkUInt16
    assert [s.label for s in segs] == [1, 2]
    out = read_mask(f, reference=oblique_grid)
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(out), sitk.GetArrayViewFromImage(lab))


def test_slicer_seg_nrrd_single_layer(tmp_path: Path, oblique_grid: sitk.Image) -> None:
    lab = sitk.Add(sphere_on(oblique_grid, (4.0, -20.0, 5.0), 3.0, 1),
                   sphere_on(oblique_grid, (16.0, -20.0, 5.0), 3.0, 4))
    lab = sitk.Cast(lab, sitk.sitkUInt8)
    for i, (name, value) in enumerate([("Tumor A", 1), ("Tumor B", 4)]):
        lab.SetMetaData(f"Segment{i}_Name", name)
        lab.SetMetaData(f"Segment{i}_LabelValue", str(value))
        lab.SetMetaData(f"Segment{i}_Layer", "0")
    f = tmp_path / "tumour.seg.nrrd"
    sitk.WriteImage(lab, str(f))
    m, segs = read_mask_with_segments(f)
    assert [(s.label, s.name) for s in segs] == [(1, "Tumor A"), (4, "Tumor B")]
    assert set(np.unique(sitk.GetArrayViewFromImage(m))) == {0, 1, 4}


def test_slicer_seg_nrrd_two_layers_overlapping(tmp_path: Path, oblique_grid: sitk.Image) -> None:
    a = sitk.GetArrayFromImage(sphere_on(oblique_grid, (8.0, -20.0, 5.0), 4.0, 1))
    b = sitk.GetArrayFromImage(sphere_on(oblique_grid, (12.0, -20.0, 5.0), 4.0, 1))
    assert np.any(a & b)
    vec = sitk.GetImageFromArray(np.stack([a, b], axis=-1).astype(np.uint8), isVector=True)
    vec.CopyInformation(oblique_grid)
    for i, name in enumerate(["zone", "tumour"]):
        vec.SetMetaData(f"Segment{i}_Name", name)
        vec.SetMetaData(f"Segment{i}_LabelValue", "1")
        vec.SetMetaData(f"Segment{i}_Layer", str(i))
    f = tmp_path / "two.seg.nrrd"
    sitk.WriteImage(vec, str(f))
    w: list[str] = []
    m, segs = read_mask_with_segments(f, warnings=w)
    assert [(s.label, s.name) for s in segs] == [(1, "zone"), (2, "tumour")]
    arr = sitk.GetArrayViewFromImage(m)
    np.testing.assert_array_equal(arr == 2, b > 0)
    np.testing.assert_array_equal(arr == 1, (a > 0) & ~(b > 0))
    assert any("several segments" in x for x in w)


def test_dicom_seg_matches_nrrd_label_map() -> None:
    d = need("dcmqi")
    ct = read_image(d / "ct-3slice")
    seg = read_mask(d / "liver.dcm", reference=ct)
    nrrd = read_mask(d / "liver_seg.nrrd", reference=ct)
    assert geometry.same_grid(seg, ct)
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(seg), sitk.GetArrayViewFromImage(nrrd))
    _, segs = read_mask_with_segments(d / "liver.dcm")
    assert [(s.label, s.name) for s in segs] == [(1, "Liver")]


def test_dicom_seg_overlaps_and_labelmap() -> None:
    d = need("dcmqi")
    w: list[str] = []
    m, segs = read_mask_with_segments(d / "partial_overlaps.dcm", warnings=w)
    assert {s.name for s in segs} >= {"GREEN", "ORANGE", "PURPLE"}
    assert any("several segments" in x for x in w)
    assert m.GetSize()[:2] == (512, 512)
    lm, lsegs = read_mask_with_segments(d / "sparse-labelmap-ppv5.dcm")
    assert [s.name for s in lsegs] == ["Liver"]
    assert lm.GetSize()[:2] == (24, 38)
    lm2, _ = read_mask_with_segments(d / "sparse-labelmap-noppv.dcm")
    assert np.count_nonzero(sitk.GetArrayViewFromImage(lm2)) > 0


def test_dicom_seg_is_not_an_image() -> None:
    d = need("dcmqi")
    with pytest.raises(InputError, match="DICOM Segmentation, not an image"):
        read_image(d / "liver.dcm", what="post CT")


def test_totalsegmentator_liver_masks_agree() -> None:
    d = need("totalsegmentator")
    ct = read_image(d / "example_ct_sm.nii.gz")
    multi = read_mask(d / "example_seg.nii.gz", reference=ct)
    liver = read_mask(d / "example_seg_fast/liver.nii.gz", reference=ct)
    a = sitk.GetArrayViewFromImage(multi) == 5
    b = sitk.GetArrayViewFromImage(liver) > 0
    vol_ml = a.sum() * float(np.prod(ct.GetSpacing())) / 1000
    assert 900 < vol_ml < 1200  # README: 1038 ml
    dice = 2 * np.count_nonzero(a & b) / (a.sum() + b.sum())
    assert dice > 0.8
