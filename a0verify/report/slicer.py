"""3D Slicer-ready outputs: segmentation (.seg.nrrd), surface mesh with margin scalars (legacy
.vtk, LPS), thinnest-margin point (markups .mrk.json), and readers for them (``a0verify report``).

Conventions: every file is in **LPS millimetres** (Slicer converts to RAS on load). Masks keep the
post grid's lattice (spacing, direction) but are cropped to the bounding box of their nonzero
voxels (plus one voxel), so Slicer places them exactly where the full-grid mask would be.
"""

from __future__ import annotations

import gzip
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

from a0verify import geometry
from a0verify.errors import InputError
from a0verify.io import atomic_path, write_json_atomic
from a0verify.io.slicerseg import SlicerSegment as Segment
from a0verify.io.slicerseg import slicer_segment_layers

F64 = npt.NDArray[np.float64]

#: Segment colours (RGB 0-1) used in the .seg.nrrd and in every figure.
TUMOR_RGB = (1.0, 0.85, 0.0)
ABLATION_RGB = (0.2, 0.8, 0.2)


# --------------------------------------------------------------------------- segmentation
def write_segmentation(path: str | Path, ablation: sitk.Image,
                       tumor: sitk.Image | None = None) -> list[Segment]:
    """Write the ablation zone and the tumour (both on the post grid) as a Slicer ``.seg.nrrd``.

    Layer 0 holds the tumour labels (one segment per distinct nonzero label, named
    ``tumour <label>``), layer 1 the ablation zone (all nonzero voxels, one segment). The two
    layers may overlap (the tumour normally lies inside the zone). Without a tumour the file has
    one layer. ``tumor`` must share ``ablation``'s grid. Returns the segments written.
    """
    if tumor is not None and not geometry.same_grid(tumor, ablation):
        raise ValueError("tumour and ablation masks must share the post grid")
    box = geometry.mask_box(ablation)
    if tumor is not None:
        box = geometry.union_box(box, geometry.mask_box(tumor))
    abl = sitk.GetArrayFromImage(geometry.crop(ablation, box)) != 0
    layers: list[npt.NDArray[np.uint8]] = []
    segments: list[Segment] = []
    if tumor is not None:
        tarr = sitk.GetArrayFromImage(geometry.crop(tumor, box))
        labels = [int(v) for v in np.unique(tarr) if v != 0]
        if labels and max(labels) > 255:  # relabel to fit uint8
            lut = {v: i + 1 for i, v in enumerate(labels)}
            t8 = np.zeros(tarr.shape, np.uint8)
            for v, i in lut.items():
                t8[tarr == v] = i
            segments += [Segment(f"tumour {v}", 0, lut[v], TUMOR_RGB) for v in labels]
        else:
            t8 = tarr.astype(np.uint8)
            segments += [Segment(f"tumour {v}" if len(labels) > 1 else "tumour", 0, v, TUMOR_RGB)
                         for v in labels]
        layers.append(t8)
    segments.append(Segment("ablation zone", len(layers), 1, ABLATION_RGB))
    layers.append(abl.astype(np.uint8))
    ref = geometry.crop(ablation, box)
    _write_seg_nrrd(Path(path), layers, ref, segments)
    return segments


def write_structure_segmentation(path: str | Path, mask: sitk.Image, name: str,
                                 color_rgb: tuple[float, float, float]) -> Segment:
    """Write one binary structure (nonzero voxels of ``mask``) as a one-segment Slicer
    ``.seg.nrrd`` named ``name`` (e.g. "ablation zone", "tumour"), cropped to its nonzero box on
    ``mask``'s lattice. The file reads back with :func:`a0verify.io.read_mask` (and with
    :func:`read_segmentation` when ``name`` is "ablation zone"), so a user can edit it in
    3D Slicer and pass it back as ``--ablation`` / ``--tumor``."""
    box = geometry.mask_box(mask)
    layer = (sitk.GetArrayFromImage(geometry.crop(mask, box)) != 0).astype(np.uint8)
    seg = Segment(name, 0, 1, color_rgb)
    _write_seg_nrrd(Path(path), [layer], geometry.crop(mask, box), [seg])
    return seg


def _extent(layer: npt.NDArray[np.uint8], label: int) -> str:
    nz = np.nonzero(layer == label)
    if nz[0].size == 0:
        return "0 -1 0 -1 0 -1"
    # Slicer extent: i min, i max, j min, j max, k min, k max (x, y, z index order)
    return " ".join(f"{int(nz[a].min())} {int(nz[a].max())}" for a in (2, 1, 0))


def _write_seg_nrrd(path: Path, layers: Sequence[npt.NDArray[np.uint8]], ref: sitk.Image,
                    segments: Sequence[Segment]) -> None:
    """NRRD writer for Slicer segmentations (uint8, gzip, LPS, 'list' axis for layers)."""
    d = geometry.direction_matrix(ref)
    sp = np.asarray(ref.GetSpacing(), float)
    cols = [d[:, i] * sp[i] for i in range(3)]  # space direction of index axis i (x, y, z)
    vec = " ".join("(" + ",".join(f"{c:.17g}" for c in col) + ")" for col in cols)
    size = ref.GetSize()
    multi = len(layers) > 1
    lines = ["NRRD0004", "# Slicer segmentation written by a0verify (LPS mm)", "type: uint8",
             f"dimension: {4 if multi else 3}", "space: left-posterior-superior",
             f"sizes: {f'{len(layers)} ' if multi else ''}{size[0]} {size[1]} {size[2]}",
             f"space directions: {'none ' if multi else ''}{vec}",
             f"kinds: {'list ' if multi else ''}domain domain domain",
             "endian: little", "encoding: gzip",
             "space origin: (" + ",".join(f"{v:.17g}" for v in ref.GetOrigin()) + ")"]
    meta: dict[str, str] = {
        "Segmentation_MasterRepresentation": "Binary labelmap",
        "Segmentation_ContainedRepresentationNames": "Binary labelmap|",
        "Segmentation_ReferenceImageExtentOffset": "0 0 0",
    }
    for i, s in enumerate(segments):
        p = f"Segment{i}_"
        meta[p + "ID"] = f"Segment_{i + 1}"
        meta[p + "Name"] = s.name
        meta[p + "NameAutoGenerated"] = "0"
        meta[p + "Color"] = " ".join(f"{c:g}" for c in s.color_rgb)
        meta[p + "ColorAutoGenerated"] = "0"
        meta[p + "Layer"] = str(s.layer)
        meta[p + "LabelValue"] = str(s.label)
        meta[p + "Extent"] = _extent(layers[s.layer], s.label)
        meta[p + "Tags"] = "Segmentation.Status:completed|"
    lines += [f"{k}:={v}" for k, v in meta.items()]
    if multi:  # NRRD fastest axis first: layer, x, y, z  <- numpy (z, y, x, layer)
        data = np.stack(layers, axis=-1)
    else:
        data = layers[0]
    payload = gzip.compress(np.ascontiguousarray(data, dtype="<u1").tobytes(), compresslevel=1)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(("\n".join(lines) + "\n\n").encode("utf-8"))
        fh.write(payload)


def read_segmentation(path: str | Path) -> tuple[dict[str, sitk.Image], list[Segment]]:
    """Read a .seg.nrrd written by :func:`write_segmentation` back as binary/label images.

    Returns ({"tumor": UInt16 labels (absent when the file has no tumour), "ablation": UInt8
    0/1}, segments); images on the cropped post lattice (LPS). Raises InputError naming the file
    when it is missing or not such a segmentation.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: segmentation file does not exist")
    try:
        img = sitk.ReadImage(str(p))
    except RuntimeError:
        raise InputError(f"{p}: cannot read segmentation (not a NRRD file)") from None
    segments, arr = slicer_segment_layers(img, p)
    out: dict[str, sitk.Image] = {}
    tum = np.zeros(arr.shape[:3], np.uint16)
    abl = np.zeros(arr.shape[:3], np.uint8)
    found_abl = False
    for s in segments:
        sel = arr[..., s.layer] == s.label
        if s.name == "ablation zone":
            abl[sel] = 1
            found_abl = True
        elif s.name.startswith("tumour"):
            tail = s.name.split()[-1]
            tum[sel] = int(tail) if tail.isdigit() else s.label
    if not found_abl:
        raise InputError(f"{p}: no 'ablation zone' segment (not written by a0verify?)")
    out["ablation"] = geometry.array_to_image(abl, img)
    if any(s.name.startswith("tumour") for s in segments):
        out["tumor"] = geometry.array_to_image(tum, img)
    return out, segments


# --------------------------------------------------------------------------- surface mesh
@dataclass
class Surface:
    """One lesion's tumour surface for figures: LPS vertices, triangles, margin per vertex (mm)."""

    lesion_id: int
    vertices_lps: F64
    faces: npt.NDArray[np.int64]
    margin_mm: F64


def write_surface_vtk(path: str | Path, surfaces: Sequence[Surface]) -> Path:
    """Write all tumour surfaces as one legacy VTK PolyData file (vertices LPS mm; header
    ``SPACE=LPS`` as 3D Slicer expects) with point arrays ``margin_mm`` and ``lesion_id``.
    No surfaces give an empty PolyData."""
    from vtkmodules.util.numpy_support import numpy_to_vtk, numpy_to_vtkIdTypeArray
    from vtkmodules.vtkCommonCore import vtkPoints
    from vtkmodules.vtkCommonDataModel import vtkCellArray, vtkPolyData
    from vtkmodules.vtkIOLegacy import vtkPolyDataWriter

    poly = vtkPolyData()
    if surfaces:
        verts = np.vstack([s.vertices_lps for s in surfaces]).astype(np.float64)
        offs = np.cumsum([0] + [len(s.vertices_lps) for s in surfaces[:-1]])
        faces = np.vstack([s.faces + o for s, o in zip(surfaces, offs, strict=True)])
        pts = vtkPoints()
        pts.SetData(numpy_to_vtk(verts, deep=True))
        cells = vtkCellArray()
        offsets = np.arange(0, 3 * len(faces) + 1, 3, dtype=np.int64)
        cells.SetData(numpy_to_vtkIdTypeArray(offsets, deep=True),
                      numpy_to_vtkIdTypeArray(faces.astype(np.int64).ravel(), deep=True))
        poly.SetPoints(pts)
        poly.SetPolys(cells)
        m = numpy_to_vtk(np.concatenate([s.margin_mm for s in surfaces]).astype(np.float32),
                         deep=True)
        m.SetName("margin_mm")
        ids = numpy_to_vtk(np.concatenate([np.full(len(s.vertices_lps), s.lesion_id, np.int32)
                                           for s in surfaces]), deep=True)
        ids.SetName("lesion_id")
        poly.GetPointData().AddArray(m)
        poly.GetPointData().AddArray(ids)
        poly.GetPointData().SetActiveScalars("margin_mm")
    with atomic_path(path) as tmp:
        w = vtkPolyDataWriter()
        w.SetFileName(str(tmp))
        w.SetInputData(poly)
        w.SetHeader("a0verify tumour surface, margin_mm (positive inside the ablation zone) "
                    "SPACE=LPS")
        w.SetFileTypeToBinary()
        if not w.Write():
            raise OSError(f"{path}: VTK writer failed")
    return Path(path)


def read_surface_vtk(path: str | Path) -> list[Surface]:
    """Read surfaces written by :func:`write_surface_vtk` (split by ``lesion_id``)."""
    from vtkmodules.util.numpy_support import vtk_to_numpy
    from vtkmodules.vtkIOLegacy import vtkPolyDataReader

    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: surface mesh does not exist")
    r = vtkPolyDataReader()
    r.SetFileName(str(p))
    r.Update()
    poly = r.GetOutput()
    if poly is None or poly.GetNumberOfPoints() == 0:
        return []
    pd = poly.GetPointData()
    if pd.GetArray("margin_mm") is None or pd.GetArray("lesion_id") is None:
        raise InputError(f"{p}: surface mesh has no margin_mm / lesion_id arrays")
    verts = vtk_to_numpy(poly.GetPoints().GetData()).astype(np.float64)
    conn = vtk_to_numpy(poly.GetPolys().GetConnectivityArray()).astype(np.int64).reshape(-1, 3)
    margin = vtk_to_numpy(pd.GetArray("margin_mm")).astype(np.float64)
    lid = vtk_to_numpy(pd.GetArray("lesion_id")).astype(np.int64)
    out = []
    for i in np.unique(lid):
        sel = np.nonzero(lid == i)[0]
        remap = np.full(len(verts), -1, np.int64)
        remap[sel] = np.arange(len(sel))
        f = conn[np.all(lid[conn] == i, axis=1)]
        out.append(Surface(int(i), verts[sel], remap[f], margin[sel]))
    return out


# --------------------------------------------------------------------------- markups
def write_markups(path: str | Path, points: Sequence[tuple[str, Sequence[float], str]]) -> Path:
    """Write labelled points (label, LPS mm, description) as a 3D Slicer point list
    (``.mrk.json``, coordinateSystem LPS)."""
    doc: dict[str, Any] = {
        "@schema": "https://raw.githubusercontent.com/slicer/slicer/main/Modules/Loadable/Markups/"
                   "Resources/Schema/markups-schema-v1.0.3.json#",
        "markups": [{
            "type": "Fiducial",
            "coordinateSystem": "LPS",
            "coordinateUnits": "mm",
            "locked": True,
            "labelFormat": "%N-%d",
            "controlPoints": [
                {"id": str(i + 1), "label": label, "description": desc,
                 "position": [float(v) for v in pos], "orientation":
                 [-1.0, -0.0, -0.0, -0.0, -1.0, -0.0, 0.0, 0.0, 1.0],
                 "selected": True, "locked": True, "visibility": True,
                 "positionStatus": "defined"}
                for i, (label, pos, desc) in enumerate(points)],
            "display": {"color": [1.0, 0.0, 1.0], "selectedColor": [1.0, 0.0, 1.0],
                        "glyphScale": 3.0, "textScale": 3.0},
        }],
    }
    return write_json_atomic(path, doc)
