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

import os
from pathlib import Path

from PIL import Image

from edge_pcam.errors import DataError
from edge_pcam.runtime.slide_base import Slide

TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
READERS = ("openslide", "tifffile", "pillow")
TIFFFILE_FIRST = ("aperio", "generic-tiff")  # OpenSlide's names of the formats tifffile reads first
# Formats only OpenSlide reads: a clearer message than "not an image" when it is missing.
OPENSLIDE_ONLY = {".mrxs": "MIRAX", ".vms": "Hamamatsu VMS", ".vmu": "Hamamatsu VMU", ".dcm": "DICOM WSI"}


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
