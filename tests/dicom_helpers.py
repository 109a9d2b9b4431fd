"""Helpers shared by the DICOM output and PACS tests: a flipped DICOM post series with identity
that needs escaping, a margin result measured on it and exported, and checks."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import SimpleITK as sitk
from pydicom.uid import generate_uid

from a0verify import geometry
from a0verify.dicom_out.ctseries import StudyInfo, write_ct_series

PATIENT = {"PatientName": "O'Brien^<Jane>", "PatientID": "PID-77&1"}
FLIP = np.diag([1.0, -1.0, -1.0])


def flipped_copy(image: sitk.Image, flip: np.ndarray = FLIP) -> sitk.Image:
    """``image`` on the same voxel centres with index axes reversed where ``flip`` is -1."""
    size = np.asarray(image.GetSize())
    corner = np.where(np.diag(flip) < 0, size - 1, 0).astype(float)
    out = sitk.Image([int(v) for v in size], image.GetPixelID())
    out.SetSpacing(image.GetSpacing())
    out.SetDirection((geometry.direction_matrix(image) @ flip).ravel().tolist())
    out.SetOrigin(geometry.index_to_lps(image, corner).tolist())
    return sitk.Resample(image, out, sitk.Transform(), sitk.sitkNearestNeighbor, -1000.0)


def write_post_series(post: sitk.Image, folder: Path, flip: np.ndarray = FLIP) -> str:
    """The post CT as a DICOM series on a flipped grid; returns its SeriesInstanceUID."""
    study = StudyInfo(generate_uid(), generate_uid(), dict(PATIENT), study_date="20240312",
                      study_time="101500", study_id="S1")
    uid = generate_uid()
    write_ct_series(flipped_copy(post, flip), folder, study, series_instance_uid=uid,
                    series_number=3, series_description="PV <b>phase</b> & co", derived=False,
                    extra={"PatientPosition": "FFS"})
    return uid


def make_dicom_result(small_case: dict[str, Path], root: Path) -> dict[str, Any]:
    """A margin result measured on a flipped DICOM post series, exported to DICOM."""
    from a0verify.dicom_out.export import export_dicom
    from a0verify.pipeline import margin_case

    post = sitk.ReadImage(str(small_case["post"]))
    uid = write_post_series(post, root / "post_dcm")
    margin_case(small_case["tumor"], small_case["ablation"], root / "res",
                      post_path=root / "post_dcm")
    exp = export_dicom(root / "res")
    return {"dir": root / "res", "export": exp, "series_uid": uid, "post_dir": root / "post_dcm",
            "report": json.loads((root / "res" / "report.json").read_text())}


def assert_sr_matches_report(values: dict[int, dict[str, Any]],
                             report: dict[str, Any]) -> None:
    """The SR's numbers equal report.json's (decimal strings: 1e-6 relative)."""
    assert sorted(values) == sorted(int(les["id"]) for les in report["lesions"])
    for les in report["lesions"]:
        v = values[int(les["id"])]
        for key in ("min_margin_mm", "uncertainty_mm", "tumor_volume_ml", "residual_volume_ml"):
            assert v[key] == pytest.approx(les[key], rel=1e-6, abs=1e-9), key
        for key, f in les["surface_fraction"].items():
            assert v["surface_fraction"][key] == pytest.approx(f, rel=1e-6, abs=1e-9), key
        assert v["verdict"] == les["verdict"]
        assert v["threshold_mm"] == pytest.approx(report["threshold_mm"])
        np.testing.assert_allclose(v["min_margin_point_lps"], les["min_margin_point_lps"],
                                   atol=1e-5)


def dciodvfy_errors(path: Path) -> list[str]:
    """Error lines of the dicom3tools validator for one file."""
    run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=120)
    return [ln for ln in (run.stdout + run.stderr).splitlines() if ln.startswith("Error")]



