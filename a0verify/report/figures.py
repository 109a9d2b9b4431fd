"""Static figures for the HTML report (PNG bytes; matplotlib with the Agg backend).

All views are resampled onto axis-aligned LPS planes (whatever the grids' direction cosines), in
radiological display convention: axial seen from the feet (patient's right on the viewer's left,
anterior up), coronal seen from the front (right on the left, superior up), sagittal seen from the
patient's right (anterior on the left, superior up).

Margin colours everywhere use one diverging map centred on the threshold (:func:`margin_norm`):
red = thinner than required, white = exactly the threshold, blue = more than required.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

from a0verify import geometry
from a0verify.report.slicer import ABLATION_RGB, Surface

F64 = npt.NDArray[np.float64]
CMAP = "RdBu"  # low (thin margin) red, high blue
CT_WINDOW = (-160.0, 240.0)  # HU, soft tissue / liver
PANEL_PX = 256
PNG_LEVEL = 3  # zlib level: fast to write, files ~10 % larger than level 9


def warm_up() -> None:
    """Load matplotlib's Agg backend and draw once (a figure worker's warm-up, see
    :func:`a0verify.report.html.start_figure_workers`)."""
    _png(_figure(figsize=(1, 1)))


def _figure(**kwargs: Any) -> Any:
    """A matplotlib ``Figure`` (keyword arguments as for ``Figure``) saved through the Agg
    canvas: no pyplot, so no global figure state and a lighter import."""
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def _cmap(name: str) -> Any:
    import matplotlib

    return matplotlib.colormaps[name]


def margin_norm(threshold_mm: float) -> tuple[float, float]:
    """Colour limits (mm) of the margin map, centred on the threshold: threshold ± max(thr, 2)."""
    r = max(float(threshold_mm), 2.0)
    return threshold_mm - r, threshold_mm + r


def _png(fig: Any, dpi: int = 100) -> bytes:
    """PNG bytes of ``fig`` (the figures here are laid out by hand or by the constrained layout,
    so no second "tight" pass is needed)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None},
                pil_kwargs={"compress_level": PNG_LEVEL})
    return buf.getvalue()


def crop_to_cube(img: sitk.Image | None, center_lps: npt.ArrayLike, half_width_mm: float
                 ) -> sitk.Image | None:
    """``img`` cropped to the axis-aligned cube of half-width ``half_width_mm`` (mm) around
    ``center_lps`` plus two voxels (any direction cosines); the image itself when the cube
    misses it. Sampling planes inside the cube then touches a small image only."""
    if img is None:
        return None
    c = np.asarray(center_lps, float)
    pad = 2.0 * max(img.GetSpacing())
    box = geometry.roi_box_around_lps(img, c[None], half_width_mm + pad)
    return img if box.empty else geometry.crop(img, box)


def binary_float(mask: sitk.Image | None) -> sitk.Image | None:
    """Nonzero voxels as float32 0/1 (for sub-voxel contours after linear resampling)."""
    return None if mask is None else sitk.Cast(mask != 0, sitk.sitkFloat32)


# --------------------------------------------------------------------------- planes
@dataclass
class Plane:
    """An axis-aligned LPS plane sampled on a square pixel grid (``PANEL_PX`` per side).

    ``fixed`` is the LPS axis normal to the plane (0 x, 1 y, 2 z); rows of every sampled array run
    along LPS axis ``v_axis``, columns along ``h_axis``; ``h``/``v`` are the pixel-centre
    coordinates in mm.
    """

    name: str
    fixed: int
    h_axis: int
    v_axis: int
    ref: sitk.Image
    h: F64
    v: F64
    invert_v: bool
    edge_labels: tuple[str, str, str, str]  # left, right, top, bottom

    @property
    def pixel_mm(self) -> float:
        return float(self.h[1] - self.h[0])

    def sample(self, img: sitk.Image | None, interp: int = sitk.sitkLinear,
               default: float = 0.0) -> F64 | None:
        """``img`` (any grid, LPS) resampled onto this plane as a float (rows v, cols h)."""
        if img is None:
            return None
        if img.GetNumberOfComponentsPerPixel() != 1:
            img = sitk.VectorIndexSelectionCast(img, 0)
        r = sitk.Resample(img, self.ref, sitk.Transform(), interp, default, sitk.sitkFloat32)
        return np.squeeze(sitk.GetArrayFromImage(r), axis=2 - self.fixed).astype(np.float64)

    def points_lps(self) -> F64:
        """LPS coordinates (rows, cols, 3) of the pixel centres."""
        hh, vv = np.meshgrid(self.h, self.v)
        out = np.empty((*hh.shape, 3))
        out[..., self.h_axis] = hh
        out[..., self.v_axis] = vv
        out[..., self.fixed] = self.ref.GetOrigin()[self.fixed]
        return out


def make_planes(point_lps: npt.ArrayLike, center_lps: npt.ArrayLike,
                half_width_mm: float) -> list[Plane]:
    """Axial, coronal and sagittal planes through ``point_lps``, each a square of side
    2 × ``half_width_mm`` centred (in-plane) on ``center_lps``."""
    p = np.asarray(point_lps, float)
    c = np.asarray(center_lps, float)
    n = PANEL_PX
    s = 2.0 * half_width_mm / (n - 1)
    specs = [("axial", 2, 0, 1, True, ("R", "L", "A", "P")),
             ("coronal", 1, 0, 2, False, ("R", "L", "S", "I")),
             ("sagittal", 0, 1, 2, False, ("A", "P", "S", "I"))]
    planes = []
    for name, fixed, ha, va, inv, labels in specs:
        size = [n, n, n]
        size[fixed] = 1
        origin = c - half_width_mm
        origin[fixed] = p[fixed]
        ref = sitk.Image(size, sitk.sitkUInt8)
        ref.SetSpacing([s, s, s])
        ref.SetOrigin(origin.tolist())
        h = origin[ha] + s * np.arange(n)
        v = origin[va] + s * np.arange(n)
        planes.append(Plane(name, fixed, ha, va, ref, h, v, inv, labels))
    return planes


def slice_mesh(surface: Surface, plane: Plane) -> tuple[F64, F64]:
    """Intersect a triangle mesh with ``plane``: returns segments (K, 2, 2) in (h, v) mm and the
    margin (K,) at each segment's midpoint (linear along the edges). No crossing gives K = 0."""
    x = surface.vertices_lps
    d = x[:, plane.fixed] - plane.ref.GetOrigin()[plane.fixed]
    d = np.where(d == 0.0, 1e-9, d)
    f = surface.faces
    df = d[f]
    cross = (np.sign(df) != np.sign(np.roll(df, -1, axis=1)))  # edge (k, k+1) crosses
    keep = cross.sum(axis=1) == 2
    if not keep.any():
        return np.zeros((0, 2, 2)), np.zeros(0)
    f, df, cross = f[keep], df[keep], cross[keep]
    a = f
    b = np.roll(f, -1, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):  # non-crossing edges are dropped
        t = df / (df - np.roll(df, -1, axis=1))
    t = np.where(cross, t, 0.0)
    pts = x[a] + t[..., None] * (x[b] - x[a])  # (K, 3 edges, 3)
    mg = surface.margin_mm[a] + t * (surface.margin_mm[b] - surface.margin_mm[a])
    idx = np.argsort(~cross, axis=1, kind="stable")[:, :2]
    rows = np.arange(len(f))[:, None]
    seg = pts[rows, idx][..., [plane.h_axis, plane.v_axis]]
    return seg, mg[rows, idx].mean(axis=1)


def _vertex_areas(surface: Surface) -> F64:
    v, f = surface.vertices_lps, surface.faces
    if len(f) == 0:
        return np.zeros(len(v))
    area = 0.5 * np.linalg.norm(np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]),
                                axis=1)
    out = np.zeros(len(v))
    for k in range(3):
        np.add.at(out, f[:, k], area / 3.0)
    return out


def _shell_deficit(plane: Plane, surface: Surface | None, tumor2d: F64 | None,
                   zone2d: F64, threshold_mm: float) -> tuple[F64, F64]:
    """Masks (rows, cols) of (a) tissue outside the tumour within ``threshold_mm`` of its surface
    that is NOT ablated, (b) tumour that is not ablated (residual). Distances to the surface are
    to the nearest mesh vertex (within half an edge length of the true distance)."""
    from scipy.spatial import cKDTree

    outside_zone = zone2d <= 0.0
    if surface is None or len(surface.vertices_lps) == 0:
        return np.zeros(zone2d.shape), np.zeros(zone2d.shape)
    inside_t = tumor2d > 0.5 if tumor2d is not None else np.zeros(zone2d.shape, bool)
    # candidates: unablated pixels inside the in-plane box of the surface ± threshold
    v = surface.vertices_lps
    lo, hi = v.min(axis=0) - threshold_mm, v.max(axis=0) + threshold_mm
    hh, vv = np.meshgrid(plane.h, plane.v)
    cand = (outside_zone & (hh >= lo[plane.h_axis]) & (hh <= hi[plane.h_axis])
            & (vv >= lo[plane.v_axis]) & (vv <= hi[plane.v_axis]))
    near = np.zeros(zone2d.shape, bool)
    if cand.any():
        pts = plane.points_lps()[cand]
        dist, _ = cKDTree(v).query(pts, distance_upper_bound=threshold_mm + 1.0)
        near[cand] = dist <= threshold_mm
    shell = near & ~inside_t & outside_zone
    resid = inside_t & outside_zone
    return shell.astype(float), resid.astype(float)


# --------------------------------------------------------------------------- figures
def triplanar_png(*, background: sitk.Image | None, tumor: sitk.Image | None,
                  ablation: sitk.Image, margin_map: sitk.Image | None,
                  surfaces: Sequence[Surface], lesion_id: int, point_lps: npt.ArrayLike,
                  min_margin_mm: float, threshold_mm: float) -> bytes:
    """Axial / coronal / sagittal views of the post CT through the thinnest-margin point.

    Shown: CT (soft-tissue window; black when no CT is given), ablation-zone contour (green),
    tumour contour cut from the tumour surface mesh and coloured by the margin (diverging map
    centred on the threshold), tissue within ``threshold_mm`` of the tumour that is not ablated
    (red hatch), unablated tumour (solid red), and the thinnest point (magenta cross-hair).
    """
    from matplotlib.cm import ScalarMappable
    from matplotlib.collections import LineCollection
    from matplotlib.colors import Normalize

    surf = next((s for s in surfaces if s.lesion_id == lesion_id), None)
    pt = np.asarray(point_lps, float)
    if surf is not None and len(surf.vertices_lps):
        center = surf.vertices_lps.mean(axis=0)
        radius = float(np.max(np.linalg.norm(surf.vertices_lps - center, axis=1)))
    else:
        center, radius = pt, 10.0
    half = float(np.clip(radius + max(threshold_mm, 2.0) + 12.0, 25.0, 90.0))
    half = max(half, float(np.max(np.abs(pt - center))) + 5.0)
    planes = make_planes(pt, center, half)
    background = crop_to_cube(background, center, half)
    abl_f = binary_float(crop_to_cube(ablation, center, half))
    tum_f = binary_float(crop_to_cube(tumor, center, half))
    margin_map = crop_to_cube(margin_map, center, half)
    lo, hi = margin_norm(threshold_mm)
    norm = Normalize(lo, hi)
    cmap = _cmap(CMAP).with_extremes(bad="0.6")

    # fixed layout (inches): three square panels, titles above, colour bar below; one draw
    fw, fh, side, gap = 13.5, 5.8, 4.2, 0.225
    fig = _figure(figsize=(fw, fh))
    x0 = (fw - 3 * side - 2 * gap) / 2
    axes = [fig.add_axes(((x0 + k * (side + gap)) / fw, 0.9 / fh, side / fw, side / fh))
            for k in range(3)]
    for ax, pl in zip(axes, planes, strict=True):
        s = pl.pixel_mm
        extent = (pl.h[0] - s / 2, pl.h[-1] + s / 2, pl.v[0] - s / 2, pl.v[-1] + s / 2)
        bg = pl.sample(background, default=-1000.0)
        if bg is None:
            bg = np.full((len(pl.v), len(pl.h)), -1000.0)
        ax.imshow(bg, cmap="gray", vmin=CT_WINDOW[0], vmax=CT_WINDOW[1], origin="lower",
                  extent=extent, interpolation="bilinear")
        zone_bin = pl.sample(abl_f)
        assert zone_bin is not None
        zone2d = zone_bin - 0.5
        mm = pl.sample(margin_map, default=np.nan)
        if mm is not None:  # continuous boundary where the margin map exists
            zone2d = np.where(np.isfinite(mm), mm, zone2d)
        tum2d = pl.sample(tum_f)
        shell, resid = _shell_deficit(pl, surf, tum2d, zone2d, threshold_mm)
        if shell.any():
            ax.contourf(pl.h, pl.v, shell, levels=[0.5, 1.5], colors="none", hatches=["////"])
            ax.imshow(np.ma.masked_where(shell < 0.5, shell), cmap="Reds", vmin=0, vmax=1.6,
                      alpha=0.45, origin="lower", extent=extent)
        if resid.any():
            ax.imshow(np.ma.masked_where(resid < 0.5, resid), cmap="Reds", vmin=0, vmax=1.0,
                      alpha=0.8, origin="lower", extent=extent)
        if zone2d.max() > 0 > zone2d.min():
            ax.contour(pl.h, pl.v, zone2d, levels=[0.0], colors=[ABLATION_RGB], linewidths=2.0)
        for su in surfaces:
            seg, mg = slice_mesh(su, pl)
            if len(seg):
                lc = LineCollection(list(seg), cmap=cmap, norm=norm, linewidths=3.2 if
                                    su.lesion_id == lesion_id else 2.0)
                lc.set_array(mg)
                ax.add_collection(lc)
        ph, pv = pt[pl.h_axis], pt[pl.v_axis]
        ax.axhline(pv, color="magenta", lw=0.7, ls=":")
        ax.axvline(ph, color="magenta", lw=0.7, ls=":")
        ax.plot(ph, pv, "o", ms=14, mfc="none", mec="magenta", mew=2.2)
        ax.set_xlim(extent[0], extent[1])
        ax.set_ylim(extent[2], extent[3])
        if pl.invert_v:
            ax.invert_yaxis()
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        coord = "xyz"[pl.fixed]
        ax.set_title(f"{pl.name}  ({coord} = {pt[pl.fixed]:.1f} mm LPS)", fontsize=12)
        kw = {"color": "white", "fontsize": 13, "fontweight": "bold",
              "transform": ax.transAxes}
        left, right, top, bottom = pl.edge_labels
        ax.text(0.01, 0.5, left, ha="left", va="center", **kw)
        ax.text(0.99, 0.5, right, ha="right", va="center", **kw)
        ax.text(0.5, 0.99, top, ha="center", va="top", **kw)
        ax.text(0.5, 0.01, bottom, ha="center", va="bottom", **kw)
        # 10 mm scale bar, bottom left
        x0 = extent[0] + 0.05 * (extent[1] - extent[0])
        yb = extent[2] + 0.06 * (extent[3] - extent[2])
        if pl.invert_v:
            yb = extent[3] - 0.06 * (extent[3] - extent[2])
        ax.plot([x0, x0 + 10.0], [yb, yb], color="white", lw=3)
        ax.text(x0 + 5.0, yb, "10 mm\n" if not pl.invert_v else "\n10 mm", color="white",
                ha="center", va="center", fontsize=9)
    sm = ScalarMappable(norm=norm, cmap=cmap)
    cax = fig.add_axes((0.1, 0.42 / fh, 0.8, 0.17 / fh))
    cb = fig.colorbar(sm, cax=cax, orientation="horizontal", extend="both")
    cb.set_label(f"margin at the tumour surface (mm); white = threshold {threshold_mm:g} mm, "
                 "red = thinner")
    fig.suptitle(f"Thinnest margin {min_margin_mm:.1f} mm at the magenta circle (lesion "
                 f"{lesion_id}).  Green: ablation zone.  Coloured line: tumour.\nRed hatch: "
                 f"tissue within {threshold_mm:g} mm of the tumour that is not ablated.",
                 fontsize=12, y=1.0 - 0.06 / fh, va="top")
    return _png(fig)


def histogram_png(surfaces: Sequence[Surface], threshold_mm: float,
                  fraction_below: float | None = None) -> bytes:
    """Area-weighted histogram of the tumour-surface margins (mm) of all lesions, bars coloured
    like the views, with 0 mm and the threshold marked. The title states ``fraction_below``
    (surface fraction with margin < threshold, e.g. from report.json; estimated from the vertex
    areas when None). No surface gives an empty plot."""
    from matplotlib.colors import Normalize

    m = np.concatenate([s.margin_mm for s in surfaces]) if surfaces else np.zeros(0)
    w = np.concatenate([_vertex_areas(s) for s in surfaces]) if surfaces else np.zeros(0)
    fig = _figure(figsize=(7.0, 3.2))
    ax = fig.add_axes((0.1, 0.15, 0.88, 0.76))  # fixed layout: one draw
    if m.size:
        lo = min(float(m.min()), 0.0) - 0.5
        hi = max(float(m.max()), threshold_mm) + 0.5
        edges = np.linspace(lo, hi, 51)
        counts, _ = np.histogram(m, bins=edges, weights=w)
        centers = 0.5 * (edges[1:] + edges[:-1])
        cmap = _cmap(CMAP)
        norm = Normalize(*margin_norm(threshold_mm))
        ax.bar(centers, counts, width=np.diff(edges), color=cmap(norm(centers)),
               edgecolor="0.3", linewidth=0.3)
        below = (float(w[m < threshold_mm].sum() / max(w.sum(), 1e-12))
                 if fraction_below is None else float(fraction_below))
        ax.set_title(f"{100 * below:.1f} % of the tumour surface has a margin below "
                     f"{threshold_mm:g} mm", fontsize=11)
    ax.axvline(0.0, color="black", lw=1.5, label="0 mm (zone boundary)")
    ax.axvline(threshold_mm, color="darkorange", lw=2, ls="--",
               label=f"threshold {threshold_mm:g} mm")
    ax.set_xlabel("margin at the tumour surface (mm, positive inside the ablation zone)")
    ax.set_ylabel("surface area (mm²)")
    ax.legend(loc="best", fontsize=8)
    return _png(fig)


def registration_png(qa_images: dict[str, sitk.Image], ablation: sitk.Image,
                     point_lps: npt.ArrayLike, center_lps: npt.ArrayLike,
                     half_width_mm: float = 40.0) -> bytes | None:
    """Registration QA: checkerboard (fixed / warped moving) and difference image (fixed minus
    warped moving, HU) in axial and coronal planes through ``point_lps``, ablation contour in
    green. Returns None when there is no QA image."""
    names: list[str] = [n for n in ("checkerboard", "difference") if n in qa_images]
    names += sorted(n for n in qa_images if n not in names)
    if not names:
        return None
    planes = make_planes(point_lps, center_lps, half_width_mm)[:2]
    abl_f = binary_float(crop_to_cube(ablation, center_lps, half_width_mm))
    fig = _figure(figsize=(4.2 * len(names) + 1.0, 8.4), layout="constrained")
    axes = fig.subplots(len(planes), len(names), squeeze=False)
    for j, name in enumerate(names):
        for i, pl in enumerate(planes):
            ax = axes[i, j]
            s = pl.pixel_mm
            extent = (pl.h[0] - s / 2, pl.h[-1] + s / 2, pl.v[0] - s / 2, pl.v[-1] + s / 2)
            diff = name == "difference"
            arr = pl.sample(qa_images[name], default=np.nan)
            assert arr is not None
            if diff:
                im = ax.imshow(arr, cmap="PuOr", vmin=-200, vmax=200, origin="lower",
                               extent=extent)
            else:
                im = ax.imshow(arr, cmap="gray", vmin=CT_WINDOW[0], vmax=CT_WINDOW[1],
                               origin="lower", extent=extent)
            zone = pl.sample(abl_f)
            if zone is not None and zone.max() > 0.5 > zone.min():
                ax.contour(pl.h, pl.v, zone, levels=[0.5], colors=[ABLATION_RGB], linewidths=1.2)
            if pl.invert_v:
                ax.invert_yaxis()
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{name} — {pl.name}", fontsize=11)
            if diff and i == 0:
                fig.colorbar(im, ax=axes[:, j], shrink=0.6, label="HU (fixed − warped)")
    return _png(fig, dpi=80)
