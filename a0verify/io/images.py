"""Read and write images and masks (NIfTI, NRRD, MHA, DICOM series directories, DICOM SEG,
3D Slicer ``.seg.nrrd``).

Every failure is raised as :class:`a0verify.errors.InputError` with a message that names the file
and the problem, so the CLI can print one line. Non-fatal findings (resampled DICOM slices, gantry
tilt, other series ignored, masks moved onto the image grid) are appended to an optional
``warnings`` list so that they reach the report.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from a0verify.errors import InputError
from a0verify.io.atomic import atomic_path
from a0verify.io.rawcheck import native_stderr_captured, nifti_problem


def _read_dicom_dir(path: Path, series_uid: str | None = None,
                    warnings: list[str] | None = None) -> sitk.Image:
    from a0verify.io.dicom import read_dicom_series

    return read_dicom_series(path, series_uid, warnings)


def _runtime_detail(exc: RuntimeError, native: list[str] | None = None) -> str:
    """One-line reason from an ITK exception (and any text ITK printed to stderr)."""
    text = " ".join([str(exc), *(native or [])])
    low = text.lower()
    if "unable to determine imageio reader" in low:
        return "not a recognised image format, or a corrupt file"
    if ("not read completely" in low or "error reading" in low or "cannot be read" in low
            or "read failed" in low or "unexpected end" in low):
        return "truncated or corrupt file"
    if "zero-valued spacing" in low:
        return "zero voxel spacing in the header"
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    detail = next((ln for ln in lines if "ERROR" in ln or "nable" in ln), "not a readable image")
    detail = re.sub(r"\(0x[0-9a-fA-F]+\)", "", detail)
    detail = re.sub(r"^.*?(ERROR:?\s*)", "", detail)
    return detail.strip()[:160]


def read_image(path: str | os.PathLike[str], *, what: str = "image",
               series_uid: str | None = None,
               warnings: list[str] | None = None) -> sitk.Image:
    """Read a 3-D scalar image from a file SimpleITK understands, a multi-frame DICOM file
    (Enhanced CT) or a DICOM series directory (``series_uid`` picks a series; default: the CT
    series with the most slices).

    Returns the image as stored (no reorientation), LPS mm. Non-fatal findings are appended to
    ``warnings`` when given. Raises InputError when the path is missing, unreadable, truncated,
    not an image, not 3-D, has an invalid geometry, or holds non-finite values.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: {what} file does not exist")
    if not os.access(p, os.R_OK):
        raise InputError(f"{p}: {what} is not readable (permission denied)")
    native: list[str] = []
    try:
        with native_stderr_captured() as native:
            if p.is_dir():
                img = _read_dicom_dir(p, series_uid, warnings)
            else:
                img = _read_file(p, what, warnings)
    except InputError:
        raise
    except RuntimeError as exc:
        problem = nifti_problem(p, full=True) if p.is_file() else None
        raise InputError(f"{p}: cannot read {what} ({problem or _runtime_detail(exc, native)})") \
            from None
    except (OSError, ValueError, EOFError, MemoryError) as exc:
        raise InputError(f"{p}: cannot read {what} ({type(exc).__name__}: "
                         f"{(str(exc).splitlines() or [''])[0][:120]})") from None
    check_volume(img, p, what)
    if p.is_file():
        problem = nifti_problem(p)
        if problem:
            raise InputError(f"{p}: {what} has {problem}" if problem.startswith("non-finite")
                             else f"{p}: cannot read {what} ({problem})")
    return img


def _read_file(p: Path, what: str, warnings: list[str] | None) -> sitk.Image:
    from a0verify.io.dicom import is_dicom_seg, looks_like_dicom, read_dicom_file

    if p.stat().st_size == 0:
        raise InputError(f"{p}: {what} file is empty (0 bytes)")
    if looks_like_dicom(p):
        if is_dicom_seg(p):
            raise InputError(f"{p}: {what} is a DICOM Segmentation, not an image "
                             "(give it as a mask)")
        img = read_dicom_file(p, warnings)
        if img is not None:
            return img
        img = sitk.ReadImage(str(p))
        if img.GetDimension() == 2 or (img.GetDimension() == 3 and img.GetSize()[2] == 1):
            raise InputError(f"{p}: {what} is a single DICOM slice; pass the series directory")
        return img
    return sitk.ReadImage(str(p))


def check_volume(img: sitk.Image, p: Path, what: str) -> None:
    if img.GetDimension() != 3:
        raise InputError(f"{p}: {what} is {img.GetDimension()}-D, a 3-D volume is required")
    if min(img.GetSize()) < 2:
        raise InputError(f"{p}: {what} is a single slice ({img.GetSize()}), "
                         "a 3-D volume is required")
    if img.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"{p}: {what} has {img.GetNumberOfComponentsPerPixel()} components per "
                         "voxel, a scalar image is required")
    sp = np.asarray(img.GetSpacing(), float)
    if not np.all(np.isfinite(sp)) or np.any(sp <= 0):
        raise InputError(f"{p}: {what} has an invalid voxel spacing {tuple(sp)} mm")
    d = np.asarray(img.GetDirection(), float).reshape(3, 3)
    if not np.all(np.isfinite(d)) or abs(abs(np.linalg.det(d)) - 1) > 1e-3 or \
            not np.all(np.isfinite(img.GetOrigin())):
        raise InputError(f"{p}: {what} has an invalid orientation (direction or origin)")
    if img.GetPixelID() in (sitk.sitkFloat32, sitk.sitkFloat64):
        arr = sitk.GetArrayViewFromImage(img)
        if not np.all(np.isfinite(arr)):
            raise InputError(f"{p}: {what} contains non-finite voxel values (NaN or Inf)")


def write_image(image: sitk.Image, path: str | os.PathLike[str], compress: bool = True) -> Path:
    """Write ``image`` atomically (temp file + rename). Format from the suffix."""
    with atomic_path(path) as tmp:
        sitk.WriteImage(image, str(tmp), useCompression=compress)
    return Path(path)


def sha256_of(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file, or of a directory's files (sorted by name, content and name hashed)."""
    p = Path(path)
    h = hashlib.sha256()
    files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    for f in files:
        if p.is_dir():
            h.update(str(f.relative_to(p)).encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()
