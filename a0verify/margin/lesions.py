"""Tumour input split into lesions: a label image (one lesion per label; a single label split
into 26-connected components, numbered 1.. by decreasing size) or ``{id: level-set image}``
(signed distance in mm, positive inside, boundary at 0). Each lesion keeps a small crop of its
own grid (3 voxels of background around it)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

from a0verify import geometry
from a0verify.errors import InputError


@dataclass
class LesionInput:
    """One lesion on a crop of its grid starting at array index ``lo_zyx``: a binary ``mask``
    crop (z, y, x) or a level-set ``values`` crop (mm, positive inside)."""

    id: int
    grid: sitk.Image
    lo_zyx: tuple[int, int, int]
    mask: npt.NDArray[np.bool_] | None = None
    values: npt.NDArray[np.float32] | None = None


def label_lesions(tumor: sitk.Image) -> list[LesionInput]:
    """Lesions of a label image (see the module docstring). Empty input raises InputError."""
    arr = sitk.GetArrayViewFromImage(tumor)
    nb = geometry.nonzero_index_box(arr)
    if nb is None:
        raise InputError("tumour mask is empty (no nonzero voxels)")
    box = geometry.pad_box(nb, 3, arr.shape)
    crop = np.asarray(arr[box.slices])
    labels = [v for v in np.unique(crop) if v != 0]
    out: list[LesionInput] = []
    if len(labels) > 1:
        for lab in labels:
            m = crop == lab
            out.append(_crop_lesion(int(lab), m, tumor, box.lo_zyx))
        return out
    from scipy import ndimage

    cc, n = ndimage.label(crop != 0, structure=np.ones((3, 3, 3), bool))
    sizes = np.bincount(cc.ravel(), minlength=n + 1)[1:]
    for rank, comp in enumerate(np.argsort(-sizes, kind="stable"), start=1):
        out.append(_crop_lesion(rank, cc == comp + 1, tumor, box.lo_zyx))
    return out


def _crop_lesion(lid: int, m: npt.NDArray[np.bool_], grid: sitk.Image,
                 lo: tuple[int, int, int]) -> LesionInput:
    nb = geometry.nonzero_index_box(m)
    assert nb is not None
    # 3 voxels of background around the lesion (zeros beyond the image edge)
    padded = np.pad(m[nb.slices], 3, mode="constant")
    lo_zyx = tuple(int(a) + int(b) - 3 for a, b in zip(lo, nb.lo_zyx, strict=True))
    return LesionInput(lid, grid, lo_zyx, mask=padded)  # type: ignore[arg-type]


def levelset_lesions(tumor: Mapping[int, sitk.Image]) -> list[LesionInput]:
    """Lesions given as level-set images; one without a positive voxel, or none at all, raises
    InputError."""
    out = []
    for lid, img in tumor.items():
        vals = sitk.GetArrayViewFromImage(img)
        inside = vals > 0
        nb = geometry.nonzero_index_box(inside)
        if nb is None:
            raise InputError(f"tumour lesion {lid}: level set has no positive (inside) voxel")
        box = geometry.pad_box(nb, 2, vals.shape)
        v = np.asarray(vals[box.slices], np.float32)
        # pad with the outside continuation so the surface closes inside the crop
        lo = float(min(v.min(), 0.0)) - 1.0
        v = np.pad(v, 1, mode="constant", constant_values=lo)
        lo_zyx = tuple(int(a) - 1 for a in box.lo_zyx)
        out.append(LesionInput(int(lid), img, lo_zyx, values=v))  # type: ignore[arg-type]
    if not out:
        raise InputError("tumour mask is empty (no lesions)")
    return out


def split_lesions(tumor: sitk.Image) -> dict[int, sitk.Image]:
    """Split a tumour label image into one binary UInt8 image per lesion (full grid).

    Several nonzero labels: one lesion per label. A single label: connected components
    (26-connectivity), numbered 1.. by decreasing size. Empty input raises InputError.
    """
    out: dict[int, sitk.Image] = {}
    shape = sitk.GetArrayViewFromImage(tumor).shape
    for les in label_lesions(tumor):
        assert les.mask is not None
        full = np.zeros(shape, np.uint8)
        lo = np.asarray(les.lo_zyx)
        src = [slice(max(0, -a), m - max(0, a + m - s)) for a, m, s in
               zip(lo, les.mask.shape, shape, strict=True)]
        dst = [slice(max(0, a), min(s, a + m)) for a, m, s in
               zip(lo, les.mask.shape, shape, strict=True)]
        full[tuple(dst)] = les.mask[tuple(src)]
        out[les.id] = geometry.array_to_image(full, tumor)
    return out
