"""Catalogue of painted ablation zones on the real HCC_048 CT (benchmark and tests).

Two disjoint random streams: ``dev`` (used while choosing the method's defaults) and
``holdout`` (never tuned on). See :func:`zone_catalogue`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from a0verify.segmentation.synth import Ellipsoid, ZoneSpec

#: Liver locations in HCC_048 (LPS mm) where >= 90 % of a ball of the given radius (mm) is
#: liver-like tissue (85-150 HU), found by scanning the scan once (see the benchmark notes).
HCC048_ANCHORS: dict[int, list[tuple[float, float, float]]] = {
    20: [(-85, -25, -284), (-78, -58, -258), (-52, -58, -266), (-95, 0, -281), (-98, -20, -316),
         (-58, -20, -246)],
    30: [(-80, -38, -276), (-88, -18, -258), (-68, -50, -264), (-88, 18, -276), (-95, -8, -298),
         (-42, -18, -248)],
    40: [(-90, -20, -276), (-75, -35, -266), (-88, -8, -271), (-82, -10, -276), (-90, -18, -284),
         (-72, -8, -261)],
}
#: Beside the gallbladder of HCC_048 (a zone of ~15 mm radius here touches it).
HCC048_NEAR_GALLBLADDER: tuple[float, float, float] = (-92.0, -72.0, -328.0)

SIZE_CLASSES: dict[str, tuple[float, float]] = {  # semi-axis range (mm)
    "XS 1-1.6 cm": (5.0, 8.0), "S 1.6-2.6 cm": (8.0, 13.0), "M 2.6-4 cm": (13.0, 20.0),
    "L 4-6 cm": (20.0, 30.0), "XL 6-10 cm": (30.0, 45.0),
}


@dataclass
class CatalogueCase:
    name: str
    category: dict[str, str]
    spec: ZoneSpec


def zone_catalogue(split: str, n: int) -> list[CatalogueCase]:
    """``n`` varied zone specifications for HCC_048. ``split`` "dev" (used to choose the
    method's defaults) or "holdout" (never tuned on) draws from disjoint random streams; both
    cycle through every size class, shape (1-3 probes), artefact set (gas and tract, metal
    needle with streaks, tract leaving the zone), contrast phase and placement (deep in the
    liver, beside the gallbladder, reaching vessels and the capsule)."""
    base = {"dev": 1000, "holdout": 7000}[split]
    out: list[CatalogueCase] = []
    sizes = list(SIZE_CLASSES)
    for i in range(n):
        rng = np.random.default_rng(base + i)
        size = sizes[i % len(sizes)]
        a_lo, a_hi = SIZE_CLASSES[size]
        big = size.startswith(("L", "XL"))
        n_probes = int(rng.choice([1, 2, 3], p=[0.3, 0.4, 0.3] if big else [0.6, 0.3, 0.1]))
        semi = float(rng.uniform(a_lo, a_hi))
        if n_probes > 1:
            semi /= 1.0 + 0.25 * (n_probes - 1)
        key = 20 if semi * (1 + 0.5 * (n_probes - 1)) <= 20 else \
            (30 if semi * (1 + 0.5 * (n_probes - 1)) <= 30 else 40)
        near_gb = (i % 7 == 3) and semi <= 20
        if near_gb:
            c = np.asarray(HCC048_NEAR_GALLBLADDER) + rng.uniform(-3, 3, 3)
            place = "beside gallbladder"
        else:
            anchors = HCC048_ANCHORS[key]
            c = np.asarray(anchors[int(rng.integers(len(anchors)))], float) + \
                rng.uniform(-4, 4, 3)
            place = "liver"
        probes = []
        d = rng.normal(size=3)
        d /= np.linalg.norm(d)
        for k in range(n_probes):
            off = (k - 0.5 * (n_probes - 1)) * semi * float(rng.uniform(0.7, 1.0)) * d
            axes = semi * rng.uniform(0.75, 1.0, 3)
            axes[0] = semi * float(rng.uniform(1.0, 1.35))  # along the applicator
            probes.append(Ellipsoid((c + off).tolist(), axes.tolist(),
                                    rng.uniform(-60, 60, 3).tolist()))
        art = ["gas+tract", "needle+streaks", "tract exits", "gas only", "clean"][
            int(rng.choice(5, p=[0.35, 0.3, 0.1, 0.15, 0.1]))]
        phase = float(rng.choice([1.0, rng.uniform(0.65, 0.85), rng.uniform(1.05, 1.15)]))
        spec = ZoneSpec(
            probes=probes, zone_hu=float(rng.uniform(30, 45)),
            heterogeneity_hu=float(rng.uniform(3, 10)), rim_mm=float(rng.uniform(1, 3)),
            rim_hu=float(rng.uniform(90, 130)), noise_hu=float(rng.uniform(10, 20)),
            n_gas=0 if art in ("clean", "needle+streaks") and rng.random() < 0.5 else
            int(rng.integers(1, 9)),
            gas_radius_mm=(1.0, float(rng.uniform(1.5, 3.0))),
            tract=art in ("gas+tract", "needle+streaks", "tract exits"),
            tract_exit_mm=float(rng.uniform(15, 30)) if art == "tract exits" else 0.0,
            tract_radius_mm=float(rng.uniform(0.8, 1.8)),
            needle=art == "needle+streaks", streak_hu=float(rng.uniform(150, 450)),
            phase_scale=phase, cooling_mm=float(rng.uniform(1.5, 4.0)), seed=base + i)
        shape = "ellipsoid" if n_probes == 1 else f"{n_probes} overlapping probes"
        out.append(CatalogueCase(
            name=f"{split}{i:02d}", spec=spec,
            category={"size": size, "shape": shape, "artefacts": art,
                      "phase": "portal-venous" if phase == 1.0 else
                      ("darker liver" if phase < 1 else "brighter liver"), "place": place}))
    return out
