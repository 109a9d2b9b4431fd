"""DICOM series directories: discovery, default series, geometry (oblique, tilt, non-uniform,
missing slices), compressed transfer syntaxes and Enhanced multi-frame CT.

Synthetic series are written with pydicom into tmp_path from a known function of the physical
position, so the read-back voxel values check the geometry exactly. Real data come from
/work/shared/data (tests skip when it is absent).
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

pydicom = pytest.importorskip("pydicom")
from click.testing import CliRunner  # noqa: E402
from pydicom.dataset import FileDataset, FileMetaDataset  # noqa: E402
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid  # noqa: E402

from a0verify import geometry  # noqa: E402
from a0verify.errors import InputError  # noqa: E402
from a0verify.io import read_image  # noqa: E402
from a0verify.io.dicom import choose_series, guess_phase, scan_dicom_dir  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"  # ../shared/data
CT_STORAGE = UID("1.2.840.10008.5.1.4.1.1.2")


def need(sub: str) -> Path:
    p = DATA / sub
    if not p.exists():
        pytest.skip(f"shared test data {p} is absent")
    return p


def write_slice(path: Path, pixels: np.ndarray, position, orientation, spacing_rc,
                series_uid: str, modality: str = "CT", description: str = "",
                instance: int = 1, intercept: float = -1024.0) -> None:
    """Write one uncompressed single-frame DICOM slice; stored = value - intercept (int16)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CT_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = CT_STORAGE
    ds.SOPInstanceUID = str(meta.MediaStorageSOPInstanceUID)
    ds.SeriesInstanceUID = series_uid
    ds.StudyInstanceUID = "1.2.3.4"
    ds.Modality = modality
    ds.SeriesDescription = description
    ds.InstanceNumber = instance
    ds.ImagePositionPatient = [f"{v:.6f}" for v in position]
    ds.ImageOrientationPatient = [f"{v:.8f}" for v in orientation]
    ds.PixelSpacing = [f"{spacing_rc[0]:.6f}", f"{spacing_rc[1]:.6f}"]
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.RescaleIntercept = f"{intercept:g}"
    ds.RescaleSlope = "1"
    ds.PixelData = np.ascontiguousarray((pixels - intercept).astype(np.int16)).tobytes()
    ds.save_as(str(path), enforce_file_format=True)


def write_series(folder: Path, func, positions, orientation, spacing_rc=(1.0, 1.0),
                 shape=(12, 10), uid: str | None = None, **kw) -> str:
    """Series whose voxel (row i, col j) of slice k holds round(func(LPS point))."""
    folder.mkdir(parents=True, exist_ok=True)
    uid = uid or generate_uid()
    o = np.asarray(orientation, float)
    r, c = o[:3], o[3:]
    rows, cols = shape
    jj, ii = np.meshgrid(np.arange(cols), np.arange(rows))
    for k, pos in enumerate(positions):
        pts = (np.asarray(pos, float)[None, None, :] + jj[..., None] * spacing_rc[1] * r
               + ii[..., None] * spacing_rc[0] * c)
        write_slice(folder / f"{uid[-6:]}_{k:03d}.dcm", np.rint(func(pts)), pos, orientation,
                    spacing_rc, uid, instance=k + 1, **kw)
    return uid


def lin(pts: np.ndarray) -> np.ndarray:
    """A linear function of LPS position (exactly reproduced by linear interpolation)."""
    return 3.0 * pts[..., 0] - 2.0 * pts[..., 1] + 7.0 * pts[..., 2]


def values_match_function(img: sitk.Image, func, interior: int = 0, atol: float = 1.01) -> None:
    arr = sitk.GetArrayFromImage(img).astype(float)
    pts = geometry.voxel_centers_lps(img)
    sl = (slice(None), slice(interior, arr.shape[1] - interior),
          slice(interior, arr.shape[2] - interior))
    np.testing.assert_allclose(arr[sl], func(pts)[sl], atol=atol)


AXIAL = (1, 0, 0, 0, 1, 0)


# ------------------------------------------------------------------------------------ synthetic


def test_axial_series_geometry_and_values(tmp_path: Path) -> None:
    pos = [(-10.0, 5.0, 2.5 * k - 30) for k in range(6)]
    write_series(tmp_path / "s", lin, pos[::-1], AXIAL, spacing_rc=(0.8, 0.7))
    w: list[str] = []
    img = read_image(tmp_path / "s", warnings=w)
    assert w == []
    assert img.GetSize() == (10, 12, 6)
    np.testing.assert_allclose(img.GetSpacing(), (0.7, 0.8, 2.5))
    np.testing.assert_allclose(img.GetOrigin(), (-10, 5, -30))
    values_match_function(img, lin)


def test_oblique_series_geometry(tmp_path: Path) -> None:
    rot = geometry.rotation_matrix((20.0, -15.0, 35.0))
    r, c, n = rot[:, 0], rot[:, 1], rot[:, 2]
    orientation = (*r, *c)
    pos = [np.array([4.0, -3.0, 11.0]) + 1.7 * k * n for k in range(5)]
    write_series(tmp_path / "s", lin, pos, orientation, spacing_rc=(0.9, 1.1))
    w: list[str] = []
    img = read_image(tmp_path / "s", warnings=w)
    assert w == []
    np.testing.assert_allclose(geometry.direction_matrix(img), rot, atol=1e-6)
    np.testing.assert_allclose(img.GetSpacing(), (1.1, 0.9, 1.7), atol=1e-6)
    values_match_function(img, lin)


def test_non_uniform_spacing_is_resampled_with_warning(tmp_path: Path) -> None:
    zs = [0.0, 2.0, 4.0, 7.0, 9.0, 11.0, 13.0]
    write_series(tmp_path / "s", lin, [(0.0, 0.0, z) for z in zs], AXIAL)
    w: list[str] = []
    img = read_image(tmp_path / "s", warnings=w)
    assert len(w) == 1 and "non-uniform slice spacing" in w[0] and str(tmp_path / "s") in w[0]
    assert img.GetSpacing()[2] == pytest.approx(2.0)
    assert img.GetSize()[2] == 7  # 0..12 mm in 2 mm steps
    values_match_function(img, lin)


def test_missing_slices_are_interpolated_with_warning(tmp_path: Path) -> None:
    zs = [2.5 * k for k in range(12) if k not in (4, 5, 9)]
    write_series(tmp_path / "s", lin, [(1.0, 2.0, z) for z in zs], AXIAL)
    w: list[str] = []
    img = read_image(tmp_path / "s", warnings=w)
    assert any("3 missing slice(s)" in x for x in w), w
    assert img.GetSize()[2] == 12
    values_match_function(img, lin)


def test_gantry_tilt_is_corrected_with_warning(tmp_path: Path) -> None:
    tilt = np.deg2rad(15.0)
    # slices stay axial but each origin moves in y by tan(tilt) per mm of z (sheared stack)
    pos = [(0.0, 3.0 * k * np.tan(tilt), 3.0 * k) for k in range(6)]
    write_series(tmp_path / "s", lin, pos, AXIAL, shape=(40, 12))
    w: list[str] = []
    img = read_image(tmp_path / "s", warnings=w)
    assert any("gantry tilt of 15.0 deg" in x for x in w), w
    # in-plane shift of up to 4 mm: compare rows that stay inside every slice
    arr = sitk.GetArrayFromImage(img).astype(float)
    truth = lin(geometry.voxel_centers_lps(img))
    np.testing.assert_allclose(arr[:, 6:, :], truth[:, 6:, :], atol=1.01)


def test_default_series_and_series_uid(tmp_path: Path) -> None:
    d = tmp_path / "study"
    big = write_series(d, lin, [(0, 0, 2.0 * k) for k in range(8)], AXIAL,
                       description="PORTAL VENOUS 2mm")
    small = write_series(d, lin, [(0, 0, 5.0 * k) for k in range(3)], AXIAL,
                         description="ARTERIAL 5mm")
    mr = write_series(d, lin, [(0, 0, 1.0 * k) for k in range(12)], AXIAL, modality="MR")
    (d / "README.txt").write_text("not dicom")
    series = scan_dicom_dir(d)
    assert {s.uid for s in series} == {big, small, mr}
    assert choose_series(series, None, path=d).uid == big  # CT with the most slices, not MR
    by = {s.uid: s for s in series}
    assert by[big].phase == "portal-venous" and by[small].phase == "arterial"
    w: list[str] = []
    img = read_image(d, warnings=w)
    assert img.GetSize()[2] == 8 and any("3 DICOM series found" in x for x in w)
    img2 = read_image(d, series_uid=small)
    assert img2.GetSize()[2] == 3
    with pytest.raises(InputError, match=r"no DICOM series with SeriesInstanceUID 9\.9"):
        read_image(d, series_uid="9.9")


def test_duplicate_positions_and_mixed_orientations_are_errors(tmp_path: Path) -> None:
    uid = generate_uid()
    write_series(tmp_path / "dup", lin, [(0, 0, 0), (0, 0, 2), (0, 0, 4)], AXIAL, uid=uid)
    write_series(tmp_path / "dup2", lin, [(0, 0, 2), (0, 0, 6)], AXIAL, uid=uid)
    for f in (tmp_path / "dup2").iterdir():
        shutil.move(str(f), tmp_path / "dup" / ("b" + f.name))
    with pytest.raises(InputError, match="duplicated slice position"):
        read_image(tmp_path / "dup")
    uid = generate_uid()
    write_series(tmp_path / "mix", lin, [(0, 0, 0), (0, 0, 2)], AXIAL, uid=uid)
    write_series(tmp_path / "mix", lin, [(0, 0, 5)], (1, 0, 0, 0, 0, -1), uid=uid)
    with pytest.raises(InputError, match="mixes slice orientations"):
        read_image(tmp_path / "mix")


def test_phase_guess() -> None:
    ds = pydicom.Dataset()
    ds.SeriesDescription = "Abd 5/5mm Plain"
    assert guess_phase(ds) == "native"
    ds.SeriesDescription = "LIVER 2 PHASE (C/A/P)"
    assert guess_phase(ds) is None
    ds.SeriesDescription = "Delayed 3 min"
    assert guess_phase(ds) == "delayed"


def test_inspect_command(tmp_path: Path) -> None:
    from a0verify.cli import main

    d = tmp_path / "study"
    big = write_series(d, lin, [(0, 0, 2.0 * k) for k in range(5)], AXIAL,
                       description="venous\x1b[31m")
    small = write_series(d, lin, [(0, 0, 3.0 * k) for k in range(2)], AXIAL)
    res = CliRunner().invoke(main, ["inspect", str(d)])
    assert res.exit_code == 0, res.output
    assert f"* {big}" in res.output and f"  {small}" in res.output
    assert "\x1b" not in res.output  # header text is sanitised for the terminal
    res = CliRunner().invoke(main, ["inspect", "--json", str(d)])
    rows = json.loads(res.output)
    assert [r["slices"] for r in rows] == [5, 2] and rows[0]["default"]
    assert rows[0]["slice_step_mm"] == pytest.approx(2.0)
    res = CliRunner().invoke(main, ["inspect", str(tmp_path / "nothing")])
    assert res.exit_code == 2


# ------------------------------------------------------------------------------------ real data


def _sitk_series(path: Path) -> sitk.Image:
    r = sitk.ImageSeriesReader()
    uid = r.GetGDCMSeriesIDs(str(path))[0]
    r.SetFileNames(r.GetGDCMSeriesFileNames(str(path), uid))
    return r.Execute()


def test_hcc048_series_matches_simpleitk() -> None:
    d = need("hcc048/HCC048_portal_venous")
    w: list[str] = []
    img = read_image(d, warnings=w)
    assert w == []
    assert img.GetSize() == (512, 512, 89)
    np.testing.assert_allclose(img.GetSpacing(), (0.703125, 0.703125, 2.5))
    np.testing.assert_allclose(img.GetOrigin(), (-180, -180, -396))
    ref = _sitk_series(d)
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(img), sitk.GetArrayViewFromImage(ref))
    assert geometry.same_grid(img, ref, tol_mm=1e-6)
    uid = "1.3.6.1.4.1.14519.5.2.1.1706.8374.212512542241432476118639218381"
    assert read_image(d, series_uid=uid).GetSize() == (512, 512, 89)


def test_totalsegmentator_jpeg2000_series_and_flipped_segmentation() -> None:
    d = need("totalsegmentator/example_ct_dicom")
    w: list[str] = []
    img = read_image(d, warnings=w)
    assert w == []
    assert img.GetSize() == (512, 512, 20)
    np.testing.assert_allclose(img.GetSpacing(), (0.9765625, 0.9765625, 2.0))
    ref = _sitk_series(d)
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(img), sitk.GetArrayViewFromImage(ref))
    # the series has no SeriesInstanceUID: it is found and selectable as ""
    assert read_image(d, series_uid="").GetSize() == (512, 512, 20)
    from a0verify.io import read_mask

    seg_path = DATA / "totalsegmentator/example_seg_dicom.nii.gz"
    raw = sitk.ReadImage(str(seg_path))
    assert raw.GetDirection()[4] == -1.0
    seg = read_mask(seg_path, reference=img)
    assert geometry.same_grid(seg, img)
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(seg),
                                  sitk.GetArrayViewFromImage(raw)[:, ::-1, :])


def _series_from_single_slice(src: Path, folder: Path, n: int, step: float) -> None:
    """Copies of one (compressed) slice re-positioned into an n-slice series (pixels untouched)."""
    folder.mkdir()
    uid = generate_uid()
    for k in range(n):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # bad_sequence.dcm has non-conformant UIDs
            ds = pydicom.dcmread(src)
            pos = [float(v) for v in ds.ImagePositionPatient]
            ds.ImagePositionPatient = [pos[0], pos[1], pos[2] + step * k]
            ds.SeriesInstanceUID = uid
            ds.SOPInstanceUID = generate_uid()
            ds.InstanceNumber = k + 1
            ds.save_as(str(folder / f"{k:02d}.dcm"))


def test_jpeg2000_lossless_decodes_like_uncompressed(tmp_path: Path) -> None:
    d = need("pydicom")
    _series_from_single_slice(d / "693_J2KR.dcm", tmp_path / "j2k", 3, 5.0)
    _series_from_single_slice(d / "693_UNCR.dcm", tmp_path / "unc", 3, 5.0)
    a = read_image(tmp_path / "j2k")
    b = read_image(tmp_path / "unc")
    assert a.GetSize() == (512, 512, 3)
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(a), sitk.GetArrayViewFromImage(b))
    arr = sitk.GetArrayViewFromImage(a)
    assert arr.min() == -3024 and arr.max() == 1468  # stored -2000..2492, intercept -1024


def test_jpeg_lossless_with_malformed_sequence(tmp_path: Path) -> None:
    d = need("pydicom")
    _series_from_single_slice(d / "bad_sequence.dcm", tmp_path / "jl", 2, 1.0)
    img = read_image(tmp_path / "jl")
    one = sitk.GetArrayFromImage(sitk.ReadImage(str(d / "bad_sequence.dcm")))[0]
    arr = sitk.GetArrayViewFromImage(img)
    assert arr.shape == (2, 512, 512)
    np.testing.assert_array_equal(arr[0], one)
    assert -1100 < float(arr.min()) and float(arr.max()) < 3100  # HU range, not raw bytes


def test_enhanced_multiframe_ct() -> None:
    f = need("pydicom") / "eCT_Supplemental.dcm"
    w: list[str] = []
    img = read_image(f, warnings=w)
    assert w == []
    assert img.GetSize() == (512, 512, 2)
    ds = pydicom.dcmread(f)
    frames = ds.pixel_array.astype(float) * 1.0 - 1024.0  # shared PixelValueTransformation
    arr = sitk.GetArrayViewFromImage(img)
    # the two frames sit at z = -159 and -149 (frame functional groups); find each in the image
    for k, fr in enumerate(ds.PerFrameFunctionalGroupsSequence):
        p = np.asarray([float(v) for v in fr.PlanePositionSequence[0].ImagePositionPatient])
        idx = geometry.lps_to_zyx_index(img, p)
        np.testing.assert_allclose(idx, np.round(idx), atol=1e-6)
        z = round(float(idx[0]))
        assert idx[1] == pytest.approx(0) and idx[2] == pytest.approx(0)
        np.testing.assert_array_equal(arr[z], frames[k])
    assert img.GetSpacing()[2] == pytest.approx(10.0)


def test_pydicom_folder_default_series_is_reported_not_crashing() -> None:
    d = need("pydicom")
    # 693_* share one SeriesInstanceUID and one position: three versions of one slice
    with pytest.raises(InputError, match="duplicated slice position") as ei:
        read_image(d)
    assert str(d) in str(ei.value)
    uid = "1.3.6.1.4.1.5962.1.3.10.3.1166562673.14401"  # the Enhanced CT file
    assert read_image(d, series_uid=uid).GetSize() == (512, 512, 2)


def test_dcmqi_ct_three_slices() -> None:
    d = need("dcmqi/ct-3slice")
    img = read_image(d)
    assert img.GetSize() == (512, 512, 3)
    np.testing.assert_allclose(img.GetSpacing(), (0.810547, 0.810547, 1.0), atol=1e-6)
    arr = sitk.GetArrayViewFromImage(img)
    assert arr.min() == -3024 and arr.max() == 1381
