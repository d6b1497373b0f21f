"""The scan's reading side: which regions it reads, the batches it hands the interpreter, that all of
it (reading, cutting, the sharpness) runs in the reading thread, not the interpreter's, and how far
that thread reads ahead.

The slide is an in-memory picture at PCam's µm/px, so a tile's expected pixels are a slice of it.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edge_pcam.runtime.constants import PCAM_MPP
from edge_pcam.runtime.scan import inference
from edge_pcam.runtime.scan.geometry import BLOCK_PIXELS, TILE, plan_geometry
from edge_pcam.runtime.scan.inference import classify_tiles, prefetch, read_batches
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


def made_once_settled(made: list[int], count: int) -> int:
    """How many items the producer has made, once it has made at least `count` and stopped for a moment."""
    deadline = time.monotonic() + 60
    while len(made) < count:
        assert time.monotonic() < deadline, f"the reading thread made {len(made)} items, not {count}"
        time.sleep(0.001)
    time.sleep(0.05)  # room to make one too many
    return len(made)


def test_the_reading_thread_fills_the_queue_then_sleeps_until_it_has_run_low():
    """depth 4, refill 1: four read ahead; nothing more is read while 3 and 2 are left; at 1 left the thread
    reads up to 4 again. Reading one item per item taken (the queue topped up at once: 5, 6, 7, ...) fails
    this. The thread starts with the first item asked for, so that one may be taken before the queue is
    full (the thread then reads on to 4 ready, 5 made) or after (4 made, the thread asleep)."""
    made: list[int] = []

    def items():
        for i in range(12):
            made.append(i)
            yield i

    stream = prefetch(items(), depth=4, refill=1)
    try:
        taken = [next(stream)]
        counts = [made_once_settled(made, 4)]
        expected = {4: [4, 4, 7, 7, 7, 10, 10, 10, 12, 12, 12, 12],  # made after each item is taken
                    5: [5, 5, 5, 8, 8, 8, 11, 11, 11, 12, 12, 12]}.get(counts[0])
        assert expected, f"{counts[0]} made once the first was taken"
        for want in expected[1:]:
            taken.append(next(stream))
            counts.append(made_once_settled(made, want))
        assert taken == list(range(12)) and counts == expected
        assert list(stream) == []
    finally:
        stream.close()


def test_prefetch_refuses_a_refill_that_is_not_below_the_depth():
    for depth, refill in ((4, 4), (2, 5), (3, -1)):
        with pytest.raises(ValueError, match="refill"):
            next(prefetch(iter(range(3)), depth=depth, refill=refill))


def test_cells_outside_the_scan_grid_are_refused_not_left_unread():
    slide = picture_slide(PER_BLOCK, PER_BLOCK)
    geometry = plan_geometry(slide, STRIDE)
    with pytest.raises(ValueError, match="scan grid"):
        next(read_batches(slide, geometry, np.ones((geometry.rows + 1, geometry.cols), bool), 4))


def test_a_failure_while_reading_comes_after_the_items_before_it_and_an_early_stop_stops_the_thread():
    def failing():
        yield from range(5)
        raise OSError("the slide's reader failed part-way")

    got = []
    with pytest.raises(OSError, match="part-way"):
        for item in prefetch(failing(), depth=2, refill=0):
            got.append(item)
    assert got == list(range(5))

    made: list[int] = []

    def endless():
        while True:
            made.append(len(made))
            yield made[-1]

    stream = prefetch(endless(), depth=3, refill=1)
    try:
        assert [next(stream), next(stream)] == [0, 1]
    finally:
        stream.close()
    assert not [t for t in threading.enumerate() if t.name == "scan-reader"]  # joined, not left reading
    assert len(made) <= 2 + 3 + 1  # two taken, three ready, one being read when told to stop
    stopped_at = len(made)
    time.sleep(0.05)
    assert len(made) == stopped_at
