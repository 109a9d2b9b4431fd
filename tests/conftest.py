"""Shared fixtures: small synthetic cases with known truth, paths to shared real data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("NUMBA_CACHE_DIR",
                      str(Path(__file__).resolve().parents[1] / ".cache" / "numba"))

REPO = Path(__file__).resolve().parents[1]
TESTDATA = REPO / "testdata"
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def small_case(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A small phantom case on disk (A0 truth, margin 6.5 mm): whole-torso field of view at
    1.9 x 1.9 x 2.5 mm, like testdata/ (registration needs the body outline to initialise)."""
    from a0verify import phantom as ph

    spec = ph.PhantomSpec(
        spacing=[1.9, 1.9, 2.5], size=[164, 128, 22], center_lps=[0.0, 5.0, 0.0], seed=5,
        lesions=[ph.LesionSpec(center_lps=[-60.0, 5.0, 0.0], radius_mm=9.0,
                               target_margin_mm=6.5)],
    )
    case = ph.make_phantom(spec)
    return ph.write_case(case, tmp_path_factory.mktemp("small_case"))


def shared_data(sub: str) -> Path:
    """Path under ../shared/data, or skip the test with the reason."""
    p = SHARED_DATA / sub
    if not p.exists():
        pytest.skip(f"shared real data not available: {p} is absent")
    return p


@pytest.fixture(scope="session")
def dicom_result(small_case: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A margin result measured on a flipped DICOM post series, exported to DICOM
    (tests/dicom_helpers.py; needs the `dicom` extra)."""
    pytest.importorskip("highdicom")
    from dicom_helpers import make_dicom_result

    return make_dicom_result(small_case, tmp_path_factory.mktemp("dicom_out"))
