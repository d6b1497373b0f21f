"""Read whole-slide images and large images region by region, at a chosen µm per pixel.

Readers, tried in this order:

- TIFF family (tiled pyramidal TIFF, Aperio SVS, NDPI, OME-TIFF, plain TIFF):
  tifffile alone, a base dependency. Only the TIFF tiles (or strips) that a
  region touches are read and decoded, through a small cache, so memory does
  not grow with the slide. JPEG/JPEG 2000 tiles need `imagecodecs`.
- Other slide formats (MRXS, VMS, SCN, ...): openslide-python where installed,
  else tiffslide (same API) for what it reads.
- PNG, JPEG, BMP and other plain images that fit in memory: Pillow.

Magnification: µm per pixel comes from the TIFF resolution tags (inch or cm),
Aperio's `MPP =`, OME's PhysicalSizeX, OpenSlide's `openslide.mpp-x` (tiffslide's `tiffslide.mpp-x`) or a PNG/JPEG
dpi; values outside `PLAUSIBLE_MPP` (a 72-dpi default is 353 µm/px) count as
unknown. `read_scaled(mpp, ...)` reads from the coarsest pyramid level at least
as fine as `mpp` and resamples to it, so a model trained at PCam's 0.972 µm/px
sees tissue at that scale whatever the scanner's objective.
"""

from __future__ import annotations

import logging
import math
import os
import re
from abc import ABC, abstractmethod
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from edge_pcam.errors import DataError
from edge_pcam.runtime.constants import PCAM_MPP

PLAUSIBLE_MPP = (0.05, 20.0)  # µm per pixel a brightfield scan can have
LEVEL_TOLERANCE = 0.05  # a level up to 5% coarser than asked is still used (then upsampled)
MAX_PLAIN_PIXELS = 64_000_000  # plain (Pillow) images are read whole: 192 MB at most
TILE_CACHE_BYTES = 48 << 20
WHITE = 255
TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


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

    @abstractmethod
    def read_region(self, level: int, x: int, y: int, width: int, height: int) -> np.ndarray:
        """uint8 RGB (height, width, 3) at `level`, origin (x, y) in that level's pixels; white outside."""

    def close(self) -> None:
        """Release the file."""

    def __enter__(self) -> Slide:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def dimensions(self) -> tuple[int, int]:
        return self.levels[0].width, self.levels[0].height

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
        image = Image.fromarray(region).resize((width, height), Image.BILINEAR,
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

    def describe(self) -> dict[str, Any]:
        return {"path": str(self.path), "reader": self.reader,
                "width": self.levels[0].width, "height": self.levels[0].height,
                "levels": [[lv.width, lv.height] for lv in self.levels],
                "mpp": self.mpp, "mpp_source": self.mpp_source}


def open_slide(path: str | os.PathLike, mpp: float | None = None, reader: str = "auto") -> Slide:
    """Open a slide or image; `mpp` overrides its metadata; `reader` is auto, tifffile, openslide, tiffslide or pillow."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file" if not path.exists() else f"{path}: not a file")
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if reader == "auto":
        if head[:4] in TIFF_MAGIC:
            reader = "tifffile"
        elif _pillow_can_open(path):
            reader = "pillow"
        elif _openslide_detects(path):
            reader = "openslide"
        else:
            raise DataError(f"{path}: not an image or slide edge-pcam can read (TIFF/SVS/NDPI, PNG, JPEG; "
                            "other slide formats need openslide-python)")
    if reader == "tifffile":
        slide: Slide = TiffSlide(path)
    elif reader == "pillow":
        slide = PillowImage(path)
    elif reader in ("openslide", "tiffslide"):
        slide = OpenSlideSlide(path, reader)
    else:
        raise DataError(f"unknown slide reader '{reader}' (auto, tifffile, openslide, tiffslide or pillow)")
    if mpp is not None:
        slide.set_mpp(mpp, "--mpp")
    return slide


def _plausible(mpp: float | None, source: str) -> tuple[float | None, str]:
    if mpp is None:
        return None, f"no µm-per-pixel in the {source}"
    if not PLAUSIBLE_MPP[0] <= mpp <= PLAUSIBLE_MPP[1]:
        return None, f"the {source} says {mpp:.4g} µm/px, not a microscope scan's"
    return float(mpp), source


class TiffSlide(Slide):
    """A TIFF-family file read tile by tile with tifffile (no zarr, no whole-page reads)."""

    reader = "tifffile"

    def __init__(self, path: Path):
        import tifffile

        self.path = path
        log = logging.getLogger("tifffile")
        level = log.level
        log.setLevel(logging.CRITICAL)  # a damaged file gets our one-line error, not tifffile's log
        try:
            self._tif = tifffile.TiffFile(path)
            series = self._tif.series[0]
            pages = [lv.keyframe for lv in series.levels]
        except Exception as exc:  # tifffile raises many types for damaged files
            raise DataError(f"{path}: not a readable TIFF ({_short(exc)})") from None
        finally:
            log.setLevel(level)
        self._pages = []
        self.levels = []
        size = path.stat().st_size
        base_w = None
        for i, page in enumerate(pages):
            self._check_page(page, i)
            ends = [o + n for o, n in zip(page.dataoffsets, page.databytecounts) if o and n]
            if ends and max(ends) > size:
                self._tif.close()
                raise DataError(f"{path}: truncated ({size:,} bytes, level {i}'s tiles need "
                                f"{max(ends):,}); copy the file again")
            width, height = int(page.imagewidth), int(page.imagelength)
            base_w = base_w or width
            self.levels.append(Level(width, height, base_w / width))
            self._pages.append(page)
        self._cache: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        self._cache_bytes = 0
        self.mpp, self.mpp_source = _plausible(*self._metadata_mpp())

    def _check_page(self, page: Any, index: int) -> None:
        samples = int(page.samplesperpixel)
        if page.dtype != np.uint8 or samples not in (1, 3, 4) or int(page.imagedepth) != 1:
            self._tif.close()
            raise DataError(f"{self.path}: level {index} is not 8-bit RGB or grey "
                            f"({page.dtype}, {samples} samples per pixel)")
        if samples > 1 and int(page.planarconfig) != 1:
            self._tif.close()
            raise DataError(f"{self.path}: planar (separate-plane) TIFFs are not supported")
        if int(page.photometric) == 3:
            self._tif.close()
            raise DataError(f"{self.path}: palette-colour TIFFs are not supported")

    def _metadata_mpp(self) -> tuple[float | None, str]:
        tif, page = self._tif, self._pages[0]
        description = page.description or ""
        if tif.is_svs:
            match = re.search(r"MPP\s*=\s*([0-9.]+)", description)
            if match:
                return float(match.group(1)), "Aperio MPP"
        if tif.is_ome:
            match = re.search(r'PhysicalSizeX="([0-9.eE+-]+)"', tif.ome_metadata or "")
            unit = re.search(r'PhysicalSizeXUnit="([^"]+)"', tif.ome_metadata or "")
            if match and (unit is None or unit.group(1) in ("µm", "um", "\u00b5m")):
                return float(match.group(1)), "OME PhysicalSizeX"
        tags = page.tags
        unit = tags.get("ResolutionUnit")
        res = tags.get("XResolution")
        if res is not None and unit is not None and int(unit.value) in (2, 3):
            num, den = res.value if isinstance(res.value, tuple) else (res.value, 1)
            if num and den:
                per_unit = num / den
                return (25400.0 if int(unit.value) == 2 else 10000.0) / per_unit, "TIFF resolution tags"
        return None, "TIFF resolution tags"

    def read_region(self, level: int, x: int, y: int, width: int, height: int) -> np.ndarray:
        page, lv = self._pages[level], self.levels[level]
        inside = x >= 0 and y >= 0 and x + width <= lv.width and y + height <= lv.height
        out = np.empty((height, width, 3), np.uint8) if inside else np.full((height, width, 3), WHITE, np.uint8)
        if page.is_tiled:
            th, tw = int(page.tilelength), int(page.tilewidth)
        else:
            th, tw = min(int(page.rowsperstrip or lv.height), lv.height), lv.width
        ny, nx = math.ceil(lv.height / th), math.ceil(lv.width / tw)
        x0, y0 = max(0, x), max(0, y)
        x1, y1 = min(lv.width, x + width), min(lv.height, y + height)
        if x1 <= x0 or y1 <= y0:
            return out
        for ty in range(y0 // th, min(ny, (y1 - 1) // th + 1)):
            for tx in range(x0 // tw, min(nx, (x1 - 1) // tw + 1)):
                seg = self._segment(level, ty * nx + tx)
                sy0, sx0 = ty * th, tx * tw
                cy0, cy1 = max(y0, sy0), min(y1, sy0 + th)
                cx0, cx1 = max(x0, sx0), min(x1, sx0 + tw)
                if seg is None:  # a tile the file leaves out (sparse TIFF) is glass
                    out[cy0 - y:cy1 - y, cx0 - x:cx1 - x] = WHITE
                else:
                    out[cy0 - y:cy1 - y, cx0 - x:cx1 - x] = seg[cy0 - sy0:cy1 - sy0, cx0 - sx0:cx1 - sx0]
        return out

    def _segment(self, level: int, index: int) -> np.ndarray | None:
        """Decoded tile or strip `index` of `level` as RGB (h, w, 3); None where the file has none."""
        key = (level, index)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        page = self._pages[level]
        offset, count = page.dataoffsets[index], page.databytecounts[index]
        if not offset or not count:
            return None
        fh = self._tif.filehandle
        fh.seek(offset)
        data = fh.read(count)
        try:
            decoded = page.decode(data, index, jpegtables=page.jpegtables)[0]
        except Exception as exc:
            if "imagecodecs" in str(exc):
                raise DataError(f"{self.path}: its tiles need imagecodecs to decode "
                                "(pip install imagecodecs, or 'edge-pcam[slide]')") from None
            raise DataError(f"{self.path}: tile {index} of level {level} cannot be decoded "
                            f"({_short(exc)}); the file is damaged") from None
        if decoded is None:
            return None
        seg = decoded.reshape(decoded.shape[-3:])
        if seg.shape[-1] == 1:
            seg = np.repeat(seg, 3, axis=-1)
            if int(page.photometric) == 0:  # MINISWHITE
                seg = WHITE - seg
        elif seg.shape[-1] == 4:
            seg = _over_white(seg)
        seg = np.ascontiguousarray(seg)
        self._cache[key] = seg
        self._cache_bytes += seg.nbytes
        while self._cache_bytes > TILE_CACHE_BYTES and len(self._cache) > 1:
            _, old = self._cache.popitem(last=False)
            self._cache_bytes -= old.nbytes
        return seg

    def close(self) -> None:
        self._tif.close()


class PillowImage(Slide):
    """A plain image (PNG, JPEG, ...) small enough to hold in memory; one level."""

    reader = "pillow"

    def __init__(self, path: Path):
        self.path = path
        try:
            with Image.open(path) as image:
                if image.width * image.height > MAX_PLAIN_PIXELS:
                    raise DataError(f"{path}: {image.width}x{image.height} is too large to read whole "
                                    "(more than 64 megapixels); save it as a tiled pyramidal TIFF")
                dpi = image.info.get("dpi")
                image.load()
                self._array = _to_rgb(image)
        except DataError:
            raise
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            raise DataError(f"{path}: not a readable image ({_short(exc)})") from None
        height, width = self._array.shape[:2]
        self.levels = [Level(width, height, 1.0)]
        mpp = 25400.0 / float(dpi[0]) if dpi and float(dpi[0]) > 0 else None
        self.mpp, self.mpp_source = _plausible(mpp, "image's dpi")

    def read_region(self, level: int, x: int, y: int, width: int, height: int) -> np.ndarray:
        out = np.full((height, width, 3), WHITE, np.uint8)
        h, w = self._array.shape[:2]
        x0, y0, x1, y1 = max(0, x), max(0, y), min(w, x + width), min(h, y + height)
        if x1 > x0 and y1 > y0:
            out[y0 - y:y1 - y, x0 - x:x1 - x] = self._array[y0:y1, x0:x1]
        return out


class OpenSlideSlide(Slide):
    """A slide opened with openslide-python or tiffslide (the same API)."""

    def __init__(self, path: Path, module_name: str):
        module = _openslide_module(module_name)
        if module is None:
            raise DataError(f"{path}: reading this format needs {module_name} (pip install "
                            f"{'openslide-python openslide-bin' if module_name == 'openslide' else 'tiffslide'})")
        self.path, self.reader = path, module_name
        try:
            opener = module.TiffSlide if module_name == "tiffslide" else module.OpenSlide
            self._slide = opener(str(path))
        except Exception as exc:
            raise DataError(f"{path}: {module_name} cannot open it ({_short(exc)})") from None
        self.levels = [Level(int(w), int(h), float(d)) for (w, h), d in
                       zip(self._slide.level_dimensions, self._slide.level_downsamples)]
        value = self._slide.properties.get(f"{module_name}.mpp-x")
        self.mpp, self.mpp_source = _plausible(float(value) if value else None, f"{module_name} properties")

    def read_region(self, level: int, x: int, y: int, width: int, height: int) -> np.ndarray:
        down = self.levels[level].downsample
        region = self._slide.read_region((int(round(x * down)), int(round(y * down))), level, (width, height))
        array = np.asarray(region)
        return _over_white(array) if array.shape[-1] == 4 else np.ascontiguousarray(array[..., :3])

    def close(self) -> None:
        self._slide.close()


def _openslide_module(name: str) -> Any:
    try:
        return __import__(name)
    except (ImportError, OSError):  # openslide-python without its C library raises OSError
        return None


def _openslide_detects(path: Path) -> bool:
    module = _openslide_module("openslide")
    return module is not None and bool(module.OpenSlide.detect_format(str(path)))


def _pillow_can_open(path: Path) -> bool:
    try:
        with Image.open(path):
            return True
    except Image.DecompressionBombError:
        return True
    except (OSError, ValueError):
        return False


def _to_rgb(image: Image.Image) -> np.ndarray:
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        return _over_white(np.asarray(image.convert("RGBA")))
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        image = Image.fromarray((np.asarray(image, np.float64) / 257).clip(0, 255).astype(np.uint8))
    return np.asarray(image.convert("RGB"))


def _over_white(rgba: np.ndarray) -> np.ndarray:
    """RGBA composited over white (transparent slide borders read as glass)."""
    alpha = rgba[..., 3:4].astype(np.uint16)
    rgb = (rgba[..., :3].astype(np.uint16) * alpha + WHITE * (255 - alpha)) // 255
    return rgb.astype(np.uint8)


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:160]
