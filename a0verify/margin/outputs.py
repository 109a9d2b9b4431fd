"""Margin outputs for the report and 3D Slicer: margin map (.nrrd) and surface mesh (.vtp)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from a0verify.io import atomic_path, write_image
from a0verify.margin.api import LesionMargin, MarginResult


def write_margin_map(result: MarginResult, path: str | Path) -> Path:
    """Write the ablation zone's signed-distance map (mm, positive inside, LPS grid) atomically."""
    if result.margin_map is None:
        raise ValueError("margin result has no margin map")
    return write_image(result.margin_map, path)


def write_surface_mesh(lesions: Sequence[LesionMargin], path: str | Path) -> Path:
    """Write all lesions' tumour surfaces as one PolyData file (vertices LPS mm) with point arrays
    ``margin_mm`` and ``lesion_id``. Format from the suffix (.vtp, .vtk)."""
    import pyvista as pv

    verts, faces, margins, ids = [], [], [], []
    offset = 0
    for les in lesions:
        if les.surface is None:
            continue
        s = les.surface
        verts.append(s.vertices_lps)
        faces.append(np.hstack([np.full((len(s.faces), 1), 3), s.faces + offset]))
        margins.append(s.margin_mm)
        ids.append(np.full(len(s.vertices_lps), les.id))
        offset += len(s.vertices_lps)
    mesh = pv.PolyData(np.vstack(verts), np.vstack(faces).ravel()) if verts else pv.PolyData()
    if verts:
        mesh.point_data["margin_mm"] = np.concatenate(margins).astype(np.float32)
        mesh.point_data["lesion_id"] = np.concatenate(ids).astype(np.int32)
    with atomic_path(path) as tmp:
        mesh.save(str(tmp))
    return Path(path)
