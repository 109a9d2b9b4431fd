"""RT Structure Set masks: rasterisation onto the referenced image (any orientation), holes,
structure selection, and the issue's acceptance test: an RTSTRUCT tumour gives the same minimal
ablative margin as the equivalent label mask (within 0.1 mm).

Structure sets are written here with pydicom from known shapes: contours traced from a label
mask (marching squares at 0.5, so every voxel centre is strictly inside or outside) and analytic
circles of a sphere (what a planning system exports).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

pydicom = pytest.importorskip("pydicom")
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian, generate_uid  # noqa: E402

from a0verify import geometry  # noqa: E402
from a0verify.errors import InputError  # noqa: E402
from a0verify.io.rtstruct import (  # noqa: E402
    RTSTRUCT_STORAGE,
    is_rtstruct,
    read_rtstruct,
    structure_names,
)


def write_rtstruct(path: Path, rois: dict[str, list[np.ndarray]],
                   for_uid: str = "1.2.3.4.5") -> Path:
    """Minimal RT Structure Set: {ROI name: [closed contour (n, 3) LPS mm, ...]}."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = RTSTRUCT_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = RTSTRUCT_STORAGE
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "RTSTRUCT"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.StructureSetLabel = "plan"
    ref = Dataset()
    ref.FrameOfReferenceUID = for_uid
    ds.ReferencedFrameOfReferenceSequence = [ref]
    ds.StructureSetROISequence = []
    ds.ROIContourSequence = []
    for num, (name, contours) in enumerate(rois.items(), start=1):
        roi = Dataset()
        roi.ROINumber, roi.ROIName, roi.ReferencedFrameOfReferenceUID = num, name, for_uid
        ds.StructureSetROISequence.append(roi)
        rc = Dataset()
        rc.ReferencedROINumber = num
        rc.ContourSequence = []
        for pts in contours:
            c = Dataset()
            c.ContourGeometricType = "CLOSED_PLANAR"
            c.NumberOfContourPoints = len(pts)
            c.ContourData = [f"{v:.6f}" for v in np.asarray(pts, float).ravel()]
            rc.ContourSequence.append(c)
        ds.ROIContourSequence.append(rc)
    ds.save_as(str(path), enforce_file_format=True)
    return path


def traced_contours(mask: sitk.Image) -> list[np.ndarray]:
    """Closed contours (LPS) of a binary mask, slice by slice, through the midpoints between
    inside and outside voxel centres."""
    from skimage.measure import find_contours

    arr = np.pad(sitk.GetArrayFromImage(mask) != 0, ((0, 0), (1, 1), (1, 1)))
    out = []
    for k in range(arr.shape[0]):
        if not arr[k].any():
            continue
        for rc in find_contours(arr[k].astype(float), 0.5):
            idx = np.column_stack([rc[:, 1] - 1, rc[:, 0] - 1, np.full(len(rc), float(k))])
            out.append(geometry.index_to_lps(mask, idx))
    return out


def sphere_circles(image: sitk.Image, centre: np.ndarray, radius: float,
                   n: int = 96) -> list[np.ndarray]:
    """Analytic contours of a sphere on each slice plane of ``image`` (any orientation)."""
    d = geometry.direction_matrix(image)
    u, v, w = d[:, 0], d[:, 1], d[:, 2]
    out = []
    for k in range(image.GetSize()[2]):
        p0 = geometry.index_to_lps(image, np.array([0.0, 0.0, float(k)]))
        h = float((centre - p0) @ w)
        if abs(h) >= radius:
            continue
        c = centre - h * w
        r = np.sqrt(radius ** 2 - h ** 2)
        t = np.linspace(0, 2 * np.pi, n, endpoint=False)
        out.append(c + r * (np.cos(t)[:, None] * u + np.sin(t)[:, None] * v))
    return out


def ball(image: sitk.Image, centre: np.ndarray, radius: float) -> sitk.Image:
    pts = geometry.voxel_centers_lps(image)
    inside = np.linalg.norm(pts - centre, axis=-1) <= radius
    return geometry.array_to_image(inside.astype(np.uint16), image)


OBLIQUE = geometry.rotation_matrix([12.0, -8.0, 25.0]) @ np.diag([1.0, -1.0, -1.0])


def test_traced_contours_reproduce_label_mask_oblique_with_hole(tmp_path: Path) -> None:
    img = geometry.make_grid([48, 44, 20], [0.8, 0.8, 2.5], OBLIQUE, center_lps=[10, -5, 30])
    c = np.array([10.0, -5.0, 30.0])
    outer = ball(img, c, 13.0)
    hole = ball(img, c, 5.0)
    ring = sitk.Cast((outer != 0) & (hole == 0), sitk.sitkUInt16)
    rs = write_rtstruct(tmp_path / "rs.dcm", {"GTV": traced_contours(ring)})
    assert is_rtstruct(rs) and is_rtstruct(tmp_path)
    labels, infos = read_rtstruct(rs, img)
    assert [(i.label, i.name) for i in infos] == [(1, "GTV")]
    assert geometry.same_grid(labels, img)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(labels), sitk.GetArrayFromImage(ring))


def test_structure_selection_and_errors(tmp_path: Path) -> None:
    img = geometry.make_grid([40, 40, 16], [1.0, 1.0, 2.0])
    c = np.zeros(3)
    rs = write_rtstruct(tmp_path / "rs.dcm", {
        "Liver": sphere_circles(img, c, 15.0), "GTV": sphere_circles(img, c, 6.0),
        "GTV2": sphere_circles(img, c + np.array([8.0, 8.0, 0.0]), 3.0)})
    assert structure_names(rs) == ["Liver", "GTV", "GTV2"]
    with pytest.raises(InputError, match=r"3 structures \('Liver', 'GTV', 'GTV2'\); choose with "
                                         r"--tumor-structure NAME"):
        read_rtstruct(rs, img)
    with pytest.raises(InputError, match="no structure named 'PTV'"):
        read_rtstruct(rs, img, structures=["PTV"])
    labels, infos = read_rtstruct(rs, img, structures=["gtv", "GTV2"])
    assert [(i.label, i.name) for i in infos] == [(1, "GTV"), (2, "GTV2")]
    assert set(np.unique(sitk.GetArrayViewFromImage(labels))) == {0, 1, 2}
    # the same structures on a grid whose slices fall between the contours
    shifted = geometry.make_grid([40, 40, 16], [1.0, 1.0, 2.0], center_lps=[0, 0, 1.0])
    with pytest.raises(InputError, match="lies between the image slices"):
        read_rtstruct(rs, shifted, structures=["GTV"])
    tilted = geometry.make_grid([40, 40, 16], [1.0, 1.0, 2.0],
                                geometry.rotation_matrix([20.0, 0.0, 0.0]))
    with pytest.raises(InputError, match="not parallel"):
        read_rtstruct(rs, tilted, structures=["GTV"])
    not_rs = tmp_path / "x.dcm"
    not_rs.write_bytes(b"\0" * 200)
    assert not is_rtstruct(not_rs)


def test_rtstruct_tumour_gives_the_same_margin_as_the_label_mask(tmp_path: Path) -> None:
    """Acceptance: |MAM(RTSTRUCT) - MAM(label mask)| <= 0.1 mm, at clinical anisotropic
    spacing on an oblique, flipped grid; both within the discretisation of the analytic truth."""
    from a0verify.margin import compute_margin

    img = geometry.make_grid([64, 64, 30], [0.8, 0.8, 2.5], OBLIQUE, center_lps=[0, 0, 0])
    tumour_c, r_t = np.array([1.0, -2.0, 0.5]), 9.0
    zone_c, r_z = np.array([3.5, -2.0, 0.5]), 16.0
    truth = r_z - r_t - float(np.linalg.norm(zone_c - tumour_c))
    label = ball(img, tumour_c, r_t)
    ablation = sitk.Cast(ball(img, zone_c, r_z), sitk.sitkUInt8)
    rs = write_rtstruct(tmp_path / "rs.dcm", {"GTV": sphere_circles(img, tumour_c, r_t),
                                              "Liver": sphere_circles(img, zone_c, 25.0)})
    rt_mask, _ = read_rtstruct(rs, img, structures=["GTV"])
    m_label = compute_margin(label, ablation, 5.0).lesions[0].min_margin_mm
    m_rt = compute_margin(rt_mask, ablation, 5.0).lesions[0].min_margin_mm
    assert abs(m_rt - m_label) <= 0.1, (m_rt, m_label)
    assert abs(m_label - truth) < 1.0


def test_cli_margin_with_rtstruct_names_the_structure(tmp_path: Path) -> None:
    """`a0verify margin --tumor RS --tumor-structure NAME`: rasterised onto --post, the same
    margin as the label mask, and report.json / the page name the structure."""
    import json

    from click.testing import CliRunner

    from a0verify.cli import main
    from a0verify.io import write_image

    img = geometry.make_grid([56, 56, 24], [0.9, 0.9, 2.0], np.diag([1.0, -1.0, -1.0]))
    ct = sitk.Cast(img, sitk.sitkInt16) + 60
    write_image(ct, tmp_path / "post.nrrd")
    tumour_c = np.array([0.5, 1.0, 0.0])
    write_image(ball(img, tumour_c, 7.0), tmp_path / "tumour.nrrd")
    write_image(ball(img, np.array([2.0, 1.0, 0.0]), 14.0), tmp_path / "abl.nrrd")
    rs = write_rtstruct(tmp_path / "rs.dcm", {"GTV <1>": sphere_circles(img, tumour_c, 7.0),
                                              "Body": sphere_circles(img, tumour_c, 20.0)})
    runner = CliRunner()
    base = ["margin", "--ablation", str(tmp_path / "abl.nrrd"), "--post",
            str(tmp_path / "post.nrrd"), "-q"]
    r = runner.invoke(main, [*base, "--tumor", str(rs), "--out", str(tmp_path / "o1")])
    assert r.exit_code == 2 and "choose with --tumor-structure NAME" in r.output
    r = runner.invoke(main, [*base, "--tumor", str(rs), "--tumor-structure", "gtv <1>",
                             "--out", str(tmp_path / "rt")])
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, [*base, "--tumor", str(tmp_path / "tumour.nrrd"),
                             "--out", str(tmp_path / "lab")])
    assert r.exit_code == 0, r.output
    rep_rt = json.loads((tmp_path / "rt" / "report.json").read_text())
    rep_lab = json.loads((tmp_path / "lab" / "report.json").read_text())
    assert rep_rt["mask_sources"] == {"tumor": {"format": "RTSTRUCT", "file": "rs.dcm",
                                                "structures": ["GTV <1>"]}}
    assert "mask_sources" not in rep_lab
    assert abs(rep_rt["min_margin_mm"] - rep_lab["min_margin_mm"]) <= 0.1
    page = (tmp_path / "rt" / "report.html").read_text()
    assert "RT Structure Set <code>rs.dcm</code>, structure “GTV &lt;1&gt;”" in page
    r = runner.invoke(main, [*base, "--tumor", str(tmp_path / "tumour.nrrd"),
                             "--tumor-structure", "GTV", "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "is not a DICOM RT Structure Set" in r.output
