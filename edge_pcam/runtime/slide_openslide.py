"""The OpenSlide reader: every format OpenSlide knows, through openslide-python.

The C library comes from the `openslide-bin` wheel (Linux x86-64 and aarch64,
macOS, Windows) or, where there is none (32-bit Raspberry Pi OS), from the
system's package (`apt install libopenslide0`). µm per pixel is OpenSlide's
`openslide.mpp-x` (from Aperio's MPP, NDPI's resolution, MRXS's and DICOM's
pixel spacing, a TIFF's resolution tags).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from edge_pcam.errors import DataError
from edge_pcam.runtime.slide_base import Level, Slide, over_white, plausible_mpp, short_reason

CACHE_BYTES = 48 << 20  # OpenSlide's tile cache for this slide (its default is 32 MB, shared)


@cache
def openslide_module() -> Any:
    """openslide-python, or None where it or its C library is missing."""
    try:
        import openslide
    except (ImportError, OSError):  # openslide-python without a C library raises OSError
        return None
    return openslide


class OpenSlideSlide(Slide):
    """A slide opened with OpenSlide; regions come back as RGBA and are composited over white."""

    reader = "openslide"

    def __init__(self, path: Path):
        module = openslide_module()
        if module is None:
            raise DataError(f"{path}: OpenSlide is not installed here "
                            "(pip install openslide-bin openslide-python)")
        self.path = path
        self._module = module
        try:
            self._slide = module.OpenSlide(str(path))
        except Exception as exc:  # OpenSlideUnsupportedFormatError, OpenSlideError, OSError
            reason = "not a format it knows" if isinstance(exc, module.OpenSlideUnsupportedFormatError) \
                else short_reason(exc)
            raise DataError(f"{path}: OpenSlide cannot open it ({reason})") from None
        if hasattr(module, "OpenSlideCache"):
            self._slide.set_cache(module.OpenSlideCache(CACHE_BYTES))
        self.vendor = self._slide.properties.get("openslide.vendor", "")
        self.levels = [Level(int(w), int(h), float(d)) for (w, h), d in
                       zip(self._slide.level_dimensions, self._slide.level_downsamples)]
        value = self._slide.properties.get("openslide.mpp-x")
        self.mpp, self.mpp_source = plausible_mpp(float(value) if value else None,
                                                  f"OpenSlide properties ({self.vendor or 'unknown vendor'})")

    def reader_version(self) -> str:
        return f"openslide-python {self._module.__version__}, OpenSlide {self._module.__library_version__}"

    def read_region(self, level: int, x: int, y: int, width: int, height: int) -> np.ndarray:
        return np.asarray(self.read_region_image(level, x, y, width, height))

    def read_region_image(self, level: int, x: int, y: int, width: int, height: int) -> Image.Image:
        down = self.levels[level].downsample
        try:
            region = self._slide.read_region((int(round(x * down)), int(round(y * down))), level, (width, height))
        except Exception as exc:  # OpenSlideError: a damaged tile; the handle is unusable afterwards
            raise DataError(f"{self.path}: OpenSlide cannot read level {level} at ({x}, {y}) "
                            f"({short_reason(exc)}); the file is damaged") from None
        if region.mode == "RGBA" and region.getchannel("A").getextrema()[0] < 255:  # glass beyond the scan
            return Image.fromarray(over_white(np.asarray(region)))
        return region.convert("RGB")  # opaque: the same pixels as over_white gives, without a numpy round trip

    def close(self) -> None:
        self._slide.close()
