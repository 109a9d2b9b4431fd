"""Ablation zone from one or more seeds on a contrast-enhanced post-ablation CT.

*Artefact-aware adaptive region growing with evidence-based leak control* (chosen by
measurement against baselines, ``benchmarks/RESULTS_segmentation.md``; helpers in
:mod:`a0verify.segmentation.ablation_steps`).

1. **Artefacts are neither zone nor background.** Gas (smoothed HU < ``gas_hu``) and metal (raw
   HU > ``metal_hu``: needles, clips) plus ``artefact_margin_mm`` around them are left out of
   every statistic and of the growth; they are given back at the end only where they lie inside
   the zone's closing (bubbles, tracts and needles *inside* the zone are included, gas in bowel
   next to it is not). Metal streaks are straight lines through the metal in the axial plane:
   around each needle crossing a slice (``needle_sections``) a median along circles removes
   them before the smoothing (``angular_median``), and after the growth the region seen from
   an enclosed needle gets bright streaks' notches filled, dark ones' spikes cut
   (``radial_streak_repair``).
2. **Intensity model learned around the seed** (Gaussian pre-smoothing ``smooth_sigma_mm``):
   inside median and robust spread in a ball around the seed (artefacts excluded, so a click on
   a bubble or the needle works; a click beside the needle takes the HU mode near it that grows
   the zone, :func:`~a0verify.segmentation.ablation_steps.seed_modes`; in a zone smaller than
   the ball, what agrees with the ball's core, ``core_consistent_marker``); surroundings =
   median of a shell 1.5-6 mm outside the provisional region (rim and parenchyma; when darker
   tissue such as bile fills it, its brighter part, with a warning). Upper threshold: the
   midpoint of the two (a gradient-weighted edge threshold, ``edge_threshold``, is off by
   default); the lower one (``lo_k`` spreads below the inside median, at least
   ``lo_min_hu``) keeps out fat, bile, cysts and bowel content.
3. **No size or distance limit.** The region of interest starts at ``roi_pad_mm`` around the
   seed and grows (x ``roi_growth``) while the region still reaches its open faces, up to
   ``roi_pad_max_mm``; only a region over ``max_volume_ml`` (3x the largest zone) is refused.
4. **Leaks are cut by evidence**: a neck cut (opening by ``neck_radius_mm``, seed component,
   reconstruction; holes touching an artefact filled first) detaches regions joined through
   thin bridges (vessels, tracts, streaks, the capsule's partial-volume sheet; a detached lobe
   of ``lobe_ratios`` x the kept volume is given back: another probe's zone). A region still
   suspect by shape (``enclosure_elongation``), or whose part outside reaches more than
   ``enclosure_reach_mm`` beyond the enclosed part, keeps only what the liver encloses
   (:mod:`a0verify.segmentation.enclosure`: a leak through the capsule into muscle of the
   zone's HU). What stays is judged by the quality signal (``result``: weak edges, threshold
   stability, contrast, image edge; plus ``shape_evidence``).
5. Clean-up: closing by ``close_radius_mm`` (streak cracks), artefacts inside the closing by
   ``artefact_close_mm`` given back; thin parts along fat or bile (the organ's partial-volume
   surface layer, ``trim_dark_sheets``) trimmed; holes filled. Several seeds: each seed not
   inside an earlier seed's zone grows its own region; the mask is their union.

Seeds are LPS mm; arrays (z, y, x); distances in mm from the image spacing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk
from scipy import ndimage

from a0verify import geometry
from a0verify.errors import SegmentationError
from a0verify.segmentation import ablation_steps as steps
from a0verify.segmentation import enclosure, morph
from a0verify.segmentation.ablation_params import AblationParams
from a0verify.segmentation.result import Quality, SegmentationResult, assess

BoolArray = npt.NDArray[np.bool_]
F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

METHOD = ("artefact-aware adaptive region growing (intensity model learned at the seed, "
          "gradient-weighted edge threshold, growing region of interest) + neck cut + closing; "
          "quality from edge evidence")


@dataclass
class _Roi:
    box: geometry.IndexBox
    sm: F32  # smoothed HU
    art: BoolArray  # artefact voxels (gas, metal, and a margin)
    passable: BoolArray  # artefacts the region may grow through (small bubbles, tracts, needle)
    seed: F64  # continuous (z, y, x) index of the seed in the ROI
    marker: BoolArray  # seed ball minus artefacts (or the seed ball if that is empty)
    open_faces: list[tuple[int, int]]
    metal: BoolArray  # raw HU above metal_hu
    modes: list[float]  # candidate zone HU for a click beside the needle (else empty)


def _roi(image: sitk.Image, seed_lps: F64, pad: float, p: AblationParams,
         mode_hu: float | None = None) -> _Roi:
    """Crop, smooth and mark artefacts ``pad`` mm around the seed; the seed marker (a click
    beside the needle: around ``mode_hu`` when given, else the strongest candidate mode)."""
    sp = geometry.spacing_zyx(image)
    box = geometry.roi_box_around_lps(image, seed_lps[None], pad)
    raw = sitk.GetArrayFromImage(geometry.crop(image, box)).astype(np.float32)
    sm = steps.smooth_ct(raw, sp, p.smooth_sigma_mm, p.metal_hu, p.streaks)
    art = (sm < p.gas_hu) | (raw > p.metal_hu)
    passable = np.zeros_like(art)
    if art.any():
        art = morph.dilate(art, p.artefact_margin_mm, sp)
        # bubbles, tracts and needles are small; lung, bowel gas and air outside are not
        lab, _ = ndimage.label(art, structure=morph.STRUCT26)
        sizes = np.bincount(lab.ravel()) * geometry.voxel_volume_ml(image)
        small = sizes <= p.max_artefact_ml
        small[0] = False
        passable = small[lab]
    seed = geometry.lps_to_zyx_index(image, seed_lps) - np.asarray(box.lo_zyx, float)
    # statistics stay clear of gas and of the streak core around metal
    avoid = art
    metal = raw > p.metal_hu
    if metal.any():
        avoid = art | morph.dilate(metal, p.metal_avoid_mm, sp)
    marker = np.zeros_like(art)
    near = morph.ball(sm.shape, seed, p.seed_radius_mm, sp)
    modes: list[float] = []
    if metal.any() and (near & avoid).sum() > 0.5 * near.sum():  # a click beside the needle
        if mode_hu is not None:
            modes = [mode_hu]
        else:  # the strongest mode at the click first, then those of a twice wider look
            for scale in (1.0, 2.0):
                for m in steps.seed_modes(sm, art, seed, sp, scale * p.seed_radius_mm,
                                          scale * p.seed_core_mm, p.seed_mode_bw_hu):
                    if all(abs(m - q) > p.seed_mode_bw_hu for q in modes):
                        modes.append(m)
        if modes:
            marker = steps.mode_marker(sm, art, seed, sp, p.seed_radius_mm, modes[0],
                                       p.seed_mode_hu)
    for radius in (p.seed_radius_mm, 2.5 * p.seed_radius_mm):  # a click on gas or metal
        if marker.sum() >= 10:
            break
        ball = morph.ball(sm.shape, seed, radius, sp)
        for excl in (avoid, art):
            marker = ball & ~excl
            if marker.sum() >= 10:
                break
        if marker.sum() >= 10:
            break
    if not modes:  # a zone smaller than the seed ball: its core decides
        marker = steps.core_consistent_marker(sm, marker, seed, sp, p.seed_core_mm,
                                              p.seed_core_tol_hu)
    faces = box.faces(geometry.xyz_to_zyx(image.GetSize()).astype(int), on_image_edge=False)
    return _Roi(box, sm, art, passable, seed, marker, faces, metal, modes)


def _window(r: _Roi, lo: float, hi: float) -> BoolArray:
    """Voxels the region may contain: zone-like HU (outside artefacts) or small artefacts."""
    return np.asarray(((r.sm >= lo) & (r.sm <= hi) & ~r.art) | r.passable)


@dataclass
class _Model:
    lo: float
    hi: float
    m_in: float
    m_out: float
    stats: dict[str, float]
    warnings: list[str]


def _learn(r: _Roi, sp: F64, p: AblationParams, label: str) -> _Model:
    """Inside/surround HU and the window [lo, hi] (see the module docstring, step 2)."""
    vals = r.sm[r.marker]
    if vals.size < 10:
        raise SegmentationError(
            f"ablation seed {label} lies in gas or metal with no tissue within "
            f"{2.5 * p.seed_radius_mm:.0f} mm; move the seed into the zone")
    m_in = float(np.median(vals))
    s_in = steps.robust_spread(vals, m_in)
    lo = m_in - float(np.clip(p.lo_k * s_in, p.lo_min_hu, p.lo_max_hu))
    hi = m_in + 10.0 + 1.5 * min(s_in, 8.0)
    region = morph.component_touching(_window(r, lo, hi), r.marker)
    m_out = m_in
    dark_neighbour = False
    for _ in range(p.refine_iterations + 1):
        dist_out = morph.edt(~region, sp)
        shell = (dist_out > p.shell_mm[0]) & (dist_out <= p.shell_mm[1]) & ~r.art
        sv = r.sm[shell]
        if sv.size < 10:
            raise SegmentationError(f"ablation segmentation from seed {label}: no surrounding "
                                    "tissue in the region of interest")
        m_out = float(np.median(sv))
        contrast = m_out - m_in
        if contrast < p.min_contrast_hu:
            # a zone against bile, fat or bowel: that darker tissue is kept out by the lower
            # threshold, so the upper one is set against the brighter surroundings only
            bright = sv[sv >= lo]
            if bright.size >= max(10, 0.25 * sv.size):
                m_out = float(np.median(bright))
                contrast = m_out - m_in
                dark_neighbour = True
        if contrast < p.min_contrast_hu:
            raise SegmentationError(
                f"ablation seed {label}: no non-enhancing zone there (seed {m_in:.0f} HU, "
                f"surroundings {m_out:.0f} HU); place the seed inside the ablation zone")
        hi = 0.5 * (m_in + m_out)
        region = morph.component_touching(_window(r, lo, hi), r.marker)
        if region.sum() > 0.5 * region.size:
            break
    thr_mid = hi
    if p.edge_threshold and 0 < region.sum() <= 0.5 * region.size:
        band = (morph.edt(region, sp) <= p.band_mm) & (morph.edt(~region, sp) <= p.band_mm)
        band &= ~r.art
        grads = np.gradient(r.sm.astype(np.float64), *sp)
        w = np.sqrt(sum(g * g for g in grads))[band]
        if w.sum() > 0:
            t_edge = float(np.sum(w * r.sm[band]) / w.sum())
            hi = float(np.clip(t_edge, m_in + 0.3 * contrast, m_in + 0.8 * contrast))
    warns: list[str] = []
    if dark_neighbour:
        warns.append(f"ablation seed {label}: much of the zone's surroundings is darker than "
                     "the zone (bile, fat or bowel); the threshold was set against the brighter "
                     "part; review the mask there")
    if contrast < p.warn_contrast_hu:
        warns.append(f"ablation seed {label}: low contrast ({m_in:.0f} HU vs {m_out:.0f} HU "
                     "around); review the mask")
    stats = {"inside_median_hu": m_in, "inside_spread_hu": s_in, "surround_median_hu": m_out,
             "contrast_hu": contrast, "threshold_hu": hi, "midpoint_threshold_hu": thr_mid,
             "lower_threshold_hu": lo}
    return _Model(lo=lo, hi=hi, m_in=m_in, m_out=m_out, stats=stats, warnings=warns)


def _learn_best(r: _Roi, sp: F64, p: AblationParams, label: str) -> tuple[_Model, float | None]:
    """:func:`_learn`; for a click beside the needle with several candidate modes, the
    strongest mode unless its region is far longer than it is thick at the click (more than
    ``enclosure_elongation``: the converging dark streaks around a needle on the zone's axis,
    or a leak) and another candidate's region is compact (at most ``enclosure_elongation``,
    or ``mode_switch_ratio`` of the strongest mode's elongation), darker than the
    surroundings of the strongest mode's region and not flooding the region of interest (at
    most ``mode_max_fill`` of it: the parenchyma between bright streaks); then the most
    compact. Sets ``r.marker`` to the chosen mode's; returns the model and the mode (HU; None
    when the click is not beside a needle)."""
    if len(r.modes) < 2:
        return _learn(r, sp, p, label), (r.modes[0] if r.modes else None)
    trials: list[tuple[float, _Model, float, BoolArray, int]] = []
    first_error: SegmentationError | None = None
    for mode in r.modes:
        marker = steps.mode_marker(r.sm, r.art, r.seed, sp, p.seed_radius_mm, mode,
                                   p.seed_mode_hu)
        if not marker.any():
            continue
        trial = replace(r, marker=marker)
        try:
            model = _learn(trial, sp, p, label)
        except SegmentationError as e:
            first_error = first_error or e
            continue
        region = morph.component_touching(_window(trial, model.lo, model.hi), marker)
        elong = steps.elongation(region, steps.depth_at_seed(region, r.seed, sp), sp)
        trials.append((elong, model, mode, marker, int(region.sum())))
        if len(trials) == 1 and elong <= p.enclosure_elongation:
            break  # the strongest mode grows a compact region: keep it
    if not trials:
        if first_error is not None:
            raise first_error
        return _learn(r, sp, p, label), None
    # a candidate must be darker than what surrounds the strongest mode's region (not the
    # parenchyma between bright streaks) and clearly more compact than it
    ok = [t for t in trials[1:] if t[1].m_in < trials[0][1].m_out
          and t[4] <= p.mode_max_fill * r.sm.size]
    best = min([trials[0], *ok], key=lambda t: t[0])
    if best[0] > max(p.enclosure_elongation, p.mode_switch_ratio * trials[0][0]):
        best = trials[0]
    _, model, mode, r.marker, _ = best
    return model, mode


@dataclass
class _Part:
    mask: BoolArray  # on the ROI
    box: geometry.IndexBox
    model: _Model
    stability: float
    pad: float


def _grow(image: sitk.Image, seed_lps: F64, p: AblationParams, label: str) -> _Part:
    """One seed's zone: learn, grow in a widening ROI, cut necks, close, fill."""
    sp = geometry.spacing_zyx(image)
    vox_ml = geometry.voxel_volume_ml(image)
    pad = p.roi_pad_mm
    r = _roi(image, seed_lps, pad, p)
    model, mode = _learn_best(r, sp, p, label)
    while True:
        region = morph.component_touching(_window(r, model.lo, model.hi), r.marker)
        if region.sum() * vox_ml > p.max_volume_ml:  # last chance: a wide neck cut
            sub = morph.bbox(region, 2, region.shape)
            region[sub] = morph.neck_cut_fast(region[sub], r.marker[sub], p.neck_max_mm, sp)
        if region.sum() * vox_ml > p.max_volume_ml:
            raise SegmentationError(
                f"ablation segmentation from seed {label} leaked: more than "
                f"{p.max_volume_ml:.0f} ml of tissue between {model.lo:.0f} and "
                f"{model.hi:.0f} HU is connected to the seed; place the seed inside the "
                "non-enhancing zone or supply a mask")
        if not region.any():
            raise SegmentationError(f"ablation seed {label}: no non-enhancing tissue at the seed")
        if morph.touches(region, r.open_faces):
            sub = morph.bbox(region, 2, region.shape)
            cut = np.zeros_like(region)
            cut[sub] = morph.neck_cut_fast(region[sub], r.marker[sub], p.neck_radius_mm, sp)
            if morph.touches(cut, r.open_faces) and pad < p.roi_pad_max_mm:
                pad = min(pad * p.roi_growth, p.roi_pad_max_mm)
                r = _roi(image, seed_lps, pad, p, mode)
                continue
        break
    if r.metal.any():  # streaks: notches filled, spikes cut, seen from the metal
        region = morph.component_touching(
            steps.radial_streak_repair(region, r.metal, sp, p.streaks), r.marker)
    # growth behaviour: volume when the threshold moves towards the surroundings, counted
    # within stability_reach_mm of the region (how far its border moves, not how much of the
    # body wall a large zone touching the capsule would reach)
    step = p.stability_step * (model.m_out - model.m_in)
    wider = morph.component_touching(_window(r, model.lo, model.hi + step), r.marker)
    if wider.sum() > p.flood_ratio * region.sum():  # a flood only through threads of noise
        wider = morph.neck_cut_fast(wider, r.marker, p.stability_thread_mm, sp)  # is no leak
        wider &= morph.edt(~region, sp) <= p.stability_reach_mm
    stability = float(wider.sum()) / max(float(region.sum()), 1.0)
    body = steps.fill_artefact_holes(region, r.art)
    depth = steps.depth_at_seed(body, r.seed, sp)
    sub = morph.bbox(body, int(np.ceil(4.0 / sp.min())) + 2, body.shape)
    neck = float(np.clip(p.neck_fraction * depth, p.neck_radius_mm, p.neck_max_mm))
    reg = steps.readmit_lobes(body[sub], morph.neck_cut_fast(body[sub], r.marker[sub], neck, sp),
                              neck, sp, p.lobe_ratios)
    if reg.any():  # has it left the organ? (suspect by shape, or reaching far out of it)
        whole = np.zeros_like(body)
        whole[sub] = reg
        kept = enclosure.enclosed_part(whole, r.marker, r.sm, sp, upper_hu=model.hi,
                                       lower_hu=model.lo, tissue_hu=model.m_out)
        cut = whole & ~kept
        if cut.any() and steps.elongation(reg, depth, sp) <= p.enclosure_elongation and \
                morph.edt(~kept, sp)[cut].max() < p.enclosure_reach_mm:
            cut[:] = False  # compact, and only its own capsule-side layer would go
        n_cut = int(cut.sum())
        if n_cut:
            model.stats["outside_organ_cut_ml"] = n_cut * vox_ml
            reg = morph.neck_cut_fast(kept[sub], r.marker[sub], neck, sp)  # its thin remnants
    if not reg.any():
        raise SegmentationError(f"ablation seed {label}: no non-enhancing tissue at the seed")
    sub2 = morph.bbox(reg, int(np.ceil(4.0 / sp.min())) + 2, reg.shape)  # after the cut
    reg = reg[sub2]
    sub = tuple(slice(a.start + b.start, a.start + b.stop) for a, b in zip(sub, sub2,
                                                                           strict=True))
    hull = morph.close(reg, p.artefact_close_mm, sp)
    reg = morph.close(reg, p.close_radius_mm, sp) | (hull & r.art[sub])
    reg = steps.trim_dark_sheets(reg, r.sm[sub], r.art[sub], r.metal[sub], model.lo, sp, min(
        p.sheet_open_mm, p.sheet_open_fraction * depth), p.sheet_near_mm, p.streaks.reach_mm[1])
    reg = morph.component_touching(morph.fill_holes(reg), r.marker[sub])
    out = np.zeros_like(region)
    out[sub] = reg
    if out.sum() * vox_ml < p.min_volume_ml:
        raise SegmentationError(
            f"ablation segmentation from seed {label} found only {out.sum() * vox_ml:.2f} ml; "
            "is the seed inside the non-enhancing ablation zone?")
    model.stats.update(neck_radius_mm=neck, depth_at_seed_mm=depth,
                       elongation=steps.elongation(out, depth, sp))
    return _Part(out, r.box, model, stability, pad)


def segment_ablation_zone(image: sitk.Image, seeds_lps: Sequence[Sequence[float]],
                          params: AblationParams | None = None) -> SegmentationResult:
    """Core of :func:`a0verify.segmentation.segment_ablation` (seeds already validated)."""
    p = params or AblationParams()
    sp = geometry.spacing_zyx(image)
    shape = tuple(int(v) for v in geometry.xyz_to_zyx(image.GetSize()))
    full = np.zeros(shape, bool)
    parts: list[_Part] = []
    stats: dict[str, float] = {"n_seeds": float(len(seeds_lps))}
    warns: list[str] = []
    for i, s in enumerate(seeds_lps):
        s_arr = np.asarray(s, np.float64)
        v = np.rint(geometry.lps_to_zyx_index(image, s_arr)).astype(int)
        v = np.clip(v, 0, np.asarray(shape) - 1)
        if full[tuple(v)]:
            stats[f"seed{i + 1}_in_earlier_zone"] = 1.0
            continue
        part = _grow(image, s_arr, p, steps.fmt_point(s_arr))
        full[part.box.slices] |= part.mask
        parts.append(part)
        warns.extend(part.model.warnings)
        prefix = "" if len(seeds_lps) == 1 else f"seed{i + 1}_"
        stats.update({prefix + k: round(float(x), 2) for k, x in part.model.stats.items()})
        stats[prefix + "roi_pad_mm"] = float(part.pad)
    quality = _union_quality(image, full, parts, p)
    vox_ml = geometry.voxel_volume_ml(image)
    steps.shape_evidence(quality, [pt.model.stats for pt in parts], float(full.sum()) * vox_ml,
                         p.leak_elongation, p.max_zone_ml)
    _, n = ndimage.label(full, structure=morph.STRUCT26)
    stats["volume_ml"] = float(full.sum() * vox_ml)
    stats["n_components"] = float(n)
    stats["equivalent_diameter_mm"] = float((6.0 * stats["volume_ml"] * 1000.0 / np.pi)
                                            ** (1 / 3))
    stats["extent_max_mm"] = steps.extent_mm(full, sp)
    if quality.level != "good":
        warns.append(quality.sentence("ablation-zone").rstrip("."))
    mask = geometry.array_to_image(full.astype(np.uint8), image)
    return SegmentationResult(mask=mask, method=METHOD, warnings=warns, stats=stats,
                              quality=quality)


def _union_quality(image: sitk.Image, full: BoolArray, parts: list[_Part],
                   p: AblationParams) -> Quality:
    """Quality of the union, judged on a smoothed crop around it (window: the widest of the
    parts' windows)."""
    sp = geometry.spacing_zyx(image)
    margin = int(np.ceil(max(5.0, p.streaks.border_mm + 1.0) / sp.min()))
    sub = morph.bbox(full, margin, full.shape)
    box = geometry.IndexBox(tuple(s.start for s in sub), tuple(s.stop for s in sub))
    raw = sitk.GetArrayFromImage(geometry.crop(image, box)).astype(np.float32)
    sm = ndimage.gaussian_filter(raw, sigma=p.smooth_sigma_mm / sp, mode="nearest")
    art = (sm < p.gas_hu) | (raw > p.metal_hu)
    if art.any():
        art = morph.dilate(art, p.artefact_margin_mm, sp)
    lo = min(pt.model.lo for pt in parts)
    hi = max(pt.model.hi for pt in parts)
    region = full[sub]
    edge = morph.touches(region, box.faces(full.shape, on_image_edge=True))
    q = assess(sm, region, sp, (lo, hi), max(pt.stability for pt in parts), edge,
               "ablation zone", ignore=art, min_contrast_hu=p.warn_contrast_hu)
    near = steps.border_near_metal(region, raw > p.metal_hu, sp, p.streaks.border_mm)
    if near > p.streaks.border_max:  # good masks with a needle: 11-25 % (dev 11-13 %)
        q.reasons.append(f"{near:.0%} of its border lies within {p.streaks.border_mm:.0f} mm "
                         "of metal, where streaks hide the edge")
        q.level = "review" if q.level == "good" else q.level
    return q
