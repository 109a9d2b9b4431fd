"""3D Slicer ``.seg.nrrd`` segmentations: the one parser of their ``SegmentN_*`` metadata and
layers, and their conversion to a label image (used by mask import and by the report's reader).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

from a0verify import geometry
from a0verify.errors import InputError


@dataclass(frozen=True)
class SegmentInfo:
    """One segment of a mask file: its label value in the returned label image and its name."""

    label: int
    name: str


_SEG_KEY = re.compile(r"^Segment(\d+)_(\w+)$")


def _slicer_segments(img: sitk.Image) -> dict[int, dict[str, str]]:
    segs: dict[int, dict[str, str]] = {}
    for key in img.GetMetaDataKeys():
        m = _SEG_KEY.match(key)
        if m:
            segs.setdefault(int(m.group(1)), {})[m.group(2)] = img.GetMetaData(key)
    return segs


def is_slicer_segmentation(img: sitk.Image) -> bool:
    """True when ``img`` carries 3D Slicer segment metadata (``SegmentN_*`` keys)."""
    return bool(_slicer_segments(img))


@dataclass(frozen=True)
class SlicerSegment:
    """One segment of a 3D Slicer ``.seg.nrrd``: voxels equal to ``label`` in layer ``layer``."""

    name: str
    layer: int
    label: int
    color_rgb: tuple[float, float, float]


def slicer_segment_layers(img: sitk.Image, path: str | os.PathLike[str]
                          ) -> tuple[list[SlicerSegment], npt.NDArray[np.generic]]:
    """The one ``.seg.nrrd`` parser: the segments (``SegmentN_*`` metadata, in N order) and the
    layers as an array (z, y, x, layer). Raises InputError naming ``path`` when a segment refers
    to a layer the file does not have. No segment metadata: an empty list."""
    ncomp = img.GetNumberOfComponentsPerPixel()
    arr = sitk.GetArrayFromImage(img)
    if ncomp == 1:
        arr = arr[..., None]
    out: list[SlicerSegment] = []
    for i, (_, meta) in enumerate(sorted(_slicer_segments(img).items())):
        layer = int(meta.get("Layer", 0 if ncomp == 1 else i))
        value = int(meta.get("LabelValue", i + 1 if ncomp == 1 else 1))
        name = meta.get("Name", f"Segment_{i + 1}")
        if not 0 <= layer < ncomp:
            raise InputError(f"{path}: segment {name!r} refers to layer {layer} "
                             f"but the file has {ncomp}")
        rgb = [float(c) for c in meta.get("Color", "1 1 1").split()[:3]]
        out.append(SlicerSegment(name, layer, value, (rgb[0], rgb[1], rgb[2])))
    return out, arr


def slicer_seg_to_labels(img: sitk.Image, path: Path,
                         warnings: list[str] | None = None) -> tuple[sitk.Image, list[SegmentInfo]]:
    """Turn a 3D Slicer segmentation (``SegmentN_*`` metadata; one or several layers) into a label
    image. One layer: labels are Slicer's ``LabelValue``. Several layers (overlapping segments):
    segment i gets label i + 1 and overlaps are resolved in favour of the later segment (warned).
    """
    segments, arr = slicer_segment_layers(img, path)
    one_layer = arr.shape[-1] == 1
    out = np.zeros(arr.shape[:3], np.uint16)
    infos: list[SegmentInfo] = []
    overlap = 0
    for i, seg in enumerate(segments):
        sel = arr[..., seg.layer] == seg.label
        value = seg.label if one_layer else i + 1
        if not one_layer:
            overlap += int(np.count_nonzero(sel & (out > 0)))
        out[sel] = value
        infos.append(SegmentInfo(value, seg.name))
    if overlap and warnings is not None:
        warnings.append(f"{path}: {overlap} voxel(s) belong to several segments; "
                        "the later segment was kept")
    return geometry.array_to_image(out, img), infos


