"""Load image files as PCam patches (uint8 96x96x3) with Pillow, the way the device decodes them.

Training decodes JPEG with TensorFlow's `INTEGER_ACCURATE` DCT, which gives the
same pixels as Pillow (see edge_pcam.data.tfdata), so a patch read here is the
patch the model was trained on.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from edge_pcam.errors import DataError

PATCH_SIZE = 96
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")


def load_patch(path: str | Path, crop: bool = True, *, strict: bool = False) -> np.ndarray:
    """Read an image file as a uint8 (96, 96, 3) RGB patch.

    Grayscale, palette, RGBA (composited on white, the colour of glass), CMYK
    and 16-bit images are converted to 8-bit RGB; images larger than 96x96 are
    centre-cropped unless `crop` is False; smaller ones are refused. With
    `strict` (a patch inside a dataset) anything but a 96x96 RGB image is a
    DataError. Every problem is a DataError naming the file.
    """
    with _open_image(path, "cannot decode image") as im:
        if strict:
            _check_patch_header(path, im)
        rgb = _to_rgb(path, im)
    width, height = rgb.size
    if (width, height) != (PATCH_SIZE, PATCH_SIZE):
        if width < PATCH_SIZE or height < PATCH_SIZE:
            raise DataError(f"{path}: image is {width}x{height}, smaller than a {PATCH_SIZE}x{PATCH_SIZE} patch")
        if not crop:
            raise DataError(f"{path}: image is {width}x{height}, not {PATCH_SIZE}x{PATCH_SIZE}")
        left, top = (width - PATCH_SIZE) // 2, (height - PATCH_SIZE) // 2
        rgb = rgb.crop((left, top, left + PATCH_SIZE, top + PATCH_SIZE))
    return np.asarray(rgb, dtype=np.uint8)


def load_patches(paths: Iterable[str | Path], crop: bool = True, *, strict: bool = False) -> np.ndarray:
    """Several files as one uint8 (k, 96, 96, 3) array."""
    arrays = [load_patch(p, crop, strict=strict) for p in paths]
    if not arrays:
        return np.zeros((0, PATCH_SIZE, PATCH_SIZE, 3), np.uint8)
    return np.stack(arrays)


def check_patch_files(paths: Iterable[str | Path]) -> None:
    """Check from the headers alone (no decoding) that every file is a 96x96 RGB image."""
    for path in paths:
        with _open_image(path, "cannot read image header") as im:
            _check_patch_header(path, im)


@contextmanager
def _open_image(path: str | Path, failure: str) -> Iterator[Image.Image]:
    """Image.open(path), with Pillow's errors (opening, or `failure` inside the block) as DataErrors."""
    try:
        with warnings.catch_warnings():
            # Pillow only warns between its pixel limit and twice that: refuse both alike.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                yield im
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise DataError(f"{path}: image larger than Pillow's safety limit of {Image.MAX_IMAGE_PIXELS:,} pixels "
                        "(a decompression bomb, or a slide: scan slides with `edge-pcam scan`)") from None
    except (FileNotFoundError, IsADirectoryError):
        raise DataError(f"{path}: no such image file") from None
    except UnidentifiedImageError:
        raise DataError(f"{path}: not an image Pillow can read") from None
    except OSError as exc:
        raise DataError(f"{path}: {failure} ({exc})") from None


def _check_patch_header(path: str | Path, im: Image.Image) -> None:
    if im.size != (PATCH_SIZE, PATCH_SIZE) or im.mode != "RGB":
        width, height = im.size
        raise DataError(f"{path}: {width}x{height} {im.mode} image, not a {PATCH_SIZE}x{PATCH_SIZE} RGB patch")


def _to_rgb(path: str | Path, im: Image.Image) -> Image.Image:
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    mode = im.mode
    if mode == "RGB":
        return im.convert("RGB")  # forces the decode while the file is open
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        values = np.asarray(im, dtype=np.float64)
        if values.min() < 0 or values.max() > 65535:
            raise DataError(f"{path}: {mode} image with values outside 0-65535, cannot convert to 8-bit RGB")
        scale = 257.0 if values.max() > 255 or mode.startswith("I;16") else 1.0
        grey = np.round(values / scale).astype(np.uint8)
        return Image.fromarray(np.repeat(grey[..., None], 3, axis=-1), "RGB")
    if mode in ("L", "1", "CMYK", "YCbCr"):
        return im.convert("RGB")
    raise DataError(f"{path}: {mode} image, cannot convert to 8-bit RGB")
