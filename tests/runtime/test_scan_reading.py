"""The scan's reading side: which regions it reads, the batches it hands the interpreter, and that all of
it (reading, cutting, the sharpness) runs in the reading thread, not the interpreter's.

The slide is an in-memory picture at PCam's µm/px, so a tile's expected pixels are a slice of it.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from edge_pcam.runtime.constants import PCAM_MPP
from edge_pcam.runtime.scan import inference
from edge_pcam.runtime.scan.geometry import BLOCK_PIXELS, TILE, plan_geometry
from edge_pcam.runtime.scan.inference import classify_tiles, read_batches
from edge_pcam.runtime.slide_base import WHITE, Level, Slide
from edge_pcam.runtime.tissue import sharpness

STRIDE = TILE
PER_BLOCK = (BLOCK_PIXELS - TILE) // STRIDE + 1  # grid cells a block spans


class PictureSlide(Slide):
    """A slide held in memory at PCam's µm/px; every region asked of `read_scaled` is recorded."""

    reader = "picture"

    def __init__(self, picture: np.ndarray):
        self.path = Path("picture")
        self.picture = picture
        self.levels = [Level(picture.shape[1], picture.shape[0], 1.0)]
        self.mpp, self.mpp_source = PCAM_MPP, "test"
        self.regions: list[tuple[int, int, int, int]] = []

    def read_region(self, level: int, x: int, y: int, width: int, height: int) -> np.ndarray:
        out = np.full((height, width, 3), WHITE, np.uint8)
        part = self.picture[max(0, y):y + height, max(0, x):x + width]
        out[max(0, -y):max(0, -y) + part.shape[0], max(0, -x):max(0, -x) + part.shape[1]] = part
        return out

    def read_scaled(self, mpp: float, x: int, y: int, width: int, height: int) -> np.ndarray:
        self.regions.append((x, y, width, height))
        return super().read_scaled(mpp, x, y, width, height)


def picture_slide(rows: int, cols: int) -> PictureSlide:
    rng = np.random.default_rng(7)
    return PictureSlide(rng.integers(0, 256, (rows * STRIDE, cols * STRIDE, 3), np.uint8))


def expected_tile(slide: PictureSlide, row: int, col: int) -> np.ndarray:
    return slide.picture[row * STRIDE:row * STRIDE + TILE, col * STRIDE:col * STRIDE + TILE]


def test_batches_hold_every_marked_tile_once_at_its_cell_with_its_own_sharpness():
    slide = picture_slide(2 * PER_BLOCK + 1, 2 * PER_BLOCK + 2)  # blocks cut at the grid's edges too
    geometry = plan_geometry(slide, STRIDE)
    marked = np.random.default_rng(3).random(geometry.shape) < 0.6
    size = 7  # divides neither a block's tile count nor the total
    batches = list(read_batches(slide, geometry, marked, size))

    assert [len(b.cells) for b in batches[:-1]] == [size] * (len(batches) - 1)
    assert 1 <= len(batches[-1].cells) <= size
    cells = [cell for b in batches for cell in b.cells]
    assert sorted(cells) == sorted(zip(*np.nonzero(marked)))  # each marked tile once, nothing else
    for b in batches:
        assert b.tiles.dtype == np.uint8 and b.tiles.flags.c_contiguous and len(b.tiles) == len(b.cells)
        for (row, col), tile, value in zip(b.cells, b.tiles, b.sharpness):
            assert np.array_equal(tile, expected_tile(slide, row, col)), (row, col)
            assert value == pytest.approx(sharpness(expected_tile(slide, row, col)[None])[0], rel=1e-5)


def test_each_region_read_is_the_bounding_box_of_its_blocks_marked_tiles():
    slide = picture_slide(PER_BLOCK, PER_BLOCK)  # one block
    geometry = plan_geometry(slide, STRIDE)
    marked = np.zeros(geometry.shape, bool)
    marked[PER_BLOCK - 2, PER_BLOCK - 1] = marked[PER_BLOCK - 1, PER_BLOCK - 2] = True  # the bottom-right corner
    batches = list(read_batches(slide, geometry, marked, 16))

    top, left = (PER_BLOCK - 2) * STRIDE, (PER_BLOCK - 2) * STRIDE
    assert slide.regions == [(left, top, STRIDE + TILE, STRIDE + TILE)]  # not the whole block from (0, 0)
    assert sorted(batches[0].cells) == [(PER_BLOCK - 2, PER_BLOCK - 1), (PER_BLOCK - 1, PER_BLOCK - 2)]


def test_the_interpreters_thread_only_classifies_reading_and_sharpness_run_ahead_in_another(monkeypatch):
    slide = picture_slide(PER_BLOCK + 2, PER_BLOCK + 2)
    geometry = plan_geometry(slide, STRIDE)
    marked = np.ones(geometry.shape, bool)
    threads: dict[str, set[int]] = {"read": set(), "sharpness": set(), "predict": set(), "record": set()}
    read_scaled, measure = slide.read_scaled, inference.sharpness

    def reading(*args):
        threads["read"].add(threading.get_ident())
        return read_scaled(*args)

    def measuring(tiles):
        threads["sharpness"].add(threading.get_ident())
        return measure(tiles)

    class Model:
        def predict(self, tiles: np.ndarray) -> np.ndarray:
            threads["predict"].add(threading.get_ident())
            return (tiles.mean(axis=(1, 2, 3)) / 255).astype(np.float32)

    recorded: dict[tuple[int, int], tuple[float, float]] = {}

    def record(cells, probs, sharp):
        threads["record"].add(threading.get_ident())
        recorded.update({cell: (p, s) for cell, p, s in zip(cells, probs, sharp)})

    monkeypatch.setattr(slide, "read_scaled", reading)
    monkeypatch.setattr(inference, "sharpness", measuring)
    timing = classify_tiles(slide, geometry, marked, Model(), record, 16)

    here = {threading.get_ident()}
    assert threads["predict"] == threads["record"] == here
    assert threads["read"] and threads["sharpness"] and not (threads["read"] | threads["sharpness"]) & here
    assert timing.tiles == len(recorded) == marked.sum()
    row, col = geometry.rows - 1, geometry.cols - 1  # each result at its own cell
    tile = expected_tile(slide, row, col)
    assert recorded[row, col] == pytest.approx((tile.mean() / 255, sharpness(tile[None])[0]), rel=1e-5)
