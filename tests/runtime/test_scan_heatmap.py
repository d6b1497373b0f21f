"""The heatmap a person reads: tissue visible where P(tumour) is low, opacity growing with P, regions
outlined where they are, a scale bar of the right length, QC hatching only where cells were left out,
and the legend framing the picture."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from edge_pcam.runtime.scan_heatmap import (HATCH_PERIOD, OUTLINE, QC_COLOURS, add_legend, paint_overlay,
                                            render_heatmap, scale_bar)

CELL = 24  # picture pixels per grid cell: stride = tile = 96 scan pixels at scale 0.25
SCALE = CELL / 96


@dataclass(frozen=True)
class Outline:
    outline: list[tuple[float, float]]
    holes: list[list[tuple[float, float]]]


@pytest.fixture()
def picture():
    rng = np.random.default_rng(2)
    return rng.integers(150, 230, (8 * CELL, 10 * CELL, 3), dtype=np.uint8)  # a textured tissue stand-in


def cell_pixels(image, row, col, margin=3):
    array = np.asarray(image).astype(int)
    return array[row * CELL + margin:(row + 1) * CELL - margin, col * CELL + margin:(col + 1) * CELL - margin]


def test_cells_below_the_triage_threshold_leave_the_tissue_as_it_is(picture):
    grid = np.full((8, 10), np.nan)
    grid[1, 1], grid[1, 2], grid[1, 3], grid[1, 4], grid[1, 5] = 0.0, 0.19, 0.3, 0.6, 1.0
    image = paint_overlay(picture, grid, 96, 96, SCALE, (0, 0), triage=0.2)
    change = {c: np.abs(cell_pixels(image, 1, c) - cell_pixels(picture, 1, c)).mean() for c in range(1, 6)}
    assert change[1] == change[2] == 0  # below triage: untouched
    assert np.array_equal(cell_pixels(image, 5, 5), cell_pixels(picture, 5, 5))  # no tile (NaN): untouched
    assert 0 < change[3] < change[4] < change[5]  # opacity (and colour) grow with P


def test_without_a_triage_threshold_opacity_grows_from_zero(picture):
    grid = np.full((8, 10), np.nan)
    grid[2, 1], grid[2, 2], grid[2, 3] = 0.0, 0.3, 0.9
    image = paint_overlay(picture, grid, 96, 96, SCALE, (0, 0))
    change = [np.abs(cell_pixels(image, 2, c) - cell_pixels(picture, 2, c)).mean() for c in (1, 2, 3)]
    assert change[0] == 0 < change[1] < change[2]


def test_region_outline_is_drawn_where_the_region_is(picture):
    level0_per_scan = 4.0  # a 0.243 µm/px slide scanned at 0.972
    # The region: cells (2..4, 3..6) in level-0 pixels.
    x0, y0, x1, y1 = 3 * 96 * level0_per_scan, 2 * 96 * level0_per_scan, 7 * 96 * level0_per_scan, 5 * 96 * level0_per_scan
    region = Outline([(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)], [])
    image = np.asarray(paint_overlay(picture, np.full((8, 10), np.nan), 96, 96, SCALE, (0, 0), regions=[region],
                                     level0_per_scan_pixel=level0_per_scan)).astype(int)
    left, top, right, bottom = 3 * CELL, 2 * CELL, 7 * CELL, 5 * CELL  # the same box in picture pixels
    for y in range(top + 8, bottom - 8, 5):
        assert image[y, left].tolist() == list(OUTLINE) and image[y, right].tolist() == list(OUTLINE)
    for x in range(left + 8, right - 8, 5):
        assert image[top, x].tolist() == list(OUTLINE) and image[bottom, x].tolist() == list(OUTLINE)
    assert np.array_equal(image[top + 10:bottom - 10, left + 10:right - 10],
                          picture[top + 10:bottom - 10, left + 10:right - 10])  # inside: the tissue itself


def test_scale_bar_length():
    assert scale_bar(0.004, 150) == (0.5, 125.0)  # 1 mm would take 250 pixels
    assert scale_bar(0.02, 150) == (2.5, 125.0)
    assert scale_bar(0.0001, 150) == (0.05, pytest.approx(500.0))  # nothing fits: the shortest step


def test_scale_bar_is_drawn_at_its_length(picture):
    big = np.full((400, 600, 3), 200, np.uint8)
    scan_mpp = 0.972
    scale = 0.972 / 4.0  # picture pixels per scan pixel: 4 µm per picture pixel
    image = np.asarray(paint_overlay(big, np.full((3, 3), np.nan), 96, 96, scale, (0, 0), scan_mpp=scan_mpp))
    black = (image == 0).all(axis=-1)
    runs = [row.sum() for row in black[image.shape[0] // 2:]]
    mm, pixels = scale_bar(0.004, 600 / 4)
    assert mm == 0.5 and max(runs) == round(pixels)  # 0.5 mm = 125 pixels at 4 µm/px


def test_qc_hatching_covers_only_the_cells_left_out(picture):
    grid = np.full((8, 10), np.nan)
    pen = np.zeros((8, 10), bool)
    pen[4:6, 6:9] = True
    image = np.asarray(paint_overlay(picture, grid, 96, 96, SCALE, (0, 0), excluded={"pen mark": pen})).astype(int)
    colour = np.array(QC_COLOURS[0])
    tinted = (np.abs(image - picture.astype(int)).sum(axis=-1) > 0)
    inside = tinted[4 * CELL:6 * CELL, 6 * CELL:9 * CELL]
    assert inside.mean() == pytest.approx(2 / HATCH_PERIOD, abs=0.05)  # lines 2 pixels wide every HATCH_PERIOD
    assert not tinted[:4 * CELL].any() and not tinted[:, :6 * CELL].any() and not tinted[6 * CELL:].any()
    line = image[4 * CELL:6 * CELL, 6 * CELL:9 * CELL][inside]
    assert np.abs(line - colour).mean() < np.abs(picture.astype(int) - colour).mean() / 2  # towards the QC colour


def test_legend_frames_the_picture_and_grows_with_the_key(picture):
    painted = paint_overlay(picture, np.full((8, 10), np.nan), 96, 96, SCALE, (0, 0))
    thresholds = {"triage": 0.1, "decision": 0.5, "high_specificity": 0.9}
    plain = add_legend(painted, thresholds)
    framed = add_legend(painted, thresholds, title="slide.svs", model="m.tflite", qc_reasons=["pen", "blur"],
                        regions=2, top=3)
    assert plain.width == framed.width == picture.shape[1]
    def offset(framed_image):
        array, target = np.asarray(framed_image), np.asarray(painted)
        return [y for y in range(framed_image.height - picture.shape[0] + 1)
                if np.array_equal(array[y:y + picture.shape[0]], target)]

    assert offset(plain) == [0]  # no title or model: no header
    assert len(offset(framed)) == 1 and offset(framed)[0] > 0  # under the header, unchanged
    assert framed.height - offset(framed)[0] > plain.height  # and the key adds lines below


def test_render_heatmap_takes_the_triage_threshold_from_the_thresholds(picture):
    grid = np.full((8, 10), np.nan)
    grid[3, 3] = 0.1
    low = render_heatmap(picture, grid, 96, 96, SCALE, (0, 0), {"triage": 0.2, "decision": 0.5})
    high = render_heatmap(picture, grid, 96, 96, SCALE, (0, 0), {"decision": 0.5})
    assert np.array_equal(cell_pixels(low, 3, 3), cell_pixels(picture, 3, 3))
    assert not np.array_equal(cell_pixels(high, 3, 3), cell_pixels(picture, 3, 3))
