"""``a0verify segment ablation|tumor``: files written, one-line errors, exit codes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

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
