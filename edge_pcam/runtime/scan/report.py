"""The scan's report: typed sections, read by the CLI and the exports, written as `scan.json`.

`ScanReport.to_json()` gives scan.json's layout (its keys and their order are
the file format users read); `ScanReport.from_json()` reads one back. A new
section is a new field with a default of None, written by `to_json` only when
set, so files without it still read: `slide_result` (the slide-level result of
`runtime.slide_result`: burden with its interval, regions in mm, size class,
tissue QC) came so. `intended_use` opens every file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np

from edge_pcam.runtime.constants import PCAM_MPP
from edge_pcam.runtime.scan.geometry import TILE, ScanGeometry
from edge_pcam.runtime.slide_base import Slide
from edge_pcam.runtime.slide_result import RESEARCH_USE, SlideResult

REPORT_FILE = "scan.json"
INTENDED_USE = f"{RESEARCH_USE}: not a diagnostic device"
BURDEN_POINTS = ("decision", "high_specificity")  # the model's thresholds the burden is given at
BURDEN_DEFINITION = "positive tissue tiles / tissue tiles (the tiles that passed quality control)"
TIMING_DEFINITION = ("tile_seconds: reading, resampling, inference and logging of the tiles classified in this "
                     "run; wall_seconds adds opening, tissue mask and outputs")


@dataclass(frozen=True)
class SlideInfo:
    """The slide as read: file, reader, level sizes, µm/px (and where it came from), the level scanned."""

    path: str
    reader: str
    width: int
    height: int
    levels: tuple[tuple[int, int], ...]
    mpp: float
    mpp_source: str
    level_read: int
    level_mpp: float
    digest: str  # `store.slide_digest`: identifies the slide by content
    bytes: int  # the file's size (with `digest`, the slide part of the resume key)

    @classmethod
    def of(cls, slide: Slide, level: int, digest: str, size: int) -> SlideInfo:
        return cls(str(slide.path), slide.reader, slide.levels[0].width, slide.levels[0].height,
                   tuple((lv.width, lv.height) for lv in slide.levels), slide.require_mpp(), slide.mpp_source,
                   level, slide.level_mpp(level), digest, size)


@dataclass(frozen=True)
class ScanSettings:
    """The choices that are not the grid's (those are in `ScanReport.geometry`)."""

    batch: int  # tiles classified together
    top_k: int
    explain: bool
    tissue_rule: str
    thumbnail_mpp: float


@dataclass(frozen=True)
class ModelInfo:
    """The model asked for (its file's SHA-256, format, thresholds) and the interpreter that ran."""

    path: str
    sha256: str
    format: str
    thresholds: dict[str, float]
    runtime: str
    runtime_version: str
    threads: int
    inference_file: str  # the batched conversion that ran, or `path` itself
    inference_batch: int
    inference_sha256: str  # of `inference_file`'s flatbuffer (its card aside): the model part of the resume key


@dataclass(frozen=True)
class TileCounts:
    tissue: int  # tiles over tissue that passed quality control: every one has a result when the report exists
    computed: int  # classified in this run (tiles found out of focus too)
    resumed: int  # taken from an earlier, killed run


@dataclass(frozen=True)
class Burden:
    """Tissue tiles at or above `threshold`; `fraction` is None when there is no tissue."""

    threshold: float
    positive_tiles: int
    fraction: float | None


@dataclass(frozen=True)
class TopTile:
    """One of the most suspicious tiles: grid cell, level-0 place and size, and its picture(s)."""

    rank: int
    row: int
    col: int
    probability: float
    x: int  # level-0 pixels of the top-left corner
    y: int
    size: float  # side in level-0 pixels
    centre: tuple[float, float]  # level-0 pixels
    image: str  # path relative to the scan folder
    gradcam: str | None = None


@dataclass(frozen=True)
class Timing:
    wall_seconds: float
    tile_seconds: float
    tile_cpu_seconds: float
    inference_seconds: float
    tiles_per_second: float | None  # of this run's classified tiles, None when it classified none


@dataclass
class ScanReport:
    """Everything `scan.json` says, typed."""

    slide: SlideInfo
    geometry: ScanGeometry
    settings: ScanSettings
    model: ModelInfo
    tiles: TileCounts
    tumour_burden: dict[str, Burden | None]  # by BURDEN_POINTS; None where the model has no such threshold
    top_tiles: list[TopTile]
    warnings: list[str]
    timing: Timing
    files: dict[str, str]  # output name -> path relative to the scan folder
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    slide_result: SlideResult | None = None

    def to_json(self) -> dict[str, Any]:
        """scan.json's content."""
        g, s, m = self.geometry, self.settings, self.model
        report = {
            "intended_use": INTENDED_USE,
            "slide": {"path": self.slide.path, "reader": self.slide.reader, "width": self.slide.width,
                      "height": self.slide.height, "levels": [list(lv) for lv in self.slide.levels],
                      "mpp": self.slide.mpp, "mpp_source": self.slide.mpp_source, "level_read": self.slide.level_read,
                      "level_mpp": self.slide.level_mpp, "digest": self.slide.digest,
                      "bytes": self.slide.bytes},
            "settings": {"stride": g.stride, "tile": TILE, "mpp": g.mpp, "pcam_mpp": PCAM_MPP,
                         "tile_level0_pixels": g.tile_level0, "batch": s.batch, "top_k": s.top_k,
                         "explain": s.explain, "tissue_rule": s.tissue_rule, "thumbnail_mpp": s.thumbnail_mpp},
            "model": {"path": m.path, "sha256": m.sha256, "format": m.format, "thresholds": dict(m.thresholds),
                      "runtime": m.runtime, "runtime_version": m.runtime_version, "threads": m.threads,
                      "inference_file": m.inference_file, "inference_batch": m.inference_batch,
                      "inference_sha256": m.inference_sha256},
            "tiles": {"grid": [g.rows, g.cols], "tissue": self.tiles.tissue, "computed": self.tiles.computed,
                      "resumed": self.tiles.resumed},
            "tumour_burden": {**{name: _burden_json(self.tumour_burden.get(name)) for name in BURDEN_POINTS},
                              "definition": BURDEN_DEFINITION},
            "slide_result": self.slide_result.as_dict() if self.slide_result is not None else None,
            "top_tiles": [_top_tile_json(t) for t in self.top_tiles],
            "warnings": list(self.warnings),
            "timing": {"wall_seconds": self.timing.wall_seconds, "tile_seconds": self.timing.tile_seconds,
                       "tile_cpu_seconds": self.timing.tile_cpu_seconds,
                       "inference_seconds": self.timing.inference_seconds,
                       "tiles_per_second": self.timing.tiles_per_second, "definition": TIMING_DEFINITION},
            "files": dict(self.files),
            "created": self.created,
        }
        return {key: value for key, value in report.items() if key != "slide_result" or value is not None}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ScanReport:
        """A report from scan.json's content (KeyError or TypeError for a file that is not one)."""
        sl, st, m, t, tm = data["slide"], data["settings"], data["model"], data["tiles"], data["timing"]
        return cls(
            slide=SlideInfo(sl["path"], sl["reader"], sl["width"], sl["height"], tuple(map(tuple, sl["levels"])),
                            sl["mpp"], sl["mpp_source"], sl["level_read"], sl["level_mpp"], sl["digest"], sl["bytes"]),
            geometry=ScanGeometry(st["mpp"], sl["level_read"], *t["grid"], st["stride"], sl["mpp"]),
            settings=ScanSettings(st["batch"], st["top_k"], st["explain"], st["tissue_rule"], st["thumbnail_mpp"]),
            model=ModelInfo(m["path"], m["sha256"], m["format"], m["thresholds"], m["runtime"], m["runtime_version"],
                            m["threads"], m["inference_file"], m["inference_batch"], m["inference_sha256"]),
            tiles=TileCounts(t["tissue"], t["computed"], t["resumed"]),
            tumour_burden={name: Burden(**b) if b else None for name, b in data["tumour_burden"].items()
                           if name in BURDEN_POINTS},
            top_tiles=[TopTile(**{**e, "centre": tuple(e["centre"])}) for e in data["top_tiles"]],
            warnings=list(data["warnings"]),
            timing=Timing(tm["wall_seconds"], tm["tile_seconds"], tm["tile_cpu_seconds"], tm["inference_seconds"],
                          tm["tiles_per_second"]),
            files=dict(data["files"]),
            created=data["created"],
            slide_result=SlideResult.from_dict(data["slide_result"]) if data.get("slide_result") else None,
        )


def tumour_burden(probabilities: np.ndarray, thresholds: dict[str, float]) -> dict[str, Burden | None]:
    """The burden at each of BURDEN_POINTS the model has a threshold for, over the tiles with a result."""
    values = probabilities[~np.isnan(probabilities)].astype(np.float64)
    burden: dict[str, Burden | None] = {}
    for name in BURDEN_POINTS:
        threshold = thresholds.get(name)
        if threshold is None:
            burden[name] = None
            continue
        positive = int((values >= threshold).sum())
        burden[name] = Burden(threshold, positive, positive / len(values) if len(values) else None)
    return burden


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


def _burden_json(burden: Burden | None) -> dict[str, Any] | None:
    if burden is None:
        return None
    return {"threshold": burden.threshold, "positive_tiles": burden.positive_tiles, "fraction": burden.fraction}


def _top_tile_json(tile: TopTile) -> dict[str, Any]:
    entry = {"rank": tile.rank, "row": tile.row, "col": tile.col, "probability": tile.probability,
             "x": tile.x, "y": tile.y, "size": tile.size, "centre": list(tile.centre), "image": tile.image}
    if tile.gradcam is not None:
        entry["gradcam"] = tile.gradcam
    return entry
