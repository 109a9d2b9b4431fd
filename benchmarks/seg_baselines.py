"""Baseline segmenters measured against a0verify's in the segmentation benchmark.

Each takes the same inputs as ours (seed points, or a diameter line whose core points become
seeds and whose length bounds the region of interest) and returns a UInt8 mask on the image grid.

* ``confconn`` — SimpleITK ConfidenceConnected (statistics around the seeds, multiplier 2.5,
  4 iterations) on a Gaussian-smoothed ROI, holes filled: the floor.
* ``gac`` — SimpleITK fast marching from the seeds (arrival time 5 mm) as the initial level set,
  then GeodesicActiveContourLevelSet on a sigmoid of the gradient magnitude (alpha/beta from the
  seed statistics), propagation 1.0, curvature 0.5, 400 iterations.
* ``random_walker`` — scikit-image random walker (cg_j) on the smoothed ROI normalised by the
  seed statistics; labels: seeds (3 mm balls) = object; voxels > 60 HU away from the seed median
  at > 5 mm from the seeds (or, with a line, the shell beyond its size) = background.

Graph cuts need PyMaxflow, which is not a dependency; they are not measured.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from a0verify import geometry
from a0verify.segmentation import morph


def _roi(image: sitk.Image, pts: np.ndarray, pad: float) -> tuple[geometry.IndexBox, np.ndarray,
                                                                  np.ndarray]:
    box = geometry.roi_box_around_lps(image, pts, pad)
    sp = geometry.spacing_zyx(image)
    raw = sitk.GetArrayFromImage(geometry.crop(image, box)).astype(np.float32)
    sm = ndimage.gaussian_filter(raw, 0.8 / sp, mode="nearest").astype(np.float32)
    idx = np.array([geometry.lps_to_zyx_index(image, p) for p in pts]) - np.asarray(box.lo_zyx)
    return box, sm, idx


def _paste(image: sitk.Image, box: geometry.IndexBox, roi_mask: np.ndarray) -> sitk.Image:
    full = np.zeros(tuple(int(v) for v in geometry.xyz_to_zyx(image.GetSize())), np.uint8)
    full[box.slices] = roi_mask.astype(np.uint8)
    return geometry.array_to_image(full, image)


def _seed_list(idx: np.ndarray, shape: tuple[int, ...]) -> list[list[int]]:
    v = np.clip(np.rint(idx).astype(int), 0, np.asarray(shape) - 1)
    return [[int(p[2]), int(p[1]), int(p[0])] for p in v]  # (x, y, z) for SimpleITK


def confconn(image: sitk.Image, seeds: Sequence[Sequence[float]], pad: float = 60.0
             ) -> sitk.Image:
    pts = np.asarray(seeds, float)
    box, sm, idx = _roi(image, pts, pad)
    roi = sitk.GetImageFromArray(sm)
    seg = sitk.ConfidenceConnected(roi, seedList=_seed_list(idx, sm.shape), numberOfIterations=4,
                                   multiplier=2.5, initialNeighborhoodRadius=2, replaceValue=1)
    m = ndimage.binary_fill_holes(sitk.GetArrayFromImage(seg) > 0)
    return _paste(image, box, m)


def gac(image: sitk.Image, seeds: Sequence[Sequence[float]], pad: float = 60.0) -> sitk.Image:
    pts = np.asarray(seeds, float)
    box, sm, idx = _roi(image, pts, pad)
    sp = geometry.spacing_zyx(image)
    roi = sitk.GetImageFromArray(sm)
    roi.SetSpacing([float(s) for s in sp[::-1]])
    ball = np.zeros(sm.shape, bool)
    for q in idx:
        ball |= morph.ball(sm.shape, q, 3.0, sp)
    m_in = float(np.median(sm[ball]))
    grad = sitk.GradientMagnitudeRecursiveGaussian(roi, sigma=1.0)
    g = sitk.GetArrayFromImage(grad)
    k1 = float(np.percentile(g[ball], 50))
    k2 = float(np.percentile(g, 90))
    alpha, beta = -(k2 - k1) / 6.0, (k1 + k2) / 2.0
    feat = sitk.Sigmoid(grad, alpha=alpha, beta=beta, outputMaximum=1.0, outputMinimum=0.0)
    fm = sitk.FastMarchingImageFilter()
    fm.SetTrialPoints(_seed_list(idx, sm.shape))
    fm.SetStoppingValue(20.0)
    speed = sitk.Image(feat.GetSize(), sitk.sitkFloat32) + 1.0
    speed.CopyInformation(feat)
    init = fm.Execute(speed) - 5.0  # signed: negative inside 5 mm of the seeds
    gacf = sitk.GeodesicActiveContourLevelSetImageFilter()
    gacf.SetPropagationScaling(1.0)
    gacf.SetCurvatureScaling(0.5)
    gacf.SetAdvectionScaling(1.0)
    gacf.SetMaximumRMSError(0.01)
    gacf.SetNumberOfIterations(400)
    ls = gacf.Execute(sitk.Cast(init, sitk.sitkFloat32), sitk.Cast(feat, sitk.sitkFloat32))
    m = sitk.GetArrayFromImage(ls) < 0
    m = morph.component_touching(m, ball & m) if (ball & m).any() else m
    del m_in
    return _paste(image, box, ndimage.binary_fill_holes(m))


def random_walker(image: sitk.Image, seeds: Sequence[Sequence[float]], pad: float = 40.0,
                  background_radius_mm: float | None = None, beta: float = 2000.0) -> sitk.Image:
    from skimage.segmentation import random_walker as rw

    pts = np.asarray(seeds, float)
    box, sm, idx = _roi(image, pts, pad)
    sp = geometry.spacing_zyx(image)
    ball = np.zeros(sm.shape, bool)
    for q in idx:
        ball |= morph.ball(sm.shape, q, 3.0, sp)
    m_in = float(np.median(sm[ball]))
    labels = np.zeros(sm.shape, np.int32)
    far = morph.edt(~ball, sp) > 5.0
    if background_radius_mm is not None:
        c = idx.mean(axis=0)
        grids = np.ogrid[tuple(slice(0, s) for s in sm.shape)]
        d = np.sqrt(sum(((gg - cc) * s) ** 2 for gg, cc, s in zip(grids, c, sp, strict=True)))
        labels[d > background_radius_mm] = 2
    labels[far & (np.abs(sm - m_in) > 60.0)] = 2
    labels[ball] = 1
    data = np.clip((sm - m_in) / 50.0, -2.0, 2.0)
    out = rw(data, labels, beta=beta, mode="cg_j", tol=1e-3, spacing=sp / sp.min())
    return _paste(image, box, out == 1)
