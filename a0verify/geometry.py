"""THE place for coordinate conversions.

Conventions
-----------
* Physical space is **LPS, millimetres** (DICOM/ITK). RAS is LPS with x and y negated.
* SimpleITK spacing, origin and indices are **(x, y, z)**; NumPy arrays from
  ``sitk.GetArrayFromImage`` are **(z, y, x)**. Array-index helpers here are named ``*_zyx``.
* ``index`` means continuous (fractional) voxel index; voxel centres sit at integer indices.

No other module should flip axes or build direction matrices by hand.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

FloatArray = npt.NDArray[np.float64]

_LPS_TO_RAS = np.array([-1.0, -1.0, 1.0])


def lps_to_ras(points_lps: npt.ArrayLike) -> FloatArray:
    """Convert points (..., 3) from LPS mm to RAS mm (negate x and y). Inverse of itself."""
    pts = np.asarray(points_lps, dtype=np.float64)
    return pts * _LPS_TO_RAS


ras_to_lps = lps_to_ras


def xyz_to_zyx(v: Sequence[float] | npt.ArrayLike) -> FloatArray:
    """Reverse the last axis: (x, y, z) ordering to (z, y, x) (SimpleITK -> NumPy order)."""
    return np.asarray(v, dtype=np.float64)[..., ::-1].copy()


zyx_to_xyz = xyz_to_zyx


def direction_matrix(image: sitk.Image) -> FloatArray:
    """3x3 direction cosine matrix D of ``image``; column j is the LPS direction of index axis j
    (index axes in (x, y, z) order)."""
    return np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)


def index_to_lps_matrix(image: sitk.Image) -> FloatArray:
    """4x4 homogeneous matrix A with ``lps = A @ [i, j, k, 1]`` for continuous index (x, y, z)."""
    d = direction_matrix(image)
    s = np.asarray(image.GetSpacing(), dtype=np.float64)
    a = np.eye(4)
    a[:3, :3] = d * s[None, :]
    a[:3, 3] = np.asarray(image.GetOrigin(), dtype=np.float64)
    return a


def zyx_index_to_lps_matrix(image: sitk.Image) -> FloatArray:
    """4x4 matrix B with ``lps = B @ [z, y, x, 1]`` for continuous *array* index (z, y, x)."""
    a = index_to_lps_matrix(image)
    b = a.copy()
    b[:3, :3] = a[:3, :3][:, ::-1]
    return b


def index_to_lps(image: sitk.Image, index_xyz: npt.ArrayLike) -> FloatArray:
    """Continuous index (..., 3) in (x, y, z) order to LPS mm (..., 3)."""
    a = index_to_lps_matrix(image)
    idx = np.asarray(index_xyz, dtype=np.float64)
    return idx @ a[:3, :3].T + a[:3, 3]


def lps_to_index(image: sitk.Image, points_lps: npt.ArrayLike) -> FloatArray:
    """LPS mm (..., 3) to continuous index (..., 3) in (x, y, z) order."""
    a = index_to_lps_matrix(image)
    pts = np.asarray(points_lps, dtype=np.float64)
    inv = np.linalg.inv(a[:3, :3])
    return (pts - a[:3, 3]) @ inv.T


def zyx_index_to_lps(image: sitk.Image, index_zyx: npt.ArrayLike) -> FloatArray:
    """Continuous array index (..., 3) in (z, y, x) order to LPS mm (..., 3)."""
    return index_to_lps(image, zyx_to_xyz(index_zyx))


def lps_to_zyx_index(image: sitk.Image, points_lps: npt.ArrayLike) -> FloatArray:
    """LPS mm (..., 3) to continuous array index (..., 3) in (z, y, x) order."""
    return xyz_to_zyx(lps_to_index(image, points_lps))


def spacing_zyx(image: sitk.Image) -> FloatArray:
    """Voxel spacing in mm in array order (z, y, x)."""
    return xyz_to_zyx(image.GetSpacing())


def voxel_volume_ml(image: sitk.Image) -> float:
    """Volume of one voxel in millilitres (cm^3)."""
    return float(np.prod(image.GetSpacing())) / 1000.0


def rotation_matrix(angles_deg: Sequence[float]) -> FloatArray:
    """Rotation about x, then y, then z (extrinsic), angles in degrees; returns 3x3 R."""
    ax, ay, az = np.deg2rad(np.asarray(angles_deg, dtype=np.float64))
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def make_grid(
    size_xyz: Sequence[int],
    spacing_xyz: Sequence[float],
    direction: npt.ArrayLike | None = None,
    center_lps: Sequence[float] = (0.0, 0.0, 0.0),
    pixel_type: int = sitk.sitkUInt8,
) -> sitk.Image:
    """Empty image of ``size_xyz`` voxels whose *geometric centre* lies at ``center_lps``.

    ``direction`` is a 3x3 matrix (columns = LPS directions of the x, y, z index axes);
    identity when None.
    """
    img = sitk.Image([int(s) for s in size_xyz], pixel_type)
    d = np.eye(3) if direction is None else np.asarray(direction, dtype=np.float64).reshape(3, 3)
    img.SetSpacing([float(s) for s in spacing_xyz])
    img.SetDirection(d.ravel().tolist())
    half = (np.asarray(size_xyz, dtype=np.float64) - 1.0) / 2.0
    origin = np.asarray(center_lps, dtype=np.float64) - d @ (half * np.asarray(spacing_xyz))
    img.SetOrigin(origin.tolist())
    return img


def voxel_centers_lps(image: sitk.Image) -> FloatArray:
    """LPS coordinates of every voxel centre, shape (z, y, x, 3)."""
    nx, ny, nz = image.GetSize()
    zz, yy, xx = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
    idx = np.stack([xx, yy, zz], axis=-1).astype(np.float64)
    return index_to_lps(image, idx)


def same_grid(a: sitk.Image, b: sitk.Image, tol_mm: float = 1e-3) -> bool:
    """True when ``a`` and ``b`` have the same size and their voxel centres coincide within
    ``tol_mm`` (checks origin, spacing and direction together, via corner voxels)."""
    if a.GetSize() != b.GetSize() or a.GetDimension() != b.GetDimension():
        return False
    ma, mb = index_to_lps_matrix(a), index_to_lps_matrix(b)
    size = np.asarray(a.GetSize(), dtype=np.float64) - 1
    corners = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)]) * size
    pa = corners @ ma[:3, :3].T + ma[:3, 3]
    pb = corners @ mb[:3, :3].T + mb[:3, 3]
    return bool(np.max(np.abs(pa - pb)) <= tol_mm)


def physical_bounds(image: sitk.Image) -> tuple[FloatArray, FloatArray]:
    """Axis-aligned LPS bounding box (min, max) of the image's voxel *extents* (centres +/-
    half a voxel)."""
    size = np.asarray(image.GetSize(), dtype=np.float64)
    corners = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], dtype=float)
    corners = corners * size - 0.5
    pts = index_to_lps(image, corners)
    return pts.min(axis=0), pts.max(axis=0)


@dataclass(frozen=True)
class IndexBox:
    """Half-open box of array indices in (z, y, x) order: ``arr[box.slices]``."""

    lo_zyx: tuple[int, int, int]
    hi_zyx: tuple[int, int, int]

    @property
    def slices(self) -> tuple[slice, slice, slice]:
        return tuple(slice(lo, hi) for lo, hi in zip(self.lo_zyx, self.hi_zyx, strict=True))  # type: ignore[return-value]

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(h - lo for lo, h in zip(self.lo_zyx, self.hi_zyx, strict=True))  # type: ignore[return-value]

    def faces(self, image_shape_zyx: Sequence[int] | npt.NDArray[np.int64], *,
              on_image_edge: bool) -> list[tuple[int, int]]:
        """Faces ``(axis, 0 | -1)`` of the box (as indices of an array cropped to it) that lie on
        the edge of an image of ``image_shape_zyx`` (``on_image_edge``), or else the open ones
        inside the image, beyond which a region in the crop could continue."""
        lo = [(ax, 0) for ax in range(3) if (self.lo_zyx[ax] == 0) == on_image_edge]
        hi = [(ax, -1) for ax in range(3)
              if (self.hi_zyx[ax] == int(image_shape_zyx[ax])) == on_image_edge]
        return lo + hi

    @property
    def empty(self) -> bool:
        return any(h <= lo for lo, h in zip(self.lo_zyx, self.hi_zyx, strict=True))


def mask_box(mask: sitk.Image, pad: int = 1) -> IndexBox:
    """Array-index box (z, y, x) of the nonzero voxels of ``mask`` padded by ``pad`` voxels
    (clipped to the image). An all-zero mask gives a 1-voxel box at index 0."""
    arr = sitk.GetArrayViewFromImage(mask)
    box = nonzero_index_box(arr)
    if box is None:
        return IndexBox((0, 0, 0), (1, 1, 1))
    return pad_box(box, pad, arr.shape)


def nonzero_index_box(array_zyx: npt.NDArray[np.generic]) -> IndexBox | None:
    """Tight half-open array-index box (z, y, x) of the nonzero voxels of ``array_zyx``; None
    when every voxel is zero (or the array is empty).

    One contiguous pass over the volume (per-slice maxima of the magnitudes), then work
    proportional to the slab that holds the nonzero voxels."""
    a = np.asarray(array_zyx)
    if a.size == 0:
        return None
    flat = a.reshape(a.shape[0], -1)
    if a.dtype == np.bool_:
        per_z = flat.any(axis=1)
    elif np.issubdtype(a.dtype, np.unsignedinteger):
        per_z = flat.max(axis=1) != 0
    else:
        per_z = (flat.max(axis=1) != 0) | (flat.min(axis=1) != 0)
    zs = np.flatnonzero(per_z)
    if zs.size == 0:
        return None
    plane = np.any(a[zs[0]:zs[-1] + 1] != 0, axis=0)
    ys = np.flatnonzero(plane.any(axis=1))
    xs = np.flatnonzero(plane.any(axis=0))
    return IndexBox((int(zs[0]), int(ys[0]), int(xs[0])),
                    (int(zs[-1]) + 1, int(ys[-1]) + 1, int(xs[-1]) + 1))


def roi_box_around_lps(
    image: sitk.Image, points_lps: npt.ArrayLike, pad_mm: float
) -> IndexBox:
    """Array-index box (z, y, x) of ``image`` covering ``points_lps`` (N, 3) padded by
    ``pad_mm`` millimetres in every physical direction, clipped to the image.

    Empty input gives an empty box.
    """
    pts = np.asarray(points_lps, dtype=np.float64).reshape(-1, 3)
    shape = xyz_to_zyx(image.GetSize()).astype(int)
    if pts.size == 0:
        return IndexBox((0, 0, 0), (0, 0, 0))
    lo, hi = pts.min(axis=0) - pad_mm, pts.max(axis=0) + pad_mm
    corners = np.array(
        [[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])]
    )
    idx = lps_to_zyx_index(image, corners)
    ilo = np.clip(np.floor(idx.min(axis=0)).astype(int), 0, shape)
    ihi = np.clip(np.ceil(idx.max(axis=0)).astype(int) + 1, 0, shape)
    return IndexBox(tuple(int(v) for v in ilo), tuple(int(v) for v in ihi))  # type: ignore[arg-type]


def box_of_crop(parent: sitk.Image, sub: sitk.Image) -> IndexBox:
    """The index box (z, y, x) of ``parent`` that ``sub`` covers, for a ``sub`` on the same
    lattice (e.g. made by :func:`crop`): its first voxel centre rounded to the nearest parent
    index, its size unchanged. The box may reach outside the parent when ``sub`` does."""
    lo = np.rint(lps_to_zyx_index(parent, np.asarray(sub.GetOrigin(), float)[None])[0])
    lo_i = tuple(int(v) for v in lo)
    hi_i = tuple(v + n for v, n in zip(lo_i, sub.GetSize()[::-1], strict=True))
    return IndexBox(lo_i, hi_i)  # type: ignore[arg-type]


def crop(image: sitk.Image, box: IndexBox) -> sitk.Image:
    """Sub-image of ``image`` inside ``box`` (keeps physical positions)."""
    lo_xyz = [int(v) for v in box.lo_zyx[::-1]]
    size_xyz = [int(v) for v in box.shape[::-1]]
    return sitk.RegionOfInterest(image, size_xyz, lo_xyz)


def array_to_image(
    array_zyx: npt.ArrayLike, reference: sitk.Image, box: IndexBox | None = None
) -> sitk.Image:
    """Wrap a (z, y, x) array as an image on ``reference``'s grid (or on the sub-grid ``box``)."""
    img = sitk.GetImageFromArray(np.asarray(array_zyx))
    img.SetSpacing(reference.GetSpacing())
    img.SetDirection(reference.GetDirection())
    if box is None:
        img.SetOrigin(reference.GetOrigin())
    else:
        img.SetOrigin(index_to_lps(reference, np.asarray(box.lo_zyx[::-1], float)).tolist())
    return img


def voxel_extent_along(image: sitk.Image, direction_lps: npt.ArrayLike) -> float:
    """Extent (mm) of one voxel cell of ``image`` projected on a unit LPS direction:
    ``sum_j |d . e_j| s_j`` over the index axes j (e_j their LPS directions, s_j the spacings).
    Equals the spacing along an index axis; largest seen along thick slices."""
    d = direction_matrix(image)
    s = np.asarray(image.GetSpacing(), np.float64)
    return float(np.sum(np.abs(np.asarray(direction_lps, np.float64) @ d) * s))


def pad_box(box: IndexBox, pad: int, shape_zyx: Sequence[int]) -> IndexBox:
    """``box`` grown by ``pad`` voxels on every side, clipped to an array of ``shape_zyx``."""
    return IndexBox(
        tuple(max(0, int(a) - pad) for a in box.lo_zyx),  # type: ignore[arg-type]
        tuple(min(int(s), int(b) + pad)  # type: ignore[arg-type]
              for b, s in zip(box.hi_zyx, shape_zyx, strict=True)),
    )


def union_box(a: IndexBox, b: IndexBox) -> IndexBox:
    """Smallest box holding both ``a`` and ``b``."""
    return IndexBox(
        tuple(min(x, y) for x, y in zip(a.lo_zyx, b.lo_zyx, strict=True)),  # type: ignore[arg-type]
        tuple(max(x, y) for x, y in zip(a.hi_zyx, b.hi_zyx, strict=True)),  # type: ignore[arg-type]
    )


@dataclass(frozen=True, eq=False)
class RefinedLattice:
    """A lattice of sample points on a crop of ``grid``: the crop starts at array index
    ``lo_zyx`` (z, y, x) of ``grid``; lattice axis ``i`` runs along crop axis ``perm[i]`` (crop
    axes in z, y, x order); lattice axis 0 is refined ``up`` times (``up`` samples per voxel).

    Lattice index ``(a, b, c)`` sits at grid array index ``lo + (a / up, b, c)`` with the
    components put back in (z, y, x) order. Used for level sets refined across thick slices."""

    grid: sitk.Image
    lo_zyx: tuple[float, float, float]
    perm: tuple[int, int, int] = (0, 1, 2)
    up: int = 1

    def index_to_lps(self, index: npt.ArrayLike) -> FloatArray:
        """Lattice indices (N, 3) to LPS mm (N, 3)."""
        f = np.asarray(index, np.float64).reshape(-1, 3).copy()
        f[:, 0] /= self.up
        idx = np.empty_like(f)
        idx[:, list(self.perm)] = f
        return zyx_index_to_lps(self.grid, idx + np.asarray(self.lo_zyx, np.float64))

    def lps_to_index(self, points_lps: npt.ArrayLike) -> FloatArray:
        """LPS mm (N, 3) to (continuous) lattice indices (N, 3)."""
        pts = np.asarray(points_lps, np.float64).reshape(-1, 3)
        idx = lps_to_zyx_index(self.grid, pts) - np.asarray(self.lo_zyx, np.float64)
        f = idx[:, list(self.perm)]
        f[:, 0] *= self.up
        return f
