"""What every slide reader gives (`Slide`, its pyramid `Level`s) and the helpers the readers share.

The readers (`slide_tifffile`, `slide_openslide`, `slide_pillow`) build on this
module; `edge_pcam.runtime.slide.open_slide` chooses among them.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from edge_pcam.errors import DataError
from edge_pcam.runtime.constants import PCAM_MPP

PLAUSIBLE_MPP = (0.05, 20.0)  # µm per pixel a brightfield scan can have
LEVEL_TOLERANCE = 0.05  # a level up to 5% coarser than asked is still used (then upsampled)
WHITE = 255
ENLARGE_FILTER = Image.Resampling.NEAREST  # for a level coarser than asked (see Slide.read_scaled)
PROBE = 256  # side of the region each level's probe decodes


@dataclass(frozen=True)
class Level:
    """One pyramid level: its size and how many level-0 pixels one of its pixels spans."""

    width: int
    height: int
    downsample: float


class Slide(ABC):
    """A slide or image: levels, µm per pixel of level 0 (None when unknown), regions on demand."""

    path: Path
    reader: str
    levels: list[Level]
    mpp: float | None
    mpp_source: str
    passed_over: tuple[str, ...] = ()  # "reader: reason" for each reader `auto` tried before this one

    @abstractmethod
    def read_region(self, level: int, x: int, y: int, width: int, height: int) -> np.ndarray:
        """uint8 RGB (height, width, 3) at `level`, origin (x, y) in that level's pixels; white outside."""

    def read_region_image(self, level: int, x: int, y: int, width: int, height: int) -> Image.Image:
        """`read_region` as a PIL RGB image, what resampling takes (a reader whose library gives PIL
        images overrides it, so that the pixels do not go through numpy and back)."""
        return Image.fromarray(self.read_region(level, x, y, width, height))

    def reader_version(self) -> str:
        """The reader library's version, for the report."""
        return ""

    def close(self) -> None:
        """Release the file."""

    def __enter__(self) -> Slide:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def set_mpp(self, mpp: float, source: str) -> None:
        if not PLAUSIBLE_MPP[0] <= mpp <= PLAUSIBLE_MPP[1]:
            raise DataError(f"{self.path}: {mpp} µm per pixel is not a microscope scan's "
                            f"(expected {PLAUSIBLE_MPP[0]}-{PLAUSIBLE_MPP[1]})")
        self.mpp, self.mpp_source = float(mpp), source

    def require_mpp(self) -> float:
        """Level 0's µm per pixel, or a one-line error saying how to give it."""
        if self.mpp is None:
            raise DataError(f"{self.path}: magnification unknown ({self.mpp_source}); pass --mpp "
                            f"(µm per pixel, e.g. 0.25 for a 40x scan, {PCAM_MPP} for PCam's 10x)")
        return self.mpp

    def level_mpp(self, level: int) -> float:
        return self.require_mpp() * self.levels[level].downsample

    def best_level(self, mpp: float) -> int:
        """The coarsest level at least as fine as `mpp` (within LEVEL_TOLERANCE)."""
        fine_enough = [i for i in range(len(self.levels)) if self.level_mpp(i) <= mpp * (1 + LEVEL_TOLERANCE)]
        return max(fine_enough, key=lambda i: self.levels[i].downsample) if fine_enough else 0

    def size_at(self, mpp: float) -> tuple[int, int]:
        """(width, height) of the whole slide in pixels of `mpp` µm."""
        scale = self.require_mpp() / mpp
        return int(self.levels[0].width * scale), int(self.levels[0].height * scale)

    def resample_filter(self, mpp: float) -> Image.Resampling | None:
        """How `read_scaled` resamples the level it reads for `mpp`: None (that level is `mpp`), BOX
        (shrunk from a finer level) or ENLARGE_FILTER (enlarged from a slightly coarser one)."""
        ratio = mpp / self.level_mpp(self.best_level(mpp))  # level pixels per output pixel
        if abs(ratio - 1) < 1e-6:
            return None
        # Shrinking averages the pixels each output pixel covers, as a scanner's pyramid (and so PCam's
        # patches) is made; a bilinear shrink blurs more, and lowered the model's recall (benchmarks/burden.py).
        # Enlarging (a level up to LEVEL_TOLERANCE coarser, as a 40x scan's 1.0 µm/px level) repeats the
        # nearest pixel: interpolating at fractional offsets softens every tile, and a 3% bilinear
        # enlargement lowered the model's sensitivity by 7 points on valid patches (benchmarks/softness.py).
        return Image.Resampling.BOX if ratio > 1 else ENLARGE_FILTER

    def read_scaled(self, mpp: float, x: int, y: int, width: int, height: int) -> np.ndarray:
        """uint8 RGB (height, width, 3) of the slide resampled to `mpp` µm/px, origin (x, y) in those pixels."""
        level = self.best_level(mpp)
        resample = self.resample_filter(mpp)
        if resample is None:
            return self.read_region(level, x, y, width, height)
        ratio = mpp / self.level_mpp(level)  # level pixels per output pixel
        bx0, by0, bx1, by1 = x * ratio, y * ratio, (x + width) * ratio, (y + height) * ratio
        ix0, iy0 = math.floor(bx0), math.floor(by0)
        read = (level, ix0, iy0, math.ceil(bx1) - ix0, math.ceil(by1) - iy0)
        box = (bx0 - ix0, by0 - iy0, bx1 - ix0, by1 - iy0)
        if resample == Image.Resampling.NEAREST:
            return resize_nearest(self.read_region(*read), (width, height), box)
        return np.asarray(self.read_region_image(*read).resize((width, height), resample, box=box))

    def thumbnail(self, mpp: float, box: tuple[int, int, int, int] | None = None,
                  max_source: int = 2048) -> np.ndarray:
        """The slide (or `box` = (x, y, width, height) of it, in pixels of `mpp`) at `mpp` µm/px.

        Read in blocks of at most `max_source` source pixels a side, so memory
        is bounded by the output's size, not the slide's.
        """
        x0, y0, width, height = box or (0, 0, *self.size_at(mpp))
        out = np.empty((height, width, 3), np.uint8)
        ratio = mpp / self.level_mpp(self.best_level(mpp))
        block = max(16, int(max_source / max(ratio, 1.0)))
        for y in range(0, height, block):
            for x in range(0, width, block):
                h, w = min(block, height - y), min(block, width - x)
                out[y:y + h, x:x + w] = self.read_scaled(mpp, x0 + x, y0 + y, w, h)
        return out

    def probe(self) -> None:
        """Decode a small region at the centre of the coarsest and of the finest level (DataError if not)."""
        for level in sorted({len(self.levels) - 1, 0}):
            lv = self.levels[level]
            w, h = min(PROBE, lv.width), min(PROBE, lv.height)
            self.read_region(level, (lv.width - w) // 2, (lv.height - h) // 2, w, h)

    def describe(self) -> dict[str, Any]:
        return {"path": str(self.path), "reader": self.reader, "reader_version": self.reader_version(),
                "readers_passed_over": list(self.passed_over),
                "width": self.levels[0].width, "height": self.levels[0].height,
                "levels": [[lv.width, lv.height] for lv in self.levels],
                "mpp": self.mpp, "mpp_source": self.mpp_source}


def plausible_mpp(mpp: float | None, source: str) -> tuple[float | None, str]:
    """(mpp, source) when `mpp` is a microscope's; (None, why not) otherwise."""
    if mpp is None:
        return None, f"no µm-per-pixel in the {source}"
    if not PLAUSIBLE_MPP[0] <= mpp <= PLAUSIBLE_MPP[1]:
        return None, f"the {source} says {mpp:.4g} µm/px, not a microscope scan's"
    return float(mpp), source


def resize_nearest(region: np.ndarray, size: tuple[int, int], box: tuple[float, float, float, float]) -> np.ndarray:
    """The pixels of uint8 (h, w, C) `region` that Pillow's `resize(size, NEAREST, box=box)` picks, without a
    round trip through a PIL image: columns copied in runs of neighbours, rows whole (about ten times faster)."""
    width, height = size
    rows = _nearest_sources(box[1], box[3], height, region.shape[0])
    cols = _nearest_sources(box[0], box[2], width, region.shape[1])
    picked = region.take(rows, axis=0)
    out = np.empty((height, width, *region.shape[2:]), region.dtype)
    starts = np.flatnonzero(np.diff(cols, prepend=-2) != 1)  # where a run of consecutive source columns begins
    for start, end in zip(starts, [*starts[1:], width]):
        first = int(cols[start])
        out[:, start:end] = picked[:, first:first + end - start]
    return out


def _nearest_sources(start: float, end: float, count: int, available: int) -> np.ndarray:
    """Source index of each of `count` output pixels spanning [start, end), as Pillow's nearest scaling
    finds it (ImagingScaleAffine): a float32 box, a step of its width / count, the position stepped from
    the first pixel's centre by repeated addition and truncated; kept inside the `available` pixels."""
    first, last = np.float32(start), np.float32(end)
    step = float(np.float32(last - first)) / count
    positions = np.full(count, step)
    positions[0] = float(first) + step * 0.5
    return np.clip(np.cumsum(positions).astype(np.intp), 0, available - 1)


def over_white(rgba: np.ndarray) -> np.ndarray:
    """RGBA composited over white (transparent slide borders read as glass)."""
    if rgba[..., 3].min() == 255:  # the common case inside a slide: nothing to composite
        return np.ascontiguousarray(rgba[..., :3])
    alpha = rgba[..., 3:4].astype(np.uint16)
    rgb = (rgba[..., :3].astype(np.uint16) * alpha + WHITE * (255 - alpha)) // 255
    return rgb.astype(np.uint8)


def short_reason(exc: BaseException) -> str:
    """An exception's message on one line, at most 160 characters."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:160]
