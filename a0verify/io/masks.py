"""Mask import (label maps, 3D Slicer ``.seg.nrrd``, DICOM SEG) and mask-to-image alignment.

Every mask comes out as a UInt16 label image (0 = background, one positive label per segment or
lesion) in LPS mm on its *own* grid; :func:`align_mask` then puts it on the reference image's grid,
comparing the two in physical space (never by array shape).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

from a0verify import geometry
from a0verify.errors import InputError
from a0verify.io.dicom import SEG_STORAGE, _floats, _normal, _quiet, is_dicom_seg
from a0verify.io.images import check_volume, read_image
from a0verify.io.rawcheck import native_stderr_captured
from a0verify.io.slicerseg import SegmentInfo, is_slicer_segmentation, slicer_seg_to_labels

# ----------------------------------------------------------------------------------------------
# DICOM SEG


def read_dicom_seg(path: str | Path, warnings: list[str] | None = None
                   ) -> tuple[sitk.Image, list[SegmentInfo]]:
    """Read a DICOM Segmentation (BINARY, FRACTIONAL or LABELMAP) as a label image on the grid
    spanned by its frames (LPS mm; frames placed by their ImagePositionPatient).

    BINARY/FRACTIONAL: label = SegmentNumber (FRACTIONAL thresholded at one half); overlapping
    segments keep the later one (warned). LABELMAP: stored values are the labels.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    p = Path(path)
    with _quiet():
        try:
            ds = pydicom.dcmread(p)
        except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
            raise InputError(f"{p}: cannot read DICOM SEG ({str(exc).splitlines()[0][:120]})") \
                from None
        if str(ds.get("SOPClassUID", "")) not in SEG_STORAGE:
            raise InputError(f"{p}: not a DICOM Segmentation object")
        try:
            pix = np.asarray(ds.pixel_array)
        except Exception as exc:  # pydicom raises many types for undecodable pixel data
            raise InputError(f"{p}: cannot decode DICOM SEG pixel data "
                             f"({type(exc).__name__})") from None
    nframes = int(ds.get("NumberOfFrames", 1) or 1)
    if pix.ndim == 2:
        pix = pix[None]
    if pix.shape[0] != nframes:
        raise InputError(f"{p}: DICOM SEG pixel data hold {pix.shape[0]} frames, header says "
                         f"{nframes}")
    seg_type = str(ds.get("SegmentationType", "BINARY")).upper()
    shared = ds.get("SharedFunctionalGroupsSequence")
    shared0 = shared[0] if shared else None
    per = ds.get("PerFrameFunctionalGroupsSequence") or []

    def pick(i: int, seq: str, attr: str) -> Any:
        for grp in ((per[i] if i < len(per) else None), shared0):
            if grp is not None and seq in grp and grp[seq].value:
                val = grp[seq].value[0].get(attr)
                if val is not None:
                    return val
        return None

    ori = _floats(pick(0, "PlaneOrientationSequence", "ImageOrientationPatient"), 6)
    ps = _floats(pick(0, "PixelMeasuresSequence", "PixelSpacing"), 2)
    if ori is None or ps is None:
        raise InputError(f"{p}: DICOM SEG lacks plane orientation or pixel spacing")
    r, c = ori[:3], ori[3:]
    n = _normal(ori)
    positions = []
    seg_numbers = []
    for i in range(nframes):
        pos = _floats(pick(i, "PlanePositionSequence", "ImagePositionPatient"), 3)
        if pos is None:
            raise InputError(f"{p}: DICOM SEG frame {i + 1} has no ImagePositionPatient")
        positions.append(pos)
        sn = pick(i, "SegmentIdentificationSequence", "ReferencedSegmentNumber")
        seg_numbers.append(int(sn) if sn is not None else 0)
    pos_arr = np.asarray(positions)
    s = pos_arr @ n
    distinct = np.unique(np.round(s, 3))
    step: float | None = None
    sbs = pick(0, "PixelMeasuresSequence", "SpacingBetweenSlices")
    if sbs is not None and float(sbs) > 0:
        step = float(sbs)
    elif distinct.size > 1:
        step = float(np.min(np.diff(distinct)))
    else:
        thick = pick(0, "PixelMeasuresSequence", "SliceThickness")
        step = float(thick) if thick is not None and float(thick) > 0 else 1.0
    s0 = float(s.min())
    kz = (s - s0) / step
    if np.max(np.abs(kz - np.round(kz))) > 0.05:
        raise InputError(f"{p}: DICOM SEG frames are not on a regular slice grid")
    p0 = pos_arr[int(np.argmin(s))]
    off = np.stack([(pos_arr - p0) @ r / float(ps[1]), (pos_arr - p0) @ c / float(ps[0])], 1)
    if np.max(np.abs(off - np.round(off))) > 0.05:
        raise InputError(f"{p}: DICOM SEG frames are not on a common pixel grid")
    kz_i = np.round(kz).astype(int)
    off_i = np.round(off).astype(int)
    ox, oy = int(off_i[:, 0].min()), int(off_i[:, 1].min())
    rows, cols = pix.shape[1], pix.shape[2]
    nx = int(off_i[:, 0].max()) - ox + cols
    ny = int(off_i[:, 1].max()) - oy + rows
    nz = int(kz_i.max()) + 1
    out = np.zeros((nz, ny, nx), np.uint16)
    overlap = 0
    if seg_type == "LABELMAP":
        ppv = ds.get("PixelPaddingValue")
    frac_max = float(ds.get("MaximumFractionalValue", 1) or 1)
    for i in range(nframes):
        z, x0, y0 = kz_i[i], off_i[i, 0] - ox, off_i[i, 1] - oy
        view = out[z, y0:y0 + rows, x0:x0 + cols]
        frame = pix[i]
        if seg_type == "LABELMAP":
            lab = frame.astype(np.int64)
            if ppv is not None:
                lab = np.where(lab == int(ppv), 0, lab)
            sel = lab > 0
            view[sel] = lab[sel].astype(np.uint16)
            continue
        sel = frame > (0.5 * frac_max if seg_type == "FRACTIONAL" else 0)
        overlap += int(np.count_nonzero(sel & (view > 0) & (view != seg_numbers[i])))
        view[sel] = seg_numbers[i]
    if overlap and warnings is not None:
        warnings.append(f"{p}: {overlap} voxel(s) belong to several segments; the later segment "
                        "was kept")
    img = sitk.GetImageFromArray(out)
    origin = p0 + ox * float(ps[1]) * r + oy * float(ps[0]) * c
    img.SetOrigin([float(v) for v in origin])
    img.SetSpacing([float(ps[1]), float(ps[0]), step])
    img.SetDirection(np.column_stack([r, c, n]).ravel().tolist())
    infos = [SegmentInfo(int(sg.SegmentNumber), str(sg.get("SegmentLabel", "")))
             for sg in ds.get("SegmentSequence", []) if int(sg.SegmentNumber) > 0]
    return img, infos


# ----------------------------------------------------------------------------------------------
# alignment


def align_mask(mask: sitk.Image, image: sitk.Image, *, what: str, path: str | os.PathLike[str],
               warnings: list[str] | None = None, tol_fraction: float = 0.01) -> sitk.Image:
    """Put ``mask`` on ``image``'s grid, comparing them in physical (LPS mm) space.

    * Same grid (voxel centres of the corner voxels within ``tol_fraction`` x the smallest image
      spacing, mm): the mask is returned as is (with the image's exact geometry copied when it
      differed by less than the tolerance).
    * Other grid or orientation (flipped/permuted axes, oblique, other spacing or extent) that
      overlaps the image: resampled nearest-neighbour onto the image grid, labels kept. Voxel
      centres that coincide physically give identical results whatever the storage order.
      A warning is appended when part of the mask falls outside the image.
    * No nonzero mask voxel inside the image: InputError naming ``path``.

    An empty input mask raises InputError as well. The pixel type is kept.
    """
    if mask.GetDimension() != 3 or image.GetDimension() != 3:
        raise InputError(f"{path}: {what} and image must both be 3-D")
    marr = sitk.GetArrayViewFromImage(mask)
    n_in = int(np.count_nonzero(marr))
    if n_in == 0:
        raise InputError(f"{path}: {what} is empty (no nonzero voxels)")
    tol = tol_fraction * float(min(image.GetSpacing()))
    if geometry.same_grid(mask, image, tol_mm=tol):
        if (mask.GetOrigin() == image.GetOrigin() and mask.GetSpacing() == image.GetSpacing()
                and mask.GetDirection() == image.GetDirection()):
            return mask
        out = sitk.Image(mask)
        out.CopyInformation(image)
        return out
    check_overlap(mask, image, what=what, path=path, tol_mm=tol)
    out = sitk.Resample(mask, image, sitk.Transform(), sitk.sitkNearestNeighbor, 0.0,
                        mask.GetPixelID())
    oarr = sitk.GetArrayViewFromImage(out)
    n_out = int(np.count_nonzero(oarr))
    if n_out == 0:
        raise InputError(f"{path}: {what} does not overlap the image in physical space "
                         "(no mask voxel falls inside the image)")
    if warnings is not None:
        vol_in = n_in * float(np.prod(mask.GetSpacing()))
        vol_out = n_out * float(np.prod(image.GetSpacing()))
        lost = _fraction_outside(mask, image)
        if lost > 0.001:
            warnings.append(f"{path}: {100 * lost:.1f}% of the {what} lies outside the image "
                            "and was cut off")
        warnings.append(f"{path}: {what} resampled (nearest neighbour) onto the image grid "
                        f"(volume {vol_in / 1000:.2f} -> {vol_out / 1000:.2f} ml)")
    return out


def check_overlap(mask: sitk.Image, image: sitk.Image, *, what: str,
                  path: str | os.PathLike[str], tol_mm: float = 0.0) -> None:
    """Raise InputError naming ``path`` when the nonzero voxels of ``mask`` (their extents, LPS
    mm, axis-aligned box) do not overlap ``image``'s extents; otherwise return. Nothing is
    resampled, so sub-voxel shape information is kept for callers that work in physical space."""
    lo_i, hi_i = geometry.physical_bounds(image)
    lo_m, hi_m = _nonzero_bounds(mask)
    if np.any(hi_m < lo_i - tol_mm) or np.any(lo_m > hi_i + tol_mm):
        raise InputError(f"{path}: {what} does not overlap the image in physical space "
                         f"({what} spans LPS {_fmt(lo_m)}..{_fmt(hi_m)} mm, image "
                         f"{_fmt(lo_i)}..{_fmt(hi_i)} mm)")


def _fmt(v: npt.ArrayLike) -> str:
    return "(" + ", ".join(f"{x:.1f}" for x in np.asarray(v, float)) + ")"


def _nonzero_bounds(mask: sitk.Image) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Axis-aligned LPS box (mm) of the nonzero voxels' extents (centres +/- half a voxel)."""
    box = geometry.nonzero_index_box(sitk.GetArrayViewFromImage(mask))
    if box is None:
        raise ValueError("empty mask")  # callers check emptiness first
    lo = np.array(box.lo_zyx, float) - 0.5
    hi = np.array(box.hi_zyx, float) - 0.5
    corners = np.array([[z, y, x] for z in (lo[0], hi[0]) for y in (lo[1], hi[1])
                        for x in (lo[2], hi[2])])
    pts = geometry.zyx_index_to_lps(mask, corners)
    return pts.min(axis=0), pts.max(axis=0)


def _fraction_outside(mask: sitk.Image, image: sitk.Image) -> float:
    """Fraction of nonzero mask voxel centres lying outside the image's voxel extents."""
    arr = sitk.GetArrayViewFromImage(mask)
    idx = np.argwhere(arr != 0).astype(np.float64)
    if idx.shape[0] > 200_000:
        idx = idx[:: idx.shape[0] // 200_000 + 1]
    pts = geometry.zyx_index_to_lps(mask, idx)
    ci = geometry.lps_to_zyx_index(image, pts)
    shape = np.asarray(sitk.GetArrayViewFromImage(image).shape, float)
    inside = np.all((ci >= -0.5) & (ci <= shape - 0.5), axis=1)
    return float(1.0 - inside.mean())


# ----------------------------------------------------------------------------------------------
# entry point


def read_mask_with_segments(path: str | os.PathLike[str], *, what: str = "mask",
                            warnings: list[str] | None = None
                            ) -> tuple[sitk.Image, list[SegmentInfo]]:
    """Read a mask file or directory as a UInt16 label image on its own grid plus its segments.

    Accepts label maps (NIfTI, NRRD, MHA; segments = the distinct labels), 3D Slicer
    ``.seg.nrrd`` (names from ``SegmentN_Name``), DICOM SEG files, and directories holding one
    DICOM SEG (or a DICOM image series used as a label map). Raises InputError naming the file
    when it is missing, unreadable, not 3-D, not a label image or empty.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: {what} file does not exist")
    if p.is_dir():
        segs = [f for f in sorted(p.rglob("*")) if f.is_file() and is_dicom_seg(f)]
        if len(segs) > 1:
            raise InputError(f"{p}: directory holds {len(segs)} DICOM SEG files; give one file")
        if segs:
            p = segs[0]
    infos: list[SegmentInfo] | None = None
    if p.is_file() and is_dicom_seg(p):
        img, infos = read_dicom_seg(p, warnings)
    else:
        raw = _read_raw_mask(p, what, warnings)
        if is_slicer_segmentation(raw):
            img, infos = slicer_seg_to_labels(raw, p, warnings)
        else:
            img = read_image(p, what=what, warnings=warnings) if raw is None else raw
    if img.GetDimension() != 3 or min(img.GetSize()) < 1:
        raise InputError(f"{p}: {what} is not a 3-D volume")
    out = labels_from_image(img, p, what)
    crop = _nonzero_crop(sitk.GetArrayViewFromImage(out))
    present = set() if crop is None else {int(v) for v in np.unique(crop) if v}
    if infos is None:
        infos = [SegmentInfo(v, f"label {v}") for v in sorted(present)]
    else:
        infos = [s for s in infos if s.label in present]
    return out, infos


def _read_raw_mask(p: Path, what: str, warnings: list[str] | None) -> sitk.Image:
    """Read a non-DICOM-SEG mask without the scalar check (Slicer files may have layers)."""
    if p.is_dir() or not str(p).lower().endswith(".nrrd"):
        return read_image(p, what=what, warnings=warnings)
    try:
        with native_stderr_captured():
            img = sitk.ReadImage(str(p))
    except RuntimeError:
        return read_image(p, what=what, warnings=warnings)  # raises a one-line InputError
    if is_slicer_segmentation(img):
        if img.GetDimension() != 3:
            raise InputError(f"{p}: {what} is {img.GetDimension()}-D, a 3-D volume is required")
        return img
    check_volume(img, p, what)  # the checks read_image would make (no NIfTI header here)
    return img


def read_mask(path: str | os.PathLike[str], *, what: str = "mask",
              warnings: list[str] | None = None,
              reference: sitk.Image | None = None) -> sitk.Image:
    """Read a label mask as UInt16 (labels kept; 0 = background) from a label map (NIfTI, NRRD,
    MHA), a 3D Slicer ``.seg.nrrd``, a DICOM SEG file or a directory holding one.

    With ``reference``, the mask is checked against that image in physical space and put on its
    grid (:func:`a0verify.io.masks.align_mask`). Raises InputError when empty (before or after
    alignment), not a label image, or not overlapping ``reference``.
    """
    out, _ = read_mask_with_segments(path, what=what, warnings=warnings)
    if reference is not None:
        out = align_mask(out, reference, what=what, path=path, warnings=warnings)
    return out


def _nonzero_crop(arr: npt.NDArray[Any]) -> npt.NDArray[Any] | None:
    """View of ``arr`` (z, y, x) inside the tight box of its nonzero voxels; None when every
    voxel is zero."""
    box = geometry.nonzero_index_box(arr)
    return None if box is None else arr[box.slices]


def labels_from_image(img: sitk.Image, path: str | os.PathLike[str], what: str) -> sitk.Image:
    """Validate a label image (integers >= 0, <= 65535, not empty) and cast it to UInt16.

    The checks only look inside the nonzero box (every voxel outside it is 0, a valid label)."""
    arr = sitk.GetArrayViewFromImage(img)
    crop = _nonzero_crop(arr)
    if crop is None:
        raise InputError(f"{path}: {what} is empty (no nonzero voxels)")
    if np.issubdtype(crop.dtype, np.floating):
        if np.any(crop < 0) or np.any(np.abs(crop - np.round(crop)) > 1e-3):
            raise InputError(f"{path}: {what} is not a label image "
                             "(non-integer or negative values)")
    elif np.issubdtype(crop.dtype, np.signedinteger) and np.any(crop < 0):
        raise InputError(f"{path}: {what} has negative labels")
    if crop.max() > 65535:
        raise InputError(f"{path}: {what} has labels above 65535")
    if np.issubdtype(crop.dtype, np.floating) and not np.any(np.round(crop)):
        raise InputError(f"{path}: {what} is empty (no nonzero voxels)")
    if img.GetPixelID() == sitk.sitkUInt16:
        return img
    return sitk.Cast(sitk.Round(img) if np.issubdtype(arr.dtype, np.floating) else img,
                     sitk.sitkUInt16)
