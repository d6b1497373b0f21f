"""The scan's tissue rule pinned on hand-made pixels either side of PCam's saturation cut.

PCam kept a patch when its HSV saturation, (max - min) / max of R, G, B, reached
0.07 somewhere. With 8-bit colour next to white the closest values either side
are (255, 255, 238): 17/255 = 0.0667 and (255, 255, 237): 18/255 = 0.0706;
Python's colorsys (the HSV definition, not edge-pcam's code) confirms them.
"""

from __future__ import annotations

import colorsys

import numpy as np
import pytest

from edge_pcam.runtime.tissue import footprints, saturation, tile_maximum, tissue_tiles

GLASS = (245, 245, 245)
JUST_BELOW = (255, 255, 238)  # saturation 17/255
JUST_ABOVE = (255, 255, 237)  # saturation 18/255
PCAM_CUT = 0.07


def _hsv_saturation(rgb) -> float:
    return colorsys.rgb_to_hsv(*(c / 255 for c in rgb))[1]


def test_the_hand_made_colours_lie_either_side_of_pcams_cut():
    assert _hsv_saturation(JUST_BELOW) == pytest.approx(17 / 255) and 17 / 255 < PCAM_CUT
    assert _hsv_saturation(JUST_ABOVE) == pytest.approx(18 / 255) and 18 / 255 > PCAM_CUT
    assert _hsv_saturation(GLASS) == 0.0


def test_saturation_is_hsv_saturation():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (40, 3), dtype=np.uint8)
    rgb[0] = 0  # black: saturation 0, not a division by zero
    expected = [_hsv_saturation(tuple(int(c) for c in p)) for p in rgb]
    np.testing.assert_allclose(saturation(rgb), expected, atol=1e-6)


def _thumbnail(colours: list[tuple[int, int, int]], side: int = 4) -> np.ndarray:
    """One `side` x `side` tile per colour, side by side: glass with one pixel of the colour in the middle."""
    thumb = np.empty((side, side * len(colours), 3), np.uint8)
    thumb[:] = GLASS
    for i, colour in enumerate(colours):
        thumb[side // 2, i * side + side // 2] = colour
    return thumb


def test_one_pixel_just_above_the_cut_makes_a_tile_tissue_and_just_below_does_not():
    thumb = _thumbnail([GLASS, JUST_BELOW, JUST_ABOVE, (230, 160, 200)])  # the last: eosin pink, 0.30
    tissue = tissue_tiles(thumb, rows=1, cols=4, stride=4, tile=4, scale=1.0)
    assert tissue.tolist() == [[False, False, True, True]]


def test_the_rule_holds_at_another_thumbnail_scale():
    # scan tiles of 8 pixels seen on a thumbnail at half resolution: each covers 4 thumbnail pixels
    thumb = np.concatenate([_thumbnail([JUST_ABOVE, JUST_BELOW]), _thumbnail([JUST_BELOW, GLASS])], axis=0)
    tissue = tissue_tiles(thumb, rows=2, cols=2, stride=8, tile=8, scale=0.5)
    assert tissue.tolist() == [[True, False], [False, False]]


def test_a_pixel_one_step_from_black_is_fully_saturated():
    # HSV: (1, 0, 0) has max 1, min 0: saturation 1; black has none
    s = saturation(np.array([[[1, 0, 0], [0, 0, 0], [2, 1, 1]]], np.uint8))
    assert s.tolist() == [[1.0, 0.0, 0.5]] and s.dtype == np.float32  # float32: a thumbnail-sized map


def test_a_tile_exactly_at_the_threshold_is_tissue():
    thumb = np.full((10, 10, 3), 255, np.uint8)
    thumb[2, 2] = (200, 100, 100)  # saturation 100/200 = 0.5 exactly
    assert tissue_tiles(thumb, 1, 1, 10, 10, 1.0, threshold=0.5).tolist() == [[True]]
    above = np.nextafter(np.float32(0.5), np.float32(1))  # the next float32: numpy 1 compares in float32
    assert tissue_tiles(thumb, 1, 1, 10, 10, 1.0, threshold=above).tolist() == [[False]]


def test_footprints_round_to_the_nearest_pixel_and_stay_inside_the_thumbnail():
    # scan tiles of 150 px every 100 px, thumbnail at 1/10: tile i covers [10 i, 10 i + 15) rounded
    starts, ends = footprints(4, 100, 150, 0.1, 25)
    assert starts.tolist() == [0, 10, 20, 24]   # the last start is held inside the 25-pixel thumbnail
    assert ends.tolist() == [15, 25, 25, 25]
    # tiles smaller than a thumbnail pixel still get one: 4 px every 10 px at 1/10 -> 0.4 px
    starts, ends = footprints(3, 10, 4, 0.1, 100)
    assert starts.tolist() == [0, 1, 2] and ends.tolist() == [1, 2, 3]


def test_tile_maximum_on_a_tall_thumbnail_and_on_empty_grids():
    values = np.zeros((5, 30), np.float32)   # 5 rows, 30 columns
    values[4, 0], values[0, 29] = 0.5, 0.25
    # 4 rows of tiles every 100 px at 1/50: rows start at 0, 2, 4 and 6 -> held at row 4 (the last)
    got = tile_maximum(values, 4, 1, 100, 100, 0.02)
    assert got.tolist() == [[0.0], [0.0], [0.5], [0.5]]
    for rows, cols in ((0, 3), (2, 0)):
        empty = tile_maximum(values, rows, cols, 100, 100, 0.02)
        assert empty.shape == (rows, cols) and empty.dtype == np.float32
