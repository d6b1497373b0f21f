"""The tifffile reader: TIFF-family files read tile by tile (tiled or stripped, any pyramid layout).

Only the tiles (or strips) a region touches are read and decoded, through a
small cache, so memory does not grow with the slide. tifffile finds the
pyramid whether its levels are in the main IFD chain (SVS, generic TIFF) or in
SubIFDs (OME-TIFF, tifffile's own pyramids). Deflate tiles decode with zlib;
JPEG, JPEG 2000 and LZW tiles need imagecodecs. Aperio's JPEG 2000 tiles in
YCbCr (compression 33003) come out of the codec as YCbCr and are converted
here, as OpenSlide does.

µm per pixel: Aperio's `MPP =` in the description, OME's PhysicalSizeX, else
the TIFF resolution tags (inch or cm).
"""

from __future__ import annotations

import logging
import math
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from edge_pcam.errors import DataError
from edge_pcam.runtime.slide_base import WHITE, Level, Slide, over_white, plausible_mpp, short_reason

TILE_CACHE_BYTES = 48 << 20
APERIO_J2K_YCBCR = 33003
MICROMETRE = ("µm", "um", "\u03bcm")  # OME writes the micro sign or the Greek mu


class TiffFileSlide(Slide):
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
            raise DataError(f"{path}: not a readable TIFF ({short_reason(exc)})") from None
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
        self.mpp, self.mpp_source = plausible_mpp(*self._metadata_mpp())

    def reader_version(self) -> str:
        import tifffile

        try:
            import imagecodecs
            return f"tifffile {tifffile.__version__}, imagecodecs {imagecodecs.__version__}"
        except ImportError:
            return f"tifffile {tifffile.__version__} (no imagecodecs)"

    def _check_page(self, page: Any, index: int) -> None:
        try:
            sizes = [int(page.imagewidth), int(page.imagelength)]
            sizes += [int(page.tilewidth), int(page.tilelength)] if page.is_tiled else []
            int(page.rowsperstrip or 0), int(page.photometric), int(page.planarconfig), int(page.imagedepth)
            samples = int(page.samplesperpixel)
        except (TypeError, ValueError) as exc:  # a damaged tag: a tuple or text where a number belongs
            self._tif.close()
            raise DataError(f"{self.path}: level {index} has damaged size tags ({short_reason(exc)})") from None
        if min(sizes) < 1:
            self._tif.close()
            raise DataError(f"{self.path}: level {index} has a zero size in its tags; the file is damaged")
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
            if match and (unit is None or unit.group(1) in MICROMETRE):
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
                    part = seg[cy0 - sy0:cy1 - sy0, cx0 - sx0:cx1 - sx0]
                    if part.shape[:2] != (cy1 - cy0, cx1 - cx0):
                        raise DataError(f"{self.path}: tile {ty * nx + tx} of level {level} decodes to "
                                        f"{seg.shape[1]}x{seg.shape[0]} pixels, not {tw}x{th}; the file is damaged")
                    out[cy0 - y:cy1 - y, cx0 - x:cx1 - x] = part
        return out

    def _segment(self, level: int, index: int) -> np.ndarray | None:
        """Decoded tile or strip `index` of `level` as RGB (h, w, 3); None where the file has none."""
        key = (level, index)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        page = self._pages[level]
        if index >= min(len(page.dataoffsets), len(page.databytecounts)):
            raise DataError(f"{self.path}: level {level} lists {len(page.dataoffsets)} tiles, fewer than its size "
                            "needs; the file is damaged")
        offset, count = page.dataoffsets[index], page.databytecounts[index]
        if not offset or not count:
            return None
        fh = self._tif.filehandle
        fh.seek(offset)
        data = fh.read(count)
        try:
            decoded = page.decode(data, index, jpegtables=page.jpegtables, jpegheader=page.jpegheader)[0]
        except Exception as exc:
            if "imagecodecs" in str(exc):
                raise DataError(f"{self.path}: its tiles need imagecodecs to decode "
                                "(pip install imagecodecs)") from None
            raise DataError(f"{self.path}: tile {index} of level {level} cannot be decoded "
                            f"({short_reason(exc)}); the file is damaged") from None
        if decoded is None:
            return None
        seg = decoded.reshape(decoded.shape[-3:])
        if seg.shape[-1] == 1:
            seg = np.repeat(seg, 3, axis=-1)
            if int(page.photometric) == 0:  # MINISWHITE
                seg = WHITE - seg
        elif seg.shape[-1] == 4:
            seg = over_white(seg)
        elif int(page.compression) == APERIO_J2K_YCBCR:
            seg = ycbcr_to_rgb(seg)
        seg = np.ascontiguousarray(seg)
        self._cache[key] = seg
        self._cache_bytes += seg.nbytes
        while self._cache_bytes > TILE_CACHE_BYTES and len(self._cache) > 1:
            _, old = self._cache.popitem(last=False)
            self._cache_bytes -= old.nbytes
        return seg

    def close(self) -> None:
        self._tif.close()


def ycbcr_to_rgb(ycbcr: np.ndarray) -> np.ndarray:
    """Full-range YCbCr (JPEG's, ITU-R BT.601) to uint8 RGB."""
    y, cb, cr = (ycbcr[..., i].astype(np.float32) for i in range(3))
    cb -= 128
    cr -= 128
    rgb = np.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], axis=-1)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
