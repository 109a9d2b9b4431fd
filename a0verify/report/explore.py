"""The page's interactive part: what the 3-D view and the slice scroller show, packed for the
browser, and the scripts that show it (package data, inlined: the page stays one offline file).

Payload (JSON inside the page; binary arrays little-endian, zlib-compressed, base64):

* ``lesions``: per lesion the tumour surface (vertices LPS mm float32, faces uint32) with the
  per-vertex margin (mm float32) - the same field as the mesh file and every figure;
* ``zone``: the ablation-zone surface (for the translucent shell in 3-D);
* ``volume``: the post CT around the worst lesion resampled on an axis-aligned LPS grid (uint8,
  soft-tissue window) with a label volume (bit 0 tumour, bit 1 ablation zone, bit 2 tissue
  within the threshold of the tumour that is not ablated);
* ``scale``: the margin colour scale (:class:`a0verify.report.colours.MarginScale`, with LUT);
* ``thinnest``: the thinnest-margin point (LPS, RAS), its margin and lesion.
"""

from __future__ import annotations

import base64
import json
import zlib
from functools import cache
from importlib import resources
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

from a0verify import geometry
from a0verify.report.colours import MarginScale


class ReportData(Protocol):
    """What the viewers read (:class:`a0verify.report.html.ReportData` has it): the tumour
    surfaces with their per-vertex margins, the ablation and tumour masks and the post CT (or
    None), all LPS mm."""

    surfaces: list[Any]
    ablation: sitk.Image
    tumor: sitk.Image | None
    background: sitk.Image | None

F64 = npt.NDArray[np.float64]
#: CT display window (HU) of the scroller (as the static views).
WINDOW_HU = (-160.0, 240.0)
#: Largest scroller volume (voxels): the grid step grows beyond it.
MAX_VOXELS = 1_500_000
#: Finest and coarsest scroller grid steps (mm).
STEP_MM = (0.5, 3.0)
#: Zone meshes for the page are made from at most this many voxels (coarser steps beyond).
ZONE_MESH_VOXELS = 400_000


def pack(arr: npt.ArrayLike, dtype: str) -> str:
    """Little-endian bytes of ``arr`` as ``dtype``, zlib-compressed, base64 (ASCII)."""
    a = np.ascontiguousarray(np.asarray(arr).astype(np.dtype(dtype).newbyteorder("<")))
    return base64.b64encode(zlib.compress(a.tobytes(), 6)).decode("ascii")


def view_box(report: dict[str, Any], data: ReportData) -> tuple[F64, float]:
    """Centre (LPS mm) and half-width (mm) of the cube the scroller shows: the same cube as the
    static views (:func:`a0verify.report.figures.view_cube`) around the worst lesion."""
    from a0verify.report.figures import view_cube

    return view_cube(data.surfaces, int(report["min_margin_lesion_id"]),
                     report["min_margin_point_lps"], float(report["threshold_mm"]))


def _steps(reference: sitk.Image, half: float) -> F64:
    """Scroller grid steps (mm) along LPS x, y, z: the reference grid's voxel extent along each
    axis (so slices keep the scan's resolution), within STEP_MM, coarser for large cubes."""
    st = np.array([geometry.voxel_extent_along(reference, e) for e in np.eye(3)])
    st = np.clip(st, *STEP_MM)
    n = np.prod(np.ceil(2.0 * half / st) + 1)
    if n > MAX_VOXELS:
        st = st * (n / MAX_VOXELS) ** (1.0 / 3.0)
    return st


def slice_volume(report: dict[str, Any], data: ReportData) -> dict[str, Any]:
    """The scroller's volume (module docstring): CT (None without a post CT) and labels on an
    axis-aligned LPS grid around the worst lesion."""
    from scipy import ndimage

    from a0verify.report.figures import binary_float, crop_to_cube

    centre, half = view_box(report, data)
    st = _steps(data.ablation, half)
    size = (np.ceil(2.0 * half / st).astype(int) + 1).tolist()
    ref = sitk.Image([int(v) for v in size], sitk.sitkUInt8)
    ref.SetSpacing([float(v) for v in st])
    ref.SetOrigin((centre - half).tolist())

    def sample(img: sitk.Image | None, default: float) -> npt.NDArray[np.float32] | None:
        if img is None:
            return None
        r = sitk.Resample(img, ref, sitk.Transform(), sitk.sitkLinear, default,
                          sitk.sitkFloat32)
        return sitk.GetArrayFromImage(r)

    ct = sample(crop_to_cube(data.background, centre, half), -1000.0)
    zone = sample(binary_float(crop_to_cube(data.ablation, centre, half)), 0.0)
    tum = sample(binary_float(crop_to_cube(data.tumor, centre, half)), 0.0)
    zone_b = zone is not None and zone > 0.5
    tum_b = (tum > 0.5) if tum is not None else np.zeros(ref.GetSize()[::-1], bool)
    labels = tum_b.astype(np.uint8) | (np.asarray(zone_b, bool).astype(np.uint8) << 1)
    if tum_b.any():
        dist = ndimage.distance_transform_edt(~tum_b, sampling=st[::-1])
        shell = (dist <= float(report["threshold_mm"])) & ~tum_b & ~np.asarray(zone_b, bool)
        labels |= shell.astype(np.uint8) << 2
    out: dict[str, Any] = {"shape": [int(v) for v in labels.shape],
                           "origin_lps": [float(v) for v in ref.GetOrigin()],
                           "spacing_mm": [float(v) for v in st], "window_hu": list(WINDOW_HU),
                           "labels": pack(labels, "u1"), "ct": None}
    if ct is not None:
        lo, hi = WINDOW_HU
        out["ct"] = pack(np.clip(np.rint((ct - lo) * (255.0 / (hi - lo))), 0, 255), "u1")
    return out


def payload(report: dict[str, Any], data: ReportData, scale: MarginScale) -> dict[str, Any]:
    """Everything the page's viewers show (module docstring), JSON-ready."""
    from a0verify.viz import zone_mesh

    lesions = {int(d["id"]): d for d in report["lesions"]}
    meshes = []
    for s in data.surfaces:
        d = lesions.get(int(s.lesion_id), {})
        meshes.append({"id": int(s.lesion_id), "verdict": d.get("verdict"),
                       "min_margin_mm": d.get("min_margin_mm"),
                       "n_vertices": len(s.vertices_lps),
                       "vertices": pack(s.vertices_lps, "f4"), "faces": pack(s.faces, "u4"),
                       "margin": pack(s.margin_mm, "f4")})
    zv, zf = zone_mesh(data.ablation, max_voxels=ZONE_MESH_VOXELS)
    zone = ({"vertices": pack(zv, "f4"), "faces": pack(zf, "u4"), "n_vertices": len(zv)}
            if len(zf) else None)
    worst = lesions.get(int(report["min_margin_lesion_id"]), {})
    pt = np.asarray(report["min_margin_point_lps"], float)
    surf = next((s for s in data.surfaces if s.lesion_id == report["min_margin_lesion_id"]),
                None)
    centre = surf.vertices_lps.mean(axis=0) if surf is not None else pt
    return {
        "version": 1,
        "threshold_mm": float(report["threshold_mm"]),
        "second_threshold_mm": report.get("second_threshold_mm"),
        "scale": scale.to_dict(),
        "thinnest": {"lesion": int(report["min_margin_lesion_id"]),
                     "margin_mm": float(report["min_margin_mm"]),
                     "uncertainty_mm": float(report["uncertainty_mm"]),
                     "lps": [float(v) for v in pt],
                     "ras": [float(v) for v in geometry.lps_to_ras(pt)],
                     "lesion_centre_lps": [float(v) for v in centre],
                     "verdict": worst.get("verdict")},
        "lesions": meshes,
        "zone": zone,
        "volume": slice_volume(report, data),
    }


def payload_json(report: dict[str, Any], data: ReportData, scale: MarginScale) -> str:
    """:func:`payload` as JSON text safe inside a ``<script type="application/json">``."""
    text = json.dumps(payload(report, data, scale), separators=(",", ":"), allow_nan=False)
    return text.replace("</", "<\\/")


@cache
def scripts() -> tuple[str, str]:
    """(three.js bundle, the page's viewer script), from the package data."""
    base = resources.files("a0verify.report") / "assets"
    three = (base / "three.min.js").read_text("utf-8")
    viewer = (base / "explore.js").read_text("utf-8")
    for name, text in (("three.min.js", three), ("explore.js", viewer)):
        if "</script" in text.lower():  # would end the inline script early
            raise RuntimeError(f"{name} contains '</script' and cannot be inlined")
    return three, viewer
