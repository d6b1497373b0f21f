"""The Pillow reader: PNG, JPEG, BMP and other plain images small enough to hold in memory.

One level; µm per pixel from the image's dpi when it has one (a 72-dpi
default counts as unknown: `PLAUSIBLE_MPP`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from edge_pcam.errors import DataError
from edge_pcam.runtime.slide import WHITE, Level, Slide, over_white, plausible_mpp, short_reason

MAX_PLAIN_PIXELS = 64_000_000  # plain images are read whole: 192 MB at most


class PillowImage(Slide):
    """A plain image read whole; regions are slices of it."""

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
            raise DataError(f"{path}: not a readable image ({short_reason(exc)})") from None
        height, width = self._array.shape[:2]
        self.levels = [Level(width, height, 1.0)]
        mpp = 25400.0 / float(dpi[0]) if dpi and float(dpi[0]) > 0 else None
        self.mpp, self.mpp_source = plausible_mpp(mpp, "image's dpi")

    def reader_version(self) -> str:
        import PIL

        return f"Pillow {PIL.__version__}"

    def read_region(self, level: int, x: int, y: int, width: int, height: int) -> np.ndarray:
        out = np.full((height, width, 3), WHITE, np.uint8)
        h, w = self._array.shape[:2]
        x0, y0, x1, y1 = max(0, x), max(0, y), min(w, x + width), min(h, y + height)
        if x1 > x0 and y1 > y0:
            out[y0 - y:y1 - y, x0 - x:x1 - x] = self._array[y0:y1, x0:x1]
        return out


def _to_rgb(image: Image.Image) -> np.ndarray:
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        return over_white(np.asarray(image.convert("RGBA")))
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        image = Image.fromarray((np.asarray(image, np.float64) / 257).clip(0, 255).astype(np.uint8))
    return np.asarray(image.convert("RGB"))
