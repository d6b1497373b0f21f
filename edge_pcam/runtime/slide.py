"""Read whole-slide images and large images region by region, at a chosen µm per pixel.

Three readers, one module each; `open_slide(path, reader="auto")` picks:

- `tifffile` (`slide_tifffile`): Aperio SVS (JPEG and JPEG 2000 tiles),
  generic and OME-TIFF, pyramids in SubIFDs, plain TIFFs. Tiles are decoded
  one by one (imagecodecs for JPEG, JPEG 2000 and LZW). First for these
  because it gives the same pixels as OpenSlide (the tests compare them) and
  decodes several times faster (benchmarks/scan.py, "where the time goes"),
  and because OpenSlide's generic-TIFF driver sees only the main IFD chain:
  SubIFD pyramids (OME-TIFF, tifffile's, libvips' --subifd) would be read at
  full resolution, without OME's µm per pixel.
- `openslide` (`slide_openslide`): OpenSlide's C library (the `openslide-bin`
  wheel) first for the other formats it recognises, whose layouts need it:
  Hamamatsu NDPI/VMS, MIRAX MRXS, DICOM WSI, Leica SCN, Philips TIFF, Ventana
  BIF (overlapping tiles), Sakura, Zeiss; second for SVS and generic TIFF.
- `pillow` (`slide_pillow`): PNG, JPEG and other plain images that fit in memory.

`auto` tries the readers that fit the file, best first; a reader that cannot
open the file, or cannot decode a probe region of its coarsest and finest
level, hands over to the next. The slide says which reader it is
(`Slide.reader`) and why the others before it were passed over
(`Slide.passed_over`); `describe()` gives both to the scan report.

Magnification: µm per pixel comes from the file's metadata (see each reader);
values outside `PLAUSIBLE_MPP` (a 72-dpi default is 353 µm/px) count as
unknown. `read_scaled(mpp, ...)` reads from the coarsest pyramid level at
least as fine as `mpp` and resamples to it, so a model trained at PCam's
0.972 µm/px sees tissue at that scale whatever the scanner's objective.
"""

from __future__ import annotations

import math
import os
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
TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
READERS = ("openslide", "tifffile", "pillow")
TIFFFILE_FIRST = ("aperio", "generic-tiff")  # OpenSlide's names of the formats tifffile reads first
PROBE = 256  # side of the region each level's probe decodes
# Formats only OpenSlide reads: a clearer message than "not an image" when it is missing.
OPENSLIDE_ONLY = {".mrxs": "MIRAX", ".vms": "Hamamatsu VMS", ".vmu": "Hamamatsu VMU", ".dcm": "DICOM WSI"}


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

    def read_scaled(self, mpp: float, x: int, y: int, width: int, height: int) -> np.ndarray:
        """uint8 RGB (height, width, 3) of the slide resampled to `mpp` µm/px, origin (x, y) in those pixels."""
        level = self.best_level(mpp)
        ratio = mpp / self.level_mpp(level)  # level pixels per output pixel
        if abs(ratio - 1) < 1e-6:
            return self.read_region(level, x, y, width, height)
        bx0, by0, bx1, by1 = x * ratio, y * ratio, (x + width) * ratio, (y + height) * ratio
        ix0, iy0 = math.floor(bx0), math.floor(by0)
        region = self.read_region(level, ix0, iy0, math.ceil(bx1) - ix0, math.ceil(by1) - iy0)
        # Shrinking averages the pixels each output pixel covers, as a scanner's pyramid (and so PCam's
        # patches) is made; a bilinear shrink blurs more, and lowered the model's recall (benchmarks/burden.py).
        resample = Image.BOX if ratio > 1 else Image.BILINEAR
        image = Image.fromarray(region).resize((width, height), resample,
                                               box=(bx0 - ix0, by0 - iy0, bx1 - ix0, by1 - iy0))
        return np.asarray(image)

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


def open_slide(path: str | os.PathLike, mpp: float | None = None, reader: str = "auto") -> Slide:
    """Open a slide or image; `mpp` overrides its metadata; `reader` is auto or one of READERS."""
    path = Path(path)
    if reader != "auto" and reader not in READERS:
        raise DataError(f"unknown slide reader '{reader}' (auto, {', '.join(READERS)})")
    if not path.is_file():
        raise DataError(f"{path}: no such file" if not path.exists() else f"{path}: not a file")
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    candidates = reader_order(path, head) if reader == "auto" else [reader]
    if not candidates:
        raise DataError(f"{path}: {_unreadable_reason(path)}")
    passed_over: list[str] = []
    for name in candidates:
        slide = None
        try:
            slide = _open_with(name, path)
            slide.probe()
        except DataError as exc:
            if slide is not None:
                slide.close()
            passed_over.append(f"{name}: {str(exc).removeprefix(f'{path}: ')}")
            continue
        slide.passed_over = tuple(passed_over)
        if mpp is not None:
            slide.set_mpp(mpp, "--mpp")
        return slide
    if len(passed_over) == 1:
        raise DataError(f"{path}: {passed_over[0].split(': ', 1)[1]}")
    raise DataError(f"{path}: no reader could read it ({'; '.join(passed_over)})")


def reader_order(path: Path, head: bytes) -> list[str]:
    """The readers worth trying on this file, best first (see the module's docstring)."""
    vendor = openslide_vendor(path)
    tiff = head[:4] in TIFF_MAGIC
    order = []
    if vendor and vendor not in TIFFFILE_FIRST:
        order.append("openslide")
    if tiff:
        order.append("tifffile")
    if vendor in TIFFFILE_FIRST:
        order.append("openslide")
    if not order and _pillow_can_open(path):
        order.append("pillow")
    return order


def openslide_vendor(path: Path) -> str | None:
    """OpenSlide's name for the file's format ('aperio', 'generic-tiff', ...); None if unknown or not installed."""
    from edge_pcam.runtime.slide_openslide import openslide_module

    module = openslide_module()
    if module is None:
        return None
    try:
        return module.OpenSlide.detect_format(str(path))
    except Exception:  # OpenSlide raises on some unreadable files instead of saying "unknown"
        return None


def _open_with(name: str, path: Path) -> Slide:
    if name == "openslide":
        from edge_pcam.runtime.slide_openslide import OpenSlideSlide
        return OpenSlideSlide(path)
    if name == "tifffile":
        from edge_pcam.runtime.slide_tifffile import TiffFileSlide
        return TiffFileSlide(path)
    from edge_pcam.runtime.slide_pillow import PillowImage
    return PillowImage(path)


def _unreadable_reason(path: Path) -> str:
    from edge_pcam.runtime.slide_openslide import openslide_module

    kind = OPENSLIDE_ONLY.get(path.suffix.lower())
    if kind and openslide_module() is None:
        return (f"{kind} needs OpenSlide, which is not installed here "
                "(pip install openslide-bin openslide-python, or your system's openslide package)")
    if kind:
        return f"OpenSlide does not recognise it as {kind} (an incomplete copy, or its companion files missing?)"
    return ("not an image or slide edge-pcam can read (SVS, NDPI, MRXS, DICOM, TIFF/OME-TIFF, PNG, JPEG, "
            "and what else OpenSlide reads)")


def _pillow_can_open(path: Path) -> bool:
    try:
        with Image.open(path):
            return True
    except Image.DecompressionBombError:
        return True
    except (OSError, ValueError):
        return False


def plausible_mpp(mpp: float | None, source: str) -> tuple[float | None, str]:
    """(mpp, source) when `mpp` is a microscope's; (None, why not) otherwise."""
    if mpp is None:
        return None, f"no µm-per-pixel in the {source}"
    if not PLAUSIBLE_MPP[0] <= mpp <= PLAUSIBLE_MPP[1]:
        return None, f"the {source} says {mpp:.4g} µm/px, not a microscope scan's"
    return float(mpp), source


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
