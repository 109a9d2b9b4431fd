"""DICOM series directories: discovery by SeriesInstanceUID and geometry-checked volume assembly.

Headers are read with pydicom (imported lazily); pixel data are decoded by SimpleITK/GDCM, which
handles the compressed transfer syntaxes met in practice (JPEG-2000, JPEG-lossless, RLE). The
volume geometry is rebuilt here from ``ImagePositionPatient`` / ``ImageOrientationPatient`` of every
slice (or, for Enhanced multi-frame objects, of every frame's functional groups) so that:

* slices are sorted along the slice normal ``n = row x col`` (the output's third direction column is
  ``n``; the output's z spacing is the common slice step, mm);
* **non-uniform spacing or missing slices** are resampled onto a uniform grid by linear
  interpolation along the slice axis (step = median slice step), with a warning;
* **gantry tilt** (slice origins drifting in-plane, a sheared grid) is corrected by shifting
  every slice in-plane (linear interpolation) onto the rectangular grid of the first slice, with
  a warning;
* duplicated slice positions (several volumes in one series) and mixed orientations are input
  errors, named with the directory.

Warnings are appended to a caller-supplied list (no logging, no printing). No patient identifiers
(names, IDs, dates) are put into warnings or error messages.

Long module: one format, read end to end (scan a directory, choose the series, assemble and
check the volume, multi-frame files, DICOM SEG detection); its parts share the header model.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import warnings as _pywarnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

from a0verify.errors import InputError

FloatArray = npt.NDArray[np.float64]

ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2.1"
SEG_STORAGE = ("1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.66.7")

#: relative tolerance on slice steps before the spacing is called non-uniform
SPACING_RTOL = 0.01
#: in-plane drift (mm) of slice origins over the series above which a gantry tilt is reported
TILT_TOL_MM = 0.05

_PHASES: list[tuple[str, str]] = [
    (r"\b(non[- ]?contrast|native|plain|w/?o|without|pre[- ]?contrast|unenhanced|nc)\b",
     "native"),
    (r"\b(late[- ]?arterial|arterial|art|hepatic arterial|ha)\b", "arterial"),
    (r"\b(portal[- ]?venous|portal|pv|venous|pvp)\b", "portal-venous"),
    (r"\b(delayed|delay|equilibrium|late)\b", "delayed"),
]


@dataclass
class Plane:
    """One 2-D image plane of a series: a single-frame file or one frame of a multi-frame file."""

    path: Path
    frame: int  # 0-based frame number inside ``path``
    position: FloatArray  # ImagePositionPatient, LPS mm (centre of the first voxel)
    orientation: FloatArray  # (6,) row direction cosines then column direction cosines
    pixel_spacing: tuple[float, float]  # (row spacing, column spacing) mm, as in DICOM
    sop_instance_uid: str = ""  # of the file holding the plane


@dataclass
class SeriesInfo:
    """Summary of one DICOM series found in a directory (no patient identifiers)."""

    uid: str  # SeriesInstanceUID ("" when the files carry none)
    modality: str
    description: str
    number: int | None
    sop_class_uid: str
    transfer_syntax: str
    rows: int
    columns: int
    pixel_spacing: tuple[float, float] | None  # (row, column) mm
    slice_thickness: float | None
    phase: str | None  # native / arterial / portal-venous / delayed, when the header says so
    planes: list[Plane] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    gantry_tilt_deg: float = 0.0

    @property
    def n_slices(self) -> int:
        return len(self.planes)

    @property
    def is_image(self) -> bool:
        return self.rows > 0 and self.columns > 0 and self.sop_class_uid not in SEG_STORAGE

    @property
    def is_seg(self) -> bool:
        return self.sop_class_uid in SEG_STORAGE

    def slice_step_mm(self) -> float | None:
        """Median distance (mm) between consecutive slice positions along the normal."""
        if len(self.planes) < 2:
            return None
        s = np.sort(_normal_coords(self.planes))
        d = np.diff(s)
        d = d[d > 1e-6]
        return float(np.median(d)) if d.size else None

    def summary(self) -> dict[str, Any]:
        """JSON-friendly summary (what ``a0verify inspect`` prints)."""
        step = self.slice_step_mm()
        return {
            "series_uid": self.uid,
            "modality": self.modality,
            "description": _printable(self.description),
            "series_number": self.number,
            "slices": self.n_slices,
            "files": len(self.files),
            "rows": self.rows,
            "columns": self.columns,
            "pixel_spacing_mm": list(self.pixel_spacing) if self.pixel_spacing else None,
            "slice_step_mm": step,
            "slice_thickness_mm": self.slice_thickness,
            "phase": self.phase,
            "transfer_syntax": self.transfer_syntax,
            "sop_class_uid": self.sop_class_uid,
            "gantry_tilt_deg": self.gantry_tilt_deg,
        }


def _printable(text: str) -> str:
    """Header text made safe for a terminal line: control characters replaced, length capped."""
    return "".join(ch if ch.isprintable() else "?" for ch in text)[:120]


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence pydicom's warnings and log records (they would reach stderr)."""
    log = logging.getLogger("pydicom")
    old = log.level
    log.setLevel(logging.CRITICAL)
    try:
        with _pywarnings.catch_warnings():
            _pywarnings.simplefilter("ignore")
            yield
    finally:
        log.setLevel(old)


def _floats(v: Any, n: int) -> FloatArray | None:
    try:
        arr = np.asarray([float(x) for x in v], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if arr.shape != (n,) or not np.all(np.isfinite(arr)):
        return None
    return arr


def guess_phase(ds: Any) -> str | None:
    """Contrast phase from SeriesDescription / ImageComments / ContrastBolusAgent, or None."""
    text = " ".join(str(ds.get(k, "") or "") for k in
                    ("SeriesDescription", "ImageComments", "ProtocolName")).lower()
    for pattern, phase in _PHASES:
        if re.search(pattern, text):
            return phase
    return None


def _frame_planes(ds: Any, path: Path) -> list[Plane]:
    """Planes of an Enhanced (multi-frame) object from its functional groups."""
    n = int(ds.get("NumberOfFrames", 1) or 1)
    shared = ds.get("SharedFunctionalGroupsSequence")
    shared0 = shared[0] if shared else None
    per = ds.get("PerFrameFunctionalGroupsSequence") or []

    def pick(i: int, seq: str, attr: str, k: int) -> FloatArray | None:
        for grp in ((per[i] if i < len(per) else None), shared0):
            if grp is not None and seq in grp and grp[seq].value:
                val = grp[seq].value[0].get(attr)
                if val is not None:
                    return _floats(val, k)
        top = ds.get(attr)
        return _floats(top, k) if top is not None else None

    planes: list[Plane] = []
    for i in range(n):
        pos = pick(i, "PlanePositionSequence", "ImagePositionPatient", 3)
        ori = pick(i, "PlaneOrientationSequence", "ImageOrientationPatient", 6)
        ps = pick(i, "PixelMeasuresSequence", "PixelSpacing", 2)
        if pos is None or ori is None or ps is None:
            raise InputError(f"{path}: multi-frame DICOM frame {i + 1} lacks position, "
                             "orientation or pixel spacing")
        planes.append(Plane(path, i, pos, ori, (float(ps[0]), float(ps[1]))))
    return planes


def _is_candidate(p: Path) -> bool:
    name = p.name
    return p.is_file() and not name.startswith(".") and name.upper() != "DICOMDIR" and \
        p.suffix.lower() not in (".md", ".txt", ".json", ".nii", ".gz", ".nrrd", ".mha",
                                 ".png", ".jpg", ".csv", ".py", ".html", ".xml")


def scan_dicom_dir(path: str | Path) -> list[SeriesInfo]:
    """Read the headers of every DICOM file under ``path`` (recursively) and group them into
    series by SeriesInstanceUID. Non-DICOM files are ignored. Series are returned largest first.

    Raises InputError when ``path`` is not a directory or holds no DICOM file.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    root = Path(path)
    if not root.is_dir():
        raise InputError(f"{root}: not a directory")
    series: dict[str, SeriesInfo] = {}
    with _quiet():
        for f in sorted(root.rglob("*")):
            if not _is_candidate(f):
                continue
            try:
                ds = pydicom.dcmread(f, stop_before_pixels=True)
            except (InvalidDicomError, OSError, ValueError, EOFError, KeyError, TypeError,
                    AttributeError, NotImplementedError):
                continue
            if "SOPClassUID" not in ds and "Rows" not in ds:
                continue
            uid = str(ds.get("SeriesInstanceUID", "") or "")
            info = series.get(uid)
            sop = str(ds.get("SOPClassUID", ""))
            if info is None:
                ps = _floats(ds.get("PixelSpacing"), 2) if "PixelSpacing" in ds else None
                st = ds.get("SliceThickness")
                try:
                    number = int(ds.SeriesNumber) if ds.get("SeriesNumber") not in (None, "") \
                        else None
                except (TypeError, ValueError):
                    number = None
                try:
                    thick = float(st) if st not in (None, "") else None
                except (TypeError, ValueError):
                    thick = None
                tsyntax = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", ""))
                info = SeriesInfo(
                    uid=uid, modality=str(ds.get("Modality", "") or ""),
                    description=str(ds.get("SeriesDescription", "") or ""), number=number,
                    sop_class_uid=sop, transfer_syntax=tsyntax,
                    rows=int(ds.get("Rows", 0) or 0), columns=int(ds.get("Columns", 0) or 0),
                    pixel_spacing=(float(ps[0]), float(ps[1])) if ps is not None else None,
                    slice_thickness=thick, phase=guess_phase(ds))
                series[uid] = info
            info.files.append(f)
            try:
                tilt = float(ds.get("GantryDetectorTilt", 0) or 0)
            except (TypeError, ValueError):
                tilt = 0.0
            if abs(tilt) > abs(info.gantry_tilt_deg):
                info.gantry_tilt_deg = tilt
            if sop in SEG_STORAGE:
                continue
            if int(ds.get("NumberOfFrames", 1) or 1) > 1 or "PerFrameFunctionalGroupsSequence" \
                    in ds:
                try:
                    info.planes.extend(_frame_planes(ds, f))
                except InputError:
                    continue
                if info.pixel_spacing is None and info.planes:
                    info.pixel_spacing = info.planes[0].pixel_spacing
                continue
            pos = _floats(ds.get("ImagePositionPatient"), 3) if "ImagePositionPatient" in ds \
                else None
            ori = _floats(ds.get("ImageOrientationPatient"), 6) \
                if "ImageOrientationPatient" in ds else None
            ps = _floats(ds.get("PixelSpacing"), 2) if "PixelSpacing" in ds else None
            if pos is None or ori is None or ps is None:
                continue
            info.planes.append(Plane(f, 0, pos, ori, (float(ps[0]), float(ps[1])),
                                     str(ds.get("SOPInstanceUID", "") or "")))
    if not series:
        raise InputError(f"{root}: directory contains no DICOM files")
    return sorted(series.values(), key=lambda s: (-s.n_slices, s.uid))


def choose_series(series: list[SeriesInfo], series_uid: str | None, *, path: Path) -> SeriesInfo:
    """The requested series, or by default the CT series with the most slices (any image series
    when there is no CT). Raises InputError naming ``path`` when nothing fits."""
    if series_uid is not None:
        for s in series:
            if s.uid == series_uid:
                if not s.is_image:
                    raise InputError(f"{path}: series {series_uid} is not an image series "
                                     f"(modality {s.modality or 'unknown'})")
                return s
        raise InputError(f"{path}: no DICOM series with SeriesInstanceUID {series_uid} "
                         f"({len(series)} series found; list them with `a0verify inspect`)")
    images = [s for s in series if s.is_image and s.n_slices > 0]
    if not images:
        raise InputError(f"{path}: no DICOM image series with slice geometry")
    cts = [s for s in images if s.modality.upper() == "CT"]
    pool = cts or images
    return max(pool, key=lambda s: (s.n_slices, s.uid))


def _normal(ori: FloatArray) -> FloatArray:
    n = np.cross(ori[:3], ori[3:])
    return n / np.linalg.norm(n)


def _normal_coords(planes: list[Plane]) -> FloatArray:
    n = _normal(planes[0].orientation)
    return np.asarray([float(p.position @ n) for p in planes])


def _read_plane_pixels(planes: list[Plane], path: Path) -> npt.NDArray[Any]:
    """Decode the planes (SimpleITK/GDCM), returning a (k, rows, cols) array in plane order.

    Single-frame files are read in one ImageSeriesReader pass (about twice as fast); on failure
    the files are read one by one so that the error names the broken file.
    """
    from a0verify.io.rawcheck import native_stderr_captured

    files = [pl.path for pl in planes]
    if all(pl.frame == 0 for pl in planes) and len(set(files)) == len(files):
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames([str(f) for f in files])
        try:
            with native_stderr_captured():  # ITK warns about spacing we handle ourselves
                arr = sitk.GetArrayFromImage(reader.Execute())
            if arr.ndim == 3 and arr.shape[0] == len(planes):
                return arr
        except RuntimeError:
            pass
    with native_stderr_captured():
        return _read_planes_one_by_one(planes, path)


def _read_planes_one_by_one(planes: list[Plane], path: Path) -> npt.NDArray[Any]:
    cache: dict[Path, npt.NDArray[Any]] = {}
    out: list[npt.NDArray[Any]] = []
    for pl in planes:
        arr = cache.get(pl.path)
        if arr is None:
            try:
                arr = sitk.GetArrayFromImage(sitk.ReadImage(str(pl.path)))
            except RuntimeError:
                raise InputError(f"{path}: cannot decode pixel data of {pl.path.name} "
                                 "(truncated file or unsupported compression)") from None
            if arr.ndim == 2:
                arr = arr[None]
            if arr.ndim != 3:
                raise InputError(f"{path}: {pl.path.name} is not a grey-level image")
            cache[pl.path] = arr
        if pl.frame >= arr.shape[0]:
            raise InputError(f"{path}: {pl.path.name} has fewer frames than its header says")
        out.append(arr[pl.frame])
    shapes = {a.shape for a in out}
    if len(shapes) != 1:
        raise InputError(f"{path}: slices of the series differ in size {sorted(shapes)}")
    dtypes = {a.dtype for a in out}
    dtype = out[0].dtype if len(dtypes) == 1 else np.float32
    return np.stack([a.astype(dtype, copy=False) for a in out])


def assemble_volume(planes: list[Plane], path: Path,
                    warnings: list[str] | None = None) -> sitk.Image:
    """Build a 3-D image (LPS, mm) from the planes of one series; see the module docstring.

    The returned image has direction columns (row dir, column dir, slice normal), spacing
    (column spacing, row spacing, slice step) in mm and origin at the first slice's first voxel.
    """
    warn = warnings if warnings is not None else []
    if len(planes) < 2:
        raise InputError(f"{path}: DICOM series has {len(planes)} slice(s), "
                         "a 3-D volume is required")
    ori0 = planes[0].orientation
    for p in planes:
        if np.max(np.abs(p.orientation - ori0)) > 1e-3:
            raise InputError(f"{path}: DICOM series mixes slice orientations "
                             "(localizer or reformat in the same series?)")
        if max(abs(a - b) for a, b in zip(p.pixel_spacing, planes[0].pixel_spacing,
                                          strict=True)) > 1e-4:
            raise InputError(f"{path}: DICOM series mixes pixel spacings")
    r, c = ori0[:3] / np.linalg.norm(ori0[:3]), ori0[3:] / np.linalg.norm(ori0[3:])
    if abs(float(r @ c)) > 1e-3:
        raise InputError(f"{path}: ImageOrientationPatient row and column are not orthogonal")
    n = _normal(ori0)
    s = _normal_coords(planes)
    order = np.argsort(s, kind="stable")
    planes = [planes[i] for i in order]
    s = s[order]
    ds_ = np.diff(s)
    if np.any(ds_ < 1e-3):
        ndup = int(np.sum(ds_ < 1e-3))
        raise InputError(f"{path}: DICOM series has {ndup} duplicated slice position(s) "
                         "(several volumes or phases in one series); pick another series")
    sy, sx = planes[0].pixel_spacing  # DICOM: (row spacing = along columns, column spacing)
    arr = _read_plane_pixels(planes, path)

    # Gantry tilt: in-plane drift of the slice origins relative to the first slice.
    p0 = planes[0].position
    offs = np.asarray([[(p.position - p0) @ r, (p.position - p0) @ c] for p in planes])
    drift = float(np.max(np.abs(offs)))
    if drift > TILT_TOL_MM:
        span = float(s[-1] - s[0])
        tilt = math.degrees(math.atan2(float(np.hypot(*(offs[-1] - offs[0]))), span))
        warn.append(f"{path}: gantry tilt of {tilt:.1f} deg (slice origins drift "
                    f"{drift:.1f} mm in-plane); slices shifted onto a rectangular grid")
        from scipy import ndimage

        fill = float(arr.min())
        work = arr.astype(np.float32)
        for k in range(len(planes)):
            work[k] = ndimage.shift(work[k], (offs[k, 1] / sy, offs[k, 0] / sx), order=1,
                                    mode="constant", cval=fill)
        arr = _restore_dtype(work, arr.dtype)

    # Slice steps: uniform, non-uniform or with missing slices.
    step = float(np.median(ds_))
    if np.max(np.abs(ds_ - step)) > SPACING_RTOL * step + 1e-4:
        gaps = int(np.sum(np.round(ds_ / step) - 1).clip(0)) if np.all(
            np.abs(ds_ / step - np.round(ds_ / step)) < 0.1) else 0
        if gaps:
            warn.append(f"{path}: {gaps} missing slice(s) in the DICOM series (step "
                        f"{step:.3g} mm); the gap is filled by linear interpolation")
        else:
            warn.append(f"{path}: non-uniform slice spacing ({float(ds_.min()):.3g}-"
                        f"{float(ds_.max()):.3g} mm); resampled to {step:.3g} mm by linear "
                        "interpolation along the slice axis")
        nz = math.floor((s[-1] - s[0]) / step + 1e-6) + 1
        target = s[0] + step * np.arange(nz)
        j = np.clip(np.searchsorted(s, target, side="right") - 1, 0, len(s) - 2)
        w = ((target - s[j]) / (s[j + 1] - s[j])).clip(0.0, 1.0)
        lo = arr[j].astype(np.float32)
        hi = arr[j + 1].astype(np.float32)
        arr = _restore_dtype(lo + (hi - lo) * w[:, None, None].astype(np.float32), arr.dtype)

    img = sitk.GetImageFromArray(arr)
    img.SetSpacing([float(sx), float(sy), step])
    img.SetOrigin([float(v) for v in p0])
    img.SetDirection(np.column_stack([r, c, n]).ravel().tolist())
    return img


def _restore_dtype(work: npt.NDArray[np.float32], dtype: np.dtype[Any]) -> npt.NDArray[Any]:
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(work), info.min, info.max).astype(dtype)
    return work


def read_dicom_series(path: str | Path, series_uid: str | None = None,
                      warnings: list[str] | None = None) -> sitk.Image:
    """Read one series of a DICOM directory as a 3-D image (values as rescaled by the modality
    LUT, e.g. HU for CT). Default series: the CT series with the most slices.

    Warnings (other series ignored, resampling, tilt) are appended to ``warnings``.
    """
    root = Path(path)
    series = scan_dicom_dir(root)
    chosen = choose_series(series, series_uid, path=root)
    others = [s for s in series if s is not chosen and s.is_image and s.n_slices > 1]
    if warnings is not None and others and series_uid is None:
        warnings.append(f"{root}: {len(series)} DICOM series found; using series "
                        f"{chosen.uid or '(no SeriesInstanceUID)'} ({chosen.modality}, "
                        f"{chosen.n_slices} slices); choose another with --series")
    return assemble_volume(chosen.planes, root, warnings)


def read_dicom_file(path: str | Path, warnings: list[str] | None = None) -> sitk.Image | None:
    """Read a single multi-frame DICOM file (e.g. Enhanced CT) with geometry from its functional
    groups; None when ``path`` is not a multi-frame DICOM image (caller falls back)."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    p = Path(path)
    with _quiet():
        try:
            ds = pydicom.dcmread(p, stop_before_pixels=True)
        except (InvalidDicomError, OSError, ValueError, EOFError, KeyError, TypeError,
                AttributeError, NotImplementedError):
            return None
        if str(ds.get("SOPClassUID", "")) in SEG_STORAGE:
            return None
        if int(ds.get("NumberOfFrames", 1) or 1) < 2:
            return None
        planes = _frame_planes(ds, p)
    return assemble_volume(planes, p, warnings)


def sop_class_of(path: str | Path) -> str | None:
    """SOPClassUID of a DICOM file ("" when it has none); None when not a readable DICOM file."""
    if not looks_like_dicom(path):
        return None
    import pydicom

    with _quiet():
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID"])
        except Exception:  # pydicom raises many types for broken files
            return None
    return str(ds.get("SOPClassUID", ""))


def looks_like_dicom(path: str | Path) -> bool:
    """True when the file starts with a DICOM preamble ('DICM' at byte 128)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def is_dicom_seg(path: str | Path) -> bool:
    """True when ``path`` is a DICOM file of a Segmentation SOP class."""
    return sop_class_of(path) in SEG_STORAGE


#: header keywords that identify the patient or study (shown on the report page, removed by
#: ``--anonymize``); mapped to the snake_case keys of :func:`series_identity` records
IDENTITY_KEYWORDS = {
    "PatientName": "patient_name", "PatientID": "patient_id",
    "PatientBirthDate": "patient_birth_date", "PatientSex": "patient_sex",
    "StudyDate": "study_date", "StudyTime": "study_time", "StudyDescription": "study_description",
    "AccessionNumber": "accession_number", "StudyID": "study_id",
    "SeriesDescription": "series_description",
}


def series_identity(path: str | Path, series_uid: str | None = None) -> dict[str, Any] | None:
    """Identity record of the series that :func:`a0verify.io.read_image` reads from ``path``
    (a DICOM directory, with ``series_uid`` as there, or a multi-frame DICOM file); None when
    ``path`` is not DICOM.

    Keys: ``study_instance_uid``, ``series_instance_uid``, ``frame_of_reference_uid``,
    ``sop_class_uid``, ``sop_instance_uids`` (in slice order along the normal), ``modality``,
    ``series_number``, and the patient/study fields of :data:`IDENTITY_KEYWORDS` (strings, ""
    when absent). These are patient identifiers: callers decide whether to keep them.
    """
    import pydicom

    p = Path(path)
    if p.is_dir():
        chosen = choose_series(scan_dicom_dir(p), series_uid, path=p)
        planes = chosen.planes
        files = chosen.files
    elif p.is_file() and looks_like_dicom(p):
        files = [p]
        with _quiet():
            head = pydicom.dcmread(p, stop_before_pixels=True)
        planes = _frame_planes(head, p) if int(head.get("NumberOfFrames", 1) or 1) > 1 else []
    else:
        return None
    order = [int(i) for i in np.argsort(_normal_coords(planes), kind="stable")] if planes else []
    ordered_files = list(dict.fromkeys([planes[i].path for i in order] or files))
    known = {pl.path: pl.sop_instance_uid for pl in planes if pl.sop_instance_uid}
    with _quiet():
        head = pydicom.dcmread(ordered_files[0], stop_before_pixels=True)
        uids = [known.get(f) or str(pydicom.dcmread(
            f, stop_before_pixels=True, specific_tags=["SOPInstanceUID"]).get("SOPInstanceUID", ""))
            for f in ordered_files]
    rec: dict[str, Any] = {
        "study_instance_uid": str(head.get("StudyInstanceUID", "") or ""),
        "series_instance_uid": str(head.get("SeriesInstanceUID", "") or ""),
        "frame_of_reference_uid": str(head.get("FrameOfReferenceUID", "") or ""),
        "sop_class_uid": str(head.get("SOPClassUID", "") or ""),
        "sop_instance_uids": uids,
        "modality": str(head.get("Modality", "") or ""),
        "series_number": int(head.SeriesNumber) if str(head.get("SeriesNumber", "")).strip()
        .lstrip("-").isdigit() else None,
    }
    for kw, key in IDENTITY_KEYWORDS.items():
        rec[key] = _printable(str(head.get(kw, "") or ""))
    return rec
