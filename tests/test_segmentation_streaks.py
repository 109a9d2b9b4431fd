"""The directional metal-streak model of the ablation-zone grower
(:mod:`a0verify.segmentation.ablation_steps`) on synthetic axial slices: streaks are straight
lines through a needle's cross-section, so around the needle they are narrow in angle."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from a0verify.segmentation.ablation_steps import (
    StreakModel,
    angular_median,
    mode_marker,
    needle_sections,
    radial_streak_repair,
    seed_modes,
)

SP = np.array([2.5, 0.7, 0.7])


def _grid(n: int = 121) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:n, 0:n] * 0.7
    c = np.array([n // 2, n // 2]) * 0.7
    return yy - c[0], xx - c[1], c


def test_angular_median_removes_radial_streaks_and_keeps_the_zone_edge() -> None:
    dy, dx, c = _grid()
    r = np.hypot(dy, dx)
    img = np.where(r <= 15.0, 40.0, 110.0)  # zone of radius 15 mm around the needle
    streaks = np.zeros_like(img)
    for k, th in enumerate(np.linspace(0, np.pi, 6, endpoint=False)):
        dperp = np.abs(dx * np.sin(th) - dy * np.cos(th))
        sign = 1.0 if k % 2 == 0 else -1.0
        streaks += sign * 300.0 * np.exp(-0.5 * (dperp / 0.6) ** 2) * 6.0 / (6.0 + r)
    out = angular_median((img + streaks).astype(np.float32), c, SP[1:], StreakModel())
    ring = (r > 6.0) & (r < 13.0)  # inside the zone, beyond the streak core
    assert np.abs(img + streaks - img)[ring].max() > 100.0
    assert np.abs(out - img)[ring].max() < 15.0
    # the edge stays where it was: the 75 HU level crosses each axis at 15 +- 1 mm
    for prof in (out[60, 60:], out[60:, 60]):
        cross = np.argmax(prof > 75.0) * 0.7
        assert abs(cross - 15.0) <= 1.0, cross


def test_angular_median_leaves_far_tissue_alone() -> None:
    dy, dx, c = _grid()
    rng = np.random.default_rng(0)
    img = (100.0 + 20.0 * rng.standard_normal(dy.shape)).astype(np.float32)
    out = angular_median(img, c, SP[1:], StreakModel(reach_mm=(10.0, 20.0)))
    far = np.hypot(dy, dx) > 20.0
    np.testing.assert_array_equal(out[far], img[far])


def test_radial_repair_fills_notches_and_cuts_spikes_around_enclosed_metal() -> None:
    dy, dx, _ = _grid()
    r = np.hypot(dy, dx)
    th = np.arctan2(dy, dx)
    zone = r <= 15.0
    notch = (np.abs(np.angle(np.exp(1j * (th - 0.5)))) < 0.08) & (r < 11.0)  # bright streak
    spike = (np.abs(np.angle(np.exp(1j * (th + 2.0)))) < 0.05) & (r < 35.0)  # dark streak
    region = np.stack([zone & ~notch | spike] * 3)
    metal = np.zeros_like(region)
    metal[:, 60:62, 60:62] = True
    out = radial_streak_repair(region, metal, SP, StreakModel())
    assert not (notch & ~out).any()  # the notch is filled
    assert not (zone & ~out).any()
    assert (out & ~zone & ~spike).sum() <= 0.01 * out.sum()  # nothing else added
    # the spike is cut off: what stays connected to the zone ends within the tolerance
    lab, _ = ndimage.label(out[1], structure=np.ones((3, 3), bool))
    body = lab == lab[60, 60]
    assert not (body & spike & (r > 15.0 + StreakModel().tol_mm + 1.0)).any()
    assert (region[1] & spike & (r > 20.0)).sum() > 20


def test_needle_sections_ignore_other_metal_in_the_slice() -> None:
    """A needle's cross-section (1 mm radius) is found beside a rib's cortex (an arc 25 mm
    long, 30 mm away) and beside a needle lying in the plane, broken into pieces 3 mm apart:
    neither hides it nor counts as a needle (the old whole-slice centroid read 21 mm)."""
    dy, dx, c = _grid()
    needle = np.hypot(dy - 3.0, dx + 2.0) <= 1.0
    rib = (np.abs(np.hypot(dy, dx - 60.0) - 35.0) < 1.0) & (np.abs(dy) < 12.5)
    broken = (np.abs(dy + 25.0) < 0.8) & (dx > -30.0) & (dx < 10.0) & (np.mod(dx, 5.0) < 2.0)
    got = needle_sections(needle | rib, SP[1:], StreakModel())
    assert len(got) == 1
    np.testing.assert_allclose(got[0][0], c + np.array([3.0, -2.0]), atol=0.1)
    assert got[0][1] <= 1.5
    assert len(needle_sections(needle | rib | broken, SP[1:], StreakModel())) == 1
    assert needle_sections(rib | broken, SP[1:], StreakModel()) == []
    assert needle_sections(np.zeros_like(rib), SP[1:], StreakModel()) == []


def test_radial_repair_is_the_same_with_a_rib_in_the_slice() -> None:
    """The directional repair around a needle inside the zone does not depend on other metal
    in the slice (a rib's cortex outside the zone used to switch it off)."""
    dy, dx, _ = _grid()
    r = np.hypot(dy, dx)
    th = np.arctan2(dy, dx)
    notch = (np.abs(np.angle(np.exp(1j * (th - 0.5)))) < 0.08) & (r < 11.0)
    region = np.stack([(r <= 15.0) & ~notch] * 3)
    metal = np.zeros_like(region)
    metal[:, 60:62, 60:62] = True
    rib = (np.abs(np.hypot(dy, dx - 60.0) - 35.0) < 1.0) & (np.abs(dy) < 12.5)
    alone = radial_streak_repair(region, metal, SP, StreakModel())
    assert not (notch & ~alone[1]).any()
    np.testing.assert_array_equal(
        radial_streak_repair(region, metal | rib[None], SP, StreakModel()), alone)


def test_radial_repair_leaves_slices_where_the_metal_is_outside_the_zone() -> None:
    dy, dx, _ = _grid()
    region = np.stack([np.hypot(dy - 20.0, dx) <= 12.0] * 2)  # zone beside the needle
    metal = np.zeros_like(region)
    metal[:, 60:62, 60:62] = True
    out = radial_streak_repair(region, metal, SP, StreakModel())
    np.testing.assert_array_equal(out, region)


def test_seed_modes_find_the_dark_streak_plateau_and_the_zone_strongest_first() -> None:
    """Beside a needle on the zone's axis: a dark plateau (-10 HU) of radius 4 mm around the
    click inside a 35 HU zone. Near the click (5 mm ball, weights of sigma 2.5 mm) the dark
    plateau is the strongest mode; the zone is the other; both are found, within 2 HU, and
    the marker of each holds only voxels within the stated HU of it."""
    rng = np.random.default_rng(0)
    zz, yy, xx = np.mgrid[0:9, 0:41, 0:41].astype(float)
    seed = np.array([4.0, 20.0, 20.0])
    r = np.sqrt(sum(((a - c) * s) ** 2 for a, c, s in zip((zz, yy, xx), seed, SP, strict=True)))
    sm = np.where(r <= 4.0, -10.0, 35.0) + rng.normal(0.0, 2.0, r.shape)
    art = np.zeros(r.shape, bool)
    modes = seed_modes(sm.astype(np.float32), art, seed, SP, 5.0, 2.5, 8.0)
    assert len(modes) == 2, modes
    assert abs(modes[0] - -10.0) <= 2.0 and abs(modes[1] - 35.0) <= 2.0, modes
    for m in modes:
        mk = mode_marker(sm.astype(np.float32), art, seed, SP, 5.0, m, 20.0)
        assert mk.sum() >= 10 and np.all(np.abs(sm[mk] - m) <= 20.0)
    # one plateau only: one mode; everything artefact: none
    flat = (35.0 + rng.normal(0.0, 2.0, r.shape)).astype(np.float32)
    assert len(seed_modes(flat, art, seed, SP, 5.0, 2.5, 8.0)) == 1
    assert seed_modes(flat, np.ones_like(art), seed, SP, 5.0, 2.5, 8.0) == []
