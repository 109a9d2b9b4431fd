"""Report: JSON schema, self-contained HTML, figures, 3-D render, Slicer outputs, `a0verify report`.

The case is analytic: a sphere tumour (radius 8 mm) inside an ellipsoidal ablation zone shifted so
the margin is thinnest on the patient's left (+x LPS), on an oblique anisotropic grid.
"""

from __future__ import annotations

import base64
import copy
import io
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import SimpleITK as sitk
from click.testing import CliRunner

from a0verify import geometry
from a0verify.errors import InputError

THR = 5.0
TUMOR_C = np.array([10.0, -5.0, 3.0])
R_T = 8.0
ZONE_C = TUMOR_C + np.array([-4.0, 0.0, 0.0])  # zone shifted right: thinnest margin on the left
ZONE_AX = np.array([15.0, 16.0, 17.0])
EVIL = "<script>alert('x')</script>&\"q\""


def _grid() -> sitk.Image:
    d = geometry.rotation_matrix([0.0, 0.0, 12.0])
    return geometry.make_grid([72, 72, 24], [0.8, 0.8, 2.0], direction=d,
                              center_lps=TUMOR_C.tolist())


def _masks() -> tuple[sitk.Image, sitk.Image, sitk.Image]:
    g = _grid()
    pts = geometry.voxel_centers_lps(g).reshape(-1, 3)
    shape = sitk.GetArrayViewFromImage(g).shape
    tum = (np.linalg.norm(pts - TUMOR_C, axis=1) <= R_T).reshape(shape).astype(np.uint8)
    zone = (np.sum(((pts - ZONE_C) / ZONE_AX) ** 2, axis=1) <= 1.0).reshape(shape)
    rng = np.random.default_rng(3)
    ct = 60.0 + rng.normal(0, 12, shape) - 45.0 * zone
    return (geometry.array_to_image(tum, g), geometry.array_to_image(zone.astype(np.uint8), g),
            geometry.array_to_image(ct.astype(np.float32), g))


class _Reg:
    """Stand-in for a RegistrationResult (public attributes only)."""

    def __init__(self, post: sitk.Image) -> None:
        self.method = "rigid"
        self.transform = sitk.TranslationTransform(3, (0.5, -0.25, 0.0))
        self.uncertainty_mm = 0.4
        self.qa_images = {"checkerboard": sitk.Cast(post, sitk.sitkFloat32),
                          "difference": sitk.Cast(post * 0.1, sitk.sitkFloat32)}

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "uncertainty_mm": self.uncertainty_mm,
                "metrics": {"similarity_roi": {"before": {"ncc": 0.61}, "after": {"ncc": 0.93}},
                            "displacement_mm": {"p95": 0.56, "max": 0.56}},
                "warnings": [], "timings_s": {"elastix": 1.0}}


def _judge(margin: Any, registration_uncertainty_mm: float = 0.0) -> Any:
    from a0verify.verdict import judge

    return judge(((les.id, les.min_margin_mm, les.uncertainty_mm) for les in margin.lesions),
                 margin.threshold_mm, registration_uncertainty_mm)


def _make_case(out: Path, *, with_post: bool) -> tuple[dict[str, Any], Any]:
    """Run margin -> build_report -> write_case_outputs -> report.json like the pipeline."""
    from a0verify.io import write_json_atomic
    from a0verify.margin import compute_margin
    from a0verify.report import write_case_outputs
    from a0verify.report.model import build_report

    tum, zone, ct = _masks()
    margin = compute_margin(tum, zone, THR, second_threshold_mm=10.0 if with_post else None)
    reg = _Reg(ct) if with_post else None
    report = build_report(
        margin, _judge(margin, 0.4 if reg else 0.0), command="run" if with_post else "margin",
        inputs={"tumor": None, "ablation": None, "post": None},
        parameters={"threshold_mm": THR, "note": EVIL}, timings_s={"margin": 1.0},
        warnings=[f"input name {EVIL}"], registration=reg.to_dict() if reg else None)
    report["provenance"]["inputs"]["tumor"] = f"/data/{EVIL}.nii.gz"
    out.mkdir(parents=True, exist_ok=True)
    report["outputs"].update(write_case_outputs(
        out, report, margin=margin, ablation=zone, tumor_post=tum,
        post=ct if with_post else None, qa_images=reg.qa_images if reg else None))
    report["outputs"]["report_json"] = "report.json"
    write_json_atomic(out / "report.json", report)
    return report, margin


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("report_case")
    report, margin = _make_case(out, with_post=True)
    return {"dir": out, "report": report, "margin": margin}


@pytest.fixture(scope="module")
def case_no_post(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("report_case_nopost")
    report, margin = _make_case(out, with_post=False)
    return {"dir": out, "report": report, "margin": margin}


# --------------------------------------------------------------------------- schema
def test_schema_is_valid_and_shipped() -> None:
    import jsonschema

    from a0verify.report import report_schema

    schema = report_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["properties"]["schema_version"]


def test_pipeline_reports_validate(case: dict[str, Any], case_no_post: dict[str, Any]) -> None:
    from a0verify.report import validate_report

    for c in (case, case_no_post):
        on_disk = json.loads((c["dir"] / "report.json").read_text())
        validate_report(on_disk)
        for name in on_disk["outputs"].values():
            assert (c["dir"] / name).is_file(), name
    les = case["report"]["lesions"][0]
    assert les["deficit_patches"], "the thin left side must give a deficit patch"
    assert case["report"]["registration"]["metrics"]["similarity_roi"]["after"]["ncc"] == 0.93


@pytest.mark.parametrize("mutate", [
    lambda r: r.update(verdict="A1"),
    lambda r: r.pop("lesions"),
    lambda r: r["lesions"][0]["surface_fraction"].update(below_zero=1.5),
    lambda r: r.update(min_margin_point_lps=[1.0, 2.0]),
    lambda r: r["provenance"].pop("sign_convention"),
    lambda r: r["outputs"].update(evil="../../etc/passwd"),
    lambda r: r.update(registration={"metrics": {}}),
])
def test_schema_rejects_broken_reports(case: dict[str, Any], mutate: Any) -> None:
    from a0verify.report import validate_report

    bad = copy.deepcopy(case["report"])
    mutate(bad)
    with pytest.raises(InputError, match=r"^x\.json: does not match the report schema"):
        validate_report(bad, "x.json")


@pytest.mark.slow
def test_margin_command_report_validates(tmp_path: Path) -> None:
    """The real pipeline (a0verify margin on testdata/case01) writes a schema-valid report."""
    from a0verify.pipeline import margin_case
    from a0verify.report import validate_report

    root = Path(__file__).resolve().parents[1] / "testdata" / "case01"
    if not root.is_dir():
        pytest.skip(f"{root} is absent")
    res = margin_case(root / "tumor.nii.gz", root / "ablation.nii.gz", tmp_path,
                      post_path=root / "post.nii.gz")
    validate_report(json.loads((tmp_path / "report.json").read_text()))
    assert "post_ct_roi" in res.report["outputs"]


# --------------------------------------------------------------------------- HTML
class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.refs: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for k, v in attrs:
            if k in ("src", "href", "srcset", "data", "action", "poster") and v is not None:
                self.refs.append(v)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(path: Path) -> _Refs:
    p = _Refs()
    p.feed(path.read_text("utf-8"))
    return p


@pytest.mark.parametrize("which", ["case", "case_no_post"])
def test_html_is_self_contained(which: str, request: pytest.FixtureRequest) -> None:
    c = request.getfixturevalue(which)
    html = (c["dir"] / "report.html").read_text("utf-8")
    p = _parse(c["dir"] / "report.html")
    assert p.refs and all(r.startswith("data:image/png;base64,") for r in p.refs), \
        [r[:40] for r in p.refs if not r.startswith("data:")]
    assert not {"link", "iframe", "object", "embed", "base"} & set(p.tags)
    # scripts only inline (the data, the vendored three.js bundle, the viewer): nothing loaded
    assert p.tags.count("script") == 3 and "<script src" not in html
    assert '<script type="application/json" id="a0v-data">' in html
    assert "@import" not in html and not re.search(r"url\(", html)
    assert not re.search(r"(fetch|XMLHttpRequest|importScripts|WebSocket)\(", html)
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:|//|file:)", html, re.I)
    n_img = p.tags.count("img")
    assert n_img == (5 if which == "case" else 4)  # views, 2 x 3-D, histogram (+ registration)
    for r in p.refs:  # every embedded image decodes as a PNG
        assert base64.b64decode(r.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"


def test_html_content_and_escaping(case: dict[str, Any]) -> None:
    html = (case["dir"] / "report.html").read_text("utf-8")
    text = " ".join(_parse(case["dir"] / "report.html").text)
    r = case["report"]
    assert r["verdict"] in ("insufficient", "indeterminate")
    assert "Verdict: INSUFFICIENT margin" in text or "Verdict: INDETERMINATE" in text
    assert f"{r['min_margin_mm']:.1f} mm" in text
    assert "Research use only" in text
    for key in ("thinnest point LPS", "thinnest point RAS", "residual tumour", "Deficit patches",
                "Registration", "Provenance", "similarity_roi.after.ncc"):
        assert key in text, key
    assert "left" in text  # the deficit faces the patient's left (+x LPS)
    assert EVIL not in html and "<script>alert(" not in html
    assert "&lt;script&gt;alert(" in html
    # registration in plain words (the metric names stay in the collapsed table)
    assert "How well the two scans match around the ablation zone" in text
    assert "0.61 before, 0.93 after registration" in text
    # method tag with the border-voxel value published tools would report
    les = r["lesions"][0]
    assert "continuous sub-voxel margin" in text
    assert f"would report {les['border_voxel_min_margin_mm']:.1f} mm" in text
    assert les["border_voxel_min_margin_mm"] < les["min_margin_mm"]


def _page_payload(html_path: Path) -> dict[str, Any]:
    html = html_path.read_text("utf-8")
    m = re.search(r'<script type="application/json" id="a0v-data">(.*?)</script>', html, re.S)
    assert m is not None
    return dict(json.loads(m.group(1)))


def _unpack(b64: str, dtype: str) -> np.ndarray:
    import zlib

    return np.frombuffer(zlib.decompress(base64.b64decode(b64)), np.dtype(dtype).newbyteorder("<"))


def test_page_views_read_the_same_field(case: dict[str, Any]) -> None:
    """The interactive views' data in the page: the tumour mesh and its per-vertex margins are
    those of tumor_surface.vtk (one field), whose minimum is the headline MAM; the scroller's
    volume puts the tumour and the zone where they are (LPS, axis-aligned grid)."""
    from a0verify.report.slicer import read_surface_vtk

    d, r = case["dir"], case["report"]
    pl = _page_payload(d / "report.html")
    (surf,) = read_surface_vtk(d / r["outputs"]["tumor_surface"])
    (les,) = pl["lesions"]
    margin = _unpack(les["margin"], "f4")
    np.testing.assert_allclose(margin, surf.margin_mm, atol=1e-5)
    np.testing.assert_allclose(_unpack(les["vertices"], "f4").reshape(-1, 3), surf.vertices_lps,
                               atol=1e-3)
    assert abs(float(margin.min()) - r["min_margin_mm"]) <= 0.1
    assert pl["thinnest"]["margin_mm"] == r["min_margin_mm"]
    sc = pl["scale"]
    assert sc["vmin"] <= float(margin.min()) and sc["vmax"] >= np.percentile(margin, 99)
    assert len(sc["lut"]) == 256 * 3 and sc["threshold"] == THR
    vol = pl["volume"]
    nz, ny, nx = vol["shape"]
    lab = _unpack(vol["labels"], "u1").reshape(nz, ny, nx)
    ct = _unpack(vol["ct"], "u1").reshape(nz, ny, nx)

    def voxel(p: np.ndarray) -> tuple[int, int, int]:
        i = np.rint((p - np.asarray(vol["origin_lps"])) / np.asarray(vol["spacing_mm"])).astype(int)
        return int(i[2]), int(i[1]), int(i[0])

    assert lab[voxel(TUMOR_C)] & 3 == 3  # tumour inside the zone
    thin = TUMOR_C + np.array([R_T + 2.0, 0.0, 0.0])  # outside the tumour on the thin side
    assert lab[voxel(thin)] & 1 == 0
    far_zone = ZONE_C + np.array([-ZONE_AX[0] + 1.5, 0.0, 0.0])  # inside the zone, far side
    assert lab[voxel(far_zone)] & 3 == 2
    assert np.any(lab & 4)  # unablated tissue within the threshold of the tumour (thin side)
    # CT windowed: the zone is darker than the tissue around it (phantom: 45 HU lower)
    zone_ct = ct[(lab & 2) != 0].mean()
    tissue = ct[(lab & 3) == 0].mean()
    assert zone_ct < tissue


def test_no_post_report_says_so(case_no_post: dict[str, Any]) -> None:
    text = " ".join(_parse(case_no_post["dir"] / "report.html").text)
    assert "No registration in this run" in text
    assert "No post-ablation CT was given" in text
    assert "post_ct_roi" not in case_no_post["report"]["outputs"]


# --------------------------------------------------------------------------- figures
def _png_array(data: bytes) -> np.ndarray:
    import matplotlib.image as mpimg

    return np.asarray(mpimg.imread(io.BytesIO(data), format="png"))


def test_3d_render_is_not_blank(case: dict[str, Any]) -> None:
    from a0verify import viz
    from a0verify.report import _surfaces

    _, zone, _ = _masks()
    surfaces = _surfaces(case["margin"])
    renders = viz.render_margin_3d(surfaces, zone, case["report"]["min_margin_point_lps"], THR,
                                   window_size=(320, 280))
    assert len(renders) == 2
    for caption, png in renders:
        img = _png_array(png)[..., :3]
        assert img.shape[:2] == (280, 320)
        assert img.std() > 0.05, caption
        r, g, b = img[..., 0], img[..., 1], img[..., 2]
        reddish = (r > g + 0.15) & (r > b + 0.15)  # thin margin (and magenta marker)
        assert reddish.mean() > 0.002, caption
        greenish = (g > r + 0.03) & (g > b + 0.03)  # translucent ablation zone
        assert greenish.mean() > 0.05, caption
    assert "left" in renders[0][0]  # view A looks at the thin (left) side


def test_render_job_in_worker_matches_in_process(case: dict[str, Any]) -> None:
    """The 3-D views rendered by a worker process (warm or new) are the same pictures as those
    rendered in this process."""
    from a0verify import parallel, viz
    from a0verify.report import _surfaces

    _, zone, _ = _masks()
    surfaces = _surfaces(case["margin"])
    pt = case["report"]["min_margin_point_lps"]
    serial = viz.render_margin_3d(surfaces, zone, pt, THR)
    for worker in (None, viz.warm_render_worker()):
        job = viz.RenderJob(surfaces, zone, pt, THR, worker=worker)
        assert job.job is not None
        warnings: list[str] = []
        views = job.result(warnings)
        assert warnings == []
        assert (job.job.where == "worker") == parallel.enabled()
        assert [c for c, _ in views] == [c for c, _ in serial]
        for (_, a), (_, b) in zip(views, serial, strict=True):
            ia, ib = _png_array(a), _png_array(b)
            assert ia.shape == ib.shape
            assert np.abs(ia - ib).mean() < 0.01
    assert viz.RenderJob([], zone, pt, THR).result() == []


def test_slice_mesh_matches_analytic_sphere() -> None:
    """A plane through a sphere's centre cuts a circle of the sphere's radius; a plane at
    height h cuts radius sqrt(R^2 - h^2); margins interpolate linearly along edges."""
    import pyvista as pv

    from a0verify.report.figures import make_planes, slice_mesh
    from a0verify.report.slicer import Surface

    c = np.array([3.0, -2.0, 1.0])
    sph = pv.Sphere(radius=10.0, center=c, theta_resolution=120, phi_resolution=120)
    faces = np.asarray(sph.faces.reshape(-1, 4)[:, 1:], np.int64)
    verts = np.asarray(sph.points, float)
    surf = Surface(1, verts, faces, verts[:, 0] - c[0])  # margin = x offset (linear field)
    for h in (0.0, 4.0):
        p = c + np.array([0.0, 0.0, h])
        axial = make_planes(p, c, 15.0)[0]
        seg, mg = slice_mesh(surf, axial)
        assert len(seg) > 50
        rad = np.linalg.norm(seg.reshape(-1, 2) - c[:2], axis=1)
        np.testing.assert_allclose(rad, np.sqrt(100.0 - h * h), atol=0.05)
        mid_x = seg[:, :, 0].mean(axis=1) - c[0]
        np.testing.assert_allclose(mg, mid_x, atol=1e-6)
    far = make_planes(c + np.array([0.0, 0.0, 11.0]), c, 15.0)[0]
    assert len(slice_mesh(surf, far)[0]) == 0


def test_triplanar_orientation() -> None:
    """Axial view: patient's left (+x) on the right of the picture, anterior (-y) at the top."""
    from a0verify.report.figures import make_planes

    pl = make_planes([0.0, 0.0, 0.0], [0.0, 0.0, 0.0], 10.0)
    ax, co, sa = pl
    assert (ax.fixed, ax.h_axis, ax.v_axis, ax.invert_v) == (2, 0, 1, True)
    assert ax.edge_labels == ("R", "L", "A", "P")
    assert (co.fixed, co.h_axis, co.v_axis, co.invert_v) == (1, 0, 2, False)
    assert (sa.fixed, sa.h_axis, sa.v_axis) == (0, 1, 2)
    img = sitk.Image([3, 1, 1], sitk.sitkFloat32)  # value = x index, 1 mm voxels at x=-1,0,1
    img.SetOrigin((-1.0, 0.0, 0.0))
    for i in range(3):
        img.SetPixel(i, 0, 0, float(i))
    big = sitk.Expand(img, [1, 1, 1])
    a = ax.sample(big, sitk.sitkNearestNeighbor, default=-1.0)
    assert a is not None
    row = a[len(ax.v) // 2]
    assert row[np.argmin(np.abs(ax.h + 1.0))] == 0.0 and row[np.argmin(np.abs(ax.h - 1.0))] == 2.0


def test_direction_words() -> None:
    from a0verify.viz import direction_words

    assert direction_words([1, 0, 0]) == "left"
    assert direction_words([-1, 0, 0]) == "right"
    assert direction_words([0, -1, 0]) == "anterior"
    assert direction_words([0, 0.6, -0.8]) == "inferior-posterior"
    assert direction_words([0, 0, 0]) == "undefined"


# --------------------------------------------------------------------------- Slicer outputs
def test_slicer_segmentation(case: dict[str, Any]) -> None:
    from a0verify.report.slicer import read_segmentation

    d = case["dir"]
    path = d / case["report"]["outputs"]["segmentation"]
    head = path.read_bytes().split(b"\n\n", 1)[0].decode()
    assert "Segment0_Name:=tumour" in head and "Segment1_Name:=ablation zone" in head
    assert "Segment1_Color:=0.2 0.8 0.2" in head and "space: left-posterior-superior" in head
    masks, segs = read_segmentation(path)
    tum, zone, _ = _masks()
    for key, ref in (("tumor", tum), ("ablation", zone)):
        back = sitk.Resample(masks[key], ref, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
        np.testing.assert_array_equal(sitk.GetArrayFromImage(back) != 0,
                                      sitk.GetArrayFromImage(ref) != 0)
    # SimpleITK reads the same physical geometry (two layers as components)
    img = sitk.ReadImage(str(path))
    assert img.GetNumberOfComponentsPerPixel() == 2
    np.testing.assert_allclose(img.GetDirection(), tum.GetDirection(), atol=1e-9)
    assert [s.name for s in segs] == ["tumour", "ablation zone"]


def test_slicer_segmentation_read_by_slicerio(case: dict[str, Any]) -> None:
    """An independent reader (slicerio, the Slicer project's library) finds both segments with
    their names, colours and voxel counts in the .seg.nrrd a0verify writes."""
    slicerio = pytest.importorskip("slicerio")
    from a0verify.report.slicer import read_segmentation

    path = case["dir"] / case["report"]["outputs"]["segmentation"]
    seg = slicerio.read_segmentation(str(path))
    names = [s["name"] for s in seg["segments"]]
    assert names == ["tumour", "ablation zone"]
    assert seg["segments"][1]["color"] == pytest.approx([0.2, 0.8, 0.2])
    masks, _ = read_segmentation(path)
    for name, key in (("tumour", "tumor"), ("ablation zone", "ablation")):
        voxels = slicerio.extract_segments(seg, [(name, 1)])["voxels"]
        assert int(np.count_nonzero(voxels)) == int(
            np.count_nonzero(sitk.GetArrayViewFromImage(masks[key])))


def test_slicer_mesh_markups_map_qa(case: dict[str, Any]) -> None:
    from a0verify.io.markups import read_markups_lps
    from a0verify.report.slicer import read_surface_vtk

    d, r, m = case["dir"], case["report"], case["margin"]
    vtk_path = d / r["outputs"]["tumor_surface"]
    assert b"SPACE=LPS" in vtk_path.read_bytes()[:200]
    (s,) = read_surface_vtk(vtk_path)
    les = m.lesions[0]
    np.testing.assert_allclose(s.vertices_lps, les.surface.vertices_lps, atol=1e-9)
    np.testing.assert_allclose(s.margin_mm, les.surface.margin_mm, atol=1e-5)
    # thinnest-margin point list, in LPS, on the left side of the tumour
    (label, pos), = read_markups_lps(d / r["outputs"]["thinnest_point"])
    np.testing.assert_allclose(pos, r["min_margin_point_lps"], atol=1e-9)
    assert pos[0] > TUMOR_C[0] + 5.0 and label.startswith("L1")
    doc = json.loads((d / r["outputs"]["thinnest_point"]).read_text())
    assert doc["markups"][0]["coordinateSystem"] == "LPS"
    mm = sitk.ReadImage(str(d / r["outputs"]["margin_map"]))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(mm), sitk.GetArrayFromImage(m.margin_map))
    assert r["outputs"]["registration_checkerboard"] == "qa_checkerboard.nrrd"
    assert (d / "qa_checkerboard.nrrd").is_file()


def test_analytic_margin_in_report(case: dict[str, Any]) -> None:
    """Sanity of the figures' numbers: the thinnest margin sits on the +x side at about
    ZONE_AX[0] - 4 - R_T = 3 mm (the margin module has its own accuracy tests)."""
    r = case["report"]
    assert r["min_margin_mm"] == pytest.approx(15.0 - 4.0 - R_T, abs=0.6)


# --------------------------------------------------------------------------- CLI
def test_report_command_rerenders(case_no_post: dict[str, Any]) -> None:
    from a0verify.cli import main

    d = case_no_post["dir"]
    (d / "report.html").unlink()
    (d / "figure_views.png").unlink()
    res = CliRunner().invoke(main, ["report", str(d)])
    assert res.exit_code == 0, res.output
    assert (d / "report.html").is_file() and (d / "figure_views.png").is_file()
    p = _parse(d / "report.html")
    assert p.tags.count("img") == 4
    assert "Verdict:" in " ".join(p.text)


def test_report_command_second_threshold(case: dict[str, Any], tmp_path: Path) -> None:
    """`a0verify report DIR --second-threshold MM` recomputes the share below it from the stored
    surface mesh (the same field as everything else), and `run`/`margin` offer the option."""
    from a0verify.cli import main
    from a0verify.report import validate_report

    d = tmp_path / "c"
    shutil.copytree(case["dir"], d)
    first = json.loads((d / "report.json").read_text())
    assert first["second_threshold_mm"] == 10.0
    f10 = first["lesions"][0]["surface_fraction_below_second_threshold"]
    m = case["margin"].lesions[0].surface.margin_mm
    assert 0.0 < f10 < 1.0 and float(m.min()) < 10.0 < float(m.max())
    res = CliRunner().invoke(main, ["report", str(d), "--second-threshold", "6", "-q"])
    assert res.exit_code == 0, res.output
    back = json.loads((d / "report.json").read_text())
    validate_report(back)
    f6 = back["lesions"][0]["surface_fraction_below_second_threshold"]
    sf = back["lesions"][0]["surface_fraction"]
    assert back["second_threshold_mm"] == 6.0 and f6 < f10
    assert sf["below_zero"] + sf["below_threshold"] <= f6 + 1e-9
    assert back["provenance"]["parameters"]["second_threshold_mm"] == 6.0
    text = " ".join(_parse(d / "report.html").text)
    assert "below the second threshold of 6 mm" in text
    for cmd in ("run", "margin"):
        out = CliRunner().invoke(main, [cmd, "--help"]).output
        assert "--second-threshold" in out and "10" in out
    bad = CliRunner().invoke(main, ["report", str(d), "--second-threshold", "-1"])
    assert bad.exit_code == 2


def test_report_command_bad_input(tmp_path: Path, case: dict[str, Any]) -> None:
    from a0verify.cli import main

    runner = CliRunner()
    res = runner.invoke(main, ["report", str(tmp_path / "nope")])
    assert res.exit_code == 2 and "does not exist" in res.output
    assert len(res.output.strip().splitlines()) == 1
    res = runner.invoke(main, ["report", str(tmp_path)])
    assert res.exit_code == 2 and "no report.json" in res.output
    (tmp_path / "report.json").write_text("{not json")
    res = runner.invoke(main, ["report", str(tmp_path)])
    assert res.exit_code == 2 and "cannot read report.json" in res.output
    bad = copy.deepcopy(case["report"])
    bad["verdict"] = "maybe"
    (tmp_path / "report.json").write_text(json.dumps(bad))
    res = runner.invoke(main, ["report", str(tmp_path)])
    assert res.exit_code == 2 and "report schema at verdict" in res.output
    good = copy.deepcopy(case["report"])  # valid, but the artefacts are not in tmp_path
    (tmp_path / "report.json").write_text(json.dumps(good))
    res = runner.invoke(main, ["report", str(tmp_path)])
    assert res.exit_code == 2 and "segmentation file does not exist" in res.output


@pytest.mark.slow
def test_report_pdf(tmp_path: Path, case_no_post: dict[str, Any]) -> None:
    pytest.importorskip("weasyprint", reason="optional PDF output needs weasyprint")
    from a0verify.report import rerender

    d = tmp_path / "c"
    shutil.copytree(case_no_post["dir"], d)
    written = rerender(d, pdf=True)
    pdf = d / written["report_pdf"]
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 50_000
    assert json.loads((d / "report.json").read_text())["outputs"]["report_pdf"] == "report.pdf"


# --------------------------------------------------------------------------- headless Chromium
def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        exe = shutil.which(name)
        if exe:
            return exe
    pytest.skip("headless Chromium not installed (Debian package `chromium`; .ci/run installs "
                "it): screenshot test skipped")
    raise AssertionError  # unreachable


def test_chromium_screenshot(case: dict[str, Any], tmp_path: Path) -> None:
    """What a person sees: the top of the page shows the verdict banner in its colour, and the
    rendered page text contains the verdict and the thinnest margin."""
    exe = _chromium()
    html = case["dir"] / "report.html"
    shot = tmp_path / "shot.png"
    flags = ["--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             f"--user-data-dir={tmp_path / 'profile'}"]
    subprocess.run([exe, *flags, "--window-size=1280,1400", f"--screenshot={shot}",
                    html.as_uri()], check=True, capture_output=True, timeout=120)
    img = _png_array(shot.read_bytes())[..., :3]
    assert img.shape[:2] == (1400, 1280)
    assert img.std() > 0.1
    from a0verify.report.html import VERDICT_COLOUR

    want = np.array([int(VERDICT_COLOUR[case["report"]["verdict"]][i:i + 2], 16)
                     for i in (1, 3, 5)]) / 255.0
    banner = img[5:60, 900:1270].reshape(-1, 3)
    assert np.mean(np.all(np.abs(banner - want) < 0.03, axis=1)) > 0.8
    assert np.mean(img.reshape(-1, 3).std(axis=1) > 0.1) > 0.02  # colour figures visible
    dom = subprocess.run([exe, *flags, "--dump-dom", html.as_uri()], check=True,
                         capture_output=True, timeout=120, text=True).stdout
    text = re.sub(r"<[^>]+>", " ", dom)
    assert "Verdict:" in text and f"{case['report']['min_margin_mm']:.1f} mm" in text


def _png_of(page: Any, selector: str) -> np.ndarray:
    return _png_array(page.locator(selector).screenshot())[..., :3]


def test_interactive_views_in_chromium(case: dict[str, Any], tmp_path: Path) -> None:
    """The page in a real browser (headless Chromium through Playwright), offline: the 3-D view
    and the three slice panels draw (not blank), hovering the tumour reads its margin, a click
    pins a point and moves the slices there, dragging rotates, the wheel scrolls slices; no
    console error and no request leaves the page."""
    pytest.importorskip("playwright.sync_api", reason="Playwright (dev extra)")
    from a0verify.report import browser

    _chromium()
    html = case["dir"] / "report.html"
    mam = float(case["report"]["min_margin_mm"])
    errors: list[str] = []
    requests: list[str] = []
    with browser.chromium() as chrome:
        page = chrome.new_page(viewport={"width": 1400, "height": 1100})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("request", lambda r: requests.append(r.url)
                if not r.url.startswith(("file:", "data:", "blob:")) else None)
        page.goto(html.as_uri())
        page.wait_for_selector(browser.READY, timeout=60_000)
        ready_ms = page.evaluate("performance.getEntriesByName('a0v-ready')[0].startTime")
        # the 3-D view shows the margin colours and the translucent zone
        v3 = _png_of(page, "#a0v-3d canvas")
        assert v3.std() > 0.05
        r, g, b = v3[..., 0], v3[..., 1], v3[..., 2]
        assert np.mean((r > g + 0.1) & (r > b + 0.1)) > 0.005  # thin (red) margin, marker
        assert np.mean((g > r + 0.03) & (g > b + 0.03)) > 0.05  # ablation zone
        # hover the middle of the view (the tumour faces the camera at its thinnest side)
        box = page.locator("#a0v-3d canvas").bounding_box()
        assert box is not None
        cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        page.mouse.move(cx, cy)
        page.wait_for_function("document.getElementById('a0v-3d-tip').style.display"
                               " === 'block'", timeout=10_000)
        tip = page.locator("#a0v-3d-tip").inner_text()
        hovered = float(tip.split()[0])
        assert mam - 0.15 <= hovered <= mam + 3.0, (tip, mam)
        # click: pins the point, reports it and moves the slices there
        axial_before = page.locator("#a0v-slice-axial input").input_value()
        page.mouse.click(cx + 5, cy + 5)
        info = page.locator("#a0v-3d-info").inner_text()
        assert info.startswith("Picked: margin") and "LPS (" in info
        picked = float(page.locator("#a0v-3d").get_attribute("data-picked") or "nan")
        assert mam - 0.15 <= picked <= mam + 3.0
        # dragging rotates the view
        page.mouse.move(cx, cy)
        page.mouse.down()
        page.mouse.move(cx + 160, cy + 40, steps=8)
        page.mouse.up()
        assert np.abs(_png_of(page, "#a0v-3d canvas") - v3).mean() > 0.01
        assert "seen from" in page.locator("#a0v-3d-dir").inner_text()
        # the slice panels: not blank, the wheel moves the axial slice, a click on the
        # coronal panel moves the axial plane
        for plane in ("axial", "coronal", "sagittal"):
            im = _png_of(page, f"#a0v-slice-{plane} canvas")
            assert im.std() > 0.05, plane
            assert np.mean(im[..., 1] > im[..., 0] + 0.1) > 0.002, plane  # zone outline
        page.locator("#a0v-slice-axial canvas").hover()
        before = page.locator("#a0v-slice-axial input").input_value()
        page.mouse.wheel(0, 120)
        page.wait_for_function(f"document.querySelector('#a0v-slice-axial input').value"
                               f" !== '{before}'", timeout=5_000)
        assert "LPS (" in page.locator("#a0v-slice-hover").inner_text()
        cor = page.locator("#a0v-slice-coronal canvas").bounding_box()
        assert cor is not None
        ax0 = page.locator("#a0v-slice-axial input").input_value()
        page.mouse.click(cor["x"] + cor["width"] / 2, cor["y"] + 0.2 * cor["height"])
        assert page.locator("#a0v-slice-axial input").input_value() != ax0
        assert axial_before is not None
        page.screenshot(path=str(tmp_path / "page.png"), full_page=False)
    assert not errors, errors
    assert not requests, requests
    assert ready_ms < 30_000  # generous (shared CI machine); bench_report measures it


@pytest.mark.slow
def test_two_lesions(tmp_path: Path) -> None:
    """Two tumour labels: one segment, one mesh part and one thinnest point per lesion; the
    figures follow the worse lesion."""
    from a0verify.io import write_json_atomic
    from a0verify.io.markups import read_markups_lps
    from a0verify.margin import compute_margin
    from a0verify.report import validate_report, write_case_outputs
    from a0verify.report.model import build_report
    from a0verify.report.slicer import read_segmentation, read_surface_vtk

    g = geometry.make_grid([64, 48, 20], [1.0, 1.0, 2.0], center_lps=[0.0, 0.0, 0.0])
    pts = geometry.voxel_centers_lps(g).reshape(-1, 3)
    shape = sitk.GetArrayViewFromImage(g).shape
    c1, c2 = np.array([-15.0, 0.0, 0.0]), np.array([15.0, 0.0, 0.0])
    lab = np.zeros(len(pts), np.uint16)
    lab[np.linalg.norm(pts - c1, axis=1) <= 5.0] = 1
    lab[np.linalg.norm(pts - c2, axis=1) <= 5.0] = 2
    zone = ((np.linalg.norm(pts - c1, axis=1) <= 12.0)
            | (np.linalg.norm(pts - (c2 + np.array([2.0, 0, 0])), axis=1) <= 9.0))
    tum = geometry.array_to_image(lab.reshape(shape), g)
    abl = geometry.array_to_image(zone.reshape(shape).astype(np.uint8), g)
    margin = compute_margin(tum, abl, THR)
    report = build_report(margin, _judge(margin), command="margin", inputs={"tumor": None},
                          parameters={}, timings_s={})
    report["outputs"].update(write_case_outputs(tmp_path, report, margin=margin, ablation=abl,
                                                tumor_post=tum))
    report["outputs"]["report_json"] = "report.json"
    write_json_atomic(tmp_path / "report.json", report)
    validate_report(report)
    assert report["min_margin_lesion_id"] == 2
    masks, segs = read_segmentation(tmp_path / "segmentation.seg.nrrd")
    assert [s.name for s in segs] == ["tumour 1", "tumour 2", "ablation zone"]
    assert set(np.unique(sitk.GetArrayViewFromImage(masks["tumor"]))) == {0, 1, 2}
    assert [s.lesion_id for s in read_surface_vtk(tmp_path / "tumor_surface.vtk")] == [1, 2]
    marks = read_markups_lps(tmp_path / "thinnest_margin.mrk.json")
    assert [m[0].split()[0] for m in marks] == ["L2", "L1"]  # worst first
    # lesion 2's zone is shifted to +x, so its margin is thinnest at its -x pole (10, 0, 0)
    np.testing.assert_allclose(marks[0][1], [10.0, 0.0, 0.0], atol=1.5)
    assert marks[0][1][0] < 11.0
