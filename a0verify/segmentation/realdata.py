"""Real contoured tumours for tests and benchmarks, and RECIST lines measured on masks.

``lits117()`` reads LiTS case 117 as shipped in the PyPI package
``liver-ct-segmentation-package`` 1.6.0 (``data/img_117.mrc``, ``data/lab_117.mrc``: a 128^3
resampled crop around the liver, labels 1 liver, 2 tumour). LiTS is CC BY-NC-SA research data:
it is read from the installed package at run time and never copied into this repository. Install
it for tests with ``pip install --no-deps liver-ct-segmentation-package==1.6.0 mrcfile`` (the
package itself depends on torch, which is not needed to read its data).

The crop's voxel size is not recorded. We assume **1.6 mm isotropic**: the lumbar vertebral
pitch in the crop is ~21 voxels (discs at axis-2 indices 42, 64, 85, 106) and the T12-L2 pitch
is ~33-35 mm; axis 2 of the MRC array runs cranio-caudally and becomes the image's z axis. Dice
does not depend on the assumption; the mm-valued parameters do, so the benchmark also runs at 1.2
and 2.0 mm.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from a0verify import geometry

LITS_PACKAGE = "liver_ct_segmentation_package"
LITS_SPACING_MM = 1.6


@dataclass
class RealTumor:
    label: int  # connected-component id in the label map
    mask: sitk.Image  # UInt8 0/1 on the image grid
    volume_ml: float
    line_lps: tuple[list[float], list[float]]  # RECIST long axis (border voxel centres)
    diameter_mm: float
    touches_crop_edge: bool


def lits117_files() -> tuple[Path, Path] | None:
    """Paths of the LiTS 117 image and label MRC files, or None when the package (or mrcfile)
    is not installed."""
    spec = importlib.util.find_spec(LITS_PACKAGE)
    if spec is None or not spec.submodule_search_locations or \
            importlib.util.find_spec("mrcfile") is None:
        return None
    d = Path(next(iter(spec.submodule_search_locations))) / "data"
    img, lab = d / "img_117.mrc", d / "lab_117.mrc"
    return (img, lab) if img.is_file() and lab.is_file() else None


def lits117(spacing_mm: float = LITS_SPACING_MM) -> tuple[sitk.Image, sitk.Image] | None:
    """(CT Int16 HU, labels UInt8) of LiTS 117 on an isotropic ``spacing_mm`` grid (identity
    direction, origin 0), or None when the data is not installed."""
    files = lits117_files()
    if files is None:
        return None
    import mrcfile

    with mrcfile.open(files[0], permissive=True) as f:
        img = np.asarray(f.data, dtype=np.float32).transpose(2, 0, 1)
    with mrcfile.open(files[1], permissive=True) as f:
        lab = np.asarray(f.data).astype(np.uint8).transpose(2, 0, 1)
    ref = geometry.make_grid(img.shape[::-1], (spacing_mm,) * 3)
    image = geometry.array_to_image(np.clip(np.rint(img), -1024, 3071).astype(np.int16), ref)
    return image, geometry.array_to_image(lab, ref)


def recist_line(mask: npt.NDArray[np.bool_], image: sitk.Image
                ) -> tuple[list[float], list[float], float]:
    """Longest in-plane diameter of ``mask`` (z, y, x) over its axial slices, between border
    voxel centres, as a radiologist measures it for RECIST: (end A LPS, end B LPS, length mm).
    Empty mask: ValueError."""
    sp = geometry.spacing_zyx(image)
    best: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], float] | None = None
    for z in np.nonzero(mask.any(axis=(1, 2)))[0]:
        pts = np.argwhere(mask[z]).astype(np.float64) * sp[1:]
        if len(pts) >= 3:
            try:
                pts = pts[ConvexHull(pts).vertices]
            except QhullError:
                pass
        d = np.linalg.norm(pts[:, None] - pts[None], axis=-1)
        i, j = np.unravel_index(int(np.argmax(d)), d.shape)
        if best is None or d[i, j] > best[2]:
            best = (np.r_[z, pts[i] / sp[1:]], np.r_[z, pts[j] / sp[1:]], float(d[i, j]))
    if best is None:
        raise ValueError("empty mask has no diameter")
    a = geometry.zyx_index_to_lps(image, best[0]).tolist()
    b = geometry.zyx_index_to_lps(image, best[1]).tolist()
    return a, b, best[2]


def lits117_tumors(image: sitk.Image, labels: sitk.Image, min_ml: float = 1.0
                   ) -> list[RealTumor]:
    """Connected tumour components (label 2) of at least ``min_ml``, each with its RECIST line,
    largest first."""
    arr = sitk.GetArrayViewFromImage(labels) == 2
    cc, n = ndimage.label(arr, structure=np.ones((3, 3, 3), bool))
    vox = geometry.voxel_volume_ml(labels)
    sizes = np.bincount(cc.ravel())
    out = []
    for i in range(1, n + 1):
        if sizes[i] * vox < min_ml:
            continue
        m = cc == i
        a, b, length = recist_line(m, image)
        edge = bool(m[0].any() or m[-1].any() or m[:, 0].any() or m[:, -1].any()
                    or m[:, :, 0].any() or m[:, :, -1].any())
        out.append(RealTumor(i, geometry.array_to_image(m.astype(np.uint8), labels),
                             float(sizes[i] * vox), (a, b), length, edge))
    return sorted(out, key=lambda t: -t.volume_ml)
