"""Seeded segmentation of the ablation zone (post CT) and of a tumour (pre CT).

Method (chosen by measurement, see ``benchmarks/RESULTS_segmentation.md``): *adaptive region
growing with statistics learned around the seed*, in a region of interest (ROI) around each seed.

1. ROI of ``roi_pad_mm`` around the seed, Gaussian pre-smoothing (``smooth_sigma_mm``, per axis in
   mm, so anisotropic spacing is handled).
2. Seed statistics: median and robust spread (1.4826 x MAD) of the smoothed HU in a ball of
   ``seed_radius_mm`` around the seed (gas below ``gas_hu`` excluded for the ablation zone).
3. A provisional region (seed median +/- 2.5 spread) gives a shell 1.5-6 mm outside it whose median
   is the *surrounding* HU (liver parenchyma and, for an ablation zone, the enhancing rim).
4. Threshold: first the midpoint between inside and surrounding HU (refined twice, the inside
   median taken over the region's core away from gas); then the *gradient-weighted mean HU* in a
   2 mm band around the boundary. For a blurred step a -> b the latter equals (a + b) / 2 whatever
   the blur, and it follows the tissue adjacent to the edge (the enhancing rim) rather than the
   distant parenchyma, so the mask is not shifted inward (measured: the plain midpoint
   under-segments by ~0.3 mm). Hyperdense tumours keep the midpoint (bright vessels next to
   them would bias the gradient-weighted mean). The ablation zone keeps everything darker than
   the threshold (gas bubbles and needle tracts included); the enhancing rim, brighter, is
   excluded. A tumour keeps the window on its side of the threshold (hypo- or hyper-dense).
5. Clean-up: the connected component of the seed; "neck cut" (opening by ``neck_radius_mm`` then
   geodesic reconstruction) detaches leaks through thin bridges; holes filled; closing of
   ``close_radius_mm``. The shape is smoothed by the Gaussian pre-smoothing read at the edge
   threshold (an unbiased iso-surface, so it does not shrink); for tumours the signed distance is
   additionally smoothed (``sdf_sigma_mm``; symmetric, so it does not shrink). Measured on the
   ablation benchmark, extra signed-distance smoothing did not help and is off there.
6. Leak checks: a region reaching the ROI boundary is regrown (same threshold) in a ROI of
   ``roi_pad_max_mm``; if it still reaches it, or exceeds ``leak_volume_ml`` or half the ROI,
   the result is unusable (SegmentationError). Implausible volume or extent, low contrast and a
   region cut by the image edge produce warnings (they go into report.json).

Coordinates: seeds are LPS millimetres; arrays are (z, y, x); all conversions via
:mod:`a0verify.geometry`. Distances are in mm using the image spacing (direction matrices are
orthonormal, so distances in index space scaled by spacing equal physical distances).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk
from scipy import ndimage

from a0verify import geometry
from a0verify.errors import InputError, SegmentationError

BoolArray = npt.NDArray[np.bool_]
F32 = npt.NDArray[np.float32]
Kind = Literal["ablation", "tumor"]

METHOD = ("adaptive seeded region growing (inside/surround HU learned around the seed, "
          "gradient-weighted edge threshold) + neck cut + hole filling + closing")


@dataclass
class SegmentationResult:
    """Output of :func:`segment_ablation` / :func:`segment_tumor`.

    ``mask`` is UInt8 0/1 on the input image's grid; ``warnings`` are one-line strings meant for
    report.json; ``stats`` holds JSON-serialisable floats (volumes in ml, HU, mm).
    """

    mask: sitk.Image
    method: str
    warnings: list[str] = field(default_factory=list)
    stats: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class SegParams:
    """Tunable parameters (mm, HU, ml). Defaults were set on phantoms and painted real anatomy."""

    kind: Kind
    roi_pad_mm: float = 45.0
    roi_pad_max_mm: float = 90.0
    smooth_sigma_mm: float = 0.8
    seed_radius_mm: float = 4.0
    gas_hu: float = -300.0
    shell_mm: tuple[float, float] = (1.5, 6.0)
    init_k: float = 2.5
    min_contrast_hu: float = 20.0
    warn_contrast_hu: float = 35.0
    neck_radius_mm: float = 3.0
    close_radius_mm: float = 1.5
    sdf_sigma_mm: float = 0.0
    refine_iterations: int = 2
    edge_threshold: bool = True
    band_mm: float = 2.0
    min_volume_ml: float = 0.1
    leak_volume_ml: float = 600.0
    warn_volume_ml: float = 150.0
    warn_extent_mm: float = 60.0

    @staticmethod
    def for_kind(kind: Kind) -> SegParams:
        if kind == "tumor":
            return SegParams(kind="tumor", roi_pad_mm=40.0, roi_pad_max_mm=80.0,
                             warn_volume_ml=120.0, warn_extent_mm=55.0, close_radius_mm=1.0,
                             sdf_sigma_mm=1.0, leak_volume_ml=400.0, min_contrast_hu=12.0,
                             warn_contrast_hu=25.0)
        return SegParams(kind="ablation")


# --------------------------------------------------------------------------- helpers
def _fmt_seed(seed: npt.ArrayLike) -> str:
    return "(" + ", ".join(f"{float(v):.1f}" for v in np.ravel(seed)) + ")"


def check_seed_inside(image: sitk.Image, seed_lps: npt.ArrayLike, what: str,
                      source: str | None = None) -> npt.NDArray[np.float64]:
    """Continuous (z, y, x) index of ``seed_lps`` (LPS mm); InputError when it lies outside the
    image's voxel extent (centres +/- half a voxel). ``what`` names the image in the message,
    ``source`` (e.g. the file path) prefixes it."""
    pre = f"{source}: " if source else ""
    seed = np.asarray(seed_lps, dtype=np.float64).reshape(3)
    if not np.all(np.isfinite(seed)):
        raise InputError(f"{pre}seed {_fmt_seed(seed)} mm is not finite")
    idx = geometry.lps_to_zyx_index(image, seed)
    shape = geometry.xyz_to_zyx(image.GetSize())
    if np.any(idx < -0.5) or np.any(idx > shape - 0.5):
        raise InputError(f"{pre}seed {_fmt_seed(seed)} mm lies outside {what} image")
    return idx


def _edt(mask: BoolArray, spacing: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Distance (mm) from each True voxel to the nearest False voxel centre (0 on False)."""
    if not mask.any():
        return np.zeros(mask.shape)
    if mask.all():
        return np.full(mask.shape, np.inf)
    return np.asarray(ndimage.distance_transform_edt(mask, sampling=spacing))


def _dilate(mask: BoolArray, r_mm: float, spacing: npt.NDArray[np.float64]) -> BoolArray:
    """Dilation by a ball of ``r_mm`` (mm, anisotropic spacing handled exactly)."""
    return np.asarray(mask | (_edt(~mask, spacing) <= r_mm))


def _erode(mask: BoolArray, r_mm: float, spacing: npt.NDArray[np.float64]) -> BoolArray:
    """Erosion by a ball of ``r_mm``; outside the array counts as inside (no border erosion)."""
    return np.asarray(_edt(mask, spacing) > r_mm)


def _component_at(mask: BoolArray, seed_zyx: npt.NDArray[np.int64],
                  ball: BoolArray) -> BoolArray:
    """Connected component (26-connectivity) containing the seed voxel; if the seed voxel is off,
    the component with most voxels inside ``ball`` (seed neighbourhood). Empty when none."""
    lab, n = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    if n == 0:
        return np.zeros_like(mask)
    at = int(lab[tuple(seed_zyx)])
    if at == 0:
        counts = np.bincount(lab[ball], minlength=n + 1)
        counts[0] = 0
        at = int(np.argmax(counts))
        if counts[at] == 0:
            return np.zeros_like(mask)
    return np.asarray(lab == at)


def _ball(shape: tuple[int, ...], center: npt.NDArray[np.float64], r_mm: float,
          spacing: npt.NDArray[np.float64]) -> BoolArray:
    grids = np.ogrid[tuple(slice(0, s) for s in shape)]
    d2 = sum(((g - c) * sp) ** 2 for g, c, sp in zip(grids, center, spacing, strict=True))
    return np.asarray(d2 <= r_mm * r_mm)


def _touches_open_faces(mask: BoolArray, open_faces: list[tuple[int, int]]) -> bool:
    """True when ``mask`` has voxels on any ROI face listed as (axis, 0 | -1)."""
    for axis, end in open_faces:
        sl: list[slice | int] = [slice(None)] * 3
        sl[axis] = end
        if mask[tuple(sl)].any():
            return True
    return False


# --------------------------------------------------------------------------- one seed
@dataclass
class _OneSeed:
    mask: BoolArray  # on the ROI
    box: geometry.IndexBox
    stats: dict[str, float]
    warnings: list[str]


def _smoothed_roi(image: sitk.Image, box: geometry.IndexBox, sigma_mm: float) -> F32:
    roi = sitk.GetArrayFromImage(geometry.crop(image, box)).astype(np.float32)
    sig = sigma_mm / geometry.spacing_zyx(image)
    return np.asarray(ndimage.gaussian_filter(roi, sigma=sig, mode="nearest"), dtype=np.float32)


def _segment_one(image: sitk.Image, seed_lps: npt.NDArray[np.float64], p: SegParams,
                 label: str) -> _OneSeed:
    """Segment the structure around one seed; ``label`` names the seed in messages.

    The threshold is learned once in the ROI of ``roi_pad_mm``; when the grown (and neck-cut)
    region reaches that ROI's boundary it is regrown with the same threshold in the ROI of
    ``roi_pad_max_mm``; reaching that one too is a leak (SegmentationError).
    """
    spacing = geometry.spacing_zyx(image)
    full_shape = geometry.xyz_to_zyx(image.GetSize()).astype(int)
    vox_ml = geometry.voxel_volume_ml(image)
    learned: _Learned | None = None
    pad = p.roi_pad_mm
    while True:
        box = geometry.roi_box_around_lps(image, seed_lps[None], pad)
        sm = _smoothed_roi(image, box, p.smooth_sigma_mm)
        seed_idx = geometry.lps_to_zyx_index(image, seed_lps) - np.asarray(box.lo_zyx, float)
        seed_vox = np.clip(np.rint(seed_idx).astype(np.int64), 0, np.asarray(sm.shape) - 1)
        ball = _ball(sm.shape, seed_idx, max(p.seed_radius_mm, float(spacing.min())), spacing)
        open_faces = [(ax, 0) for ax in range(3) if box.lo_zyx[ax] > 0]
        open_faces += [(ax, -1) for ax in range(3) if box.hi_zyx[ax] < full_shape[ax]]
        if learned is None:
            learned = _learn(sm, seed_vox, ball, spacing, p, label)
        region = _component_at(learned.window(sm), seed_vox, ball)
        if region.sum() * vox_ml > p.leak_volume_ml or region.sum() > 0.5 * region.size:
            # gross leak (implausible volume, or fills the region of interest)
            leaked = True
            break
        leaked = _touches_open_faces(region, open_faces)
        if leaked:
            region = _neck_cut(region, seed_vox, ball, spacing, p)
            leaked = _touches_open_faces(region, open_faces)
        if leaked and pad < p.roi_pad_max_mm:
            pad = p.roi_pad_max_mm
            continue
        break
    if leaked:
        raise SegmentationError(
            f"{p.kind} segmentation from seed {label} leaked: the region grows beyond "
            f"{pad:.0f} mm from the seed, {p.leak_volume_ml:.0f} ml or half the region of "
            f"interest (threshold "
            f"{learned.threshold:.0f} HU); place the seed inside the "
            f"{'non-enhancing ablation zone' if p.kind == 'ablation' else 'tumour'} or supply a "
            "mask")
    region = _clean(_neck_cut(region, seed_vox, ball, spacing, p), seed_vox, ball, spacing, p)
    if region.sum() * vox_ml < p.min_volume_ml:
        raise SegmentationError(
            f"{p.kind} segmentation from seed {label} found only {region.sum() * vox_ml:.2f} ml;"
            f" is the seed inside the "
            f"{'non-enhancing ablation zone' if p.kind == 'ablation' else 'tumour'}?")
    warns = list(learned.warnings)
    if any(box.lo_zyx[ax] == 0 and region.take(0, axis=ax).any() for ax in range(3)) or any(
            box.hi_zyx[ax] == full_shape[ax] and region.take(-1, axis=ax).any()
            for ax in range(3)):
        warns.append(f"{p.kind} region from seed {label} touches the image edge; it may be "
                     "truncated")
    stats = dict(learned.stats)
    stats["roi_pad_mm"] = float(pad)
    return _OneSeed(mask=region, box=box, stats=stats, warnings=warns)


@dataclass
class _Learned:
    """Intensity model learned around one seed: keep ``lo <= HU <= hi`` (smoothed image)."""

    lo: float
    hi: float
    threshold: float
    stats: dict[str, float]
    warnings: list[str]

    def window(self, sm: F32) -> BoolArray:
        return np.asarray((sm >= self.lo) & (sm <= self.hi))


def _learn(sm: F32, seed_vox: npt.NDArray[np.int64], ball: BoolArray,
           spacing: npt.NDArray[np.float64], p: SegParams, label: str) -> _Learned:
    """Learn inside / surrounding HU and the midpoint threshold on the smoothed ROI ``sm``.

    Inside HU: first the median in the seed ball, then (``refine_iterations`` times) the median
    over the current region eroded by 1 mm, away (2 mm) from gas. Surrounding HU: median in a shell
    ``shell_mm`` outside the current region, gas excluded.
    """
    warns: list[str] = []
    vals = sm[ball]
    gas_halo = np.zeros(sm.shape, bool)
    if p.kind == "ablation":
        vals = vals[vals > p.gas_hu]
        gas = sm < p.gas_hu
        if gas.any():
            gas_halo = _dilate(gas, 2.0, spacing)
    if vals.size < 3:
        raise SegmentationError(
            f"{p.kind} seed {label} lies in gas/air (no tissue within {p.seed_radius_mm:.0f} mm);"
            " move the seed into the lesion")
    m_in = float(np.median(vals))
    s_in = max(1.4826 * float(np.median(np.abs(vals - m_in))), 3.0)
    half = max(p.init_k * s_in, 10.0)
    if p.kind == "ablation":
        region = sm <= m_in + half  # gas and needle tracts belong to the zone
    else:
        region = (sm >= m_in - half) & (sm <= m_in + half)
    region = _component_at(region, seed_vox, ball)
    m_out = m_in
    lo, hi, thr = -np.inf, np.inf, m_in
    for it in range(p.refine_iterations + 1):
        if it > 0:
            core = _erode(region, 1.0, spacing) & ~gas_halo
            if core.sum() >= 20:
                m_in = float(np.median(sm[core]))
        dist_out = _edt(~region, spacing)
        shell = (dist_out > p.shell_mm[0]) & (dist_out <= p.shell_mm[1]) & ~gas_halo
        shell_vals = sm[shell]
        shell_vals = shell_vals[shell_vals > p.gas_hu]
        if shell_vals.size < 10:
            raise SegmentationError(f"{p.kind} segmentation from seed {label}: no surrounding "
                                    "tissue found in the region of interest")
        m_out = float(np.median(shell_vals))
        contrast = m_out - m_in
        if p.kind == "ablation" and contrast < p.min_contrast_hu:
            raise SegmentationError(
                f"ablation seed {label}: no non-enhancing zone there (seed {m_in:.0f} HU, "
                f"surroundings {m_out:.0f} HU); place the seed inside the ablation zone")
        if abs(contrast) < p.min_contrast_hu:
            raise SegmentationError(
                f"tumour seed {label}: the lesion does not differ from its surroundings "
                f"(seed {m_in:.0f} HU, surroundings {m_out:.0f} HU); supply a tumour mask")
        thr = 0.5 * (m_in + m_out)
        span = max(3.0 * s_in, abs(contrast))
        if p.kind == "ablation":
            lo, hi = -np.inf, thr
        elif contrast > 0:  # hypodense tumour
            lo, hi = m_in - span, thr
        else:  # hyperdense tumour
            lo, hi = thr, m_in + span
        region = _component_at((sm >= lo) & (sm <= hi), seed_vox, ball)
        if region.sum() > 0.5 * region.size:  # leaked: stop refining, the caller reports it
            break
    contrast = m_out - m_in
    thr_mid = thr
    dark = p.kind == "ablation" or contrast > 0
    if p.edge_threshold and dark and 0 < region.sum() <= 0.5 * region.size:
        # Gradient-weighted mean HU in a band around the boundary: for a blurred step a -> b it
        # equals (a + b) / 2 whatever the blur, and it follows the *adjacent* tissue (e.g. a
        # bright rim) rather than the distant parenchyma, so the edge is not shifted inward.
        # Not for hyperdense lesions: adjacent enhancing vessels would dominate it (measured:
        # Dice 0.84 vs 0.93 with the midpoint on a painted hyperdense lesion).
        band = (_edt(region, spacing) <= p.band_mm) & (_edt(~region, spacing) <= p.band_mm)
        band &= ~gas_halo
        grads = np.gradient(sm.astype(np.float64), *spacing)
        gmag = np.sqrt(sum(g * g for g in grads))
        w = gmag[band]
        if w.sum() > 0:
            t_edge = float(np.sum(w * sm[band]) / w.sum())
            a, b = sorted((m_in + 0.3 * contrast, m_in + 0.8 * contrast))
            thr = float(np.clip(t_edge, a, b))
            hi = thr
    if abs(contrast) < p.warn_contrast_hu:
        warns.append(f"{p.kind} seed {label}: low contrast ({m_in:.0f} HU vs {m_out:.0f} HU "
                     "around); review the mask")
    stats = {
        "inside_median_hu": m_in,
        "seed_spread_hu": s_in,
        "surround_median_hu": m_out,
        "contrast_hu": contrast,
        "threshold_hu": thr,
        "midpoint_threshold_hu": thr_mid,
    }
    return _Learned(lo=float(lo), hi=float(hi), threshold=thr, stats=stats, warnings=warns)


def _neck_cut(region: BoolArray, seed_vox: npt.NDArray[np.int64], ball: BoolArray,
              spacing: npt.NDArray[np.float64], p: SegParams) -> BoolArray:
    """Detach parts joined to the seed's body by bridges thinner than 2 x ``neck_radius_mm``:
    opening by a ball, component of the seed, geodesic reconstruction limited to one voxel beyond
    the opened core (the body's own boundary is kept)."""
    if not region.any():
        return region
    r = p.neck_radius_mm
    opened = _dilate(_erode(region, r, spacing), r, spacing)
    core = _component_at(opened, seed_vox, ball)
    if not core.any():
        return region
    out = region & _dilate(core, r + float(spacing.max()), spacing)
    return _component_at(out, seed_vox, ball)


def _clean(region: BoolArray, seed_vox: npt.NDArray[np.int64], ball: BoolArray,
           spacing: npt.NDArray[np.float64], p: SegParams) -> BoolArray:
    """Hole filling, closing and (optional) signed-distance smoothing (radii in mm)."""
    if not region.any():
        return region
    region = ndimage.binary_fill_holes(region)
    if p.close_radius_mm > 0:
        pad = math.ceil(p.close_radius_mm / float(spacing.min())) + 1
        big = np.pad(region, pad)
        closed = _erode(_dilate(big, p.close_radius_mm, spacing), p.close_radius_mm, spacing)
        region = region | closed[pad:-pad, pad:-pad, pad:-pad]
        region = ndimage.binary_fill_holes(region)
    if p.sdf_sigma_mm > 0:
        phi = _edt(region, spacing) - _edt(~region, spacing)  # mm, positive inside
        phi = ndimage.gaussian_filter(phi, sigma=p.sdf_sigma_mm / spacing, mode="nearest")
        smooth = phi > 0
        if smooth.any():
            region = ndimage.binary_fill_holes(_component_at(smooth, seed_vox, ball))
    return np.asarray(region, dtype=bool)


# --------------------------------------------------------------------------- public API
def _assemble(image: sitk.Image, parts: list[_OneSeed], p: SegParams) -> tuple[
        sitk.Image, dict[str, float], list[str]]:
    shape = tuple(int(v) for v in geometry.xyz_to_zyx(image.GetSize()))
    full = np.zeros(shape, dtype=bool)
    for part in parts:
        full[part.box.slices] |= part.mask
    # holes between confluent zones (gas trapped between probes) belong to the union
    lo = np.min([pt.box.lo_zyx for pt in parts], axis=0)
    hi = np.max([pt.box.hi_zyx for pt in parts], axis=0)
    sl = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    full[sl] = ndimage.binary_fill_holes(full[sl])
    vox_ml = geometry.voxel_volume_ml(image)
    n_comp = int(ndimage.label(full[sl], structure=np.ones((3, 3, 3), bool))[1])
    vol = float(full.sum() * vox_ml)
    stats: dict[str, float] = {"volume_ml": vol, "n_components": float(n_comp)}
    warns: list[str] = []
    # extent: largest side (mm) of the mask's bounding box along the array axes
    idx = np.argwhere(full[sl]).astype(np.float64)
    if idx.size:
        ext = (idx.max(axis=0) - idx.min(axis=0) + 1) * geometry.spacing_zyx(image)
        stats["extent_max_mm"] = float(ext.max())
        stats["equivalent_diameter_mm"] = float((6.0 * vol * 1000.0 / math.pi) ** (1 / 3))
        if n_comp == 1 and ext.max() > p.warn_extent_mm * (1 + 0.5 * (len(parts) - 1)):
            warns.append(f"{p.kind} mask extends {ext.max():.0f} mm; leak suspected, review it")
    if vol > p.warn_volume_ml:
        warns.append(f"{p.kind} mask volume {vol:.0f} ml is implausibly large; leak suspected, "
                     "review it")
    mask = geometry.array_to_image(full.astype(np.uint8), image)
    return mask, stats, warns


def _run(image: sitk.Image, seeds: Sequence[Sequence[float]], kind: Kind,
         what: str, source: str | None) -> SegmentationResult:
    pre = f"{source}: " if source else ""
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"{pre}{what} image must be a 3-D scalar image")
    if len(seeds) == 0:
        raise InputError(f"{pre}no seed given for the {kind} segmentation")
    p = SegParams.for_kind(kind)
    pts = [np.asarray(s, dtype=np.float64).reshape(3) for s in seeds]
    for s in pts:
        check_seed_inside(image, s, what, source)
    parts: list[_OneSeed] = []
    stats: dict[str, float] = {"n_seeds": float(len(pts))}
    warns: list[str] = []
    for i, s in enumerate(pts):
        # a seed already inside an earlier seed's region belongs to the same confluent zone
        covered = False
        for part in parts:
            v = np.rint(geometry.lps_to_zyx_index(image, s) - np.asarray(part.box.lo_zyx))
            v = v.astype(int)
            if np.all(v >= 0) and np.all(v < part.mask.shape) and part.mask[tuple(v)]:
                covered = True
                break
        if covered:
            stats[f"seed{i + 1}_in_earlier_zone"] = 1.0
            continue
        one = _segment_one(image, s, p, _fmt_seed(s))
        parts.append(one)
        warns.extend(one.warnings)
        prefix = "" if len(pts) == 1 else f"seed{i + 1}_"
        stats.update({prefix + k: v for k, v in one.stats.items()})
    mask, st, w = _assemble(image, parts, p)
    stats.update(st)
    warns.extend(w)
    return SegmentationResult(mask=mask, method=METHOD, warnings=warns, stats=stats)


def segment_ablation(image: sitk.Image, seeds_lps: Sequence[Sequence[float]], *,
                     what: str = "post-ablation CT",
                     source: str | None = None) -> SegmentationResult:
    """Ablation-zone mask from one or more seeds (LPS mm) on a contrast-enhanced post CT (HU).

    The zone is the non-enhancing region around each seed; gas bubbles and needle tracts inside
    it are included, the enhancing rim is excluded. Several seeds give the union of their zones
    (confluent zones merge). The mask is UInt8 0/1 on ``image``'s grid.

    Raises InputError when a seed lies outside the image (message names ``what``) or no seed is
    given; SegmentationError when no usable zone is found (seed not in a non-enhancing region,
    region leaks beyond ``roi_pad_max_mm``, or too small). Suspected leaks that still give a
    bounded region become warnings.
    """
    return _run(image, seeds_lps, "ablation", what, source)


def segment_tumor(image: sitk.Image, seed_lps: Sequence[float], *,
                  what: str = "pre-ablation CT",
                  source: str | None = None) -> SegmentationResult:
    """Tumour mask from one seed (LPS mm) on a (contrast) CT in HU.

    The lesion may be hypo- or hyper-dense relative to the surrounding parenchyma; the boundary is
    the midpoint iso-surface between the learned lesion and surround intensities. Raises
    InputError for a seed outside the image, SegmentationError when the lesion does not differ
    from its surroundings or the region leaks.
    """
    return _run(image, [seed_lps], "tumor", what, source)
