"""Parameters of the ablation-zone grower (:mod:`a0verify.segmentation.ablation`): mm, HU,
ml; defaults chosen on the development split of the segmentation benchmark
(``benchmarks/RESULTS_segmentation.md``). Its own module so the grower stays one readable
page."""

from __future__ import annotations

from dataclasses import dataclass, field

from a0verify.segmentation import ablation_steps as steps


@dataclass(frozen=True)
class AblationParams:
    """Parameters (mm, HU, ml). Defaults chosen on the development set of the benchmark."""

    smooth_sigma_mm: float = 0.8
    roi_pad_mm: float = 35.0
    roi_growth: float = 1.7
    roi_pad_max_mm: float = 120.0
    seed_radius_mm: float = 5.0
    seed_core_mm: float = 2.5
    seed_core_tol_hu: float = 30.0  # seed ball vs its core: above, a zone smaller than the ball
    seed_mode_hu: float = 20.0
    seed_mode_bw_hu: float = 8.0
    gas_hu: float = -250.0
    metal_hu: float = 1200.0
    artefact_margin_mm: float = 1.5
    shell_mm: tuple[float, float] = (1.5, 6.0)
    init_k: float = 2.5
    lo_k: float = 3.0
    lo_min_hu: float = 15.0
    lo_max_hu: float = 30.0
    min_contrast_hu: float = 15.0
    warn_contrast_hu: float = 30.0
    neck_radius_mm: float = 3.0
    close_radius_mm: float = 1.5
    sheet_open_mm: float = 3.0  # thin parts (gone after this opening) along darker tissue ...
    sheet_open_fraction: float = 0.3  # ... at most this x the zone's depth at the seed ...
    sheet_near_mm: float = 6.0  # ... within this: the organ's partial-volume surface layer
    artefact_close_mm: float = 3.0
    band_mm: float = 2.0
    refine_iterations: int = 2
    edge_threshold: bool = False
    stability_step: float = 0.15
    flood_ratio: float = 1.5  # wider/region volume above which the flood's threads are cut
    stability_thread_mm: float = 2.0  # ... when thinner than twice this (noise percolation)
    stability_reach_mm: float = 10.0  # the flood counted this far from the region
    max_zone_ml: float = 500.0  # the largest clinical zone (10 cm, three probes); above: poor
    max_volume_ml: float = 1500.0  # 3 x max_zone_ml; above: refused
    max_artefact_ml: float = 10.0
    streaks: steps.StreakModel = field(default_factory=steps.StreakModel)
    metal_avoid_mm: float = 5.0
    neck_fraction: float = 0.15
    lobe_ratios: tuple[float, float] = (0.15, 1.0)  # a detached lobe this x the kept volume
    neck_max_mm: float = 6.0
    min_volume_ml: float = 0.05
    leak_elongation: float = 20.0
    enclosure_elongation: float = 8.0  # above: keep only what the organ encloses
    enclosure_reach_mm: float = 7.0  # ... also when what it does not reaches this far out
    mode_switch_ratio: float = 0.6  # another seed mode must be this much more compact
    mode_max_fill: float = 0.6  # ... and not flood this share of the first region of interest
