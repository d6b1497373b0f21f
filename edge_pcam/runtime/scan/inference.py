"""The scan's inference loop: which interpreter runs, and tiles read ahead in a thread while it does;
each batch's sharpness (the blur check of `runtime.tissue`) is measured on the same tiles, in that thread,
so the interpreter's thread does nothing but classify and record."""

from __future__ import annotations

import hashlib
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_pcam.errors import ModelFileError
from edge_pcam.runtime.burden import OperatingCharacteristics
from edge_pcam.runtime.metadata import model_bytes, read_metadata
from edge_pcam.runtime.scan.geometry import TILE, ScanGeometry, iter_regions
from edge_pcam.runtime.slide_base import Slide
from edge_pcam.runtime.tissue import sharpness

Record = Callable[[list[tuple[int, int]], np.ndarray, np.ndarray], None]  # cells, probabilities, sharpness

LOG_GROUP = 16  # tiles classified (and appended to the progress log) together, at least
PREFETCH_DEPTH = 8  # batches the reading thread has ready at most
PREFETCH_REFILL = 1  # it reads again once no more than this many are left


@dataclass(frozen=True)
class ScanModels:
    """The classifier asked for, the file that runs it (a batched conversion of it, or itself),
    the Grad-CAM companion when the top tiles are explained, and the operating characteristics
    of the classifier's card (None for a file made before they were stored)."""

    base: Any  # PatchModel
    runner: Any  # PatchModel
    companion: Any | None
    flatbuffer_sha256: str  # of the runner's model bytes (its card aside): what computes the probabilities
    rates: OperatingCharacteristics | None = None


@dataclass(frozen=True)
class TileBatch:
    """Tiles read for the interpreter: their grid cells, the uint8 (N, 96, 96, 3) pixels, their sharpness."""

    cells: list[tuple[int, int]]
    tiles: np.ndarray
    sharpness: np.ndarray


@dataclass(frozen=True)
class LoopTiming:
    """What the inference loop did: tiles classified, wall and process-CPU seconds, seconds in the interpreter."""

    tiles: int
    seconds: float
    cpu_seconds: float
    inference_seconds: float


def load_scan_models(model: Any, runtime: str, threads: int | None, device: str | None, batch: int | None,
                     explain: bool) -> ScanModels:
    """Load `model` (None: the bundled one), the batched conversion beside it and, with `explain`, its companion.

    The card's operating characteristics are read here, so a malformed block stops the scan before it starts.
    """
    from edge_pcam.runtime.interpreter import load_model

    base = load_model(model, runtime=runtime, threads=threads, device=device)
    variant = find_batched_variant(base.path, base.metadata, batch)
    runner = load_model(variant, runtime=runtime, threads=threads, device=device) if variant else base
    companion = None
    if explain:  # loaded before the scan so that a missing companion fails early
        from edge_pcam.runtime.gradcam import load_companion
        companion = load_companion(base)
    digest = hashlib.sha256(model_bytes(Path(runner.path).read_bytes())).hexdigest()
    return ScanModels(base, runner, companion, digest, OperatingCharacteristics.from_card(base.metadata))


def find_batched_variant(model_path: Path, metadata: dict[str, Any], batch: int | None) -> Path | None:
    """A file beside `model_path` converted from the same source, same format, with a fixed batch > 1.

    `batch` asks for that batch; None takes the largest found.
    """
    source = (metadata.get("source_model") or {}).get("sha256")
    if not source:
        return None
    found: list[tuple[int, Path]] = []
    for path in sorted(model_path.parent.glob("*.tflite")):
        if path.resolve() == model_path.resolve():
            continue
        try:
            meta = read_metadata(path)
        except ModelFileError:
            continue
        size = int(meta.get("batch") or 1)
        if (size > 1 and meta.get("format") == metadata.get("format")
                and (meta.get("source_model") or {}).get("sha256") == source):
            found.append((size, path))
    if batch is not None:
        return next((p for size, p in found if size == batch), None)
    return max(found)[1] if found else None


def prefetch(items: Iterator[Any], depth: int = PREFETCH_DEPTH, refill: int = PREFETCH_REFILL) -> Iterator[Any]:
    """Yield `items`, produced by a background thread up to `depth` ahead (reading overlaps inference).

    Once `depth` items wait, the thread sleeps until no more than `refill`
    are left, then reads on up to `depth` again. Woken for several items at
    a time, it finds its data still in the caches; woken for each item, it
    would start every batch with caches the interpreter has just filled, and
    cost more CPU per tile. An exception in the producer is raised here,
    after the items before it; stopping early stops the producer.
    """
    if not 0 <= refill < depth:
        raise ValueError(f"prefetch needs 0 <= refill < depth, got refill {refill} and depth {depth}")
    ready: deque[Any] = deque()
    changed = threading.Condition()
    state: dict[str, Any] = {"finished": False, "error": None, "stopped": False}

    def produce() -> None:
        try:
            iterator = iter(items)
            while True:
                with changed:
                    if len(ready) >= depth:
                        changed.wait_for(lambda: len(ready) <= refill or state["stopped"])
                    if state["stopped"]:
                        return
                try:
                    item = next(iterator)  # read without the lock: the consumer takes what is ready meanwhile
                except StopIteration:
                    return
                with changed:
                    ready.append(item)
                    changed.notify_all()
        except BaseException as exc:  # handed to the consumer
            state["error"] = exc
        finally:
            with changed:
                state["finished"] = True
                changed.notify_all()

    thread = threading.Thread(target=produce, name="scan-reader", daemon=True)
    thread.start()
    try:
        while True:
            with changed:
                changed.wait_for(lambda: ready or state["finished"])
                if not ready:
                    break
                item = ready.popleft()
                if len(ready) <= refill:
                    changed.notify_all()
            yield item
        if state["error"] is not None:
            raise state["error"]
    finally:
        with changed:
            state["stopped"] = True
            changed.notify_all()
        thread.join()


def read_batches(slide: Slide, geometry: ScanGeometry, cells: np.ndarray, size: int) -> Iterator[TileBatch]:
    """The tiles marked in the boolean grid `cells`, `size` at a time (the last batch fewer): contiguous
    uint8 (N, 96, 96, 3) with their cells and sharpness. Everything the scan does to a tile before the
    interpreter sees it happens here, so that `prefetch` runs all of it in the reading thread. Each tile
    is copied once, from its region straight into its batch."""
    if cells.shape != geometry.shape:  # cells outside the grid would never be read, and their batch never sent
        raise ValueError(f"the grid of cells to read is {cells.shape}, not the scan grid's {geometry.shape}")
    left = int(np.count_nonzero(cells))
    batch = np.empty((min(size, left), TILE, TILE, 3), np.uint8)
    batch_cells: list[tuple[int, int]] = []
    for block_cells, region, offsets in iter_regions(slide, geometry, cells):
        for cell, (y, x) in zip(block_cells, offsets):
            batch[len(batch_cells)] = region[y:y + TILE, x:x + TILE]
            batch_cells.append(cell)
            if len(batch_cells) == len(batch):
                yield TileBatch(batch_cells, batch, sharpness(batch))
                left -= len(batch)
                batch = np.empty((min(size, left), TILE, TILE, 3), np.uint8)
                batch_cells = []


def classify_tiles(slide: Slide, geometry: ScanGeometry, todo: np.ndarray, model: Any, record: Record,
                   batch: int, progress: Callable[[int], None] | None = None) -> LoopTiming:
    """Classify the tiles marked in the boolean grid `todo` in batches of `batch`, and measure their sharpness.

    Each batch's (cells, probabilities, sharpness) go to `record` as soon as they
    are known (the store appends them to the progress log); `progress` gets the
    count done so far. The interpreter's thread only classifies and records:
    reading, cutting and the sharpness are done ahead in the reading thread.
    """
    done, inference = 0, 0.0
    if progress:
        progress(0)
    started, cpu_started = time.perf_counter(), time.process_time()
    for group in prefetch(read_batches(slide, geometry, todo, batch)):
        t0 = time.perf_counter()
        probs = model.predict(group.tiles)
        inference += time.perf_counter() - t0
        record(group.cells, probs, group.sharpness)
        done += len(group.cells)
        if progress:
            progress(done)
    return LoopTiming(done, time.perf_counter() - started, time.process_time() - cpu_started, inference)


def measure_sharpness(slide: Slide, geometry: ScanGeometry, cells: np.ndarray,
                      record: Callable[[list[tuple[int, int]], np.ndarray], None]) -> None:
    """Read the tiles marked in the boolean grid `cells` and give `record` their (cells, sharpness),
    LOG_GROUP at a time: the blur check for tiles classified by an earlier version."""
    for group in prefetch(read_batches(slide, geometry, cells, LOG_GROUP)):
        record(group.cells, group.sharpness)
