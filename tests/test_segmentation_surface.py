"""The partial-volume surface layer of the organ (:func:`trim_dark_sheets`): where the liver meets
fat or bile, a layer one or two voxels thick has the zone's HU and spreads along the organ's
surface from a zone that touches it. Synthetic (z, y, x) volumes at 2.5 x 0.7 x 0.7 mm."""

from __future__ import annotations

import numpy as np
import pytest

from a0verify.segmentation.ablation_steps import trim_dark_sheets

SP = np.array([2.5, 0.7, 0.7])
FAT_X = 20  # x index where fat ends and the liver begins
LO_HU = 20.0  # the zone's lower threshold


def _scene(dark: str = "fat") -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(smoothed HU, region, the zone's ball, the sheet): a zone of radius 10 mm touching the
    liver's surface, with a 1.4 mm sheet along that surface reaching 25 mm beyond it in y."""
    z, y, x = np.indices((24, 100, 90)).astype(float)
    sm = np.full(z.shape, 110.0, np.float32)
    if dark == "fat":
        sm[x < FAT_X] = -100.0
    elif dark == "streak":  # a dark line one voxel wide (a metal streak), no tissue
        sm[:, 50, : FAT_X] = -100.0
    elif dark == "speck":  # a dark patch of 0.2 ml
        sm[11:13, 45:55, 10:20] = -100.0
    c = np.array([12, 40, FAT_X + 10.0 / 0.7])
    d = np.sqrt(((z - c[0]) * SP[0]) ** 2 + ((y - c[1]) * SP[1]) ** 2 + ((x - c[2]) * SP[2]) ** 2)
    ball = (d <= 10.0) & (x >= FAT_X)
    sheet = (x >= FAT_X) & (x < FAT_X + 2) & (np.abs(z - 12) <= 3) & (y >= 40)
    sheet &= y <= 40 + 36 / 0.7
    return sm, ball | sheet, ball, sheet & ~ball


def _trim(sm: np.ndarray, region: np.ndarray, metal: np.ndarray | None = None) -> np.ndarray:
    art = np.zeros(region.shape, bool)
    return trim_dark_sheets(region, sm, art, art if metal is None else metal, LO_HU, SP,
                            open_mm=3.0, near_mm=6.0, metal_reach_mm=30.0)


def test_the_surface_sheet_along_fat_is_trimmed_and_the_zone_kept() -> None:
    sm, region, ball, sheet = _scene("fat")
    out = _trim(sm, region)
    far = sheet & (np.abs(np.indices(sheet.shape)[1] - 40) * SP[1] > 12.0)  # beyond the zone
    assert far.sum() > 300
    assert not (out & far).any()
    assert (out & ball).sum() >= 0.97 * ball.sum()
    assert not (out & ~region).any()


@pytest.mark.parametrize("dark", ["none", "streak", "speck"])
def test_no_dark_tissue_nothing_trimmed(dark: str) -> None:
    """The trim answers to dark *tissue* (fat, bile): without it, or when what is dark is a
    one-voxel streak or a small patch, the region comes back unchanged."""
    sm, region, _, _ = _scene(dark)
    assert np.array_equal(_trim(sm, region), region)


def test_nothing_trimmed_near_metal() -> None:
    """Within the streaks' reach of metal the border is the streak repair's."""
    sm, region, _, _ = _scene("fat")
    metal = np.zeros(region.shape, bool)
    metal[12, 60, 40] = True
    out = _trim(sm, region, metal)
    d = np.sqrt(sum(((g - c) * s) ** 2 for g, c, s in zip(np.indices(region.shape),
                                                           (12, 60, 40), SP, strict=True)))
    near = d <= 30.0 - 6.0  # no dark tissue counted within 6 mm of these
    assert (region & near).sum() > 1000
    assert np.array_equal(out & near, region & near)
    assert (out & ~near).sum() < (region & ~near).sum()  # beyond the reach: trimmed


def test_empty_region_is_returned_as_is() -> None:
    sm, region, _, _ = _scene("fat")
    empty = np.zeros_like(region)
    assert not _trim(sm, empty).any()
