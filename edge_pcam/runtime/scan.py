"""`edge-pcam scan`: triage a whole slide (or a large image) on the device, in bounded memory.

The slide is resampled to PCam's 0.972 µm/px (or read straight from a pyramid
level within 1% of it), cut into 96-pixel tiles at `stride` over the tissue
found by PCam's saturation rule, and classified in batches. Each batch's
results are appended to `tiles.csv` as they come, so a scan that is killed
continues where it stopped when started again with the same settings; the
report `scan.json` (written atomically) appears only once every tile is done.

Outputs in the output folder:
  tiles.csv       row, col, x, y (level-0 pixels of the tile's top-left), probability
  heatmap.png     probabilities over a thumbnail, top tiles boxed, thresholds on the legend
  thumbnail.png   the thumbnail alone
  top/NN.png      the top-k tiles at scan scale (and NN_gradcam.png with `explain`)
  scan.json       slide, settings, model (SHA-256, thresholds), tumour burden, top tiles, timings
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from edge_pcam.errors import EdgePcamError, ModelFileError
from edge_pcam.runtime.metadata import atomic_write_bytes, read_metadata, sha256_file
from edge_pcam.runtime.scan_heatmap import render_heatmap
from edge_pcam.runtime.slide import LEVEL_TOLERANCE, PCAM_MPP, Slide, open_slide
from edge_pcam.runtime.tissue import SATURATION_THRESHOLD, tissue_tiles

TILE = 96
EXACT_LEVEL = 0.01  # a pyramid level within 1% of PCam's µm/px is read as it is, not resampled
THUMBNAIL_PIXELS_PER_STRIDE = 8
THUMBNAIL_SIDE = (1024, 4096)  # the thumbnail's long side, at least / at most
HEATMAP_SIDE = 1200  # the heatmap's long side (the tissue's bounding box), unless finer than the scan
BLOCK_PIXELS = 768  # tiles are cut from regions of about this many scan pixels a side
FSYNC_SECONDS = 5.0
PNG_LEVEL = 3  # zlib level for the PNGs: a third of the default's time, files about 10% larger
LOG_GROUP = 16  # tiles classified (and appended to tiles.csv) together, at least
TILES_FILE, REPORT_FILE = "tiles.csv", "scan.json"
TILES_HEADER = "row,col,x,y,probability"

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class ScanGeometry:
    """Where the tiles are: the scan grid at `mpp` µm/px and its mapping to level-0 pixels."""

    mpp: float  # µm per pixel the tiles are cut at
    level: int  # pyramid level read
    rows: int
    cols: int
    stride: int
    level0_per_scan_pixel: float

    def origin(self, row: int, col: int) -> tuple[int, int]:
        """Level-0 (x, y) of tile (row, col)'s top-left corner."""
        f = self.level0_per_scan_pixel
        return int(round(col * self.stride * f)), int(round(row * self.stride * f))

    @property
    def tile_level0(self) -> float:
        return TILE * self.level0_per_scan_pixel


def plan_geometry(slide: Slide, stride: int) -> ScanGeometry:
    """The scan grid: PCam's µm/px (or an exact pyramid level), tiles of 96 at `stride`."""
    level = slide.best_level(PCAM_MPP)
    level_mpp = slide.level_mpp(level)
    mpp = level_mpp if abs(level_mpp / PCAM_MPP - 1) <= EXACT_LEVEL else PCAM_MPP
    width, height = slide.size_at(mpp)
    rows = (height - TILE) // stride + 1 if height >= TILE else 0
    cols = (width - TILE) // stride + 1 if width >= TILE else 0
    if rows == 0 or cols == 0:
        raise EdgePcamError(f"{slide.path}: {width}x{height} pixels at {mpp:.3f} µm/px is smaller than "
                            f"one {TILE}-pixel tile")
    return ScanGeometry(mpp, level, rows, cols, stride, mpp / slide.require_mpp())


def find_tissue(slide: Slide, geometry: ScanGeometry) -> tuple[np.ndarray, float, np.ndarray]:
    """A thumbnail (about THUMBNAIL_PIXELS_PER_STRIDE pixels per stride), its µm/px, and the
    boolean (rows, cols) grid of tiles that hold tissue by PCam's saturation rule."""
    extent = max(slide.size_at(geometry.mpp))
    thumb_mpp = geometry.mpp * geometry.stride / THUMBNAIL_PIXELS_PER_STRIDE
    thumb_mpp = min(max(thumb_mpp, geometry.mpp * extent / THUMBNAIL_SIDE[1]),
                    max(geometry.mpp, geometry.mpp * extent / THUMBNAIL_SIDE[0]))
    thumbnail = slide.thumbnail(thumb_mpp)
    tissue = tissue_tiles(thumbnail, geometry.rows, geometry.cols, geometry.stride, TILE, geometry.mpp / thumb_mpp)
    return thumbnail, thumb_mpp, tissue


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


def prepare_out(out: Path) -> None:
    """Create the output folder and check that it takes files; a one-line error otherwise."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".edge-pcam-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise EdgePcamError(f"{out}: cannot write the output folder ({exc.strerror or exc})") from None


class TileLog:
    """`tiles.csv`: one line per scanned tile, appended as results come, read back to resume.

    The first line is `# ` and the JSON of the settings that determine the
    results; a file with other settings is refused rather than mixed in.
    `probabilities` is the (rows, cols) grid of results so far, NaN where a
    tile has none: 4 bytes a grid cell, whatever the number of tiles.
    """

    def __init__(self, path: Path, key: dict[str, Any], shape: tuple[int, int]):
        self.path = path
        self.key = key
        self.probabilities = np.full(shape, np.nan, np.float32)
        self._file = None
        self._last_sync = time.monotonic()

    def open(self) -> None:
        header = "# " + json.dumps(self.key, sort_keys=True)
        if self.path.exists() and self._load(header):
            self._file = open(self.path, "a", encoding="utf-8")
        else:
            self._file = open(self.path, "w", encoding="utf-8")
            self._file.write(f"{header}\n{TILES_HEADER}\n")
            self.sync()

    def _load(self, header: str) -> bool:
        """Read the results of an earlier run; False when it died before writing its header."""
        data = self.path.read_bytes()
        complete = data[:data.rfind(b"\n") + 1]  # a line cut by a kill is dropped
        lines = complete.decode("utf-8", errors="replace").splitlines()
        if len(lines) < 2:
            return False
        if lines[0] != header:
            raise EdgePcamError(f"{self.path}: a scan with other settings (slide, model, stride or µm/px) is "
                                "in this folder; use another --out or delete it")
        try:
            for line in lines[2:]:
                row, col, _, _, prob = line.split(",")
                self.probabilities[int(row), int(col)] = float(prob)
        except (ValueError, IndexError):
            raise EdgePcamError(f"{self.path}: damaged line {line!r}; delete the file to scan again") from None
        if len(complete) != len(data):
            with open(self.path, "r+b") as f:
                f.truncate(len(complete))
        return True

    def append(self, cells: list[tuple[int, int]], origins: list[tuple[int, int]], probs: np.ndarray) -> None:
        self._file.write("".join(f"{r},{c},{x},{y},{p:.6f}\n" for (r, c), (x, y), p in zip(cells, origins, probs)))
        self._file.flush()  # in the kernel's hands: survives the process being killed
        for (r, c), p in zip(cells, probs):
            self.probabilities[r, c] = float(f"{p:.6f}")
        if time.monotonic() - self._last_sync > FSYNC_SECONDS:
            self.sync()

    @property
    def done(self) -> np.ndarray:
        """Boolean grid: tiles with a result."""
        return ~np.isnan(self.probabilities)

    def sync(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._last_sync = time.monotonic()

    def close(self) -> None:
        if self._file is not None:
            self.sync()
            self._file.close()
            self._file = None


def iter_tiles(slide: Slide, geometry: ScanGeometry, cells: np.ndarray
               ) -> Iterator[tuple[list[tuple[int, int]], np.ndarray]]:
    """(cells, uint8 tiles) per block of the grid: each block's region is read and resampled once.

    `cells` is a boolean (rows, cols) grid of the tiles to read.
    """
    stride = geometry.stride
    per_block = max(1, (BLOCK_PIXELS - TILE) // stride + 1)
    for r0 in range(0, geometry.rows, per_block):
        for c0 in range(0, geometry.cols, per_block):
            block = cells[r0:r0 + per_block, c0:c0 + per_block]
            if not block.any():
                continue
            rs, cs = np.nonzero(block)
            height = (rs.max()) * stride + TILE
            width = (cs.max()) * stride + TILE
            region = slide.read_scaled(geometry.mpp, c0 * stride, r0 * stride, width, height)
            tiles = np.stack([region[r * stride:r * stride + TILE, c * stride:c * stride + TILE]
                              for r, c in zip(rs, cs)])
            yield [(r0 + int(r), c0 + int(c)) for r, c in zip(rs, cs)], tiles


def prefetch(items: Iterator[Any], depth: int = 2) -> Iterator[Any]:
    """Yield `items`, produced by a background thread up to `depth` ahead (reading overlaps inference).

    An exception in the producer is raised here; stopping early stops the producer.
    """
    import queue
    import threading

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


def top_tiles(probabilities: np.ndarray, k: int, stride: int) -> list[tuple[int, int]]:
    """The k most probable tiles, skipping any that overlaps one already chosen (distinct places).

    Equal probabilities (common with int8 outputs) are ordered by the mean of
    the 3 x 3 neighbourhood, so a tile inside a positive region comes before
    one on its edge.
    """
    p = np.nan_to_num(probabilities, nan=0.0)
    padded = np.pad(p, 1)
    neighbourhood = sum(padded[i:i + p.shape[0], j:j + p.shape[1]] for i in range(3) for j in range(3)) / 9
    order = np.lexsort((-neighbourhood.ravel(), -np.nan_to_num(probabilities, nan=-1).ravel()))
    reach = math.ceil(TILE / stride)  # tiles closer than this many cells overlap
    chosen: list[tuple[int, int]] = []
    for flat in order:
        r, c = np.unravel_index(flat, probabilities.shape)
        if np.isnan(probabilities[r, c]) or len(chosen) == k:
            break
        if all(abs(r - r2) >= reach or abs(c - c2) >= reach for r2, c2 in chosen):
            chosen.append((int(r), int(c)))
    return chosen


def classify_tiles(slide: Slide, geometry: ScanGeometry, todo: np.ndarray, model: Any, log: TileLog,
                   batch: int, progress: Callable[[int], None] | None = None) -> tuple[int, float, float, float]:
    """Classify the tiles marked in `todo` in batches of `batch`, appending each batch to `log`.

    Returns (tiles classified, seconds for the whole loop, CPU seconds of the process (every thread)
    during it, seconds inside the interpreter).
    """
    cells: list[tuple[int, int]] = []
    pending: list[np.ndarray] = []
    done, inference = 0, 0.0
    if progress:
        progress(0)

    def classify(count: int) -> None:
        nonlocal done, inference
        stacked = np.concatenate(pending) if len(pending) > 1 else pending[0]
        t0 = time.perf_counter()
        probs = model.predict(stacked[:count])
        inference += time.perf_counter() - t0
        log.append(cells[:count], [geometry.origin(r, c) for r, c in cells[:count]], probs)
        done += count
        del cells[:count]
        pending[:] = [stacked[count:]] if len(stacked) > count else []
        if progress:
            progress(done)

    started, cpu_started = time.perf_counter(), time.process_time()
    for block_cells, tiles in prefetch(iter_tiles(slide, geometry, todo)):
        cells.extend(block_cells)
        pending.append(tiles)
        while len(cells) >= batch:
            classify(batch)
    if cells:
        classify(len(cells))
    log.sync()
    return done, time.perf_counter() - started, time.process_time() - cpu_started, inference


def scan_slide(image: str | os.PathLike, out: str | os.PathLike, model: str | os.PathLike | None = None, *,
               stride: int = TILE, mpp: float | None = None, batch: int | None = None, top_k: int = 8,
               explain: bool = False, runtime: str = "auto", threads: int | None = None,
               device: str | None = None, reader: str = "auto", progress: Progress | None = None) -> dict[str, Any]:
    """Scan `image` with the .tflite `model` (None: the bundled one) and write the outputs to `out`.

    Returns the report (also written as scan.json). `batch` picks a batched
    conversion beside the model with that batch (None: the largest there is);
    `device` is an Edge TPU for a compiled model (see `load_model`).
    """
    from edge_pcam.runtime.interpreter import load_model

    started = time.perf_counter()
    if stride < 1:
        raise EdgePcamError(f"--stride must be at least 1, got {stride}")
    out = Path(out)
    prepare_out(out)
    slide = open_slide(image, mpp=mpp, reader=reader)
    try:
        slide.require_mpp()
        geometry = plan_geometry(slide, stride)
        base = load_model(model, runtime=runtime, threads=threads, device=device)
        variant = find_batched_variant(base.path, base.metadata, batch)
        runner = load_model(variant, runtime=runtime, threads=threads, device=device) if variant else base
        explainer = (base, _load_companion(base)) if explain else None
        thresholds = base.thresholds
        decision = thresholds.get("decision", 0.5)
        high_spec = thresholds.get("high_specificity")

        thumbnail, thumb_mpp, tissue = find_tissue(slide, geometry)

        model_sha = sha256_file(base.path)
        key = {"slide": str(Path(image).resolve()), "slide_bytes": Path(image).stat().st_size,
               "model_sha256": model_sha, "stride": stride, "mpp": round(geometry.mpp, 6),
               "level": geometry.level, "grid": [geometry.rows, geometry.cols]}
        log = TileLog(out / TILES_FILE, key, (geometry.rows, geometry.cols))
        log.open()
        try:
            resumed = int(log.done.sum())
            total = int(tissue.sum())
            todo = tissue & ~log.done
            if todo.any():
                (out / REPORT_FILE).unlink(missing_ok=True)  # scan.json exists only for a complete scan
            size = max(batch or 1, runner.batch, LOG_GROUP)
            counts = classify_tiles(slide, geometry, todo, runner, log, size,
                                    (lambda done: progress(resumed + done, total)) if progress else None)
        finally:
            log.close()
        computed, tile_seconds, tile_cpu_seconds, inference_seconds = counts
        probabilities = log.probabilities
        values = probabilities[log.done].astype(np.float64)
        top = top_tiles(probabilities, top_k, stride)
        Image.fromarray(thumbnail).save(out / "thumbnail.png", compress_level=PNG_LEVEL)
        picture, picture_mpp, origin = _tissue_picture(slide, geometry, tissue, thumbnail, thumb_mpp)
        render_heatmap(picture, probabilities, stride, TILE, geometry.mpp / picture_mpp, origin,
                       {k: v for k, v in thresholds.items() if k in ("decision", "high_specificity")},
                       top).save(out / "heatmap.png", compress_level=PNG_LEVEL)
        top_entries = _write_top_tiles(slide, geometry, top, probabilities, out, explainer)
        warnings = []
        if batch and batch > 1 and runner.batch != batch:
            warnings.append(f"no conversion with batch {batch} beside {base.path.name}; the interpreter ran "
                            f"batch {runner.batch} (make one with `edge-pcam convert --batch {batch}`)")
        level_mpp = slide.level_mpp(geometry.level)
        if level_mpp > PCAM_MPP * (1 + LEVEL_TOLERANCE):
            warnings.append(f"the slide's finest level is {level_mpp:.3g} µm/px, coarser than PCam's {PCAM_MPP}: "
                            "tiles were upsampled and the model sees less detail than it was trained on")
        if total == 0:
            warnings.append(f"no tissue found: no tile reaches HSV saturation {SATURATION_THRESHOLD} "
                            "(PCam's background rule); nothing was classified")

        def burden(threshold: float | None) -> dict[str, Any] | None:
            if threshold is None:
                return None
            positive = int((values >= threshold).sum())
            return {"threshold": threshold, "positive_tiles": positive,
                    "fraction": positive / len(values) if len(values) else None}

        wall = time.perf_counter() - started
        report = {
            "slide": {**slide.describe(), "level_read": geometry.level,
                      "level_mpp": slide.level_mpp(geometry.level)},
            "settings": {"stride": stride, "tile": TILE, "mpp": geometry.mpp, "pcam_mpp": PCAM_MPP,
                         "tile_level0_pixels": geometry.tile_level0, "batch": size, "top_k": top_k,
                         "explain": explain, "tissue_rule": f"max HSV saturation >= {SATURATION_THRESHOLD}",
                         "thumbnail_mpp": thumb_mpp},
            "model": {"path": str(base.path), "sha256": model_sha, "format": base.format,
                      "thresholds": thresholds, "runtime": runner.runtime,
                      "runtime_version": runner.runtime_version, "threads": runner.threads,
                      "inference_file": str(runner.path), "inference_batch": runner.batch},
            "tiles": {"grid": [geometry.rows, geometry.cols], "tissue": total, "computed": computed,
                      "resumed": resumed},
            "tumour_burden": {"decision": burden(decision), "high_specificity": burden(high_spec),
                              "definition": "positive tissue tiles / tissue tiles"},
            "top_tiles": top_entries,
            "warnings": warnings,
            "timing": {"wall_seconds": wall, "tile_seconds": tile_seconds, "tile_cpu_seconds": tile_cpu_seconds,
                       "inference_seconds": inference_seconds,
                       "tiles_per_second": computed / tile_seconds if computed else None,
                       "definition": "tile_seconds: reading, resampling, inference and logging of the tiles "
                                     "classified in this run; wall_seconds adds opening, tissue mask and outputs"},
            "files": {"tiles": TILES_FILE, "heatmap": "heatmap.png", "thumbnail": "thumbnail.png"},
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        atomic_write_bytes(out / REPORT_FILE, json.dumps(report, indent=1).encode() + b"\n")
        os.chmod(out / REPORT_FILE, 0o644)  # readable like the other outputs (the temporary file was 0600)
        return report
    finally:
        slide.close()


def _tissue_picture(slide: Slide, geometry: ScanGeometry, tissue: np.ndarray, thumbnail: np.ndarray,
                    thumb_mpp: float) -> tuple[np.ndarray, float, tuple[float, float]]:
    """The heatmap's background: the tissue's bounding box (plus two tiles) read at HEATMAP_SIDE pixels.

    Returns the picture, its µm/px and the scan-pixel (x, y) of its top-left;
    the whole thumbnail when there is no tissue.
    """
    if not tissue.any():
        return thumbnail, thumb_mpp, (0.0, 0.0)
    rows, cols = np.nonzero(tissue)
    stride, margin = geometry.stride, 2 * TILE
    width, height = slide.size_at(geometry.mpp)
    x0, y0 = max(0, cols.min() * stride - margin), max(0, rows.min() * stride - margin)
    x1, y1 = min(width, cols.max() * stride + TILE + margin), min(height, rows.max() * stride + TILE + margin)
    mpp = max(geometry.mpp, geometry.mpp * max(x1 - x0, y1 - y0) / HEATMAP_SIDE)
    f = geometry.mpp / mpp
    box = (int(x0 * f), int(y0 * f), max(1, int((x1 - x0) * f)), max(1, int((y1 - y0) * f)))
    return slide.thumbnail(mpp, box), mpp, (box[0] / f, box[1] / f)


def _write_top_tiles(slide: Slide, geometry: ScanGeometry, top: list[tuple[int, int]],
                     probabilities: np.ndarray, out: Path, explainer: tuple[Any, Any] | None
                     ) -> list[dict[str, Any]]:
    """Save each top tile (and its Grad-CAM overlay given a (model, companion)); their report entries."""
    folder = out / "top"
    folder.mkdir(exist_ok=True)
    entries = []
    tiles = [slide.read_scaled(geometry.mpp, c * geometry.stride, r * geometry.stride, TILE, TILE) for r, c in top]
    overlays = _gradcam_overlays(explainer, np.stack(tiles)) if explainer is not None and tiles else None
    for rank, ((r, c), tile) in enumerate(zip(top, tiles), start=1):
        x, y = geometry.origin(r, c)
        entry = {"rank": rank, "row": r, "col": c, "probability": float(probabilities[r, c]),
                 "x": x, "y": y, "size": round(geometry.tile_level0, 2),
                 "centre": [round(x + geometry.tile_level0 / 2, 1), round(y + geometry.tile_level0 / 2, 1)],
                 "image": f"top/{rank:02d}.png"}
        Image.fromarray(tile).save(out / entry["image"])
        if overlays is not None:
            entry["gradcam"] = f"top/{rank:02d}_gradcam.png"
            Image.fromarray(overlays[rank - 1]).save(out / entry["gradcam"])
        entries.append(entry)
    return entries


def _load_companion(model: Any) -> Any:
    """The Grad-CAM companion beside `model`, loaded before the scan so a missing one fails early."""
    from edge_pcam.runtime.gradcam import load_companion

    return load_companion(model)


def _gradcam_overlays(explainer: tuple[Any, Any], tiles: np.ndarray) -> np.ndarray:
    """Grad-CAM overlays of `tiles` by the runtime's Grad-CAM (classifier + its companion file)."""
    from edge_pcam.runtime.gradcam import gradcam_maps, overlay_image

    model, companion = explainer
    _, cams = gradcam_maps(model, companion, tiles)
    return np.stack([overlay_image(tile, cam) for tile, cam in zip(tiles, cams)])
