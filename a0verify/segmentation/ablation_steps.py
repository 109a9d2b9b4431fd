"""Stateless array steps of the ablation-zone grower (:mod:`a0verify.segmentation.ablation`):
pre-smoothing with streak suppression (a median along circles around a needle crossing the
slice), the zone's HU mode at a click beside metal, filling holes that touch artefacts, the
zone's thickness at the seed, the directional streak repair of the grown region, the trim of
the organ's partial-volume surface layer, the shape evidence of a leak for the quality signal.
Arrays are (z, y, x); ``sp`` is the spacing in mm in that order; ``seed`` a (z, y, x) continuous
index; HU throughout."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from a0verify.segmentation import filters, morph
from a0verify.segmentation.result import Quality

BoolArray = npt.NDArray[np.bool_]
F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class StreakModel:
    """Where and how metal streaks are suppressed (mm, degrees)."""

    median_mm: float = 3.5  # in-plane square median of every axial slice holding metal
    arc_mm: float = 12.0  # angular median window: this much arc ...
    min_deg: float = 30.0  # ... but at least this many degrees (at most 180)
    reach_mm: tuple[float, float] = (20.0, 30.0)  # full strength up to, blended out by
    metal_max_mm: float = 4.0  # metal cross-section radius beyond which a slice is in-plane
    group_mm: float = 5.0  # metal pieces this close form one (a needle in the plane, broken up)
    # the directional repair of the grown region (:func:`radial_streak_repair`)
    core_mm: float = 3.0  # around the metal's cross-section: unknown, counted as inside
    gap_mm: float = 2.0  # gaps bridged along a ray
    window_deg: float = 36.0  # circular median of the radial extent
    tol_mm: float = 3.0  # a run this much beyond the expected extent is a spike
    min_enclosed: float = 0.7  # fraction of rays that must leave the core inside the zone
    # quality: a mask whose border lies mostly near metal is at best "review"
    border_mm: float = 10.0
    border_max: float = 1.0 / 3.0


def smooth_ct(raw: F32, sp: F64, smooth_sigma_mm: float, metal_hu: float,
              streaks: StreakModel) -> F32:
    """Gaussian pre-smoothing; axial slices holding metal are first filtered: around each
    needle crossing the slice (:func:`needle_sections`) by a median along circles around it
    (:func:`angular_median`), then every metal slice by an in-plane square median
    (``streaks.median_mm`` wide), which removes thin streaks and keeps edges."""
    metal = raw > metal_hu
    metal_slices = np.nonzero(metal.any(axis=(1, 2)))[0]
    if metal_slices.size:
        raw = raw.copy()
        k = max(3, round(streaks.median_mm / float(sp[1:].min())) | 1)
        for z in metal_slices:
            if streaks.reach_mm[1] > 0:
                for c, _ in needle_sections(metal[z], sp[1:], streaks):
                    raw[z] = angular_median(raw[z], c, sp[1:], streaks)
        raw[metal_slices] = filters.median_slices(raw[metal_slices], k)
    return np.asarray(ndimage.gaussian_filter(raw, sigma=smooth_sigma_mm / sp, mode="nearest"),
                      dtype=np.float32)


def needle_sections(metal2d: BoolArray, sp_yx: F64,
                    streaks: StreakModel) -> list[tuple[F64, float]]:
    """The needles crossing an axial slice: its metal pieces, pieces closer than
    ``streaks.group_mm`` counting as one (a needle lying in the plane, broken up by partial
    volume), that are compact: every voxel within ``streaks.metal_max_mm`` of the group's
    centroid. Other metal in the slice (a rib's cortex, a clip) neither counts nor hides them.
    Each as (centroid in mm from the slice origin, radius mm); no metal gives none."""
    lab, n = ndimage.label(metal2d, structure=np.ones((3, 3), bool))
    out: list[tuple[F64, float]] = []
    if n == 0:
        return out
    half = np.ceil((2.0 * streaks.metal_max_mm + 2.0 * streaks.group_mm) / sp_yx).astype(int)
    done: set[int] = set()
    for k, sl in enumerate(ndimage.find_objects(lab), start=1):
        if sl is None or k in done:
            continue
        own = np.argwhere(lab[sl] == k) * sp_yx
        if np.sqrt(np.sum((own - own.mean(axis=0)) ** 2, axis=1)).max() > streaks.metal_max_mm:
            continue  # not compact itself, so neither is any group holding it
        # the crop reaches ``half`` (>= 2 x metal_max_mm + 2 x group_mm) beyond this compact
        # piece: a group that is cut by it spans more than 2 x metal_max_mm, so it is not
        # compact either way, and a compact group is found whole
        mid = [(a.start + a.stop) // 2 for a in sl]
        box = tuple(slice(max(m - h, 0), m + h + 1) for m, h in zip(mid, half, strict=True))
        near = morph.dilate(metal2d[box][None], streaks.group_mm, np.array([1.0, *sp_yx]))[0]
        glab, _ = ndimage.label(near, structure=np.ones((3, 3), bool))
        here = tuple(int(v) for v in np.argwhere(lab[box] == k)[0])
        group = (glab == glab[here]) & metal2d[box]
        done.update(int(v) for v in np.unique(lab[box][group]))
        pts = (np.argwhere(group) + np.array([box[0].start, box[1].start])) * sp_yx
        c = pts.mean(axis=0)
        r = float(np.sqrt(np.sum((pts - c) ** 2, axis=1)).max())
        if r <= streaks.metal_max_mm:
            out.append((c, r))
    return out


def angular_median(img: F32, c_mm: F64, sp_yx: F64, streaks: StreakModel,
                   n_theta: int = 360, dr_mm: float = 0.5) -> F32:
    """Median along circles around ``c_mm`` (in-plane position in mm from the array origin).
    Metal streaks are straight lines through the metal, so around it they are narrow in angle
    and a median along the angle removes them, while edges that cross the circles (the zone's
    boundary around a needle inside it) are kept: a 1-D median keeps steps. The window is
    ``streaks.arc_mm`` of arc, at least ``streaks.min_deg`` and at most 180 degrees (near the
    metal, where the streaks converge, no window separates them: that core stays unknown).
    Beyond ``streaks.reach_mm`` the result is blended back to the input: far from the metal
    the streaks are weak and thin structures narrow in angle (a radial stretch of the rim, the
    liver's edge next to the needle's entry) must not be removed with them."""
    r0, r1 = streaks.reach_mm
    rs = np.arange(0.0, r1 + 2.0 * dr_mm, dr_mm)  # nothing is changed beyond r1
    th = np.linspace(0.0, 2.0 * np.pi, n_theta, endpoint=False)
    ys = (c_mm[0] + np.sin(th)[:, None] * rs[None]) / sp_yx[0]
    xs = (c_mm[1] + np.cos(th)[:, None] * rs[None]) / sp_yx[1]
    polar = ndimage.map_coordinates(img, [ys, xs], order=1, mode="nearest")
    deg = np.clip(np.degrees(streaks.arc_mm / np.maximum(rs, 1e-3)), streaks.min_deg, 180.0)
    size = (np.rint(deg / 360.0 * n_theta).astype(int) // 2) * 2 + 1
    out = filters.median_wrap_columns(polar, size)
    out = np.concatenate([out, out[:1]], axis=0)  # wrap the angle for the interpolation
    # back to the slice, in the box around the disc of radius r1
    lo = np.maximum(np.floor((c_mm - r1) / sp_yx).astype(int), 0)
    hi = np.minimum(np.ceil((c_mm + r1) / sp_yx).astype(int) + 1, img.shape)
    res = img.copy()
    if np.any(hi <= lo):
        return res
    yy, xx = np.mgrid[lo[0]:hi[0], lo[1]:hi[1]]
    dy, dx = yy * sp_yx[0] - c_mm[0], xx * sp_yx[1] - c_mm[1]
    ti = np.mod(np.arctan2(dy, dx), 2.0 * np.pi) / (2.0 * np.pi) * n_theta
    ri = np.hypot(dy, dx) / dr_mm
    filt = ndimage.map_coordinates(out, [ti, ri], order=1, mode="nearest")
    wgt = np.clip((r1 - ri * dr_mm) / max(r1 - r0, 1e-6), 0.0, 1.0)
    win = res[lo[0]:hi[0], lo[1]:hi[1]]
    res[lo[0]:hi[0], lo[1]:hi[1]] = wgt * filt + (1.0 - wgt) * win
    return np.asarray(res, dtype=np.float32)


def seed_modes(sm: F32, art: BoolArray, seed: F64, sp: F64, radius_mm: float, core_mm: float,
               bandwidth_hu: float, max_modes: int = 3, min_peak: float = 0.15) -> list[float]:
    """Candidate zone HU for a click beside a metal needle (more than half of its
    ``radius_mm`` ball lies in the streak core, ``metal_avoid_mm`` around the metal): the
    peaks (HU) of a kernel density of the smoothed HU, strongest first.

    The density (bandwidth ``bandwidth_hu``) is taken over the ball outside gas and metal,
    each voxel weighted by a Gaussian of its distance to the click (sigma ``core_mm``). The
    zone is a plateau of similar HU and forms a peak; the streak core spreads over hundreds of
    HU, and the parenchyma beyond the edge of a small zone is weighted down by its distance.
    Where the needle runs along the zone's axis, the converging dark streaks can form a peak of
    their own, so up to ``max_modes`` peaks of at least ``min_peak`` of the highest are
    returned and the caller keeps the one that grows the zone (see
    :func:`a0verify.segmentation.ablation._learn_best`). Empty when the ball holds fewer
    than 10 usable voxels."""
    cand = morph.ball(sm.shape, seed, radius_mm, sp) & ~art
    if cand.sum() < 10:
        return []
    idx = np.argwhere(cand)
    d2 = np.sum(((idx - seed) * sp) ** 2, axis=1)
    w = np.exp(-0.5 * d2 / core_mm ** 2)
    vals = sm[cand].astype(np.float64)
    lo_edge, step = -300.0, 2.0
    hist = np.bincount(np.clip(((vals - lo_edge) / step).astype(int), 0, 400), weights=w,
                       minlength=401)
    dens = ndimage.gaussian_filter1d(hist, bandwidth_hu / step, mode="constant")
    top = float(dens.max())
    is_peak = (dens >= np.roll(dens, 1)) & (dens > np.roll(dens, -1)) & (dens >= min_peak * top)
    order = np.flatnonzero(is_peak)
    order = order[np.argsort(-dens[order])][:max_modes]
    return [lo_edge + step * (float(i) + 0.5) for i in order]


def mode_marker(sm: F32, art: BoolArray, seed: F64, sp: F64, radius_mm: float, mode_hu: float,
                within_hu: float) -> BoolArray:
    """The voxels of the ``radius_mm`` ball around the click (outside gas and metal) within
    ``within_hu`` of ``mode_hu``; empty when there are fewer than 10."""
    marker = morph.ball(sm.shape, seed, radius_mm, sp) & ~art & (np.abs(sm - mode_hu)
                                                                  <= within_hu)
    return marker if marker.sum() >= 10 else np.zeros_like(art)


def fill_artefact_holes(region: BoolArray, art: BoolArray) -> BoolArray:
    """Enclosed holes that touch an artefact (the partial-volume halo of a bubble beyond the
    artefact margin, a bright streak core beside the needle) belong to the zone: left open they
    thin its wall, and the neck cut would then cut the zone itself. Other enclosed holes (a
    vessel crossing the zone) stay open until the final hole filling."""
    holes = morph.fill_holes(region) & ~region
    if not holes.any() or not art.any():
        return region
    lab, _ = ndimage.label(holes, structure=morph.STRUCT26)
    ids = np.unique(lab[ndimage.binary_dilation(art, structure=morph.STRUCT26) & holes])
    return np.asarray(region | np.isin(lab, ids[ids > 0]))


def trim_dark_sheets(region: BoolArray, sm: F32, art: BoolArray, metal: BoolArray, lo_hu: float,
                     sp: F64, open_mm: float, near_mm: float, metal_reach_mm: float,
                     dark_open_mm: float = 1.5, dark_min_ml: float = 0.5) -> BoolArray:
    """``region`` without its thin parts (gone after an opening by a ball of ``open_mm``) that
    lie within ``near_mm`` of tissue darker than the zone (smoothed HU below ``lo_hu``, gas and
    metal excepted): the partial-volume layer where the liver meets fat or bile, and a thin
    darker band under the capsule, have the zone's HU and spread along the organ's surface
    from a zone that touches it. The zone's own bulk survives the opening. Not within
    ``metal_reach_mm`` of metal (what is dark there may be a streak plateau, and the zone's
    border there is the streak repair's). Empty input: returned as is."""
    if not region.any():
        return region
    sub = morph.bbox(region, int(np.ceil(near_mm / float(sp.min()))) + 1, region.shape)
    reg = region[sub]
    dark = (sm[sub] < lo_hu) & ~art[sub]
    dark = morph.opening(dark, dark_open_mm, sp)
    if metal[sub].any():
        dark &= morph.edt(~metal[sub], sp) > metal_reach_mm
    lab, n = ndimage.label(dark)  # fat, bile: not a streak, a noise speck or a dark patch
    if n == 0:  # of the zone's own heterogeneity
        return region
    big = np.bincount(lab.ravel())[1:] * float(np.prod(sp)) / 1000.0 >= dark_min_ml
    dark = np.r_[False, big][lab]
    if not dark.any():
        return region
    band = reg & (morph.edt(~dark, sp) <= near_mm)
    if not band.any():
        return region
    pad = int(np.ceil(open_mm / float(sp.min()))) + 1
    opened = morph.opening(np.pad(reg, pad), open_mm, sp)
    out = region.copy()
    out[sub] = reg & ~(band & ~opened[pad:-pad, pad:-pad, pad:-pad])
    return out


def core_consistent_marker(sm: F32, marker: BoolArray, seed: F64, sp: F64, core_mm: float,
                           tol_hu: float) -> BoolArray:
    """The seed ball ``marker`` without what clearly differs from the click itself: when the
    median HU (``sm``) of the whole marker and that of its core (within ``core_mm`` of the
    seed) differ by more than ``tol_hu``, the ball reaches out of a zone smaller than it (rim,
    liver), so only its voxels within ``max(tol_hu, 2.5 x spread)`` of the core's median are
    kept. Unchanged when the core holds fewer than 10 voxels, when the medians agree, or when
    fewer than 10 voxels would remain."""
    core = marker & morph.ball(sm.shape, seed, core_mm, sp)
    if core.sum() < 10:
        return marker
    m_core = float(np.median(sm[core]))
    if abs(float(np.median(sm[marker])) - m_core) <= tol_hu:
        return marker
    tol = max(tol_hu, 2.5 * robust_spread(sm[core], m_core))
    kept = marker & (np.abs(sm - m_core) <= tol)
    return kept if kept.sum() >= 10 else marker


def readmit_lobes(body: BoolArray, kept: BoolArray, neck_mm: float, sp: F64,
                  ratios: tuple[float, float]) -> BoolArray:
    """Lobes the neck cut detached from ``kept`` (two probes' zones joined by a waist thinner
    than the cut's ball): components of ``body``'s opening by ``neck_mm`` outside ``kept``,
    within ``2 x neck_mm`` of it and holding ``ratios`` (min, max) x its volume (another
    probe's zone is of its size; the bits of a leak the cut leaves are a few per cent), given
    back with their own boundary. Empty ``kept``: unchanged."""
    if not kept.any():
        return kept
    opened = morph.opening(body, neck_mm, sp)
    lab, _ = ndimage.label(opened, structure=morph.STRUCT26)
    near = morph.dilate(kept, 2.0 * neck_mm + float(sp.max()), sp)
    add = np.zeros_like(kept)
    for i in np.unique(lab[near & opened & ~kept]):
        if i == 0:
            continue
        comp = lab == i
        if (comp & kept).sum() > 0.5 * comp.sum():
            continue  # the kept core's own component (the cut's reconstruction reaches out)
        if ratios[0] * kept.sum() <= comp.sum() <= ratios[1] * kept.sum():
            add |= comp
    if not add.any():
        return kept
    out = kept | (body & morph.dilate(add, neck_mm + float(sp.max()), sp))
    return morph.component_touching(out, kept)


def fmt_point(point: npt.ArrayLike) -> str:
    """A seed (LPS mm) as it appears in messages: "(x, y, z)" to 0.1 mm."""
    return "(" + ", ".join(f"{float(v):.1f}" for v in np.ravel(point)) + ")"


def robust_spread(vals: npt.NDArray[np.floating], median: float) -> float:
    """Robust spread (1.4826 x MAD) clipped to 3-12 HU: streaks near a needle must not widen
    the zone's HU window into fat or bile."""
    return float(np.clip(1.4826 * float(np.median(np.abs(vals - median))), 3.0, 12.0))


def depth_at_seed(region: BoolArray, seed: F64, sp: F64) -> float:
    """Radius (mm) of the largest ball inside ``region`` near the seed (within 15 mm): the
    zone's own thickness, which a leak elsewhere does not inflate."""
    near = morph.ball(region.shape, seed, 15.0, sp)
    sub = morph.bbox(near, 1, region.shape)
    d = morph.edt(np.pad(region[sub], 1), sp)[1:-1, 1:-1, 1:-1]
    vals = d[near[sub] & region[sub]]
    return float(vals.max()) if vals.size else 0.0


def radial_streak_repair(region: BoolArray, metal: BoolArray, sp: F64, streaks: StreakModel,
                         max_radius_mm: float = 60.0, n_angles: int = 120) -> BoolArray:
    """Directional streak model: in an axial slice crossed by metal *inside* the zone, the
    streaks are straight lines through the metal's cross-section, so the zone seen from the
    metal is star-shaped with a radial extent that varies slowly with the angle; a bright
    streak cuts a narrow radial notch into it and a dark streak sticks out as a narrow radial
    spike. Per needle section (:func:`needle_sections`; several in a slice are each modelled,
    other metal there does not matter): rays from its centroid (``n_angles``, 0.5 mm steps);
    the zone's extent along a ray is the end of its first run from the metal (voxels within
    ``streaks.core_mm`` of the metal's cross-section count as inside: the streak core neither
    seeds nor stops the run; gaps up to ``streaks.gap_mm`` are bridged); a section is modelled
    only when at least ``streaks.min_enclosed`` of the rays leave the core inside the zone (the
    metal is enclosed). The expected extent is the circular median over
    ``streaks.window_deg``; voxels up to it are filled, and the run beyond it by more than
    ``streaks.tol_mm`` is removed. Metal lying in the plane (farther than
    ``streaks.metal_max_mm`` from its piece's centroid) or not enclosed is left alone."""
    out = region.copy()
    steps_r = np.arange(0.0, max_radius_mm, 0.5)
    th = np.linspace(0.0, 2.0 * np.pi, n_angles, endpoint=False)
    win = max(3, round(streaks.window_deg / 360.0 * n_angles) | 1)
    gap = max(1, round(streaks.gap_mm / 0.5))
    yy, xx = np.mgrid[0:region.shape[1], 0:region.shape[2]]
    todo = [(z, c, r_metal) for z in np.nonzero(metal.any(axis=(1, 2)))[0]
            if region[z].any() for c, r_metal in needle_sections(metal[z], sp[1:], streaks)]
    for z, c, r_metal in todo:
        r_core = r_metal + streaks.core_mm
        ys = (c[0] + np.sin(th)[:, None] * steps_r[None]) / sp[1]
        xs = (c[1] + np.cos(th)[:, None] * steps_r[None]) / sp[2]
        inside = ndimage.map_coordinates(region[z].astype(np.uint8), [ys, xs], order=0,
                                         mode="constant", cval=0).astype(bool)
        inside |= steps_r[None] <= r_core
        # end of the first run: the first gap longer than ``gap`` samples
        miss = np.pad(~inside, ((0, 0), (0, gap)), constant_values=True).astype(int)
        cs = np.concatenate([np.zeros((n_angles, 1), int), np.cumsum(miss, axis=1)], axis=1)
        long_gap = (cs[:, gap:gap + steps_r.size] - cs[:, :steps_r.size]) >= gap
        last = np.maximum(np.argmax(long_gap, axis=1) - 1, 0)  # last sample inside
        r_end = steps_r[last] + 0.25
        if np.mean(r_end > r_core + 1.0) < streaks.min_enclosed:
            continue  # the metal is not inside the zone in this slice
        r_fill = ndimage.median_filter(r_end, size=win, mode="wrap")
        dy, dx = yy * sp[1] - c[0], xx * sp[2] - c[1]
        rr = np.hypot(dy, dx)
        k = np.rint(np.mod(np.arctan2(dy, dx), 2.0 * np.pi) / (2.0 * np.pi) * n_angles)
        k = k.astype(int) % n_angles
        fill = rr <= r_fill[k]
        spike = (rr > r_fill[k] + streaks.tol_mm) & (rr <= r_end[k] + 0.5)
        out[z] = (out[z] | fill) & ~spike
    return out


def border_near_metal(region: BoolArray, metal: BoolArray, sp: F64, within_mm: float) -> float:
    """Fraction of ``region``'s border voxels (6-connected) within ``within_mm`` of metal: the
    part of the border that was judged inside the streak field, where the edge evidence
    (contrast, weak-edge fraction) is unreliable."""
    if not metal.any() or not region.any():
        return 0.0
    border = region & ~np.asarray(ndimage.binary_erosion(region))
    return float(np.mean(morph.edt(~metal, sp)[border] <= within_mm))


def extent_mm(region: BoolArray, sp: F64) -> float:
    """Largest side (mm) of ``region``'s voxel bounding box (whole voxels). Empty region: 0."""
    idx = np.argwhere(region)
    if not idx.size:
        return 0.0
    return float(((idx.max(axis=0) - idx.min(axis=0) + 1) * sp).max())


def elongation(region: BoolArray, depth_mm: float, sp: F64) -> float:
    """:func:`extent_mm` of ``region`` over the zone's thickness at the click (``depth_mm``, see
    :func:`depth_at_seed`). Empty region: 0."""
    return extent_mm(region, sp) / max(depth_mm, float(sp.min()))


def shape_evidence(quality: Quality, stats: list[dict[str, float]], volume_ml: float,
                   leak_elongation: float, max_zone_ml: float) -> None:
    """Shape evidence of a leak, added to ``quality`` (one ``stats`` dict per grown part).

    * A zone from up to three overlapping probes is at most ~10 times as long (extent) as it is
      thick at the click (radius of the largest ball inside it near the click); on the
      development set good masks reach 2.5-10.2 and the leaks into the abdominal wall or along
      the bowel 24-99. A part longer than ``leak_elongation`` times its thickness has leaked:
      quality "poor", leak suspicion 1.
    * A part whose tissue outside the liver was cut off (``outside_organ_cut_ml``, at least
      1 ml and 10 % of ``volume_ml``) has its border there set by shape, not by an edge: at best
      "review", leak suspicion at least 0.5.
    * A mask larger than ``max_zone_ml`` (the largest clinical zone: 10 cm across from three
      probes) is not one zone: "poor", leak suspicion 1."""
    worst = max((st.get("elongation", 0.0) for st in stats), default=0.0)
    if worst > leak_elongation:
        quality.reasons.append(f"it is {worst:.0f} times as long as the zone is thick at the "
                               "click: it has leaked out of the zone")
        quality.level = "poor"
        quality.leak_suspicion = 1.0
    if volume_ml > max_zone_ml:
        quality.reasons.append(f"it holds {volume_ml:.0f} ml, more than any ablation zone "
                               f"({max_zone_ml:.0f} ml): it has leaked")
        quality.level = "poor"
        quality.leak_suspicion = 1.0
    cut_ml = sum(st.get("outside_organ_cut_ml", 0.0) for st in stats)
    if cut_ml >= max(1.0, 0.1 * volume_ml):
        quality.reasons.append(f"{cut_ml:.0f} ml that the liver does not enclose (a leak through "
                               "the capsule) was cut off by shape, not at an edge: check the "
                               "mask where the zone meets the capsule")
        quality.level = "review" if quality.level == "good" else quality.level
        quality.leak_suspicion = max(quality.leak_suspicion, 0.5)
