"""The scan's inference loop: which interpreter runs, and tiles read ahead in a thread while it does;
each batch's sharpness (the blur check of `runtime.tissue`) is measured on the same tiles, in that thread,
so the interpreter's thread does nothing but classify and record."""

from __future__ import annotations

import hashlib
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_pcam.errors import ModelFileError
from edge_pcam.runtime.burden import OperatingCharacteristics
from edge_pcam.runtime.metadata import model_bytes, read_metadata
from edge_pcam.runtime.scan.geometry import ScanGeometry, iter_tiles
from edge_pcam.runtime.slide_base import Slide
from edge_pcam.runtime.tissue import sharpness

Record = Callable[[list[tuple[int, int]], np.ndarray, np.ndarray], None]  # cells, probabilities, sharpness

LOG_GROUP = 16  # tiles classified (and appended to the progress log) together, at least


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


def prefetch(items: Iterator[Any], depth: int = 2) -> Iterator[Any]:
    """Yield `items`, produced by a background thread up to `depth` ahead (reading overlaps inference).

    An exception in the producer is raised here; stopping early stops the producer.
    """
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    end = object()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        buffer.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            buffer.put((end, None))
        except BaseException as exc:  # handed to the consumer
            buffer.put((end, exc))

    thread = threading.Thread(target=produce, name="scan-reader", daemon=True)
    thread.start()
    try:
        while True:
            item, error = buffer.get()
            if error is not None:
                raise error
            if item is end:
                return
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            try:
                buffer.get_nowait()
            except queue.Empty:
                thread.join(0.05)


def read_batches(slide: Slide, geometry: ScanGeometry, cells: np.ndarray, size: int) -> Iterator[TileBatch]:
    """The tiles marked in the boolean grid `cells`, `size` at a time (the last batch fewer): contiguous
    uint8 (N, 96, 96, 3) with their cells and sharpness. Everything the scan does to a tile before the
    interpreter sees it happens here, so that `prefetch` runs all of it in the reading thread."""
    cells_pending: list[tuple[int, int]] = []
    pending: list[np.ndarray] = []
    count = 0
    for block_cells, tiles in iter_tiles(slide, geometry, cells):
        cells_pending.extend(block_cells)
        pending.append(tiles)
        count += len(tiles)
        if count < size:
            continue
        stacked = np.concatenate(pending) if len(pending) > 1 else pending[0]
        whole = count - count % size
        for start in range(0, whole, size):  # first-axis slices of a contiguous array are contiguous
            batch = stacked[start:start + size]
            yield TileBatch(cells_pending[start:start + size], batch, sharpness(batch))
        del cells_pending[:whole]
        pending = [stacked[whole:]] if count > whole else []
        count -= whole
    if count:
        stacked = np.concatenate(pending) if len(pending) > 1 else pending[0]
        yield TileBatch(cells_pending, stacked, sharpness(stacked))


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
