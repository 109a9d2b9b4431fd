"""Static figures for the HTML report (PNG bytes; matplotlib with the Agg backend)."""

from __future__ import annotations

import io

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

from a0verify import geometry


def _png(fig: object) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")  # type: ignore[attr-defined]
    return buf.getvalue()


def triplanar_png(background: sitk.Image | None, tumor: sitk.Image | None,
                  ablation: sitk.Image, point_lps: npt.ArrayLike, title: str = "") -> bytes:
    """Axial, coronal and sagittal slices through ``point_lps`` of the post grid (ablation grid),
    with the ablation contour (green) and tumour contour (yellow); the point marked in red.

    Slices are taken along the grid's index axes; aspect follows the voxel spacing.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ref = ablation
    idx = np.rint(geometry.lps_to_zyx_index(ref, np.asarray(point_lps, float))).astype(int)
    shape = np.asarray(sitk.GetArrayViewFromImage(ref).shape)
    idx = np.clip(idx, 0, shape - 1)
    sp = geometry.spacing_zyx(ref)
    abl = sitk.GetArrayViewFromImage(ablation) != 0
    tum = sitk.GetArrayViewFromImage(tumor) != 0 if tumor is not None else None
    bg = (sitk.GetArrayViewFromImage(sitk.Resample(background, ref, sitk.Transform(),
                                                   sitk.sitkLinear, -1000.0, sitk.sitkFloat32))
          if background is not None else None)
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.4))
    views = [("axial", 0), ("coronal", 1), ("sagittal", 2)]
    for ax, (name, axis) in zip(axes, views, strict=True):
        sl = [slice(None)] * 3
        sl[axis] = slice(int(idx[axis]), int(idx[axis]) + 1)
        t = tuple(sl)
        rest = [a for a in range(3) if a != axis]
        aspect = sp[rest[0]] / sp[rest[1]]
        if bg is not None:
            ax.imshow(np.squeeze(bg[t], axis=axis), cmap="gray", vmin=-160, vmax=240,
                      aspect=aspect, origin="upper" if axis == 0 else "lower")
        else:
            ax.imshow(np.zeros((shape[rest[0]], shape[rest[1]])), cmap="gray", aspect=aspect,
                      origin="upper" if axis == 0 else "lower")
        a2 = np.squeeze(abl[t], axis=axis).astype(float)
        if a2.any():
            ax.contour(a2, levels=[0.5], colors="lime", linewidths=1.2)
        if tum is not None:
            t2 = np.squeeze(tum[t], axis=axis).astype(float)
            if t2.any():
                ax.contour(t2, levels=[0.5], colors="yellow", linewidths=1.2)
        ax.plot(idx[rest[1]], idx[rest[0]], "o", ms=7, mfc="none", mec="red", mew=2)
        ax.set_title(name)
        ax.set_axis_off()
    if title:
        fig.suptitle(title)
    data = _png(fig)
    plt.close(fig)
    return data


def histogram_png(margins_mm: npt.ArrayLike, threshold_mm: float) -> bytes:
    """Histogram of tumour-surface margins (mm) with 0 and the threshold marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = np.asarray(margins_mm, float)
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.hist(m, bins=60, color="steelblue")
    ax.axvline(0.0, color="red", lw=1.5, label="0 mm")
    ax.axvline(threshold_mm, color="orange", lw=1.5, ls="--", label=f"{threshold_mm:g} mm")
    ax.set_xlabel("margin at tumour surface (mm, positive inside the ablation zone)")
    ax.set_ylabel("vertices")
    ax.legend()
    data = _png(fig)
    plt.close(fig)
    return data
