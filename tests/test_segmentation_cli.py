"""``a0verify segment ablation|tumor``: files written, one-line errors, exit codes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from click.testing import CliRunner

from a0verify import geometry
from a0verify.cli import main
from a0verify.segmentation import dice_coefficient

sys.path.insert(0, str(Path(__file__).parent))
from test_segmentation import _scene


@pytest.fixture(scope="module")
def post(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, sitk.Image]:
    img, truth = _scene(gas=())
    p = tmp_path_factory.mktemp("seg") / "post.nii.gz"
    sitk.WriteImage(img, str(p))
    return p, truth


def test_segment_ablation_writes_mask_and_stats(post: tuple[Path, sitk.Image],
                                                tmp_path: Path) -> None:
    path, truth = post
    out, st = tmp_path / "zone.nrrd", tmp_path / "zone.json"
    r = CliRunner().invoke(main, ["segment", "ablation", "--image", str(path), "--seed",
                                  "0,0,0", "--out", str(out), "--stats", str(st)])
    assert r.exit_code == 0, r.output
    mask = sitk.ReadImage(str(out))
    assert geometry.same_grid(mask, truth)
    assert dice_coefficient(mask, truth) >= 0.93
    data = json.loads(st.read_text())
    assert data["stats"]["volume_ml"] > 0 and data["warnings"] == []


def test_segment_tumor_cli(tmp_path: Path) -> None:
    img, truth = _scene(zones=(((0.0, 0.0, 0.0), (8, 7, 8)),), zone_hu=55.0, rim_hu=100.0,
                        gas=())
    p = tmp_path / "pre.nrrd"
    sitk.WriteImage(img, str(p))
    out = tmp_path / "tumor.nii.gz"
    r = CliRunner().invoke(main, ["segment", "tumor", "--image", str(p), "--seed", "0, 0, 0",
                                  "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert dice_coefficient(sitk.ReadImage(str(out)), truth) >= 0.88


def test_seed_outside_exit_2_one_line(post: tuple[Path, sitk.Image], tmp_path: Path) -> None:
    path, _ = post
    out = tmp_path / "zone.nii.gz"
    r = CliRunner().invoke(main, ["segment", "ablation", "--image", str(path), "--seed",
                                  "0,0,900", "--out", str(out)])
    assert r.exit_code == 2
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and "(--seed): seed (0, 0, 900) LPS mm lies outside" in lines[0]
    assert str(path) in lines[0]
    assert not out.exists()


def test_segmentation_failure_exit_4(post: tuple[Path, sitk.Image], tmp_path: Path) -> None:
    path, _ = post
    out = tmp_path / "zone.nii.gz"
    # a seed in the parenchyma far from the zone: no non-enhancing zone there
    r = CliRunner().invoke(main, ["segment", "ablation", "--image", str(path), "--seed",
                                  "-30,-30,0", "--out", str(out)])
    assert r.exit_code == 4, r.output
    assert r.output.strip().startswith("a0verify: error:")
    assert not out.exists()


def test_bad_seed_and_bad_suffix(post: tuple[Path, sitk.Image], tmp_path: Path) -> None:
    path, _ = post
    r = CliRunner().invoke(main, ["segment", "ablation", "--image", str(path), "--seed", "1,2",
                                  "--out", str(tmp_path / "m.nii.gz")])
    assert r.exit_code == 2
    r = CliRunner().invoke(main, ["segment", "ablation", "--image", str(path), "--seed",
                                  "0,0,0", "--out", str(tmp_path / "m.png")])
    assert r.exit_code == 2 and "must end with" in r.output


# --------------------------------------------------------------------------- lines, markups,
# --------------------------------------------------------------------------- correction loop
def _tumor_scene() -> tuple[sitk.Image, sitk.Image, list[float], list[float]]:
    from a0verify.segmentation.realdata import recist_line

    img, truth = _scene(zones=(((0.0, 0.0, 0.0), (10, 8, 9)),), zone_hu=70.0, rim_hu=100.0,
                        gas=())
    a, b, _ = recist_line(sitk.GetArrayFromImage(truth).astype(bool), truth)
    return img, truth, a, b


def _mrk(path: Path, markups: list[dict]) -> Path:
    path.write_text(json.dumps({"@schema": "https://raw.githubusercontent.com/slicer/slicer/"
                                "main/Modules/Loadable/Markups/Resources/Schema/"
                                "markups-schema-v1.0.3.json#", "markups": markups}))
    return path


def _cp(label: str, pos: list[float], status: str = "defined") -> dict:
    return {"label": label, "position": pos, "positionStatus": status}


def test_segment_tumor_line_writes_mask_seg_nrrd_and_quality(tmp_path: Path) -> None:
    from a0verify.io import read_mask

    img, truth, a, b = _tumor_scene()
    p = tmp_path / "pre.nii.gz"
    sitk.WriteImage(img, str(p))
    out, st = tmp_path / "tumor.nii.gz", tmp_path / "t.json"
    line = ",".join(f"{v:.3f}" for v in a) + ":" + ",".join(f"{v:.3f}" for v in b)
    r = CliRunner().invoke(main, ["segment", "tumor", "--image", str(p), "--line", line,
                                  "--out", str(out), "--stats", str(st)])
    assert r.exit_code == 0, r.output
    assert "quality" in r.output and "tumor.seg.nrrd" in r.output
    mask = sitk.ReadImage(str(out))
    assert dice_coefficient(mask, truth) >= 0.88
    seg = tmp_path / "tumor.seg.nrrd"
    back = read_mask(seg, what="tumour mask")  # what `run --tumor edited.seg.nrrd` reads
    arr = sitk.GetArrayFromImage(mask)
    box = geometry.nonzero_index_box(arr)
    assert box is not None
    assert int(sitk.GetArrayViewFromImage(back).astype(bool).sum()) == int(arr.sum())
    doc = json.loads(st.read_text())
    assert doc["quality"]["level"] in ("good", "review", "poor")
    assert set(doc["quality"]) >= {"boundary_contrast_hu", "weak_boundary_fraction",
                                   "leak_suspicion", "touches_image_edge", "reasons"}
    assert doc["inputs"]["line_lps"][0] == pytest.approx(a, abs=1e-3)


def test_segment_tumor_from_markups_ras_line_and_points(tmp_path: Path) -> None:
    """A Slicer markups file in RAS with a line, an inside point and an 'outside' point list
    gives the same tumour as the options in LPS."""
    img, truth, a, b = _tumor_scene()
    p = tmp_path / "pre.nrrd"
    sitk.WriteImage(img, str(p))
    ras = [geometry.lps_to_ras(np.asarray(v)).tolist() for v in (a, b)]
    mrk = _mrk(tmp_path / "m.mrk.json", [
        {"type": "Line", "name": "D1", "coordinateSystem": "RAS",
         "controlPoints": [_cp("1", ras[0]), _cp("2", ras[1])]},
        {"type": "Fiducial", "coordinateSystem": "LPS",
         "controlPoints": [_cp("in", [0.0, 0.0, 0.0]), _cp("pending", [5, 5, 5], "preview")]},
        {"type": "Fiducial", "name": "outside", "coordinateSystem": "LPS",
         "controlPoints": [_cp("v", [30.0, 30.0, 0.0])]},
    ])
    out, st = tmp_path / "t.seg.nrrd", tmp_path / "t.json"
    r = CliRunner().invoke(main, ["segment", "tumor", "--image", str(p), "--markups", str(mrk),
                                  "--out", str(out), "--stats", str(st)])
    assert r.exit_code == 0, r.output
    doc = json.loads(st.read_text())
    assert doc["inputs"]["line_lps"][0] == pytest.approx(a, abs=1e-6)
    assert doc["inputs"]["seeds_lps"] == [[0.0, 0.0, 0.0]]
    assert doc["inputs"]["outside_lps"] == [[30.0, 30.0, 0.0]]
    from a0verify.io import read_mask

    mask = read_mask(out, what="tumour mask", reference=img)
    assert dice_coefficient(sitk.Cast(mask > 0, sitk.sitkUInt8), truth) >= 0.88


def test_markups_errors_are_one_line_exit_2(tmp_path: Path) -> None:
    img, _, _, _ = _tumor_scene()
    p = tmp_path / "pre.nrrd"
    sitk.WriteImage(img, str(p))
    two = _mrk(tmp_path / "two.mrk.json", [
        {"type": "Line", "controlPoints": [_cp("1", [0, 0, 0]), _cp("2", [9, 0, 0])]},
        {"type": "Line", "controlPoints": [_cp("1", [0, 1, 0]), _cp("2", [9, 1, 0])]}])
    bad = tmp_path / "bad.mrk.json"
    bad.write_text("{not json")
    um = _mrk(tmp_path / "um.mrk.json", [{"type": "Fiducial", "coordinateUnits": "um",
                                          "controlPoints": [_cp("1", [0, 0, 0])]}])
    far = _mrk(tmp_path / "far.mrk.json", [{"type": "Fiducial",
                                            "controlPoints": [_cp("1", [0, 0, 900])]}])
    for f, msg in ((two, "holds 2 lines"), (bad, "not a 3D Slicer markups file"),
                   (um, "only mm"), (tmp_path / "missing.mrk.json", "does not exist"),
                   (far, "lies outside")):
        r = CliRunner().invoke(main, ["segment", "tumor", "--image", str(p), "--markups",
                                      str(f), "--out", str(tmp_path / "t.nii.gz")])
        assert r.exit_code == 2, (f, r.output)
        assert len(r.output.strip().splitlines()) == 1 and msg in r.output, r.output
    r = CliRunner().invoke(main, ["segment", "tumor", "--image", str(p), "--line", "0,0,0:1,2",
                                  "--out", str(tmp_path / "t.nii.gz")])
    assert r.exit_code == 2 and "is not three finite numbers" in r.output
    r = CliRunner().invoke(main, ["segment", "tumor", "--image", str(p), "--line", "0,0,0",
                                  "--out", str(tmp_path / "t.nii.gz")])
    assert r.exit_code == 2 and "X1,Y1,Z1:X2,Y2,Z2" in r.output


@pytest.mark.slow
def test_run_with_tumor_line_writes_seg_nrrd_quality_and_correction_loop(
        small_case: dict[str, Path], tmp_path: Path) -> None:
    """`run --tumor-line --ablation-seed`: segmentations written as .seg.nrrd, quality in
    report.json; the .seg.nrrd files passed back as --tumor/--ablation give the same result."""
    from a0verify.phantom import spec_from_dict
    from a0verify.segmentation.realdata import recist_line

    truth = json.loads(small_case["truth"].read_text())
    les = truth["lesions"][0]
    tum = sitk.ReadImage(str(small_case["tumor"]))
    a, b, _ = recist_line(sitk.GetArrayFromImage(tum) == les["id"], tum)
    line = ",".join(f"{v:.3f}" for v in a) + ":" + ",".join(f"{v:.3f}" for v in b)
    seed = ",".join(f"{v:.3f}" for v in les["zone_center_post_lps"])
    out = tmp_path / "r1"
    args = ["run", "--pre", str(small_case["pre"]), "--post", str(small_case["post"]),
            "--registration", "none", "-q"]
    r = CliRunner().invoke(main, [*args, "--tumor-line", line, "--ablation-seed", seed,
                                  "--out", str(out)])
    assert r.exit_code == 0, r.output
    rep = json.loads((out / "report.json").read_text())
    assert rep["outputs"]["tumor_segmentation"] == "tumor_segmentation.seg.nrrd"
    assert rep["outputs"]["ablation_segmentation"] == "ablation_segmentation.seg.nrrd"
    seg = rep["segmentation"]
    assert seg["ablation"]["quality"]["level"] in ("good", "review", "poor")
    assert len(seg["tumor"]["quality"]) == 1 and seg["tumor"]["lines_lps"]
    assert {n["structure"] for n in seg["quality_notes"]} == {"tumour", "ablation zone"}
    html = (out / "report.html").read_text()
    for n in seg["quality_notes"]:
        assert (n["text"].replace("'", "&#39;") in html) == (n["level"] != "good")
    out2 = tmp_path / "r2"
    r = CliRunner().invoke(main, [*args, "--tumor", str(out / "tumor_segmentation.seg.nrrd"),
                                  "--ablation", str(out / "ablation_segmentation.seg.nrrd"),
                                  "--out", str(out2)])
    assert r.exit_code == 0, r.output
    rep2 = json.loads((out2 / "report.json").read_text())
    assert rep2["min_margin_mm"] == pytest.approx(rep["min_margin_mm"], abs=0.05)
    assert "tumor_segmentation" not in rep2["outputs"]
    assert spec_from_dict(truth["spec"]) is not None
