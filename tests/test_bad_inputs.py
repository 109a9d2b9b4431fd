"""Bad inputs: every one ends as an InputError naming the file and the problem; through the CLI,
exit code 2, exactly one line on stderr, no traceback, nothing on stdout, no report.json.

The table below is also the closing note of issue 8 (bad inputs tried -> what each returns).
"""

from __future__ import annotations

import gzip
import os
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from click.testing import CliRunner

from a0verify import geometry
from a0verify.cli import main
from a0verify.errors import InputError
from a0verify.io import check_seed_inside, ensure_output_dir, read_image, read_mask

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"  # ../shared/data


def _vol(dtype=np.int16, value: float = 1, shape=(10, 12, 14)) -> sitk.Image:
    a = np.zeros(shape, dtype)
    a[3:7, 4:8, 5:9] = value
    img = sitk.GetImageFromArray(a)
    img.SetSpacing((1.0, 1.0, 2.0))
    return img


def _write(img: sitk.Image, path: Path, compress: bool = True) -> Path:
    sitk.WriteImage(img, str(path), useCompression=compress)
    return path


# Each maker writes one bad file into a directory and returns its path.
Maker = Callable[[Path], Path]


def _missing(d: Path) -> Path:
    return d / "missing.nii.gz"


def _empty_file(d: Path) -> Path:
    (d / "zero.nii.gz").write_bytes(b"")
    return d / "zero.nii.gz"


def _text(d: Path) -> Path:
    (d / "notes.nrrd").write_text("this is not an image\n")
    return d / "notes.nrrd"


def _text_nii(d: Path) -> Path:
    (d / "notes.nii.gz").write_bytes(gzip.compress(b"hello, not a NIfTI header at all" * 3))
    return d / "notes.nii.gz"


def _random(d: Path) -> Path:
    (d / "noise.mha").write_bytes(np.random.default_rng(0).bytes(4000))
    return d / "noise.mha"


def _trunc(suffix: str, compress: bool) -> Maker:
    def make(d: Path) -> Path:
        f = _write(_vol(), d / f"full{suffix}", compress)
        b = f.read_bytes()
        t = d / f"cut{suffix}"
        t.write_bytes(b[: len(b) * 2 // 3])
        return t
    return make


def _two_d(d: Path) -> Path:
    return _write(sitk.GetImageFromArray(np.zeros((5, 6), np.int16)), d / "slice2d.nrrd")


def _one_slice(d: Path) -> Path:
    return _write(sitk.GetImageFromArray(np.zeros((1, 5, 6), np.int16)), d / "oneslice.nii.gz")


def _rgb(d: Path) -> Path:
    return _write(sitk.GetImageFromArray(np.zeros((4, 5, 6, 3), np.uint8), isVector=True),
                  d / "rgb.nrrd")


def _nan_nii(d: Path) -> Path:
    img = _vol(np.float32)
    a = sitk.GetArrayFromImage(img)
    a[2, 2, 2] = np.nan
    out = sitk.GetImageFromArray(a)
    out.CopyInformation(img)
    return _write(out, d / "nan.nii.gz")


def _inf_nrrd(d: Path) -> Path:
    a = sitk.GetArrayFromImage(_vol(np.float32))
    a[2, 2, 2] = -np.inf
    return _write(sitk.GetImageFromArray(a), d / "inf.nrrd")


def _zero_spacing(d: Path) -> Path:
    f = _write(_vol(), d / "zsp.nrrd", compress=False)
    t = f.read_bytes().replace(b"(0,0,2)", b"(0,0,0)")
    f.write_bytes(t)
    return f


def _empty_dir(d: Path) -> Path:
    (d / "nodicom").mkdir()
    (d / "nodicom" / "readme.txt").write_text("no images here")
    return d / "nodicom"


def _dicom_slice(d: Path) -> Path:
    p = DATA / "pydicom" / "693_UNCR.dcm"
    if not p.exists():
        pytest.skip(f"shared test data {p} is absent")
    return p


def _dicom_seg_as_image(d: Path) -> Path:
    p = DATA / "dcmqi" / "liver.dcm"
    if not p.exists():
        pytest.skip(f"shared test data {p} is absent")
    return p


def _truncated_dicom_series(d: Path) -> Path:
    src = DATA / "dcmqi" / "ct-3slice"
    if not src.exists():
        pytest.skip(f"shared test data {src} is absent")
    out = d / "cutseries"
    out.mkdir()
    for f in sorted(src.iterdir()):
        (out / f.name).write_bytes(f.read_bytes())
    last = sorted(out.iterdir())[-1]
    b = last.read_bytes()
    last.write_bytes(b[: len(b) - 200_000])  # pixel data cut short
    return out


# (maker, expected message fragment) for images
IMAGE_CASES: dict[str, tuple[Maker, str]] = {
    "missing": (_missing, "file does not exist"),
    "zero-bytes": (_empty_file, "file is empty (0 bytes)"),
    "text-nrrd": (_text, "not a recognised image format"),
    "text-nii-gz": (_text_nii, "not a NIfTI file"),
    "random-bytes": (_random, "not a recognised image format"),
    "truncated-nii-gz": (_trunc(".nii.gz", True), "truncated"),
    "truncated-nii": (_trunc(".nii", False), "truncated"),
    "truncated-nrrd": (_trunc(".nrrd", False), "truncated"),
    "truncated-mha": (_trunc(".mha", False), "truncated"),
    "2-D": (_two_d, "is 2-D, a 3-D volume is required"),
    "single-slice": (_one_slice, "single slice"),
    "rgb": (_rgb, "3 components per voxel"),
    "nan-nifti": (_nan_nii, "non-finite voxel values"),
    "inf-nrrd": (_inf_nrrd, "non-finite voxel values"),
    "zero-spacing": (_zero_spacing, "zero voxel spacing"),
    "dir-without-dicom": (_empty_dir, "contains no DICOM files"),
    "single-dicom-slice": (_dicom_slice, "single DICOM slice; pass the series directory"),
    "dicom-seg-as-image": (_dicom_seg_as_image, "DICOM Segmentation, not an image"),
    "truncated-dicom-series": (_truncated_dicom_series, "cannot decode pixel data"),
}


@pytest.mark.parametrize("name", sorted(IMAGE_CASES))
def test_bad_image_files(tmp_path: Path, name: str, capfd: pytest.CaptureFixture[str]) -> None:
    maker, fragment = IMAGE_CASES[name]
    path = maker(tmp_path)
    with pytest.raises(InputError) as ei:
        read_image(path, what="post-ablation CT")
    msg = str(ei.value)
    assert str(path) in msg and fragment in msg, msg
    assert "\n" not in msg and "0x" not in msg
    # ITK/GDCM must not have printed anything to the process's stderr
    assert capfd.readouterr().err == ""


def _mask(value: float | None, dtype=np.uint8) -> Maker:
    def make(d: Path) -> Path:
        a = np.zeros((6, 7, 8), dtype)
        if value is not None:
            a[2, 3, 4] = value
        return _write(sitk.GetImageFromArray(a), d / f"mask_{value}.nii.gz")
    return make


MASK_CASES: dict[str, tuple[Maker, str]] = {
    "empty": (_mask(None), "is empty (no nonzero voxels)"),
    "fractional": (_mask(0.5, np.float32), "not a label image"),
    "negative": (_mask(-3, np.int16), "negative labels"),
    "too-large-label": (_mask(70000, np.int32), "labels above 65535"),
    "nan": (_mask(np.nan, np.float32), "non-finite"),
    "missing": (_missing, "does not exist"),
    "truncated": (_trunc(".nii.gz", True), "truncated"),
}


@pytest.mark.parametrize("name", sorted(MASK_CASES))
def test_bad_mask_files(tmp_path: Path, name: str) -> None:
    maker, fragment = MASK_CASES[name]
    path = maker(tmp_path)
    with pytest.raises(InputError) as ei:
        read_mask(path, what="tumour mask")
    assert str(path) in str(ei.value) and fragment in str(ei.value), str(ei.value)


def test_mask_outside_image(tmp_path: Path) -> None:
    img = _vol()
    m = _vol(np.uint8)
    m.SetOrigin((500.0, 0.0, 0.0))
    f = _write(m, tmp_path / "far.nrrd")
    with pytest.raises(InputError, match=r"far\.nrrd: tumour mask does not overlap the image"):
        read_mask(f, what="tumour mask", reference=img)


def test_seed_inside_and_outside() -> None:
    img = geometry.make_grid((20, 20, 10), (1.0, 1.0, 2.5), geometry.rotation_matrix((0, 0, 30)),
                             (5.0, 5.0, 5.0))
    centre = geometry.index_to_lps(img, np.array([10.2, 3.0, 4.9]))
    assert check_seed_inside(img, centre, "post.nii.gz") == (10, 3, 5)
    corner = geometry.index_to_lps(img, np.array([-0.4, 19.4, 9.4]))
    assert check_seed_inside(img, corner, "post.nii.gz") == (0, 19, 9)
    just_out = geometry.index_to_lps(img, np.array([-0.6, 3, 3]))
    with pytest.raises(InputError, match=r"post\.nii\.gz: seed .* lies outside the image"):
        check_seed_inside(img, just_out, "post.nii.gz")
    with pytest.raises(InputError, match="not three finite"):
        check_seed_inside(img, (np.nan, 0, 0), "post.nii.gz")


def test_output_dir(tmp_path: Path) -> None:
    assert ensure_output_dir(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert (tmp_path / "a" / "b").is_dir()
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(InputError, match="exists and is not a directory"):
        ensure_output_dir(f)
    with pytest.raises(InputError, match="cannot be created"):
        ensure_output_dir(f / "sub")
    if os.geteuid() != 0:  # root ignores permission bits
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        try:
            with pytest.raises(InputError, match="not writable"):
                ensure_output_dir(ro)
        finally:
            ro.chmod(0o700)


# ------------------------------------------------------------------------------ CLI end to end


def _check_cli(result, out: Path, needle: str) -> str:
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    err_lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(err_lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout.strip() == ""
    assert needle in err_lines[0], err_lines[0]
    assert not (out / "report.json").exists()
    assert not list(out.glob("*.tmp")) if out.exists() else True
    return err_lines[0]


@pytest.fixture()
def case_files(small_case: dict[str, Path]) -> dict[str, Path]:
    return small_case


def _run_args(case: dict[str, Path], out: Path, **override: str) -> list[str]:
    vals = {"pre": str(case["pre"]), "post": str(case["post"]), "tumor": str(case["tumor"]),
            "ablation": str(case["ablation"])}
    vals.update(override)
    args = ["run"]
    for k, v in vals.items():
        if v:
            args += [f"--{k}", v]
    return [*args, "--out", str(out), "--registration", "none"]


@pytest.mark.parametrize("role,name", [
    ("pre", "missing"), ("post", "truncated-nii-gz"), ("post", "text-nrrd"), ("pre", "2-D"),
    ("post", "nan-nifti"), ("post", "dir-without-dicom"), ("post", "dicom-seg-as-image"),
])
def test_cli_run_bad_images(case_files: dict[str, Path], tmp_path: Path, role: str,
                            name: str) -> None:
    bad = IMAGE_CASES[name][0](tmp_path)
    out = tmp_path / "out"
    r = CliRunner().invoke(main, _run_args(case_files, out, **{role: str(bad)}))
    line = _check_cli(r, out, str(bad))
    assert IMAGE_CASES[name][1] in line


@pytest.mark.parametrize("role,name", [("tumor", "empty"), ("ablation", "empty"),
                                       ("tumor", "fractional"), ("ablation", "missing")])
def test_cli_run_bad_masks(case_files: dict[str, Path], tmp_path: Path, role: str,
                           name: str) -> None:
    bad = MASK_CASES[name][0](tmp_path)
    out = tmp_path / "out"
    r = CliRunner().invoke(main, _run_args(case_files, out, **{role: str(bad)}))
    _check_cli(r, out, str(bad))


def test_cli_run_mask_not_on_its_image(case_files: dict[str, Path], tmp_path: Path) -> None:
    t = sitk.ReadImage(str(case_files["tumor"]))
    t.SetOrigin((np.asarray(t.GetOrigin()) + 2000.0).tolist())
    bad = _write(t, tmp_path / "elsewhere.nii.gz")
    out = tmp_path / "out"
    r = CliRunner().invoke(main, _run_args(case_files, out, tumor=str(bad)))
    assert "does not overlap" in _check_cli(r, out, str(bad))


def test_cli_margin_masks_do_not_overlap_each_other(case_files: dict[str, Path],
                                                    tmp_path: Path) -> None:
    t = sitk.ReadImage(str(case_files["tumor"]))
    t.SetOrigin((np.asarray(t.GetOrigin()) + np.array([0.0, 0.0, 900.0])).tolist())
    bad = _write(t, tmp_path / "far_tumour.nii.gz")
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["margin", "--tumor", str(bad), "--ablation",
                                  str(case_files["ablation"]), "--out", str(out)])
    assert "does not overlap" in _check_cli(r, out, str(bad))


def test_cli_margin_empty_ablation(case_files: dict[str, Path], tmp_path: Path) -> None:
    bad = MASK_CASES["empty"][0](tmp_path)
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["margin", "--tumor", str(case_files["tumor"]), "--ablation",
                                  str(bad), "--out", str(out)])
    _check_cli(r, out, str(bad))


def test_cli_unwritable_output_dir(case_files: dict[str, Path], tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a directory should be")
    out = blocker / "out"
    r = CliRunner().invoke(main, _run_args(case_files, out))
    _check_cli(r, out, str(out))


def test_cli_seed_outside_image(case_files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = _run_args(case_files, out, ablation="")
    args += ["--ablation-seed", "9999,0,0"]
    r = CliRunner().invoke(main, args)
    line = _check_cli(r, out, str(case_files["post"]))
    assert re.search(r"seed .*outside", line)


@pytest.mark.slow
def test_cli_reader_warnings_reach_the_report(case_files: dict[str, Path], tmp_path: Path
                                              ) -> None:
    """An ablation mask stored on another grid (y axis flipped, as TotalSegmentator's) is
    resampled onto the post CT, and the report says so. (A tumour mask stays on its own grid:
    its transfer to post space works in physical space.)"""
    import json

    t = sitk.ReadImage(str(case_files["ablation"]))
    arr = sitk.GetArrayFromImage(t)[:, ::-1, :]
    flipped = sitk.GetImageFromArray(np.ascontiguousarray(arr))
    d = geometry.direction_matrix(t) @ np.diag([1.0, -1.0, 1.0])
    flipped.SetDirection(d.ravel().tolist())
    flipped.SetSpacing(t.GetSpacing())
    flipped.SetOrigin(geometry.index_to_lps(t, [0, t.GetSize()[1] - 1, 0]).tolist())
    f = _write(flipped, tmp_path / "ablation_flipped.nii.gz")
    out = tmp_path / "out"
    r = CliRunner().invoke(main, [*_run_args(case_files, out, ablation=str(f)), "-q"])
    assert r.exit_code == 0, r.stderr
    rep = json.loads((out / "report.json").read_text())
    assert any("ablation_flipped.nii.gz" in w and "resampled" in w for w in rep["warnings"])
