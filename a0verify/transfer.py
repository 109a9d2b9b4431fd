"""Stage ``transfer``: carry the tumour from the pre grid onto the post grid without losing
sub-voxel information.

Each lesion's mask is turned into a signed distance (mm, **positive inside**) whose zero level lies
half-way between the last inside and the first outside voxel centre (the boundary of the
continuous shape the voxel-centre-inclusion mask stands for); that distance is then resampled
**linearly** through the registration transform onto a sub-box of the post grid. Marching cubes
at level 0 on the result gives a sub-voxel tumour surface in post space. The tumour labels
shown on the post grid (figures, ``segmentation.seg.nrrd``) are the level sets' inside voxels, so
what is shown is what the margin used (one resampling, not two).

Without a transform and with the tumour already on the reference grid nothing is resampled: the
labels themselves go to the margin.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk
from scipy import ndimage

from a0verify import geometry
from a0verify.errors import InputError

F64 = npt.NDArray[np.float64]


@dataclass
class TumorTransfer:
    """Result of :func:`transfer_tumor`.

    ``margin_input`` is what :func:`a0verify.margin.compute_margin` takes: the label image
    itself (same grid, no transform) or ``{lesion id: level set}`` (float32 signed distance in
    mm, positive inside, on sub-boxes of the reference grid). ``labels`` are the lesion labels
    on the reference grid (UInt16; lesion ids as in ``margin_input``).
    """

    margin_input: sitk.Image | dict[int, sitk.Image]
    labels: sitk.Image


def half_voxel_signed_distance(mask_zyx: npt.NDArray[np.bool_],
                               spacing_zyx: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """Signed distance (mm, positive inside) to the boundary of a binary mask, with the boundary
    half-way between inside and outside voxel centres.

    For a voxel whose nearest opposite-class voxel centre lies at vector ``v`` (mm), the value is
    ``|v| - h(v)/2`` with ``h(v)`` the length of one voxel step along ``v`` (exact along the grid
    axes and in 1-D, so a linear interpolant crosses zero at the half-way point). Arrays are
    (z, y, x); ``spacing_zyx`` in mm. An all-inside or all-outside mask raises ValueError.
    """
    m = np.asarray(mask_zyx, bool)
    if m.all() or not m.any():
        raise ValueError("mask must contain both inside and outside voxels")
    sp = np.asarray(spacing_zyx, np.float64)
    out = np.zeros(m.shape, np.float32)
    for sign, region in ((1.0, m), (-1.0, ~m)):
        # distance from voxels of `region` to the nearest voxel centre of the other class
        _, idx = ndimage.distance_transform_edt(region, sampling=sp, return_indices=True)
        grid = np.indices(m.shape)
        v = (idx - grid).astype(np.float64) * sp[:, None, None, None]
        vv = v[:, region]
        d = np.sqrt((vv * vv).sum(axis=0))
        u = vv / np.maximum(d, 1e-12)
        step = 1.0 / np.sqrt(((u / sp[:, None]) ** 2).sum(axis=0))
        out[region] = (sign * (d - 0.5 * step)).astype(np.float32)
    return out


def _jacobian(tx: sitk.Transform, x: F64, h: float = 1.0) -> F64:
    j = np.empty((3, 3))
    for k in range(3):
        e = np.zeros(3)
        e[k] = h
        j[:, k] = (np.asarray(tx.TransformPoint(tuple(x + e)))
                   - np.asarray(tx.TransformPoint(tuple(x - e)))) / (2 * h)
    return j


def invert_points(tx: sitk.Transform, y: F64, x0: F64, iters: int = 30) -> F64:
    """Post-space points x with ``tx(x) = y`` (pre-space points (N, 3), LPS mm), by a Newton-type
    iteration with the Jacobian of ``tx`` at ``x0`` (exact for rigid transforms, converges for
    smooth deformations of moderate gradient)."""
    jinv = np.linalg.inv(_jacobian(tx, np.asarray(x0, np.float64)))
    x = (np.asarray(y, np.float64) - np.asarray(tx.TransformPoint(tuple(x0)))) @ jinv.T + x0
    for _ in range(iters):
        tx_x = np.array([tx.TransformPoint(tuple(p)) for p in x.tolist()])
        r = np.asarray(y) - tx_x
        x = x + r @ jinv.T
        if float(np.abs(r).max()) < 1e-4:
            break
    return x


def tumor_levelsets_to_post(tumor_labels: sitk.Image, post: sitk.Image,
                            transform: sitk.Transform, pad_mm: float = 8.0
                            ) -> dict[int, sitk.Image]:
    """Per-lesion float32 level sets (signed distance in mm, positive inside, boundary at 0) on
    sub-boxes of the post grid.

    ``tumor_labels`` is on the pre grid; lesions are split exactly as
    :func:`a0verify.margin.split_lesions` does. ``transform`` maps post points to pre points.
    Each sub-box covers the lesion plus ``pad_mm``; values beyond the computed band read
    ``-pad_mm`` or less. A lesion that maps outside the post image raises InputError; an empty
    tumour mask raises InputError (from split_lesions).
    """
    from a0verify.margin import split_lesions

    lesions = split_lesions(tumor_labels)
    out: dict[int, sitk.Image] = {}
    sp_pre = geometry.spacing_zyx(tumor_labels)
    margin = pad_mm + 2.0 * float(sp_pre.max())
    for lid, limg in lesions.items():
        arr = sitk.GetArrayViewFromImage(limg) != 0
        pts = geometry.zyx_index_to_lps(limg, np.argwhere(arr).astype(np.float64))
        box = geometry.roi_box_around_lps(limg, pts, margin)
        sub = np.zeros(box.shape, bool)
        sub[...] = arr[box.slices]
        # pad by one voxel of outside so a lesion touching the image border still has a boundary
        sub = np.pad(sub, 1)
        sd = half_voxel_signed_distance(sub, sp_pre)
        lo = np.asarray(box.lo_zyx) - 1
        sd_img = sitk.GetImageFromArray(sd)
        sd_img.SetSpacing(limg.GetSpacing())
        sd_img.SetDirection(limg.GetDirection())
        sd_img.SetOrigin(geometry.zyx_index_to_lps(limg, lo.astype(np.float64)).tolist())
        # post-space box: invert the transform at the pre box corners
        plo, phi = geometry.physical_bounds(sd_img)
        corners = np.array([[x, y, z] for x in (plo[0], phi[0]) for y in (plo[1], phi[1])
                            for z in (plo[2], phi[2])])
        centre_pre = pts.mean(axis=0)
        x0 = invert_points(transform, centre_pre[None], np.zeros(3))[0]
        xc = invert_points(transform, corners, x0)
        pbox = geometry.roi_box_around_lps(post, xc, 2.0 * float(geometry.spacing_zyx(post).max()))
        if pbox.empty:
            raise InputError(f"tumour lesion {lid} maps outside the post image after registration")
        grid = geometry.crop(post, pbox)
        lvl = sitk.Resample(sd_img, grid, transform, sitk.sitkLinear, -float(margin),
                            sitk.sitkFloat32)
        if not (sitk.GetArrayViewFromImage(lvl) > 0).any():
            raise InputError(f"tumour lesion {lid} maps outside the post image after registration")
        out[int(lid)] = lvl
    return out


def labels_from_levelsets(levelsets: dict[int, sitk.Image], reference: sitk.Image) -> sitk.Image:
    """UInt16 label image on ``reference``'s grid: lesion id where its level set is positive
    (the level sets lie on sub-boxes of that grid; a later id wins where two overlap)."""
    out = np.zeros(sitk.GetArrayViewFromImage(reference).shape, np.uint16)
    for lid, lvl in sorted(levelsets.items()):
        box = geometry.box_of_crop(reference, lvl)  # the level sets are crops of reference
        inside = sitk.GetArrayViewFromImage(lvl) > 0
        out[box.slices][inside] = lid
    return geometry.array_to_image(out, reference)


def transfer_tumor(tumor: sitk.Image, reference: sitk.Image,
                   transform: sitk.Transform | None) -> TumorTransfer:
    """Stage ``transfer``: tumour labels (any grid; one lesion per label, a single label split
    into connected components) onto ``reference``'s grid through ``transform`` (reference
    points -> tumour-grid points, ITK convention; identity when None).

    On the same grid without a transform the labels pass through unchanged. Otherwise each
    lesion becomes a sub-voxel level set (:func:`tumor_levelsets_to_post`). Raises InputError
    when a lesion falls outside the reference image.
    """
    if transform is None and geometry.same_grid(tumor, reference):
        return TumorTransfer(margin_input=tumor, labels=tumor)
    tx = transform if transform is not None else sitk.Transform(3, sitk.sitkIdentity)
    levelsets = tumor_levelsets_to_post(tumor, reference, tx)
    return TumorTransfer(margin_input=levelsets,
                         labels=labels_from_levelsets(levelsets, reference))
