"""Tumour from what a radiologist already marks: a RECIST long-axis line, inside clicks and
optional outside clicks, on a (contrast) CT in HU.

Method (chosen by measurement on real contoured tumours, ``benchmarks/RESULTS_segmentation.md``):
*size-constrained two-class thresholding*.

1. **What is tumour**: HU sampled along the central 70 % of the line (a 1 mm tube) and in
   balls of ``click_radius_mm`` at inside clicks (Gaussian pre-smoothing ``smooth_sigma_mm``):
   median and robust spread.
2. **What is not**: a spherical shell just beyond the size the line implies (radius
   ``shell_scale`` x L/2 + 3..10 mm around the line's midpoint; the long axis bounds every other
   diameter) and balls at outside clicks: median.
3. **Threshold** at ``inside_fraction`` of the way from the tumour to the surroundings
   (hypo-, hyper- or near-iso-dense alike: the side follows the sign of the contrast); the window
   also stops ``span`` below (hypodense) or above (hyperdense) the tumour, so fat, air, bone and
   enhancing vessels stay out; necrotic centres and enhancing parts *inside* are kept by hole
   filling.
4. **Size prior**: voxels farther than ``grow`` x L/2 + 3 mm from the midpoint are not tumour
   (the line is the longest diameter); without a line, L comes from a provisional region grown
   from the clicks (at most ``max_diameter_mm``).
5. **Clean-up**: outside clicks claim every voxel nearer to them than to any inside sample; neck
   cut (``neck_radius_mm``) detaches neighbours joined by thin bridges; holes filled;
   signed-distance smoothing (``sdf_sigma_mm``).

Without a line the method is the same with L estimated, and the quality signal says so.
Coordinates: LPS mm in, arrays (z, y, x) inside; distances in mm from the image spacing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk
from scipy import ndimage

from a0verify import geometry
from a0verify.errors import SegmentationError
from a0verify.segmentation import morph
from a0verify.segmentation.result import SegmentationResult, assess

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

METHOD = ("size-constrained two-class threshold (tumour HU from the diameter line and clicks, "
          "surroundings from a shell beyond the line's size) + neck cut + hole filling + "
          "shape smoothing")


@dataclass(frozen=True)
class TumorParams:
    """Parameters (mm, HU). Defaults chosen on the development half of the real tumours."""

    smooth_sigma_mm: float = 1.0
    click_radius_mm: float = 3.0
    line_core: tuple[float, float] = (0.15, 0.85)
    shell_scale: float = 1.1
    shell_mm: tuple[float, float] = (3.0, 10.0)
    inside_fraction: float = 0.6
    inside_fraction_low: float = 0.5
    edge_band: tuple[float, float] = (0.12, 0.3)
    span_k: float = 2.5
    grow: float = 1.2
    neck_radius_mm: float = 2.0
    sdf_sigma_mm: float = 1.0
    min_contrast_hu: float = 8.0
    warn_contrast_hu: float = 20.0
    max_diameter_mm: float = 150.0
    seeds_only_window_hu: float = 15.0
    low_contrast_hu: float = 25.0
    smooth_max_mm: float = 2.0


def segment_tumor_core(image: sitk.Image, *, line_lps: tuple[Sequence[float], Sequence[float]]
                       | None, seeds_lps: Sequence[Sequence[float]],
                       outside_lps: Sequence[Sequence[float]],
                       params: TumorParams | None = None) -> SegmentationResult:
    """Core of :func:`a0verify.segmentation.segment_tumor` (inputs already validated)."""
    p = params or TumorParams()
    sp = geometry.spacing_zyx(image)
    pts_in = [np.asarray(s, float) for s in seeds_lps]
    a: F64 | None = None
    b: F64 | None = None
    if line_lps is not None:
        a, b = (np.asarray(v, float) for v in line_lps)
        length = float(np.linalg.norm(b - a))
        mid = 0.5 * (a + b)
    else:
        mid = np.mean(pts_in, axis=0)
        length = _estimate_diameter(image, pts_in, p)
        if length >= p.max_diameter_mm:
            raise SegmentationError(
                f"tumour segmentation: the tissue at the click(s) reaches {p.max_diameter_mm:.0f}"
                " mm across without a border, so no lesion was found there (normal liver?); "
                "click inside the tumour or give its diameter line (--line)")
    radius = 0.5 * length
    pad = p.grow * radius + p.shell_mm[1] * 2 + 5.0
    anchors = [mid] + pts_in + [np.asarray(o, float) for o in outside_lps]
    box = geometry.roi_box_around_lps(image, np.array(anchors), pad)
    raw = sitk.GetArrayFromImage(geometry.crop(image, box)).astype(np.float32)
    lo_idx = np.asarray(box.lo_zyx, float)

    def idx(q: F64) -> F64:
        return geometry.lps_to_zyx_index(image, q) - lo_idx

    # --- inside samples: the line core and balls at clicks
    inside = np.zeros(raw.shape, bool)
    line_pts = edge_pts = None
    if a is not None and b is not None:
        t = np.linspace(p.line_core[0], p.line_core[1], max(int(length / 0.5), 8))
        line_pts = np.array([idx(a + ti * (b - a)) for ti in t])
        for q in line_pts:
            inside[tuple(np.clip(np.rint(q).astype(int), 0, np.asarray(raw.shape) - 1))] = True
        te = np.r_[np.linspace(p.edge_band[0], p.edge_band[1], 6),
                   1.0 - np.linspace(p.edge_band[0], p.edge_band[1], 6)]
        edge_pts = np.array([idx(a + ti * (b - a)) for ti in te])
    click_balls = [morph.ball(raw.shape, idx(s), max(p.click_radius_mm, float(sp.max())), sp)
                   for s in pts_in]
    for ball in click_balls:
        inside |= ball
    # --- outside samples: shell beyond the implied size, and outside clicks
    dist_mid = _dist_to(raw.shape, idx(mid), sp)
    r_shell = p.shell_scale * radius
    shell = (dist_mid >= r_shell + p.shell_mm[0]) & (dist_mid <= r_shell + p.shell_mm[1])
    outside = np.zeros(raw.shape, bool)
    for o in outside_lps:
        outside |= morph.ball(raw.shape, idx(np.asarray(o, float)), p.click_radius_mm, sp)
    if shell.sum() + outside.sum() < 10:
        raise SegmentationError("tumour segmentation: no tissue around the lesion in the image")
    # low contrast: smooth more (noise falls, the contrast of a lesion this size does not)
    sigma = p.smooth_sigma_mm
    for _ in range(2):
        sm = np.asarray(ndimage.gaussian_filter(raw, sigma / sp, mode="nearest"),
                        dtype=np.float32)
        vals = [sm[ball].astype(np.float64) for ball in click_balls]
        if line_pts is not None:
            vals.append(ndimage.map_coordinates(sm.astype(np.float64), line_pts.T, order=1))
        v_in = np.concatenate(vals)
        m_in = float(np.median(v_in))
        m_edge = m_in  # HU of the tumour where it meets the liver (its periphery)
        if edge_pts is not None:
            m_edge = float(np.median(ndimage.map_coordinates(sm.astype(np.float64),
                                                             edge_pts.T, order=1)))
        # surroundings; an outside click counts as much as five shell voxels
        m_out = float(np.median(np.concatenate([sm[shell], np.repeat(sm[outside], 5)])))
        if abs(m_out - m_edge) < min(20.0, 0.5 * abs(m_out - m_in)):
            m_edge = m_in  # the periphery looks like the liver: trust the core
        s_in = max(1.4826 * float(np.median(np.abs(v_in - m_in))), 3.0)
        c_abs = abs(m_out - m_edge)
        want = float(np.clip(p.smooth_sigma_mm * p.low_contrast_hu / max(c_abs, 1.0),
                             p.smooth_sigma_mm, min(p.smooth_max_mm, 0.15 * length)))
        if want <= sigma * 1.1:
            break
        sigma = want
    contrast = m_out - m_edge
    if abs(contrast) < p.min_contrast_hu:
        raise SegmentationError(
            f"tumour segmentation: the lesion ({m_edge:.0f} HU) does not differ from its "
            f"surroundings ({m_out:.0f} HU) by {p.min_contrast_hu:.0f} HU; supply a tumour mask")
    # low contrast: the threshold moves towards the middle (noise would flood the liver)
    frac = float(np.interp(abs(contrast), [20.0, 40.0],
                           [p.inside_fraction_low, p.inside_fraction]))
    thr = m_edge + frac * contrast
    span = max(p.span_k * s_in, 0.5 * abs(contrast))
    lo, hi = (min(m_in, m_edge) - span, thr) if contrast > 0 else \
        (thr, max(m_in, m_edge) + span)
    cand = (sm >= lo) & (sm <= hi)
    cand &= dist_mid <= p.grow * radius + 3.0
    cand |= inside & ~outside
    cand &= ~outside
    if outside.any():
        cand &= morph.edt(~inside, sp) <= morph.edt(~outside, sp)
    region = morph.component_touching(cand, inside & cand)
    region = morph.neck_cut(region, inside & region, p.neck_radius_mm, sp)
    region = morph.fill_holes(region)
    region = morph.smooth_shape(region, p.sdf_sigma_mm, sp)
    region = morph.component_touching(region, inside & region) if region.any() else region
    if not region.any():
        raise SegmentationError("tumour segmentation found no lesion at the given line/clicks")
    # growth behaviour: move the threshold 15 % towards the surroundings
    wider_thr = thr + 0.15 * contrast
    wider = (sm >= lo) & (sm <= wider_thr) if contrast > 0 else (sm >= wider_thr) & (sm <= hi)
    wider = morph.component_touching(wider & (dist_mid <= p.grow * radius + 3.0) & ~outside,
                                     inside)
    free = morph.component_touching((sm >= lo) & (sm <= hi) & ~outside, inside)
    stability = float(wider.sum()) / max(float(region.sum()), 1.0)
    free_ratio = float(free.sum()) / max(float(region.sum()), 1.0)
    full_shape = geometry.xyz_to_zyx(image.GetSize()).astype(int)
    edge = morph.touches(region, box.faces(full_shape, on_image_edge=True))
    quality = assess(sm, region, sp, (lo, hi), stability, edge, "tumour",
                     min_contrast_hu=p.warn_contrast_hu, stability_limits=(1.6, 2.5))
    if a is None:
        quality.reasons.append("no diameter line given; size estimated from the clicks")
        if quality.level == "good":
            quality.level = "review"
    full = np.zeros(tuple(int(v) for v in full_shape), np.uint8)
    full[box.slices] = region
    vol = float(region.sum() * geometry.voxel_volume_ml(image))
    stats = {"inside_median_hu": round(m_in, 2), "periphery_median_hu": round(m_edge, 2),
             "surround_median_hu": round(m_out, 2),
             "contrast_hu": round(contrast, 2), "threshold_hu": round(thr, 2),
             "diameter_line_mm": round(length, 2) if a is not None else 0.0,
             "diameter_used_mm": round(length, 2), "volume_ml": vol,
             "n_components": 1.0, "unconstrained_ratio": round(free_ratio, 3),
             "smoothing_sigma_mm": round(sigma, 2),
             "n_inside_clicks": float(len(pts_in)), "n_outside_clicks": float(len(outside_lps))}
    warns: list[str] = []
    if quality.level != "good":
        warns.append(quality.sentence("tumour").rstrip("."))
    return SegmentationResult(geometry.array_to_image(full, image), METHOD, warns, stats,
                              quality)


def _dist_to(shape: tuple[int, ...], center_zyx: F64, sp: F64) -> F64:
    grids = np.ogrid[tuple(slice(0, s) for s in shape)]
    d2 = sum(((g - c) * s) ** 2 for g, c, s in zip(grids, center_zyx, sp, strict=True))
    return np.sqrt(np.asarray(d2, dtype=np.float64))


def _estimate_diameter(image: sitk.Image, seeds: list[F64], p: TumorParams) -> float:
    """Diameter (mm) of the region grown from the clicks with a window of +/- max(2.5 spread,
    ``seeds_only_window_hu``) around their median HU (neck-cut), at most ``max_diameter_mm``
    (also returned when the region reaches the edge of the ``max_diameter_mm`` box around the
    clicks: the clicked tissue has no border, e.g. normal liver; real tumours from a click at
    their centre: 11-92 mm, normal liver in HCC_048: about 200 mm)."""
    sp = geometry.spacing_zyx(image)
    c = np.mean(seeds, axis=0)
    reach = 0.5 * p.max_diameter_mm + max(float(np.linalg.norm(s - c)) for s in seeds)
    box = geometry.roi_box_around_lps(image, c[None], reach)
    raw = sitk.GetArrayFromImage(geometry.crop(image, box)).astype(np.float32)
    sm = ndimage.gaussian_filter(raw, p.smooth_sigma_mm / sp, mode="nearest")
    lo_idx = np.asarray(box.lo_zyx, float)
    marker = np.zeros(sm.shape, bool)
    for s in seeds:
        marker |= morph.ball(sm.shape, geometry.lps_to_zyx_index(image, s) - lo_idx,
                             p.click_radius_mm, sp)
    v = sm[marker]
    m = float(np.median(v))
    half = max(2.5 * 1.4826 * float(np.median(np.abs(v - m))), p.seeds_only_window_hu)
    region = morph.component_touching((sm >= m - half) & (sm <= m + half), marker)
    sub = morph.bbox(region, 2, region.shape)
    region[sub] = morph.neck_cut(region[sub], marker[sub], 3.0, sp)  # nothing beyond sub
    full_shape = geometry.xyz_to_zyx(image.GetSize()).astype(int)
    if morph.touches(region, box.faces(full_shape, on_image_edge=False)):
        return p.max_diameter_mm  # grew to the box (not the image's edge): unbounded here
    if not region.any():
        return 20.0
    pts = np.argwhere(region) * sp
    d = 2.0 * float(np.percentile(np.linalg.norm(pts - pts.mean(axis=0), axis=1), 95))
    return float(np.clip(d, 10.0, p.max_diameter_mm))
