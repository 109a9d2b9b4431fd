"""Input checks shared by the commands: seeds inside images, writable output directories."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

from a0verify import geometry
from a0verify.errors import InputError


def check_seed_inside(image: sitk.Image, seed_lps: Sequence[float] | npt.ArrayLike,
                      what: str) -> tuple[int, int, int]:
    """Check that a seed point (LPS mm, (x, y, z)) lies inside ``image``'s voxel extents
    (voxel centres +/- half a voxel, any direction cosines) and return the nearest voxel index
    in SimpleITK (x, y, z) order.

    ``what`` names the image (file name or role) in the error. Raises InputError for a
    non-finite seed, a seed that is not three numbers, or one outside the image.
    """
    pt = np.asarray(seed_lps, dtype=np.float64).reshape(-1)
    label = ", ".join(f"{v:g}" for v in pt)
    if pt.shape != (3,) or not np.all(np.isfinite(pt)):
        raise InputError(f"{what}: seed ({label}) is not three finite LPS coordinates (mm)")
    idx = geometry.lps_to_index(image, pt)
    size = np.asarray(image.GetSize(), dtype=np.float64)
    if np.any(idx < -0.5) or np.any(idx > size - 0.5):
        lo, hi = geometry.physical_bounds(image)
        raise InputError(
            f"{what}: seed ({label}) LPS mm lies outside the image (LPS extent "
            + ", ".join(f"{a:.1f}..{b:.1f}" for a, b in zip(lo, hi, strict=True)) + " mm)")
    rounded = np.clip(np.rint(idx), 0, size - 1).astype(int)
    return int(rounded[0]), int(rounded[1]), int(rounded[2])


def ensure_output_dir(path: str | os.PathLike[str]) -> Path:
    """Create the output directory (with parents) if needed and prove it is writable by creating
    and removing a temporary file in it. Returns the directory as a Path.

    Raises InputError naming the directory when it is an existing file, cannot be created or
    cannot be written.
    """
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise InputError(f"{p}: output path exists and is not a directory")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{p}: output directory cannot be created ({exc.strerror or exc})") \
            from None
    try:
        fd, tmp = tempfile.mkstemp(prefix=".a0verify-write-test.", dir=p)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise InputError(f"{p}: output directory is not writable ({exc.strerror or exc})") \
            from None
    return p
