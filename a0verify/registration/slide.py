"""Search for a liver that slid against the body wall (breathing), by block matching.

The whole-body start aligns the body outline. A liver that slid 8-15 mm cranio-caudally against
the wall (another breathing phase) is then outside the capture range of the lesion-focused
rigid stage, which settles on the wall. Without a liver segmentation the organ mask around the
zone (an intensity range) also holds the wall muscles and diaphragm that touch a subcapsular
lesion, so one similarity over the whole mask is a tug-of-war that the larger part wins.

:func:`organ_slide` lets each ~16 mm block of the organ mask find its own shift (normalised
cross-correlation, which ignores a per-block contrast change), and the blocks vote, weighted by
their closeness to the zone (the zone lies in the liver: the tissue next to it moves with the
lesion). The shift the vote picks is kept when it moves at least :data:`MIN_SLIDE_MM`
cranio-caudally, with a mask for the metric: next to the zone every block but those that
clearly moved otherwise, farther out only the blocks shown to move with the lesion (the wall,
diaphragm and textureless tissue there could pull the rigid stage back onto the wall).
Shifts are translations in pre (moving) space, mm; the grid is
anterior-posterior (y) x cranio-caudal (z) because that is how the liver slides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

from a0verify import geometry
from a0verify.registration.initial import as_euler, compose_rigid

F64 = npt.NDArray[np.float64]

SEARCH_Z_MM = 20.0  # cranio-caudal search range (+-)
SEARCH_Y_MM = 6.0  # anterior-posterior search range (+-)
STEP_MM = 2.0
GRID_MM = 2.0  # the images are compared on a grid about this coarse
BLOCK_MM = 16.0
ZONE_WEIGHT_MM = 20.0  # a block's vote weighs exp(-distance to the zone / this)
MIN_SLIDE_MM = 3.0  # smaller shifts are left to the rigid stage
MIN_BLOCK_FILL = 0.4  # a block votes when the sample covers this fraction of it
MIN_BLOCK_STD_HU = 4.0  # ... and it has texture
MIN_PEAK = 0.05  # ... and its best shift beats its median shift by this much NCC
AGREE_NCC = 0.05  # a block moves with the lesion when its NCC at the chosen shift is within
#                  this of its best
DISAGREE_NCC = 0.15  # ... and clearly moved otherwise when it is this far below its best
NEAR_ZONE_MM = 15.0  # blocks this close to the zone stay in the metric unless they clearly
#                      moved otherwise (the tissue next to the lesion says how it moved, even
#                      where it deforms); farther out only the blocks that move with it stay


@dataclass(frozen=True)
class SlideResult:
    """``transform``: ``init`` followed by the chosen shift (``init`` itself when none);
    ``metric_mask``: UInt8 mask on the fixed crop's grid of the blocks to keep in the metric
    (within :data:`NEAR_ZONE_MM` of the zone: all but those that clearly moved otherwise;
    farther: those shown to move with the lesion, textured and with their NCC at the chosen
    shift within :data:`AGREE_NCC` of their best); None when no shift was taken; ``info``: a
    summary."""

    transform: sitk.Euler3DTransform
    metric_mask: sitk.Image | None
    info: dict[str, Any]


def _block_sums(a: F64, b: tuple[int, int, int]) -> F64:
    """Sums of ``a`` (z, y, x; zero-padded to whole blocks) over blocks of ``b`` voxels."""
    pad = [(0, (-n) % k) for n, k in zip(a.shape, b, strict=True)]
    p = np.pad(a, pad)
    nz, ny, nx = (s // k for s, k in zip(p.shape, b, strict=True))
    return p.reshape(nz, b[0], ny, b[1], nx, b[2]).sum(axis=(1, 3, 5))


def _moving_crop(moving: sitk.Image, fixed: sitk.Image, init: sitk.Transform,
                 margin_mm: float) -> sitk.Image:
    """The part of ``moving`` that ``fixed``'s box maps into through ``init`` (+ margin)."""
    size = fixed.GetSize()
    corners = np.array([fixed.TransformIndexToPhysicalPoint([i * (size[0] - 1), j * (size[1] - 1),
                                                             k * (size[2] - 1)])
                        for i in (0, 1) for j in (0, 1) for k in (0, 1)], np.float64)
    mapped = np.array([init.TransformPoint(c.tolist()) for c in corners])
    box = geometry.roi_box_around_lps(moving, mapped, margin_mm)
    return geometry.crop(moving, box)


def organ_slide(fixed: sitk.Image, moving: sitk.Image, sample: sitk.Image, zone: sitk.Image,
                init: sitk.Euler3DTransform) -> SlideResult:
    """The shift (pre space, mm) of the tissue around the zone, found by block matching.

    ``fixed``: the post CT cropped around the zone (HU); ``moving``: the pre CT (any extent);
    ``sample``: UInt8 on ``fixed``'s grid, where to compare (the organ's interior near the zone,
    without the zone and artefacts); ``zone``: UInt8 ablation zone on ``fixed``'s grid (its
    distance weights the votes). Returns ``init`` unchanged (and no mask) when fewer than 4
    blocks can vote, when ``init`` maps the box (almost) outside ``moving``, or when the
    vote's winner moves less than :data:`MIN_SLIDE_MM` cranio-caudally."""
    factors = [max(1, round(GRID_MM / s)) for s in fixed.GetSpacing()]
    f_img = sitk.BinShrink(sitk.Cast(fixed, sitk.sitkFloat32), factors)
    m_img = sitk.Cast(sitk.BinShrink(sitk.Cast(sample, sitk.sitkFloat32), factors) > 0.99,
                      sitk.sitkUInt8)
    info: dict[str, Any] = {"dz_mm": 0.0, "dy_mm": 0.0, "method": "block vote"}
    mask = sitk.GetArrayFromImage(m_img).astype(np.float64)
    if mask.sum() < 500:
        return SlideResult(init, None, {**info, "reason": "too little organ around the zone"})
    f = sitk.GetArrayFromImage(f_img).astype(np.float64)
    lo, hi = (float(v) for v in np.percentile(f[mask > 0], (1.0, 99.0)))
    if not hi > lo:
        return SlideResult(init, None, {**info, "reason": "no contrast in the organ"})
    f = np.clip(f, lo, hi) * mask
    mov = _moving_crop(sitk.Cast(moving, sitk.sitkFloat32), f_img, init, SEARCH_Z_MM + 15.0)
    if min(mov.GetSize()) < 4:
        return SlideResult(init, None, {**info, "reason": "the pre scan barely covers the zone"})
    mov = sitk.Clamp(sitk.SmoothingRecursiveGaussian(mov, [1.0] * 3), sitk.sitkFloat32, lo, hi)
    sp = np.asarray(f_img.GetSpacing(), np.float64)[::-1]  # z, y, x
    blk = tuple(max(2, round(BLOCK_MM / s)) for s in sp)
    b = (blk[0], blk[1], blk[2])
    n = _block_sums(mask, b)
    sf, sff = _block_sums(f, b), _block_sums(f * f, b)
    zone_small = sitk.Resample(zone, f_img, sitk.Transform(), sitk.sitkNearestNeighbor, 0,
                               sitk.sitkUInt8)
    dist = sitk.GetArrayFromImage(sitk.SignedMaurerDistanceMap(
        zone_small, insideIsPositive=False, squaredDistance=False, useImageSpacing=True))
    dist_b = _block_sums(np.maximum(dist, 0.0) * mask, b) / np.maximum(n, 1.0)
    full = float(np.prod(b))
    var_f = sff / np.maximum(n, 1.0) - (sf / np.maximum(n, 1.0)) ** 2
    usable = (n >= MIN_BLOCK_FILL * full) & (var_f > MIN_BLOCK_STD_HU ** 2)

    def ncc(dy: float, dz: float) -> F64:
        tx = sitk.CompositeTransform([sitk.TranslationTransform(3, (0.0, dy, dz)), init])
        m = sitk.GetArrayFromImage(sitk.Resample(mov, f_img, tx, sitk.sitkLinear,
                                                 float("nan"), sitk.sitkFloat32))
        m = m.astype(np.float64)
        valid = mask * np.isfinite(m)
        m = np.where(valid > 0, m, 0.0)
        k = _block_sums(valid, b)
        s_f, s_m = _block_sums(f * valid, b), _block_sums(m, b)
        s_ff, s_mm, s_fm = (_block_sums(f * f * valid, b), _block_sums(m * m, b),
                            _block_sums(f * m, b))
        kk = np.maximum(k, 1.0)
        cov = s_fm / kk - s_f * s_m / kk ** 2
        vf = s_ff / kk - (s_f / kk) ** 2
        vm = s_mm / kk - (s_m / kk) ** 2
        out = cov / np.sqrt(np.maximum(vf * vm, 1e-9))
        return np.where(k >= MIN_BLOCK_FILL * full, out, -1.0)

    zs = np.arange(-SEARCH_Z_MM, SEARCH_Z_MM + 1e-6, STEP_MM)
    ys = np.arange(-SEARCH_Y_MM, SEARCH_Y_MM + 1e-6, 1.5 * STEP_MM)
    shifts = [(float(dy), float(dz)) for dz in zs for dy in ys]
    scores = np.stack([ncc(dy, dz) for dy, dz in shifts])  # (shift, bz, by, bx)
    best_i = np.argmax(scores, axis=0)
    best = np.take_along_axis(scores, best_i[None], 0)[0]
    peak = best - np.median(scores, axis=0)
    voters = usable & (peak >= MIN_PEAK) & (best > 0.2)
    info["blocks_voting"] = int(voters.sum())
    if voters.sum() < 4:
        return SlideResult(init, None, {**info, "reason": "too few blocks with texture"})
    weight = np.exp(-dist_b / ZONE_WEIGHT_MM) * n / full
    # the vote: each block's weight on its best shift, spread over the neighbouring shifts
    # (+-1 step) so that a slide between two grid points is not split
    votes = np.zeros(len(shifts))
    pos = np.array(shifts)
    for i, w in zip(best_i[voters], weight[voters], strict=True):
        near = np.all(np.abs(pos - pos[i]) <= [1.5 * STEP_MM + 1e-6, STEP_MM + 1e-6], axis=1)
        votes[near] += w * np.where(np.all(pos[near] == pos[i], axis=1), 1.0, 0.5)
    win = int(np.argmax(votes))
    # refine: the weighted mean NCC of the agreeing blocks, around the winner, by half steps
    agree = voters & (best - scores[win] <= AGREE_NCC)
    dy, dz = shifts[win]

    def total(s: F64) -> float:
        return float(np.sum(np.where(agree, s, 0.0) * weight))

    at = scores[win]  # the blocks' NCC at the current shift
    cur = total(at)
    step = STEP_MM / 2
    for _ in range(2):
        cand = {(dy + a, dz + c): ncc(dy + a, dz + c) for a in (-step, 0.0, step)
                for c in (-step, 0.0, step) if (a, c) != (0.0, 0.0)}
        (ny_, nz_), s_best = max(cand.items(), key=lambda kv: total(kv[1]))
        if total(s_best) > cur:
            dy, dz, at, cur = ny_, nz_, s_best, total(s_best)
        step /= 2
    share = float(votes[win] / max(votes.sum(), 1e-12))
    info.update(vote_share=share, candidate_dz_mm=dz, candidate_dy_mm=dy)
    if abs(dz) < MIN_SLIDE_MM:  # a slide is cranio-caudal; the rigid stage does the rest
        return SlideResult(init, None, info)
    info.update(dz_mm=dz, dy_mm=dy)
    confident = usable & (peak >= MIN_PEAK)
    agree = confident & (best - at <= AGREE_NCC)
    otherwise = confident & (best - at > DISAGREE_NCC)
    keep = agree | ((dist_b <= NEAR_ZONE_MM) & (n > 0) & ~otherwise)
    info.update(blocks_moving_with=int(agree.sum()), blocks_moved_otherwise=int(otherwise.sum()),
                blocks_kept=int(keep.sum()))
    vox = np.kron(keep.astype(np.uint8), np.ones(b, np.uint8))[
        :f.shape[0], :f.shape[1], :f.shape[2]]
    small = geometry.array_to_image(np.ascontiguousarray(vox), f_img)
    metric_mask = sitk.Resample(small, fixed, sitk.Transform(), sitk.sitkNearestNeighbor, 0,
                                sitk.sitkUInt8)
    shift = as_euler(sitk.TranslationTransform(3, (0.0, dy, dz)), init.GetCenter())
    return SlideResult(compose_rigid(shift, init), metric_mask, info)
