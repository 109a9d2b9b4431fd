"""Offscreen 3-D renders with pyvista (imported lazily; never needs a display).

VTK picks an offscreen backend itself (EGL with the stock wheel, else OSMesa); we only set
``pyvista.OFF_SCREEN`` and create every plotter with ``off_screen=True``.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

from a0verify import geometry
from a0verify.report.colours import MarginScale, margin_scale
from a0verify.report.slicer import ABLATION_RGB, Surface

if TYPE_CHECKING:
    from a0verify.parallel import Task, Worker

F64 = npt.NDArray[np.float64]

_AXIS_WORDS = (("right", "left"), ("anterior", "posterior"), ("inferior", "superior"))


def direction_words(v_lps: npt.ArrayLike) -> str:
    """Anatomical words for an LPS direction, strongest component first (e.g. "posterior-left").
    Components below 35 % of the unit vector are left out; a zero vector gives "undefined"."""
    v = np.asarray(v_lps, float)
    n = float(np.linalg.norm(v))
    if n == 0.0 or not np.isfinite(n):
        return "undefined"
    v = v / n
    order = np.argsort(-np.abs(v))
    words = [_AXIS_WORDS[i][int(v[i] > 0)] for i in order if abs(v[i]) >= 0.35]
    return "-".join(words)


def zone_mesh(ablation: sitk.Image, max_voxels: int = 4_000_000) -> tuple[F64, npt.NDArray[Any]]:
    """Triangle mesh (vertices LPS mm, faces) of the ablation zone: marching cubes at 0.5 of the
    lightly smoothed binary mask (boundary half-way between voxel centres), on a crop around the
    nonzero voxels. Large zones are meshed with a coarser step. Empty mask: empty arrays."""
    from scipy import ndimage
    from skimage.measure import marching_cubes


    box = geometry.mask_box(ablation, pad=2)
    arr = sitk.GetArrayFromImage(geometry.crop(ablation, box)) != 0
    if not arr.any():
        return np.zeros((0, 3)), np.zeros((0, 3), np.int64)
    step = max(1, int(np.ceil((arr.size / max_voxels) ** (1 / 3))))
    sm = ndimage.gaussian_filter(arr.astype(np.float32), 0.6)
    verts, faces, _, _ = marching_cubes(sm, 0.5, step_size=step, allow_degenerate=False)
    lps = geometry.zyx_index_to_lps(ablation, verts + np.asarray(box.lo_zyx, float))
    return lps, faces.astype(np.int64)


def _pv() -> Any:
    os.environ.setdefault("PYVISTA_OFF_SCREEN", "true")
    if not os.environ.get("DISPLAY"):  # skip VTK's X11 attempt (and its warning) without a display
        os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
    import pyvista as pv

    pv.OFF_SCREEN = True
    return pv


def _polydata(pv: Any, verts: F64, faces: npt.NDArray[Any]) -> Any:
    cells = np.hstack([np.full((len(faces), 1), 3), faces]).astype(np.int64).ravel()
    return pv.PolyData(np.asarray(verts, float), cells)


def _scale(surfaces: Sequence[Surface], scale: MarginScale | float) -> MarginScale:
    if isinstance(scale, MarginScale):
        return scale
    return margin_scale(float(scale), None, [s.margin_mm for s in surfaces])


def render_margin_3d(surfaces: Sequence[Surface], ablation: sitk.Image,
                     point_lps: npt.ArrayLike, scale: MarginScale | float,
                     window_size: tuple[int, int] = (620, 520)) -> list[tuple[str, bytes]]:
    """Tumour surface(s) coloured by margin (``scale``, or a threshold in mm for the default
    scale of these surfaces) inside the translucent ablation zone, from two viewpoints: facing
    the thinnest-margin point from outside, and turned 90° about the vertical. Returns
    [(caption, PNG bytes), ...]; no surfaces: [].
    """
    if not surfaces:
        return []
    zv, zf = zone_mesh(ablation)
    return _render_views(surfaces, zv, zf, point_lps, _scale(surfaces, scale), window_size)


class RenderJob:
    """The 3-D views of :func:`render_margin_3d`, rendered in a worker process while the caller
    writes files and draws the 2-D figures: the worker made earlier by
    :func:`warm_render_worker` when given, else a new one (:mod:`a0verify.parallel`).
    ``result()`` waits for them (same pictures wherever they are rendered)."""

    def __init__(self, surfaces: Sequence[Surface], ablation: sitk.Image,
                 point_lps: npt.ArrayLike, scale: MarginScale | float,
                 worker: Worker | None = None) -> None:
        from a0verify import parallel

        self.job: Task[list[tuple[str, bytes]]] | None = None
        if not surfaces:
            if worker is not None:
                worker.close()
            return
        # the zone mesh is made here (SimpleITK); the worker only runs VTK
        zv, zf = zone_mesh(ablation)
        args = (list(surfaces), zv, zf, np.asarray(point_lps, float), _scale(surfaces, scale))
        if worker is not None:
            self.job = worker.submit(_render_views, *args)
            worker.close()  # exits once the views are rendered
        else:
            self.job = parallel.run_in_worker("3-D views", _render_views, *args, nice=5)

    def result(self, warnings: list[str] | None = None) -> list[tuple[str, bytes]]:
        """The rendered views [(caption, PNG bytes), ...]; [] without surfaces. A worker that
        died is reported in ``warnings`` (the views are then rendered here)."""
        return [] if self.job is None else self.job.result(warnings=warnings)


def warm_render_worker() -> Worker:
    """A worker process that loads pyvista/VTK and opens an off-screen GL context now (while
    the caller reads its inputs and computes the margin) and renders the 3-D views once given
    them (pass it to :class:`RenderJob`; ``close()`` it if it is not used)."""
    from a0verify.parallel import Worker

    return Worker("3-D views", warm=_prepare_render, nice=5)


def _prepare_render() -> None:
    pv = _pv()
    pl = pv.Plotter(off_screen=True, window_size=[64, 64])
    pl.add_mesh(pv.Sphere(), smooth_shading=True)
    pl.screenshot(return_img=True)
    pl.close()


def _render_views(surfaces: Sequence[Surface], zv: F64, zf: npt.NDArray[Any],
                  point_lps: npt.ArrayLike, scale: MarginScale,
                  window_size: tuple[int, int] = (620, 520)) -> list[tuple[str, bytes]]:
    """The two views of :func:`render_margin_3d` from the zone mesh (zv, zf; may be empty)."""
    pv = _pv()
    pt = np.asarray(point_lps, float)
    all_v = np.vstack([s.vertices_lps for s in surfaces])
    owner = min(surfaces, key=lambda s: float(np.min(np.linalg.norm(s.vertices_lps - pt,
                                                                     axis=1))))
    centre = owner.vertices_lps.mean(axis=0)
    d = pt - centre
    d = d / np.linalg.norm(d) if np.linalg.norm(d) > 1e-6 else np.array([0.0, -1.0, 0.0])
    up = np.array([0.0, 0.0, 1.0]) if abs(d[2]) < 0.9 else np.array([0.0, -1.0, 0.0])
    side = np.cross(up, d)
    side /= np.linalg.norm(side)
    extent = float(np.ptp(np.vstack([all_v, zv]) if len(zv) else all_v, axis=0).max())
    dist = 2.6 * max(extent, 10.0)
    cmap, _ = scale.matplotlib()
    views = [(d, f"facing the thinnest margin, seen from {direction_words(d)}"),
             (side, f"turned 90°, seen from {direction_words(side)}")]
    # one plotter (one GL context, shaders compiled once) shows both views in turn
    pl = pv.Plotter(off_screen=True, window_size=list(window_size))
    pl.set_background("white")
    # a headlight besides the light kit: the side turned from the kit's lights keeps its colour
    pl.add_light(pv.Light(light_type="headlight", intensity=0.45))
    for s in surfaces:
        mesh = _polydata(pv, s.vertices_lps, s.faces)
        mesh.point_data["margin (mm)"] = s.margin_mm
        # a little ambient light: the side turned from the lights keeps its colour
        pl.add_mesh(mesh, scalars="margin (mm)", cmap=cmap, clim=(scale.vmin, scale.vmax),
                    smooth_shading=True, ambient=0.25, diffuse=0.75, specular=0.1,
                    show_scalar_bar=s is surfaces[0],
                    scalar_bar_args={"title": "margin (mm)", "color": "black",
                                     "vertical": True, "position_x": 0.86,
                                     "position_y": 0.15, "height": 0.7, "width": 0.08,
                                     "fmt": "%.0f"})
    if len(zv):
        pl.add_mesh(_polydata(pv, zv, zf), color=ABLATION_RGB, opacity=0.15,
                    smooth_shading=True)
    pl.add_mesh(pv.Sphere(radius=max(0.6, 0.02 * extent), center=pt), color="magenta")
    arrow_len = max(6.0, 0.3 * extent)
    pl.add_mesh(pv.Arrow(start=pt + d * 0.5, direction=d, scale=arrow_len), color="magenta")
    pl.add_axes(xlabel="L", ylabel="P", zlabel="S", color="black")
    # no depth peeling: with the EGL backend it drops the translucent zone entirely
    view_angle = pl.camera.view_angle
    out = []
    try:
        for k, (vdir, caption) in enumerate(views):
            pl.camera.view_angle = view_angle  # zoom() narrows it: start each view afresh
            pl.camera.focal_point = tuple(centre)
            pl.camera.position = tuple(centre + vdir * dist)
            pl.camera.up = tuple(up)
            pl.reset_camera(render=False)
            pl.camera.zoom(1.25)
            label = pl.add_text(f"view {'AB'[k]}: {caption}", font_size=10, color="black",
                                position="upper_left")
            img = pl.screenshot(return_img=True)
            pl.remove_actor(label, render=False)
            out.append((f"3-D view {'AB'[k]}: {caption}", _to_png(img)))
    finally:
        pl.close()
    return out


def _to_png(img: npt.NDArray[np.uint8]) -> bytes:
    """PNG bytes of an RGB(A) screenshot (PIL: light to import in the render worker)."""
    from PIL import Image

    from a0verify.report.figures import PNG_LEVEL

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(img)).save(buf, format="PNG", compress_level=PNG_LEVEL)
    return buf.getvalue()
