"""Margin colours, the same in every picture: the 2-D views, the histogram, the static 3-D
renders and the page's interactive 3-D view and slice scroller (which get :meth:`MarginScale.lut`).

ColorBrewer's diverging RdBu (red = thinner than required, white = exactly the threshold, blue =
more than required) in two linear pieces: [vmin, threshold] fills the red half, [threshold, vmax]
the blue half. ``vmax`` reaches the case's largest margins (99th percentile), so a surface whose
margins all exceed the second threshold still shows its gradations (a fixed threshold ± 5 mm
range painted such a view one dark blue). No matplotlib needed (the render worker stays light).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]

#: ColorBrewer RdBu, 11 classes, dark red .. dark blue (the anchors of matplotlib's "RdBu").
RDBU = ("#67001f", "#b2182b", "#d6604d", "#f4a582", "#fddbc7", "#f7f7f7", "#d1e5f0",
        "#92c5de", "#4393c3", "#2166ac", "#053061")


def _anchors() -> F64:
    return np.array([[int(h[i:i + 2], 16) / 255.0 for i in (1, 3, 5)] for h in RDBU])


@dataclass(frozen=True)
class MarginScale:
    """Colour scale of margins in mm (see the module docstring); ``second_threshold`` is only
    marked (ticks, legend), it does not bend the scale."""

    vmin: float
    threshold: float
    vmax: float
    second_threshold: float | None = None

    def position(self, margin_mm: npt.ArrayLike) -> F64:
        """Position in [0, 1] on the colour ramp (0.5 at the threshold; clipped at the ends)."""
        m = np.asarray(margin_mm, np.float64)
        lo = 0.5 * (m - self.vmin) / max(self.threshold - self.vmin, 1e-9)
        hi = 0.5 + 0.5 * (m - self.threshold) / max(self.vmax - self.threshold, 1e-9)
        return np.clip(np.where(m < self.threshold, lo, hi), 0.0, 1.0)

    def rgb(self, margin_mm: npt.ArrayLike) -> F64:
        """RGB in [0, 1] (..., 3) of margins (mm)."""
        a = _anchors()
        x = self.position(margin_mm) * (len(a) - 1)
        k = np.clip(np.floor(x).astype(int), 0, len(a) - 2)
        f = (x - k)[..., None]
        return a[k] * (1.0 - f) + a[k + 1] * f

    def lut(self, n: int = 256) -> npt.NDArray[np.uint8]:
        """(n, 3) uint8 colours of margins spaced linearly from vmin to vmax (entry i is the
        colour of ``vmin + i (vmax - vmin) / (n - 1)``): a plain linear table for viewers."""
        return np.rint(255.0 * self.rgb(np.linspace(self.vmin, self.vmax, n))).astype(np.uint8)

    def ticks(self) -> list[float]:
        """Values worth labelling: vmin, 0, the threshold(s), vmax (sorted, distinct)."""
        vals = {self.vmin, 0.0, self.threshold, self.vmax}
        if self.second_threshold is not None and self.vmin < self.second_threshold < self.vmax:
            vals.add(self.second_threshold)
        return sorted(v for v in vals if self.vmin <= v <= self.vmax)

    def matplotlib(self) -> tuple[Any, Any]:
        """(colormap, norm) for matplotlib: the LUT over a linear norm from vmin to vmax; grey
        for NaN."""
        from matplotlib.colors import ListedColormap, Normalize

        cmap = ListedColormap(self.lut() / 255.0).with_extremes(bad="0.6")
        return cmap, Normalize(self.vmin, self.vmax)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (the page's viewers): limits, thresholds, LUT as a list."""
        return {"vmin": self.vmin, "vmax": self.vmax, "threshold": self.threshold,
                "second_threshold": self.second_threshold, "ticks": self.ticks(),
                "lut": self.lut().ravel().tolist()}


def margin_scale(threshold_mm: float, second_threshold_mm: float | None = None,
                 margins: Iterable[npt.ArrayLike] | Sequence[float] = ()) -> MarginScale:
    """The scale for a case: from min(0, threshold - max(threshold, 2), lowest margin) to
    max(threshold + max(threshold, 2), second threshold + 5, 99th percentile of the margins),
    rounded outwards to whole mm. ``margins``: per-vertex margins of the surfaces (mm)."""
    t = float(threshold_mm)
    parts = [np.asarray(m, np.float64).ravel() for m in margins]
    vals = np.concatenate(parts) if parts else np.zeros(0)
    vals = vals[np.isfinite(vals)]
    lo = min(0.0, t - max(t, 2.0))
    hi = t + max(t, 2.0)
    if second_threshold_mm is not None:
        hi = max(hi, float(second_threshold_mm) + 5.0)
    if vals.size:
        lo = min(lo, float(vals.min()))
        hi = max(hi, float(np.percentile(vals, 99)))
    return MarginScale(float(math.floor(lo)), t, float(math.ceil(hi)),
                       None if second_threshold_mm is None else float(second_threshold_mm))
