"""RT Structure Set (RTSTRUCT) masks from planning systems, rasterised onto their image.

Library choice: the structure set is read with pydicom and each closed planar contour is filled
with ``skimage.draw.polygon`` (both maintained and already dependencies of a0verify), after
mapping its LPS points to the image's continuous voxel indices with :mod:`a0verify.geometry`.
The RTSTRUCT-specific packages were evaluated and not used: rt-utils (last release January 2023)
pulls in OpenCV and matches contours to slices by their z coordinate, i.e. assumes axial
series; dicompyler-core (May 2023) rasterises only onto dose grids inside its DVH code, with no
mask-on-image API; platipy brings a large pinned dependency tree (and downloads models for other
features) for a conversion of a few dozen lines. The code here works for any slice orientation
(oblique, flipped) because it never compares raw z values.

Rules: a pixel belongs to a structure when its centre lies inside the contour (the voxel-centre
rule of label masks). Several contours of one structure on one slice combine by XOR, so inner
contours are holes (the convention of the major planning systems). Every contour must lie on a
slice plane of the image (within 0.25 of the slice step) and be parallel to it; otherwise the
structure set was drawn on another image and is an input error naming the file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from a0verify import geometry
from a0verify.errors import InputError
from a0verify.io.dicom import _quiet, sop_class_of
from a0verify.io.masks import SegmentInfo, read_mask

RTSTRUCT_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"

#: contours farther than this (in slices) from a slice plane of the image are an input error
PLANE_TOL_SLICES = 0.25


def is_rtstruct(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is an RT Structure Set file, or a directory holding exactly one."""
    return _find_rtstruct(Path(path)) is not None


def _file_is_rtstruct(p: Path) -> bool:
    return p.is_file() and sop_class_of(p) == RTSTRUCT_STORAGE


def _find_rtstruct(p: Path) -> Path | None:
    if p.is_file():
        return p if _file_is_rtstruct(p) else None
    if p.is_dir():
        found = [f for f in sorted(p.rglob("*")) if _file_is_rtstruct(f)]
        if len(found) > 1:
            raise InputError(f"{p}: directory holds {len(found)} RT Structure Sets; give one file")
        return found[0] if found else None
    return None


def structure_names(path: str | os.PathLike[str]) -> list[str]:
    """Names of the ROIs with closed planar contours in the structure set at ``path``."""
    ds = _read(Path(path))
    return [name for _, name, _ in _rois(ds, Path(path))]


def _read(p: Path) -> Any:
    import pydicom

    f = _find_rtstruct(p)
    if f is None:
        raise InputError(f"{p}: not a DICOM RT Structure Set")
    with _quiet():
        try:
            return pydicom.dcmread(f)
        except Exception as exc:
            raise InputError(f"{f}: cannot read RT Structure Set ({type(exc).__name__})") \
                from None


def _rois(ds: Any, p: Path) -> list[tuple[int, str, list[Any]]]:
    """[(ROI number, name, closed planar contour items)] in structure-set order."""
    names = {int(r.ROINumber): str(r.get("ROIName", "") or f"ROI {r.ROINumber}")
             for r in ds.get("StructureSetROISequence", [])}
    out = []
    for rc in ds.get("ROIContourSequence", []):
        num = int(rc.get("ReferencedROINumber", -1))
        contours = [c for c in rc.get("ContourSequence", []) or []
                    if str(c.get("ContourGeometricType", "")).upper() == "CLOSED_PLANAR"
                    and len(c.get("ContourData", []) or []) >= 9]
        if contours:
            out.append((num, names.get(num, f"ROI {num}"), contours))
    if not out:
        raise InputError(f"{p}: RT Structure Set has no closed planar contours")
    return out


def select_structures(available: Sequence[str], wanted: Sequence[str] | None, *, path: Path,
                      option: str) -> list[str]:
    """The structures to use: ``wanted`` (matched case-insensitively, each must exist), or the
    only one available. InputError listing the names otherwise (``option`` names the CLI
    option that chooses)."""
    listing = ", ".join(repr(n) for n in available)
    if not wanted:
        if len(available) == 1:
            return list(available)
        raise InputError(f"{path}: RT Structure Set holds {len(available)} structures "
                         f"({listing}); choose with {option} NAME")
    by_lower = {n.lower(): n for n in available}
    chosen = []
    for w in wanted:
        if w.lower() not in by_lower:
            raise InputError(f"{path}: no structure named {w!r} (structures: {listing})")
        chosen.append(by_lower[w.lower()])
    return chosen


def _fill_contour(points_lps: np.ndarray, image: sitk.Image, shape_zyx: tuple[int, ...],
                  p: Path, name: str) -> tuple[int, np.ndarray, np.ndarray]:
    """Slice index and pixel (row, col) indices inside one closed planar contour."""
    from skimage.draw import polygon

    idx = geometry.lps_to_index(image, points_lps)  # (n, 3) continuous (x, y, z)
    k = idx[:, 2]
    kz = round(float(np.mean(k)))
    if float(np.ptp(k)) > 2 * PLANE_TOL_SLICES:
        raise InputError(f"{p}: a contour of structure {name!r} is not parallel to the image "
                         "slices (drawn on another image?)")
    if abs(float(np.mean(k)) - kz) > PLANE_TOL_SLICES:
        raise InputError(f"{p}: a contour of structure {name!r} lies between the image slices "
                         f"(slice index {float(np.mean(k)):.2f}); give the image the structure "
                         "set was drawn on")
    rr, cc = polygon(idx[:, 1], idx[:, 0], shape=shape_zyx[1:])
    return kz, rr, cc


def read_rtstruct(path: str | os.PathLike[str], image: sitk.Image, *,
                  structures: Sequence[str] | None = None, what: str = "mask",
                  option: str = "--tumor-structure", warnings: list[str] | None = None
                  ) -> tuple[sitk.Image, list[SegmentInfo]]:
    """Rasterise the chosen structures of an RTSTRUCT onto ``image``'s grid.

    Returns a UInt16 label image on ``image``'s grid (structure i of the selection has label
    i + 1; a voxel in several keeps the later one) and the SegmentInfo list (label, ROI name).
    Raises InputError naming the file: not an RTSTRUCT, no contours, unknown or ambiguous
    structure (``option`` is the CLI option that chooses), contours off the image's slices, a
    structure that is empty on the image.
    """
    p = Path(path)
    ds = _read(p)
    rois = _rois(ds, p)
    chosen = select_structures([n for _, n, _ in rois], structures, path=p, option=option)
    shape = sitk.GetArrayViewFromImage(image).shape
    out = np.zeros(shape, np.uint16)
    infos: list[SegmentInfo] = []
    for label, name in enumerate(chosen, start=1):
        contours = next(c for _, n, c in rois if n == name)
        mask = np.zeros(shape, bool)
        outside = 0
        for item in contours:
            pts = np.asarray([float(v) for v in item.ContourData], float).reshape(-1, 3)
            kz, rr, cc = _fill_contour(pts, image, shape, p, name)
            if not 0 <= kz < shape[0]:
                outside += 1
                continue
            mask[kz, rr, cc] ^= True
        if not mask.any():
            raise InputError(f"{p}: structure {name!r} is empty on the {what}'s image grid "
                             "(drawn on another image?)")
        if outside and warnings is not None:
            warnings.append(f"{p}: {outside} contour(s) of structure {name!r} lie outside the "
                            "image and were ignored")
        out[mask] = label
        infos.append(SegmentInfo(label, name))
    return geometry.array_to_image(out, image), infos


def read_mask_input(path: str | os.PathLike[str], *, what: str, image: sitk.Image | None,
                    structures: Sequence[str] = (), option: str = "--tumor-structure",
                    align: bool = False, warnings: list[str] | None = None
                    ) -> tuple[sitk.Image, dict[str, Any] | None]:
    """Read a mask given on the command line: an RT Structure Set is rasterised onto ``image``
    (the image it was drawn on; InputError when None); any other mask is read with
    :func:`a0verify.io.read_mask` (put on ``image``'s grid when ``align``).

    Returns (UInt16 label image, source record or None). The record, for report.json
    (``mask_sources``), is {"format": "RTSTRUCT", "file", "structures": [names by label]}.
    ``structures`` given for a mask that is not an RTSTRUCT is an input error (``option``).
    """
    p = Path(path)
    if is_rtstruct(p):
        if image is None:
            raise InputError(f"{p}: an RT Structure Set needs the image it was drawn on "
                             "(give --post IMG)")
        labels, infos = read_rtstruct(p, image, structures=structures or None, what=what,
                                      option=option, warnings=warnings)
        return labels, {"format": "RTSTRUCT", "file": p.name,
                        "structures": [i.name for i in infos]}
    if structures:
        raise InputError(f"{option} given, but {p} is not a DICOM RT Structure Set")
    mask = read_mask(p, what=what, warnings=warnings, reference=image if align else None)
    return mask, None
