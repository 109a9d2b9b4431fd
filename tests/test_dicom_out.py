"""DICOM outputs (SEG, TID 1500 SR, encapsulated PDF, SC): references to the post CT, geometry on
a flipped axial series (segment centroids read back with highdicom equal the NRRD outputs'
within half a voxel), values equal to report.json, validator (dciodvfy) without errors,
synthesized reference for non-DICOM inputs, anonymized export, missing extra, bad inputs.

The post CT series is written from a phantom with y and z flipped (rows run anterior, slices
run feet-ward), with patient identifiers that need escaping.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import SimpleITK as sitk

pytest.importorskip("highdicom")
import highdicom as hd
import pydicom
from click.testing import CliRunner
from dicom_helpers import PATIENT, assert_sr_matches_report, dciodvfy_errors

from a0verify import geometry
from a0verify.errors import InputError


def _centroid_lps(mask: sitk.Image) -> np.ndarray:
    idx = np.argwhere(sitk.GetArrayViewFromImage(mask) != 0).astype(float)
    return geometry.zyx_index_to_lps(mask, idx).mean(axis=0)


def test_seg_references_and_centroids_on_flipped_series(dicom_result: dict[str, Any]) -> None:
    from a0verify.report.slicer import read_segmentation

    d = dicom_result["dir"]
    seg = hd.seg.segread(d / "dicom" / "seg.dcm")
    ct = [pydicom.dcmread(f) for f in sorted(dicom_result["post_dir"].glob("*.dcm"))]
    by_uid = {str(ds.SOPInstanceUID): ds for ds in ct}
    assert seg.StudyInstanceUID == ct[0].StudyInstanceUID
    assert seg.FrameOfReferenceUID == ct[0].FrameOfReferenceUID
    assert seg.PatientID == PATIENT["PatientID"]
    assert [s.SeriesInstanceUID for s in seg.ReferencedSeriesSequence] == \
        [dicom_result["series_uid"]]
    # every frame names its source CT slice, and lies on it
    for fg in seg.PerFrameFunctionalGroupsSequence:
        src = fg.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        np.testing.assert_allclose(
            [float(v) for v in fg.PlanePositionSequence[0].ImagePositionPatient],
            [float(v) for v in by_uid[src].ImagePositionPatient], atol=1e-4)
    labels = {int(s.SegmentNumber): s.SegmentLabel for s in seg.SegmentSequence}
    assert labels == {1: "tumour 1 (registered)", 2: "ablation zone"}
    codes_ = {int(s.SegmentNumber): s.SegmentedPropertyTypeCodeSequence[0].CodeValue
              for s in seg.SegmentSequence}
    assert codes_ == {1: "108369006", 2: "6574001"}
    nrrd, _ = read_segmentation(d / "segmentation.seg.nrrd")
    spacing = np.asarray(nrrd["ablation"].GetSpacing())
    for number, mask in ((1, nrrd["tumor"]), (2, nrrd["ablation"])):
        vol = seg.get_volume(segment_numbers=[number], combine_segments=True)
        idx = np.argwhere(vol.array != 0).astype(float)
        cen = (vol.affine[:3, :3] @ idx.T).T.mean(axis=0) + vol.affine[:3, 3]
        diff = np.abs(cen - _centroid_lps(mask))
        assert np.all(diff <= 0.5 * spacing.min()), (number, diff)
        # an independent reader (a0verify's DICOM SEG import) agrees
    from a0verify.io.masks import read_dicom_seg

    img, _ = read_dicom_seg(d / "dicom" / "seg.dcm")
    np.testing.assert_allclose(_centroid_lps(img == 2), _centroid_lps(nrrd["ablation"]),
                               atol=0.5 * spacing.min())


def test_sr_values_equal_report(dicom_result: dict[str, Any]) -> None:
    from a0verify.dicom_out.sr import read_sr_values

    d = dicom_result["dir"]
    report = dicom_result["report"]
    sr = pydicom.dcmread(d / "dicom" / "sr.dcm")
    assert sr.StudyInstanceUID == pydicom.dcmread(d / "dicom" / "seg.dcm").StudyInstanceUID
    values = read_sr_values(sr)
    assert_sr_matches_report(values, report)
    # the thinnest point and the volumetric group are tied to the lesion's SEG segment
    seg = pydicom.dcmread(d / "dicom" / "seg.dcm")
    tracking = {int(s.SegmentNumber): str(s.TrackingUID) for s in seg.SegmentSequence}
    for v in values.values():
        assert v["tracking_uid"] == v["point_tracking_uid"] == tracking[v["segment_number"]]
    ev = {str(i.SeriesInstanceUID) for s in sr.CurrentRequestedProcedureEvidenceSequence
          for i in s.ReferencedSeriesSequence}
    assert dicom_result["series_uid"] in ev
    assert report["outputs"]["dicom"] == "dicom"
    assert report["dicom_export"]["reference"] == "original"


def test_validator_reports_no_errors(dicom_result: dict[str, Any]) -> None:
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (Debian package dicom3tools) is not installed")
    folder = dicom_result["dir"] / "dicom"
    for name in ("seg.dcm", "sr.dcm", "report_pdf.dcm", "views_sc.dcm"):
        assert (folder / name).is_file(), name
        assert dciodvfy_errors(folder / name) == [], name


def test_non_dicom_post_and_anonymized_export(small_case: dict[str, Path], tmp_path: Path,
                                             dicom_result: dict[str, Any]) -> None:
    """NIfTI post CT: a new study with a synthesized CT series, referenced and validated.
    Anonymized export of the DICOM result: no identifier in any header, all UIDs new."""
    from a0verify.dicom_out.export import export_dicom
    from a0verify.pipeline import margin_case

    margin_case(small_case["tumor"], small_case["ablation"], tmp_path / "res",
                post_path=small_case["post"])
    exp = export_dicom(tmp_path / "res")
    assert exp.reference == "synthesized" and "not DICOM" in exp.reason
    ct = sorted((exp.folder / "ct").glob("*.dcm"))
    assert len(ct) == sitk.ReadImage(str(small_case["post"])).GetSize()[2]
    seg = pydicom.dcmread(exp.folder / "seg.dcm")
    ct0 = pydicom.dcmread(ct[0])
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == ct0.SeriesInstanceUID
    assert "DERIVED" in ct0.ImageType and "converted" in ct0.SeriesDescription
    if shutil.which("dciodvfy"):
        assert dciodvfy_errors(ct[0]) == []
    assert len(exp.all_files()) == len(ct) + 4

    # anonymized export of the DICOM result (a copy, so the module fixture stays as it was)
    anon_dir = tmp_path / "anon"
    shutil.copytree(dicom_result["dir"], anon_dir)
    shutil.rmtree(anon_dir / "dicom")
    exp = export_dicom(anon_dir, anonymize=True)
    assert exp.reference == "synthesized"
    original_study = pydicom.dcmread(next(dicom_result["post_dir"].glob("*.dcm"))).StudyInstanceUID
    for f in exp.all_files():
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        text = str(ds)
        assert "O'Brien" not in text and "PID-77" not in text, f
        assert ds.StudyInstanceUID != original_study
        assert ds.get("PatientBirthDate", "") == "" and ds.get("StudyDate", "") == ""
    assert pydicom.dcmread(exp.folder / "report_pdf.dcm").BurnedInAnnotation == "NO"


def test_cli_export_and_errors(dicom_result: dict[str, Any], tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    from a0verify.cli import main

    runner = CliRunner()
    r = runner.invoke(main, ["export-dicom", str(dicom_result["dir"])])
    assert r.exit_code == 0, r.output
    assert "seg.dcm" in r.output and "sr.dcm" in r.output
    r = runner.invoke(main, ["export-dicom", str(tmp_path)])
    assert r.exit_code == 2 and "no report.json" in r.output
    moved = tmp_path / "moved"
    shutil.copytree(dicom_result["dir"], moved, ignore=shutil.ignore_patterns("dicom"))
    rep = json.loads((moved / "report.json").read_text())
    rep["provenance"]["inputs"]["post"] = str(tmp_path / "gone")
    (moved / "report.json").write_text(json.dumps(rep))
    r = runner.invoke(main, ["export-dicom", str(moved)])
    assert r.exit_code == 2 and "does not exist; give its new location with --post" in r.output
    assert len(r.output.strip().splitlines()) == 1
    assert not (moved / "dicom").exists() and not list(moved.glob(".dicom.*"))
    # the missing extra is named in one line
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "highdicom" else real(name, *a))
    with pytest.raises(InputError, match=r"pip install 'a0verify\[dicom\]'"):
        from a0verify.dicom_out.export import export_dicom

        export_dicom(dicom_result["dir"])


@pytest.mark.slow
def test_hcc048_real_series_round_trip(tmp_path: Path) -> None:
    """Real TCIA series (HCC_048, 512 x 512 x 89): masks drawn on its grid, margin, export. The
    SEG/SR join the real study and series, frames reference real instances, values and
    centroids round-trip, and the validator finds no error."""
    from conftest import shared_data

    from a0verify.dicom_out.export import export_dicom
    from a0verify.dicom_out.sr import read_sr_values
    from a0verify.io import read_image, write_image
    from a0verify.io.dicom import series_identity
    from a0verify.pipeline import margin_case
    from a0verify.report.slicer import read_segmentation

    series = shared_data("hcc048") / "HCC048_portal_venous"
    ct = read_image(series)
    pts = geometry.voxel_centers_lps(ct)
    centre = np.array([-70.0, -10.0, -290.0])
    tumour = np.linalg.norm(pts - centre, axis=-1) <= 9.0
    zone = np.sum(((pts - centre - [2.0, 0, 0]) / [17.0, 15.0, 16.0]) ** 2, axis=-1) <= 1.0
    write_image(geometry.array_to_image(tumour.astype(np.uint8), ct), tmp_path / "t.nii.gz")
    write_image(geometry.array_to_image(zone.astype(np.uint8), ct), tmp_path / "a.nii.gz")
    margin_case(tmp_path / "t.nii.gz", tmp_path / "a.nii.gz", tmp_path / "res", post_path=series)
    exp = export_dicom(tmp_path / "res")
    report = json.loads((tmp_path / "res" / "report.json").read_text())
    ident = series_identity(series)
    assert ident is not None
    seg = hd.seg.segread(exp.folder / "seg.dcm")
    assert seg.StudyInstanceUID == ident["study_instance_uid"]
    assert seg.FrameOfReferenceUID == ident["frame_of_reference_uid"]
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == ident["series_instance_uid"]
    refs = {str(i.ReferencedSOPInstanceUID)
            for i in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert refs <= set(ident["sop_instance_uids"]) and len(refs) >= 12
    nrrd, _ = read_segmentation(tmp_path / "res" / "segmentation.seg.nrrd")
    for number, mask in ((1, nrrd["tumor"]), (2, nrrd["ablation"])):
        vol = seg.get_volume(segment_numbers=[number], combine_segments=True)
        idx = np.argwhere(vol.array != 0).astype(float)
        cen = (vol.affine[:3, :3] @ idx.T).T.mean(axis=0) + vol.affine[:3, 3]
        assert np.all(np.abs(cen - _centroid_lps(mask)) <= 0.35), number
    assert_sr_matches_report(read_sr_values(pydicom.dcmread(exp.folder / "sr.dcm")), report)
    if shutil.which("dciodvfy"):
        for name in ("seg.dcm", "sr.dcm", "report_pdf.dcm", "views_sc.dcm"):
            assert dciodvfy_errors(exp.folder / name) == [], name


def test_identity_in_report_and_page_escaped(dicom_result: dict[str, Any]) -> None:
    report = dicom_result["report"]
    ident = report["identity"]
    assert ident["anonymized"] is False
    post = ident["series"]["post"]
    assert post["patient_name"] == PATIENT["PatientName"]
    assert post["patient_id"] == PATIENT["PatientID"]
    assert post["study_date"] == "20240312"
    assert post["series_instance_uid"] == dicom_result["series_uid"]
    files = sorted(dicom_result["post_dir"].glob("*.dcm"))
    assert sorted(post["sop_instance_uids"]) == sorted(
        str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files)
    html = (dicom_result["dir"] / "report.html").read_text()
    block = html[html.index('id="identity"'):html.index('id="thinnest"')]
    assert "O&#39;Brien &lt;Jane&gt;" in block and "PID-77&amp;1" in block
    assert "2024-03-12" in block and "PV &lt;b&gt;phase&lt;/b&gt; &amp; co" in block
    assert "<Jane>" not in html and "<b>phase" not in html


def test_anonymized_run_leaves_no_identifier_anywhere(small_case: dict[str, Path],
                                                     dicom_result: dict[str, Any],
                                                     tmp_path: Path) -> None:
    """--anonymize: report.json, page, PDF source, Slicer files and DICOM objects carry no
    patient name, ID, study date or input path; the DICOM objects have new UIDs."""
    from a0verify.dicom_out.export import export_dicom
    from a0verify.pipeline import margin_case

    post_dir = dicom_result["post_dir"]
    res = margin_case(small_case["tumor"], small_case["ablation"], tmp_path / "res",
                      post_path=post_dir, anonymize=True)
    assert res.report["identity"]["anonymized"] is True
    with pytest.raises(InputError, match="give it with --post"):
        export_dicom(tmp_path / "res")
    exp = export_dicom(tmp_path / "res", post=str(post_dir))
    assert exp.reference == "synthesized" and exp.reason == "anonymized export"
    original = pydicom.dcmread(next(post_dir.glob("*.dcm")), stop_before_pixels=True)
    needles = [b"O'Brien", b"Jane", b"PID-77", b"20240312", str(post_dir).encode(),
               str(original.StudyInstanceUID).encode(), str(small_case["tumor"]).encode()]
    checked = 0
    for f in (tmp_path / "res").rglob("*"):
        if f.is_file():
            data = f.read_bytes()
            checked += 1
            for n in needles:
                assert n not in data, (f.name, n)
    assert checked > 10
    assert "Anonymized" in (tmp_path / "res" / "report.html").read_text()
    seg = pydicom.dcmread(exp.folder / "seg.dcm", stop_before_pixels=True)
    assert seg.PatientID == res.report["identity"]["pseudonym"]
    assert seg.StudyInstanceUID == res.report["identity"]["uids"]["study_instance_uid"]


def test_new_run_removes_an_earlier_dicom_export(tmp_path: Path) -> None:
    from a0verify.pipeline import retire_previous_result

    (tmp_path / "dicom" / "ct").mkdir(parents=True)
    (tmp_path / "dicom" / "seg.dcm").write_bytes(b"x")
    (tmp_path / "dicom" / "ct" / "CT_0001.dcm").write_bytes(b"x")
    (tmp_path / "report.json").write_text(json.dumps({"outputs": {"dicom": "dicom"}}))
    retire_previous_result(tmp_path)
    assert not (tmp_path / "dicom").exists() and not (tmp_path / "report.json").exists()


def test_series_without_frame_of_reference_gets_a_synthesized_reference(
        dicom_result: dict[str, Any], tmp_path: Path) -> None:
    """A post CT series whose Frame of Reference UID was stripped (some anonymisers do) cannot be
    referenced by a SEG: the export says so and references a synthesized copy instead (new
    study, the patient kept), rather than failing after the report was written."""
    from a0verify.dicom_out.export import export_dicom

    post = tmp_path / "post"
    post.mkdir()
    for f in sorted(dicom_result["post_dir"].glob("*.dcm")):
        ds = pydicom.dcmread(f)
        del ds.FrameOfReferenceUID
        ds.save_as(post / f.name)
    res = tmp_path / "res"
    shutil.copytree(dicom_result["dir"], res, ignore=shutil.ignore_patterns("dicom"))
    exp = export_dicom(res, post=str(post))
    assert exp.reference == "synthesized" and "FrameOfReferenceUID" in exp.reason
    seg = pydicom.dcmread(exp.folder / "seg.dcm", stop_before_pixels=True)
    original = pydicom.dcmread(next(post.glob("*.dcm")), stop_before_pixels=True)
    assert seg.FrameOfReferenceUID and seg.StudyInstanceUID != original.StudyInstanceUID
    assert seg.PatientID == original.PatientID and seg.PatientName == original.PatientName
    ct0 = pydicom.dcmread(sorted((exp.folder / "ct").glob("*.dcm"))[0], stop_before_pixels=True)
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == ct0.SeriesInstanceUID
