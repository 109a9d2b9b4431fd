"""Seeded segmentation of the ablation zone (post CT) and of a tumour (pre CT).

Method (chosen by measurement, see ``benchmarks/RESULTS_segmentation.md``): *adaptive region
growing with statistics learned around the seed*, in a region of interest (ROI) around each seed.

1. ROI of ``roi_pad_mm`` around the seed, Gaussian pre-smoothing (``smooth_sigma_mm``, per axis in
   mm, so anisotropic spacing is handled).
2. Seed statistics: median and robust spread (1.4826 x MAD) of the smoothed HU in a ball of
   ``seed_radius_mm`` around the seed (gas below ``gas_hu`` excluded for the ablation zone).
3. A provisional region (seed median +/- 2.5 spread) gives a shell 1.5-6 mm outside it whose median
   is the *surrounding* HU (liver parenchyma and, for an ablation zone, the enhancing rim).
4. Final threshold = midpoint between inside and surrounding HU: on a blurred step edge the
   midpoint iso-surface lies on the true edge, so the mask neither shrinks nor grows. The
   ablation zone keeps everything darker than the midpoint (gas bubbles and needle tracts
   included); the enhancing rim, being brighter, is excluded. A tumour keeps the window on its
   side of the midpoint (hypo- or hyper-dense lesions).
5. Clean-up: the connected component of the seed; "neck cut" (opening by ``neck_radius_mm`` then
   geodesic reconstruction) detaches leaks through thin bridges; holes filled; closing of
   ``close_radius_mm``; smoothing of the signed distance (symmetric, so it does not shrink).
6. Leak checks: a region reaching the ROI boundary is regrown in a ROI of ``roi_pad_max_mm``; if
   it still reaches it the result is unusable (SegmentationError). Implausible volume or extent
   and low contrast produce warnings (they go into report.json).

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

METHOD = ("adaptive seeded region growing (seed/surround HU learned, midpoint threshold) "
          "+ neck cut + hole filling + signed-distance smoothing")


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
    min_contrast_hu: float = 12.0
    warn_contrast_hu: float = 25.0
    neck_radius_mm: float = 3.0
    close_radius_mm: float = 1.5
    sdf_sigma_mm: float = 1.0
    min_volume_ml: float = 0.1
    warn_volume_ml: float = 150.0
    warn_extent_mm: float = 60.0

    @staticmethod
    def for_kind(kind: Kind) -> SegParams:
        if kind == "tumor":
            return SegParams(kind="tumor", roi_pad_mm=40.0, roi_pad_max_mm=80.0,
                             warn_volume_ml=120.0, warn_extent_mm=55.0, close_radius_mm=1.0)
        return SegParams(kind="ablation")


# --------------------------------------------------------------------------- helpers
def _fmt_seed(seed: Sequence[float]) -> str:
    return "(" + ", ".join(f"{float(v):.1f}" for v in seed) + ")"


def check_seed_inside(image: sitk.Image, seed_lps: Sequence[float], what: str) -> npt.NDArray[
        np.float64]:
    """Continuous (z, y, x) index of ``seed_lps`` (LPS mm); InputError when it lies outside the
    image's voxel extent (centres +/- half a voxel). ``what`` names the image in the message."""
    seed = np.asarray(seed_lps, dtype=np.float64).reshape(3)
    if not np.all(np.isfinite(seed)):
        raise InputError(f"seed {_fmt_seed(seed)} mm is not finite")
    idx = geometry.lps_to_zyx_index(image, seed)
    shape = geometry.xyz_to_zyx(image.GetSize())
    if np.any(idx < -0.5) or np.any(idx > shape - 0.5):
        raise InputError(f"seed {_fmt_seed(seed)} mm lies outside {what} image")
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
    """Segment the structure around one seed; ``label`` names the seed in messages."""
    spacing = geometry.spacing_zyx(image)
    full_shape = geometry.xyz_to_zyx(image.GetSize()).astype(int)
    pad = p.roi_pad_mm
    while True:
        box = geometry.roi_box_around_lps(image, seed_lps[None], pad)
        sm = _smoothed_roi(image, box, p.smooth_sigma_mm)
        seed_idx = geometry.lps_to_zyx_index(image, seed_lps) - np.asarray(box.lo_zyx, float)
        seed_vox = np.clip(np.rint(seed_idx).astype(np.int64), 0, np.asarray(sm.shape) - 1)
        ball = _ball(sm.shape, seed_idx, max(p.seed_radius_mm, float(spacing.min())), spacing)
        open_faces = [(ax, 0) for ax in range(3) if box.lo_zyx[ax] > 0]
        open_faces += [(ax, -1) for ax in range(3) if box.hi_zyx[ax] < full_shape[ax]]
        result = _grow(sm, seed_vox, ball, spacing, p, label)
        mask, stats, warns = result
        leaked = _touches_open_faces(mask, open_faces)
        if leaked and pad < p.roi_pad_max_mm:
            pad = p.roi_pad_max_mm
            continue
        break
    if leaked:
        raise SegmentationError(
            f"{p.kind} segmentation from seed {label} leaked: the region reaches {pad:.0f} mm "
            f"from the seed (threshold {stats['threshold_hu']:.0f} HU); place the seed inside "
            "the lesion or supply a mask")
    if mask.sum() * geometry.voxel_volume_ml(image) < p.min_volume_ml:
        raise SegmentationError(
            f"{p.kind} segmentation from seed {label} found only "
            f"{mask.sum() * geometry.voxel_volume_ml(image):.2f} ml; is the seed inside the "
            f"{'non-enhancing ablation zone' if p.kind == 'ablation' else 'tumour'}?")
    if any(box.lo_zyx[ax] == 0 and mask.take(0, axis=ax).any() for ax in range(3)) or any(
            box.hi_zyx[ax] == full_shape[ax] and mask.take(-1, axis=ax).any() for ax in range(3)):
        warns.append(f"{p.kind} region from seed {label} touches the image edge; it may be "
                     "truncated")
    stats["roi_pad_mm"] = float(pad)
    return _OneSeed(mask=mask, box=box, stats=stats, warnings=warns)


def _grow(sm: F32, seed_vox: npt.NDArray[np.int64], ball: BoolArray,
          spacing: npt.NDArray[np.float64], p: SegParams,
          label: str) -> tuple[BoolArray, dict[str, float], list[str]]:
    """Threshold learning and region growing on the smoothed ROI ``sm`` (HU)."""
    warns: list[str] = []
    vals = sm[ball]
    if p.kind == "ablation":
        vals = vals[vals > p.gas_hu]
    if vals.size < 3:
        raise SegmentationError(
            f"{p.kind} seed {label} lies in gas/air (no tissue within {p.seed_radius_mm:.0f} mm);"
            " move the seed into the lesion")
    m_in = float(np.median(vals))
    s_in = max(1.4826 * float(np.median(np.abs(vals - m_in))), 3.0)
    half = max(p.init_k * s_in, 10.0)
    lo_gas = -1.0e9  # ablation: gas and needle tracts belong to the zone
    if p.kind == "ablation":
        init = (sm >= lo_gas) & (sm <= m_in + half)
    else:
        init = (sm >= m_in - half) & (sm <= m_in + half)
    init = _component_at(init, seed_vox, ball)
    dist_out = _edt(~init, spacing)
    shell = (dist_out > p.shell_mm[0]) & (dist_out <= p.shell_mm[1])
    shell_vals = sm[shell]
    shell_vals = shell_vals[shell_vals > p.gas_hu]
    if shell_vals.size < 10:
        raise SegmentationError(f"{p.kind} segmentation from seed {label}: no surrounding tissue "
                                "found in the region of interest")
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
    if abs(contrast) < p.warn_contrast_hu:
        warns.append(f"{p.kind} seed {label}: low contrast ({m_in:.0f} HU vs {m_out:.0f} HU "
                     "around); review the mask")
    thr = 0.5 * (m_in + m_out)
    span = max(3.0 * s_in, abs(contrast))
    if p.kind == "ablation":
        region = sm <= thr
    elif contrast > 0:  # hypodense tumour
        region = (sm <= thr) & (sm >= m_in - span)
    else:  # hyperdense tumour
        region = (sm >= thr) & (sm <= m_in + span)
    region = _component_at(region, seed_vox, ball)
    region = _clean(region, seed_vox, ball, spacing, p)
    stats = {
        "seed_median_hu": m_in,
        "seed_spread_hu": s_in,
        "surround_median_hu": m_out,
        "contrast_hu": contrast,
        "threshold_hu": thr,
    }
    return region, stats, warns


def _clean(region: BoolArray, seed_vox: npt.NDArray[np.int64], ball: BoolArray,
           spacing: npt.NDArray[np.float64], p: SegParams) -> BoolArray:
    """Neck cut, hole filling, closing and signed-distance smoothing (all radii in mm)."""
    if not region.any():
        return region
    r = p.neck_radius_mm
    opened = _dilate(_erode(region, r, spacing), r, spacing)
    core = _component_at(opened, seed_vox, ball)
    if core.any():
        # geodesic reconstruction limited to one voxel beyond the opened core: thin bridges
        # (leaks) are cut, the body's own boundary is kept
        region = region & _dilate(core, r + float(spacing.max()), spacing)
        region = _component_at(region, seed_vox, ball)
    region = ndimage.binary_fill_holes(region)
    if p.close_radius_mm > 0:
        pad = int(math.ceil(p.close_radius_mm / spacing.min())) + 1
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
    # extent: farthest mask voxel from the nearest seed region centroid, in mm
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
         what: str) -> SegmentationResult:
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"{what} image must be a 3-D scalar image")
    if len(seeds) == 0:
        raise InputError(f"no seed given for the {kind} segmentation")
    p = SegParams.for_kind(kind)
    pts = [np.asarray(s, dtype=np.float64).reshape(3) for s in seeds]
    for s in pts:
        check_seed_inside(image, s, what)
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
                     what: str = "post-ablation CT") -> SegmentationResult:
    """Ablation-zone mask from one or more seeds (LPS mm) on a contrast-enhanced post CT (HU).

    The zone is the non-enhancing region around each seed; gas bubbles and needle tracts inside
    it are included, the enhancing rim is excluded. Several seeds give the union of their zones
    (confluent zones merge). The mask is UInt8 0/1 on ``image``'s grid.

    Raises InputError when a seed lies outside the image (message names ``what``) or no seed is
    given; SegmentationError when no usable zone is found (seed not in a non-enhancing region,
    region leaks beyond ``roi_pad_max_mm``, or too small). Suspected leaks that still give a
    bounded region become warnings.
    """
    return _run(image, seeds_lps, "ablation", what)


def segment_tumor(image: sitk.Image, seed_lps: Sequence[float], *,
                  what: str = "pre-ablation CT") -> SegmentationResult:
    """Tumour mask from one seed (LPS mm) on a (contrast) CT in HU.

    The lesion may be hypo- or hyper-dense relative to the surrounding parenchyma; the boundary is
    the midpoint iso-surface between the learned lesion and surround intensities. Raises
    InputError for a seed outside the image, SegmentationError when the lesion does not differ
    from its surroundings or the region leaks.
    """
    return _run(image, [seed_lps], "tumor", what)
