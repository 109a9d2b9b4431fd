"""Margin outputs for people and 3D Slicer: the margin map (.nrrd) and the tumour surface mesh
with per-vertex margins (.vtp / .vtk), both in LPS millimetres, written atomically.

pyvista/VTK are imported lazily (only when a mesh is written).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from a0verify.errors import InputError
from a0verify.io import atomic_path, write_image
from a0verify.margin.results import LesionMargin, MarginResult


def write_margin_map(result: MarginResult, path: str | os.PathLike[str]) -> Path:
    """Write the ablation zone's signed-distance map (mm, float32, positive inside the zone, on
    the ablation mask's grid cropped to the lesion ROIs) to ``path`` (``.nrrd`` recommended).

    Raises InputError when the result holds no margin map."""
    if result.margin_map is None:
        raise InputError(f"{path}: the margin result holds no margin map to write")
    return write_image(result.margin_map, path, compress=True)


def write_surface_mesh(lesions: Sequence[LesionMargin], path: str | os.PathLike[str]) -> Path:
    """Write all lesions' tumour surfaces as one polygon mesh (``.vtp`` XML or legacy ``.vtk``).

    Vertices are LPS mm (Slicer reads LPS meshes when told so; the file carries the header comment
    / field ``coordinate_system = LPS``). Point data: ``margin_mm`` (float32, positive inside the
    ablation zone) and ``lesion_id`` (int32). Lesions without a surface are skipped; none at all
    raises InputError.
    """
    import pyvista as pv

    p = Path(path)
    if p.suffix.lower() not in (".vtp", ".vtk"):
        raise InputError(f"{p}: surface mesh must be written as .vtp or .vtk")
    verts: list[np.ndarray] = []
    faces: list[np.ndarray] = []
    margins: list[np.ndarray] = []
    ids: list[np.ndarray] = []
    offset = 0
    for les in lesions:
        s = les.surface
        if s is None or len(s.faces) == 0:
            continue
        verts.append(np.asarray(s.vertices_lps, np.float64))
        faces.append(np.asarray(s.faces, np.int64) + offset)
        margins.append(np.asarray(s.margin_mm, np.float32))
        ids.append(np.full(len(s.vertices_lps), int(les.id), np.int32))
        offset += len(s.vertices_lps)
    if not verts:
        raise InputError(f"{p}: no lesion has a surface mesh to write")
    f = np.concatenate(faces)
    cells = np.hstack([np.full((len(f), 1), 3, np.int64), f]).ravel()
    mesh = pv.PolyData(np.concatenate(verts), cells)
    mesh.point_data["margin_mm"] = np.concatenate(margins)
    mesh.point_data["lesion_id"] = np.concatenate(ids)
    mesh.field_data["coordinate_system"] = np.array(["LPS"])
    with atomic_path(p) as tmp:
        mesh.save(str(tmp), binary=True)
    return p
