"""Suspicious regions: a planted block's outline, diameter, area and centroid in level-0 pixels and mm,
overlapping tiles, holes, diagonal neighbours, isolated false positives, tissue edges, size classes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edge_pcam.runtime.regions import find_regions, regions_from_mask, size_category

MPP0 = 0.486  # a 20x slide: 2 level-0 pixels per scan pixel at 0.972 µm/px
TILE0 = 192.0  # 96 scan pixels


def grid_origin(stride0: float):
    return lambda r, c: (c * stride0, r * stride0)


def shoelace(ring) -> float:
    xs, ys = np.array(ring).T
    return float((xs[:-1] * ys[1:] - xs[1:] * ys[:-1]).sum() / 2)


def planted(shape=(32, 32), block=(10, 18, 5, 13), inside=0.99, outside=0.02) -> np.ndarray:
    p = np.full(shape, outside)
    r0, r1, c0, c1 = block
    p[r0:r1, c0:c1] = inside
    return p


def test_size_classes_follow_camelyon17():
    assert size_category(0.0) == "negative"
    assert size_category(0.05) == "itc" and size_category(0.2) == "itc"
    assert size_category(0.2001) == "micromet" and size_category(2.0) == "micromet"
    assert size_category(2.0001) == "macromet"


def test_planted_block_outline_diameter_area_and_centroid():
    regions = find_regions(planted(), 0.5, grid_origin(TILE0), TILE0, TILE0, MPP0)
    assert len(regions) == 1
    region = regions[0]
    # Rows 10-17, columns 5-12: x from 5*192 to 13*192, y from 10*192 to 18*192 (level-0 pixels).
    assert region.outline == [(960.0, 1920.0), (2496.0, 1920.0), (2496.0, 3456.0), (960.0, 3456.0), (960.0, 1920.0)]
    assert shoelace(region.outline) > 0 and region.holes == []
    side_mm = 8 * TILE0 * MPP0 / 1000
    assert region.diameter_mm == pytest.approx(side_mm * math.sqrt(2))
    assert region.area_mm2 == pytest.approx(side_mm ** 2)
    assert region.centroid == pytest.approx((1728.0, 2688.0))
    assert region.tiles == 64 and region.mean_probability == pytest.approx(0.99) and region.max_probability == 0.99
    assert size_category(region.diameter_mm) == "micromet"


def test_overlapping_tiles_stand_for_the_stride_cell_around_their_centre():
    stride0 = TILE0 / 2  # stride 48 at scan scale
    regions = find_regions(planted(), 0.5, grid_origin(stride0), TILE0, stride0, MPP0)
    assert len(regions) == 1
    # Tile (r, c) has its centre at (c*96 + 96, r*96 + 96); its cell is the 96-pixel square around it.
    xs, ys = np.array(regions[0].outline).T
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (5 * 96 + 48, 12 * 96 + 144, 10 * 96 + 48, 17 * 96 + 144)
    assert regions[0].diameter_mm == pytest.approx(8 * stride0 * MPP0 / 1000 * math.sqrt(2))


def test_isolated_and_small_groups_of_false_positives_are_not_regions():
    p = np.full((20, 20), 0.02)
    p[2, 2] = p[2, 10] = p[15, 4] = 0.99  # isolated
    p[10:12, 14:16] = 0.99  # a 2 x 2 group: too little to tell from chance
    p[14:19, 10:15] = 0.45  # a patch just below the threshold around 3 confident tiles: smoothing makes
    p[16, 11:14] = 0.99  # seeds of it, but it holds too few positive tiles to be a region
    assert find_regions(p, 0.5, grid_origin(TILE0), TILE0, TILE0, MPP0) == []
    p[5:8, 5:8] = 0.99  # a 3 x 3 group: a region, 3 tiles across corner to corner
    regions = find_regions(p, 0.5, grid_origin(TILE0), TILE0, TILE0, MPP0)
    assert len(regions) == 1 and regions[0].tiles == 9
    assert regions[0].diameter_mm == pytest.approx(3 * math.sqrt(2) * TILE0 * MPP0 / 1000)


def test_noisy_block_keeps_its_size_and_stray_positives_stay_out():
    rng = np.random.default_rng(0)
    normal = rng.choice([0.01, 0.05, 0.2, 0.7], size=(32, 32), p=[0.5, 0.3, 0.1, 0.1])  # 10% false positives
    tumour = rng.choice([0.1, 0.4, 0.8, 0.99], size=(32, 32), p=[0.08, 0.07, 0.4, 0.45])  # 15% missed
    truth = np.zeros((32, 32), bool)
    truth[8:20, 10:22] = True
    p = np.where(truth, tumour, normal)
    regions = find_regions(p, 0.5, grid_origin(TILE0), TILE0, TILE0, MPP0)
    assert len(regions) == 1
    true_mm = 12 * math.sqrt(2) * TILE0 * MPP0 / 1000
    assert abs(regions[0].diameter_mm / true_mm - 1) < 0.15
    assert 0.8 < regions[0].area_mm2 / (144 * (TILE0 * MPP0 / 1000) ** 2) < 1.2


def test_a_hole_is_a_clockwise_ring_and_not_counted_in_the_area():
    p = planted(block=(5, 16, 5, 16))
    p[8:13, 8:13] = 0.02  # a 5 x 5 hole in an 11 x 11 block
    regions = find_regions(p, 0.5, grid_origin(TILE0), TILE0, TILE0, MPP0)
    assert len(regions) == 1 and len(regions[0].holes) == 1
    region, hole = regions[0], regions[0].holes[0]
    assert shoelace(region.outline) > 0 > shoelace(hole)
    assert hole[0] == hole[-1] and region.outline[0] == region.outline[-1]
    pixel_mm2 = (MPP0 / 1000) ** 2
    assert (shoelace(region.outline) + shoelace(hole)) * pixel_mm2 == pytest.approx(region.area_mm2)
    centre = (10.5 * TILE0, 10.5 * TILE0)
    xs, ys = np.array(hole).T
    assert xs.min() < centre[0] < xs.max() and ys.min() < centre[1] < ys.max()


def test_diagonal_neighbours_make_one_region_with_one_ring():
    mask = np.zeros((12, 12), bool)
    mask[2:6, 2:6] = mask[6:10, 6:10] = True
    p = np.where(mask, 0.99, 0.02)
    regions = regions_from_mask(mask, p, 0.5, grid_origin(TILE0), TILE0, TILE0, MPP0)
    assert len(regions) == 1 and regions[0].tiles == 32 and regions[0].holes == []
    pinch = (6 * TILE0, 6 * TILE0)
    assert regions[0].outline.count(pinch) == 2  # the ring passes the shared corner twice
    assert shoelace(regions[0].outline) * (MPP0 / 1000) ** 2 == pytest.approx(regions[0].area_mm2)
    assert regions[0].diameter_mm == pytest.approx(8 * math.sqrt(2) * TILE0 * MPP0 / 1000)


def test_tissue_edge_and_order_by_diameter():
    p = np.full((30, 30), np.nan)  # NaN: not tissue
    p[5:25, 5:25] = 0.02
    p[7:11, 15:19] = 0.99  # a 4 x 4 block inside
    p[19:25, 5:11] = 0.99  # a 6 x 6 block in the tissue's corner, found after the other one
    regions = find_regions(p, 0.5, grid_origin(TILE0), TILE0, TILE0, MPP0)
    assert [r.tiles for r in regions] == [36, 16]
    assert regions[0].outline[0] == (5 * TILE0, 19 * TILE0)
    assert regions[0].diameter_mm > regions[1].diameter_mm
    assert regions[0].mean_probability == pytest.approx(0.99)
