"""The border-voxel MAM: the number most published margin tools report, for comparison with the
literature (a0verify's own MAM is the continuous sub-voxel margin).

Definition (voxel centres, each mask on its own grid, LPS mm): the border voxels of a mask are
its voxels with at least one 6-neighbour outside it. For every tumour border voxel, the distance
from its centre to the nearest ablation-zone border-voxel centre, negative when the tumour voxel
centre lies outside the zone (nearest zone voxel). The border-voxel MAM is the smallest of them.
Binary masks stand for shapes whose boundaries lie between voxel centres, so this under-reads the
margin by up to about one voxel (most at thick slices).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from a0verify import geometry
from a0verify.margin import core
from a0verify.margin.lesions import LesionInput
from a0verify.margin.levelset import LevelSet

F64 = npt.NDArray[np.float64]


def tumor_border_voxels_lps(les: LesionInput) -> F64:
    """LPS centres (N, 3) of the lesion's border voxels (level-set input: voxels with a positive
    value, i.e. the mask a voxel tool would use)."""
    mask = les.mask if les.mask is not None else np.asarray(les.values) > 0
    idx = core.boundary_points(mask)
    idx = idx[mask[idx[:, 0], idx[:, 1], idx[:, 2]]]
    return geometry.zyx_index_to_lps(les.grid, idx.astype(np.float64) + np.asarray(les.lo_zyx))


def border_voxel_mam(les: LesionInput, zone: LevelSet) -> float | None:
    """Border-voxel MAM (mm, positive inside the zone; module docstring) of one lesion against
    the zone's binary crop ``zone.mask`` (which must hold the zone boundary nearest to every
    tumour border voxel). None when either mask has no border voxel, or the zone has no
    boundary in the image."""
    from scipy.spatial import cKDTree

    assert zone.mask is not None
    zpts, zcls = zone.boundary_lps()
    zone_border = zpts[zcls]
    tpts = tumor_border_voxels_lps(les)
    if len(zone_border) == 0 or len(tpts) == 0 or zone.frame:
        return None
    idx = np.rint(geometry.lps_to_zyx_index(zone.grid, tpts)
                  - np.asarray(zone.lattice.lo_zyx)).astype(np.int64)  # into zone.mask
    shape = np.asarray(zone.mask.shape)
    ok = np.all((idx >= 0) & (idx < shape), axis=1)
    inside = np.zeros(len(tpts), bool)
    inside[ok] = zone.mask[idx[ok, 0], idx[ok, 1], idx[ok, 2]]
    if inside.all():
        # every value is positive: the minimum is the closest tumour/zone border pair, found
        # from the zone's side (a nearest-neighbour query from inside a hollow shell of zone
        # border voxels is slow; from outside a compact tumour it is fast)
        return float(cKDTree(tpts).query(zone_border)[0].min())
    # some tumour border voxels lie outside the zone: the lowest value is among them
    d, _ = cKDTree(zone_border).query(tpts[~inside])
    return float(-d.max())
