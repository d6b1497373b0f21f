"""The scan's progress log (`.scan-progress.csv`), and when a killed scan may resume from it.

    # {"model_sha256": ..., "settings": {...}, "slide_digest": ..., ...}   the resume key
    row,col,x,y,probability,sharpness
    12,40,7680,4608,0.031250,0.212
    ...

Each batch's rows are appended (and flushed) as soon as they are known, so a
killed scan loses at most the batch in flight. A scan resumes from the log
only when its key matches: the same slide by content (`slide_digest`, not
path and size), the same model bytes and the same grid settings. Any other
log is refused, never mixed in. Rows of tiles outside the tissue mask never
count (they are dropped from the log when it is resumed). The log stays
after the scan (a later run on the same slide and model takes every tile from
it); what users read is the plain `tiles.csv` the finished scan writes, and
the key's settings are in `scan.json` too. Before edge-pcam 0.2 the log was
`tiles.csv` itself: such a file is read as the log (and renamed to it when
the scan resumes).

`sharpness` is the tile's focus measure (`runtime.tissue.sharpness`, for the
blur check), so a resumed scan keeps it without reading its tiles again. A log
written before it was kept (columns `row,col,x,y,probability`) is upgraded
when resumed: its rows are kept with the sharpness empty, and the scan reads
those tiles once more to measure it (no inference).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_pcam.errors import EdgePcamError
from edge_pcam.runtime.fileio import atomic_path, atomic_write_text
from edge_pcam.runtime.slide import TIFF_MAGIC

PROGRESS_FILE = ".scan-progress.csv"
PROGRESS_HEADER = "row,col,x,y,probability,sharpness"
UNSHARP_HEADER = "row,col,x,y,probability"  # the columns before the sharpness was kept: upgraded on resume
LEGACY_FILE = "tiles.csv"  # the log's name before edge-pcam 0.2, when it had the key in a comment line
FSYNC_SECONDS = 5.0
KEY_VERSION = 2  # 1: the key held the slide's path and size (edge-pcam 0.1)

# The slide digest: SHA-256 of the size, the first and last MiB, SAMPLES spans spread evenly
# over the file and every TIFF page's tile offset and byte-count tables; files up to
# WHOLE_FILE_BYTES are hashed whole. See `slide_digest`.
DIGEST_METHOD = "sha256-sampled-1"
WHOLE_FILE_BYTES = 64 << 20
EDGE_BYTES = 1 << 20
SAMPLES, SAMPLE_BYTES = 64, 64 << 10
MAX_TIFF_PAGES = 1024


def slide_digest(path: str | os.PathLike, whole_file_bytes: int = WHOLE_FILE_BYTES) -> str:
    """A SHA-256 that tells one slide file from another without reading a multi-GB file whole.

    Hashed: the size; files up to `whole_file_bytes` whole; larger ones their
    first and last MiB (headers, the TIFF directories most writers put there),
    SAMPLES spans of 64 KiB spread evenly over the rest, and for a TIFF the
    offset and byte-count tables of every page's tiles, which change when any
    tile's compressed data changes length (the first MAX_TIFF_PAGES pages).
    About 6 MiB are read whatever the slide's size (15 ms for a 1.8 GiB file
    where SHA-256 of it all takes seconds: benchmarks/slide_digest.py). A change
    it misses has to keep the size, the first and last MiB, every sample and
    every compressed tile's length; another scan, or the same scan re-encoded,
    changes them. Formats whose pixels live in files beside the one named
    (MRXS, VMS) are identified by the named file only.
    """
    path = Path(path)
    size = path.stat().st_size
    digest = hashlib.sha256(f"{DIGEST_METHOD}:{size}:".encode())
    with open(path, "rb") as f:
        if size <= whole_file_bytes:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
            return digest.hexdigest()
        for offset, length in _sample_spans(size):
            f.seek(offset)
            digest.update(f.read(length))
        f.seek(0)
        is_tiff = f.read(4) in TIFF_MAGIC
    if is_tiff:
        for table in _tiff_tile_tables(path):
            digest.update(table)
    return digest.hexdigest()


def _sample_spans(size: int) -> list[tuple[int, int]]:
    """(offset, length) of the first and last EDGE_BYTES and SAMPLES evenly spread spans between them."""
    spans = [(0, EDGE_BYTES)]
    inner = size - 2 * EDGE_BYTES - SAMPLE_BYTES
    spans += [(EDGE_BYTES + inner * i // (SAMPLES - 1), SAMPLE_BYTES) for i in range(SAMPLES)] if inner > 0 else []
    return spans + [(max(0, size - EDGE_BYTES), EDGE_BYTES)]


def _tiff_tile_tables(path: Path) -> list[bytes]:
    """Each TIFF page's tile (or strip) offsets and byte counts, as bytes; none if tifffile cannot parse it."""
    import tifffile

    tables = []
    try:
        with tifffile.TiffFile(path) as tif:
            for index, page in enumerate(tif.pages):
                if index == MAX_TIFF_PAGES:
                    break
                tables.append(np.asarray(page.dataoffsets, np.uint64).tobytes())
                tables.append(np.asarray(page.databytecounts, np.uint64).tobytes())
    except Exception:  # tifffile raises many types; the sampled bytes still identify the file
        return []
    return tables


@dataclass(frozen=True)
class ResumeKey:
    """What decides a tile's probability: the slide's content, the model's bytes and the grid.

    `slide` (the path it was scanned from) is kept for the reader of the file, not compared:
    the same slide moved elsewhere still resumes.
    """

    slide_digest: str
    slide_bytes: int
    model_sha256: str  # of the flatbuffer that ran (its card aside: recalibrated thresholds still resume)
    settings: dict[str, Any]  # tile, stride, mpp, level, grid, slide_mpp, reader
    slide: str = ""
    version: int = KEY_VERSION

    def header(self) -> str:
        return "# " + json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_header(cls, line: str) -> ResumeKey | None:
        """The key in a progress log's first line; None for a line of another version or form."""
        try:
            raw = json.loads(line.removeprefix("# "))
            return cls(**raw) if raw.get("version") == KEY_VERSION else None
        except (ValueError, TypeError, AttributeError):
            return None

    def differences(self, other: ResumeKey) -> list[str]:
        """What differs from `other` (the file's key), in words; empty when a scan may resume."""
        found = []
        if (self.slide_digest, self.slide_bytes) != (other.slide_digest, other.slide_bytes):
            found.append(f"of another slide (its content differs from the {Path(other.slide).name} scanned there)")
        if self.model_sha256 != other.model_sha256:
            found.append(f"by another model (sha256 {other.model_sha256[:12]} there, {self.model_sha256[:12]} now)")
        changed = [(f"{name} {other.settings[name]!r}" if name in other.settings else f"{name} not recorded")
                   + f" there, {value!r} now" for name, value in self.settings.items()
                   if other.settings.get(name) != value]
        if changed:
            found.append(f"with other settings ({'; '.join(changed)})")
        return found


@dataclass
class TileStore:
    """The progress log in the scan folder `folder`: the (rows, cols) grid of results so far, appended to
    as results come.

    `probabilities` is NaN where a tile has no result, `sharpness` where it has
    none yet (8 bytes a grid cell, whatever the number of tiles); `ignored`
    counts rows of an earlier run that fell outside the tissue mask.
    """

    folder: Path
    key: ResumeKey
    probabilities: np.ndarray = field(init=False)
    sharpness: np.ndarray = field(init=False)
    ignored: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.probabilities = np.full(self.key.settings["grid"], np.nan, np.float32)
        self.sharpness = np.full(self.key.settings["grid"], np.nan, np.float32)
        self._file = None
        self._last_sync = time.monotonic()
        self.path = self.folder / PROGRESS_FILE
        legacy = self.folder / LEGACY_FILE
        if not self.path.exists() and _is_legacy_log(legacy):
            self.path = legacy  # read where it is; moved to PROGRESS_FILE by `open`

    def check(self) -> None:
        """Refuse (one line) a log of another slide, model or settings; cheap: reads the first line."""
        lines, _ = self._complete_lines(limit=2)
        if len(lines) < 2:
            return  # an earlier run died before its header was whole: nothing to resume
        found = ResumeKey.from_header(lines[0])
        if found is None:
            raise EdgePcamError(f"{self.path}: written by an earlier edge-pcam (no slide digest), so it cannot "
                                "tell whether this is the same slide; use another --out, or delete it to scan again")
        differences = self.key.differences(found)
        if differences:
            raise EdgePcamError(f"{self.path}: holds a scan {' and '.join(differences)}; use another --out, "
                                f"or delete {self.path.name} to scan again")

    def open(self, tissue: np.ndarray) -> None:
        """Load the results of an earlier run (after `check`), keeping tissue tiles only, and open for appending."""
        self.check()
        if self.path.name != PROGRESS_FILE:
            target = self.folder / PROGRESS_FILE
            os.replace(self.path, target)
            self.path = target
        lines, cut = self._complete_lines()
        if len(lines) >= 2:
            if lines[1] not in (PROGRESS_HEADER, UNSHARP_HEADER):
                raise EdgePcamError(f"{self.path}: unknown columns {lines[1]!r}; delete the file to scan again")
            kept = self._load(lines[2:], tissue, sharp=lines[1] == PROGRESS_HEADER)
            if cut or len(kept) != len(lines) - 2 or lines[1] != PROGRESS_HEADER:
                # a line cut by a kill, rows outside the tissue or repeated, the columns of an earlier
                # version: the file keeps what counts, in today's columns
                atomic_write_text(self.path, "".join(f"{line}\n" for line in (lines[0], PROGRESS_HEADER, *kept)))
            self._file = open(self.path, "a", encoding="utf-8")
        else:
            with atomic_path(self.path) as tmp:
                tmp.write_text(f"{self.key.header()}\n{PROGRESS_HEADER}\n", encoding="utf-8")
            self._file = open(self.path, "a", encoding="utf-8")

    def _complete_lines(self, limit: int | None = None) -> tuple[list[str], bool]:
        """The file's whole lines (at most `limit`), and whether a last line lacks its newline (cut by a kill)."""
        if not self.path.exists():
            return [], False
        with open(self.path, "rb") as f:
            data = b"".join(f.readline() for _ in range(limit)) if limit else f.read()
        complete = data[:data.rfind(b"\n") + 1]
        return complete.decode("utf-8", errors="surrogateescape").splitlines(), len(complete) != len(data)

    def _load(self, rows: list[str], tissue: np.ndarray, sharp: bool) -> list[str]:
        """Fill `probabilities` and `sharpness` from `rows` (`sharp`: with the sharpness column); the rows
        that count (tissue tiles, the last row of each), in today's columns."""
        grid_rows, grid_cols = self.probabilities.shape
        last: dict[tuple[int, int], str] = {}
        for line in rows:
            fields = line.split(",")
            try:
                r, c, p = int(fields[0]), int(fields[1]), float(fields[4])
                s = float(fields[5]) if sharp and fields[5] else math.nan
                whole = len(fields) == (6 if sharp else 5) and (math.isnan(s) or 0.0 <= s < math.inf)
            except (ValueError, IndexError):
                whole = False
            if not (whole and 0 <= r < grid_rows and 0 <= c < grid_cols and 0.0 <= p <= 1.0):
                raise EdgePcamError(f"{self.path}: damaged line {line!r}; delete the file to scan again")
            if not tissue[r, c]:
                self.ignored += 1
                continue
            self.probabilities[r, c], self.sharpness[r, c] = p, s
            last[r, c] = line if sharp else f"{line},"
        return list(last.values())

    def append(self, cells: list[tuple[int, int]], origins: list[tuple[int, int]], probs: np.ndarray,
               sharpness: np.ndarray) -> None:
        """Log each tile's probability and sharpness (the grids keep them as the log reads back)."""
        self._file.write("".join(f"{r},{c},{x},{y},{p:.6f},{s:.6g}\n"
                                 for (r, c), (x, y), p, s in zip(cells, origins, probs, sharpness)))
        self._file.flush()  # in the kernel's hands: survives the process being killed
        for (r, c), p, s in zip(cells, probs, sharpness):
            self.probabilities[r, c], self.sharpness[r, c] = float(f"{p:.6f}"), float(f"{s:.6g}")
        if time.monotonic() - self._last_sync > FSYNC_SECONDS:
            self.sync()

    @property
    def done(self) -> np.ndarray:
        """Boolean grid: tiles with a result."""
        return ~np.isnan(self.probabilities)

    @property
    def unmeasured(self) -> np.ndarray:
        """Boolean grid: tiles with a result but no sharpness (rows of a log from before it was kept)."""
        return self.done & np.isnan(self.sharpness)

    def sync(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._last_sync = time.monotonic()

    def close(self) -> None:
        if self._file is not None:
            self.sync()
            self._file.close()
            self._file = None


def _is_legacy_log(path: Path) -> bool:
    """Whether `path` is a progress log of edge-pcam before 0.2 (tiles.csv with the key in a `#` line)."""
    try:
        with open(path, "rb") as f:
            return f.read(3) == b"# {"
    except OSError:
        return False
