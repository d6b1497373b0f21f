"""A synthetic whole-slide image: a tiled pyramidal TIFF with a planted tumour region.

For tests, the scan benchmark, the README picture and `make demo`: the slide is
mostly glass (flat near-white) with one elliptical piece of H&E-like tissue
(`edge_pcam.runtime.datasets.synthetic.paint_tissue`) and, inside it, a
rectangle of large irregular tumour nuclei. Tissue is painted at PCam's scale
(0.972 µm/px, where the synthetic patches' nuclei have their size) and every
pyramid level is resampled from that painting, so the levels agree.

Memory stays bounded whatever the slide's size: the tissue painting is kept in
a temporary file on disk (numpy memmap, painted one 256-pixel piece at a time)
and tifffile writes each level from an iterator of tiles, one tile at a time.
The resolution tags give the µm per pixel (pixels per centimetre).
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from edge_pcam.runtime.constants import PCAM_MPP
from edge_pcam.runtime.datasets.synthetic import paint_tissue
from edge_pcam.runtime.synthetic_marks import draw_marks

GLASS = (243, 241, 245)  # background: HSV saturation 0.016, well under PCam's 0.07
PIECE = 256  # tissue is painted in pieces of this many pixels at PCAM_MPP
CONTAINERS = ("tiff", "ome", "svs")
APERIO_J2K_YCBCR = 33003  # Aperio's JPEG 2000 compression tag, YCbCr samples

Box = tuple[int, int, int, int]  # (x0, y0, x1, y1) in level-0 pixels, x1/y1 exclusive


@dataclass(frozen=True)
class SyntheticSlide:
    """Where the synthetic slide was written and what is where (level-0 pixel boxes)."""

    path: Path
    width: int
    height: int
    mpp: float
    tissue: Box  # bounding box of the tissue ellipse
    tumour: Box  # the planted tumour rectangle
    levels: tuple[tuple[int, int], ...]  # (width, height) per pyramid level
    blurred: Box | None = None  # with `marks`: the out-of-focus square (3 x 3 scan tiles)


def default_layout(width: int, height: int) -> tuple[Box, Box]:
    """Tissue: an ellipse over the middle fifth of each axis; tumour: a rectangle in its upper left."""
    tissue = (int(width * 0.38), int(height * 0.40), int(width * 0.62), int(height * 0.60))
    tw, th = tissue[2] - tissue[0], tissue[3] - tissue[1]
    tumour = (tissue[0] + int(tw * 0.25), tissue[1] + int(th * 0.25),
              tissue[0] + int(tw * 0.50), tissue[1] + int(th * 0.55))
    return tissue, tumour


def write_synthetic_slide(path: str | os.PathLike, width: int = 20_000, height: int = 20_000,
                          mpp: float = 0.486, *, tissue: Box | None = None, tumour: Box | None = None,
                          tile: int = 512, seed: int = 0, compression: str = "zlib", container: str = "tiff",
                          min_level_size: int = 512, marks: bool = False) -> SyntheticSlide:
    """Write a tiled pyramidal slide (levels halving down to `min_level_size`) and describe it.

    `mpp` is level 0's µm per pixel (0.486 is a 20x scan; 0.243 a 40x one).
    `tissue` and `tumour` are level-0 boxes (default: `default_layout`).
    `container`: "tiff" (pyramid in SubIFDs, µm/px in the resolution tags), "ome" (OME-TIFF with
    PhysicalSizeX/Y, pyramid in SubIFDs) or "svs" (Aperio: levels in the main IFD chain after a
    thumbnail, `MPP =` and `AppMag =` in the description, label and macro images at the end).
    `compression`: tifffile's names ("zlib", "lzw", "jpeg" (YCbCr 4:2:0, as scanners write it),
    "none", ...), or "jpeg2000": Aperio's YCbCr JPEG 2000 (33003) in an SVS, else TIFF's 34712.
    Everything but zlib, none and packbits needs imagecodecs.
    `marks`: pen strokes and an out-of-focus square drawn over the tissue (`runtime.synthetic_marks`).
    """
    if container not in CONTAINERS:
        raise ValueError(f"container must be one of {CONTAINERS}, not {container!r}")
    path = Path(path)
    if tissue is None or tumour is None:
        default_tissue, default_tumour = default_layout(width, height)
        tissue, tumour = tissue or default_tissue, tumour or default_tumour
    levels = [(width, height)]
    while max(levels[-1]) > min_level_size and min(levels[-1]) >= 2:
        w, h = levels[-1]
        levels.append((math.ceil(w / 2), math.ceil(h / 2)))

    with tempfile.TemporaryDirectory(prefix="edge-pcam-slide-") as tmp:
        canvas = _TissueCanvas(Path(tmp) / "canvas.u8", tissue, tumour, mpp, seed, marks)
        blurred = canvas.blurred
        if container == "svs":
            _write_svs(path, canvas, levels, mpp, tile, compression)
        else:
            _write_subifd_pyramid(path, canvas, levels, mpp, tile, compression, ome=container == "ome")
        del canvas
    return SyntheticSlide(path, width, height, mpp, tuple(tissue), tuple(tumour), tuple(levels), blurred)


def _tile_options(compression: str, aperio: bool) -> dict:
    """tifffile.write options for `compression` (see write_synthetic_slide)."""
    if compression == "jpeg":  # tifffile stores RGB input as YCbCr 4:2:0 JPEG
        return dict(compression="jpeg", photometric="rgb", compressionargs={"level": 90})
    if compression == "jpeg2000":
        return dict(compression=APERIO_J2K_YCBCR if aperio else "jpeg2000", photometric="rgb",
                    **({} if aperio else {"compressionargs": {"level": 90}}))
    return dict(compression=None if compression == "none" else compression, photometric="rgb")


def _write_subifd_pyramid(path: Path, canvas: _TissueCanvas, levels: list[tuple[int, int]], mpp: float,
                          tile: int, compression: str, ome: bool) -> None:
    import tifffile

    width, height = levels[0]
    pixels_per_cm = 1e4 / mpp
    with tifffile.TiffWriter(path, bigtiff=True, ome=ome) as tif:
        for index, (w, h) in enumerate(levels):
            level_mpp = mpp * width / w
            options = dict(shape=(h, w, 3), dtype=np.uint8, tile=(tile, tile), resolutionunit="CENTIMETER",
                           resolution=(pixels_per_cm * w / width, pixels_per_cm * h / height),
                           **_tile_options(compression, aperio=False))
            if index == 0:
                options.update(subifds=len(levels) - 1)
                if ome:
                    options.update(metadata={"axes": "YXS", "Name": path.name,
                                             "PhysicalSizeX": mpp, "PhysicalSizeXUnit": "µm",
                                             "PhysicalSizeY": mpp, "PhysicalSizeYUnit": "µm"})
                else:
                    options.update(description="edge-pcam synthetic slide")
            else:
                options.update(subfiletype=1)
            tif.write(canvas.tiles(w, h, level_mpp, tile), **options)


def _write_svs(path: Path, canvas: _TissueCanvas, levels: list[tuple[int, int]], mpp: float,
               tile: int, compression: str) -> None:
    """Aperio's layout; every page with `metadata=None`, since OpenSlide reads only one ImageDescription."""
    import tifffile

    width, height = levels[0]
    codec = {"jpeg": "JPEG/RGB Q=90", "jpeg2000": "J2K/YUV16 Q=90"}.get(compression, compression.upper())
    header = f"Aperio Image Library v12.0.16 \r\n{width}x{height} [0,0 {width}x{height}] ({tile}x{tile}) {codec}"
    fields = f"|AppMag = {round(10 / mpp)}|MPP = {mpp:.4f}|Filename = {path.stem}"
    options = _tile_options(compression, aperio=True)
    thumb_w = min(width, 768)
    thumb_h = max(1, round(height * thumb_w / width))
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        for index, (w, h) in enumerate(levels):
            tiles = canvas.tiles(w, h, mpp * width / w, tile)
            if compression == "jpeg2000":
                tiles = (_aperio_j2k(t) for t in tiles)
            description = header + fields if index == 0 else f"{header} -> {w}x{h}{fields}"
            tif.write(tiles, shape=(h, w, 3), dtype=np.uint8, tile=(tile, tile), description=description,
                      metadata=None, **options)
            if index == 0:  # the thumbnail follows level 0, as in Aperio's files
                tif.write(_whole(canvas, thumb_w, thumb_h, mpp * width / thumb_w), compression="jpeg",
                          photometric="rgb", rowsperstrip=16, metadata=None,
                          description=f"{header} -> {thumb_w}x{thumb_h} - |AppMag = {round(10 / mpp)}")
        label = np.full((300, 300, 3), 255, np.uint8)
        tif.write(label, compression="lzw", photometric="rgb", subfiletype=1, metadata=None,
                  description="Aperio Image Library v12.0.16\r\nlabel 300x300")
        tif.write(_whole(canvas, 600, 200, mpp * width / 600), compression="jpeg", photometric="rgb",
                  subfiletype=9, metadata=None, description="Aperio Image Library v12.0.16\r\nmacro 600x200")


def _whole(canvas: _TissueCanvas, w: int, h: int, mpp: float) -> np.ndarray:
    """The slide at `mpp` µm/px as one (h, w, 3) array (for small pictures: thumbnail, macro)."""
    return next(canvas.tiles(w, h, mpp, max(w, h)))[:h, :w]


def _aperio_j2k(rgb: np.ndarray) -> bytes:
    """A tile as Aperio writes JPEG 2000: a raw codestream of YCbCr samples, no colour transform inside."""
    import imagecodecs

    r, g, b = (rgb[..., i].astype(np.float32) for i in range(3))
    ycbcr = np.stack([0.299 * r + 0.587 * g + 0.114 * b,
                      128 - 0.168736 * r - 0.331264 * g + 0.5 * b,
                      128 + 0.5 * r - 0.418688 * g - 0.081312 * b], axis=-1)
    return imagecodecs.jpeg2k_encode(np.clip(np.rint(ycbcr), 0, 255).astype(np.uint8), level=90,
                                     codecformat="J2K", mct=False)


class _TissueCanvas:
    """The tissue ellipse painted at PCAM_MPP into a disk-backed array, read back as level tiles."""

    def __init__(self, file: Path, tissue: Box, tumour: Box, mpp: float, seed: int, marks: bool = False):
        self.mpp = mpp
        scale = mpp / PCAM_MPP  # canvas pixels per level-0 pixel
        # Canvas covers the tissue box, in canvas pixels, anchored at canvas coordinate (cx0, cy0).
        self.x0, self.y0 = math.floor(tissue[0] * scale), math.floor(tissue[1] * scale)
        self.x1, self.y1 = math.ceil(tissue[2] * scale), math.ceil(tissue[3] * scale)
        w, h = self.x1 - self.x0, self.y1 - self.y0
        self.array = np.lib.format.open_memmap(file, mode="w+", dtype=np.uint8, shape=(h, w, 3))
        tumour_c = (tumour[0] * scale - self.x0, tumour[1] * scale - self.y0,
                    tumour[2] * scale - self.x0, tumour[3] * scale - self.y0)
        for py in range(0, h, PIECE):
            for px in range(0, w, PIECE):
                ph, pw = min(PIECE, h - py), min(PIECE, w - px)
                boxes = _local_box(tumour_c, px, py, pw, ph)
                rng = np.random.default_rng([seed, py // PIECE, px // PIECE])
                painted = paint_tissue(rng, ph, pw, [boxes] if boxes else [])
                inside = _ellipse_mask(px, py, pw, ph, w, h, seed)
                piece = np.where(inside[..., None], painted, np.array(GLASS, np.uint8))
                self.array[py:py + ph, px:px + pw] = piece
        self.blurred = None
        if marks:
            box = draw_marks(self.array, (self.x0, self.y0))
            self.blurred = tuple(round(v / scale) for v in box)  # level-0 pixels
        self.array.flush()

    def tiles(self, level_w: int, level_h: int, level_mpp: float, tile: int) -> Iterator[np.ndarray]:
        """The level's tiles in row-major order, each (tile, tile, 3), glass outside the tissue box."""
        glass = np.empty((tile, tile, 3), np.uint8)
        glass[:] = GLASS
        f = level_mpp / PCAM_MPP  # canvas pixels per level pixel
        h, w = self.array.shape[:2]
        for ty in range(0, level_h, tile):
            for tx in range(0, level_w, tile):
                # This tile's box in canvas coordinates (relative to the canvas origin).
                bx0, by0 = tx * f - self.x0, ty * f - self.y0
                bx1, by1 = bx0 + tile * f, by0 + tile * f
                if bx1 <= 0 or by1 <= 0 or bx0 >= w or by0 >= h:
                    yield glass
                    continue
                ix0, iy0 = max(0, math.floor(bx0)), max(0, math.floor(by0))
                ix1, iy1 = min(w, math.ceil(bx1)), min(h, math.ceil(by1))
                region = Image.fromarray(np.ascontiguousarray(self.array[iy0:iy1, ix0:ix1]))
                # Pixels of this tile that the canvas covers, and the canvas box they map from.
                ox0, oy0 = max(0, math.ceil(-bx0 / f)), max(0, math.ceil(-by0 / f))
                ox1, oy1 = min(tile, math.floor((w - bx0) / f)), min(tile, math.floor((h - by0) / f))
                out = glass.copy()
                if ox1 > ox0 and oy1 > oy0:
                    src = (bx0 + ox0 * f - ix0, by0 + oy0 * f - iy0, bx0 + ox1 * f - ix0, by0 + oy1 * f - iy0)
                    out[oy0:oy1, ox0:ox1] = np.asarray(region.resize((ox1 - ox0, oy1 - oy0), Image.BILINEAR, box=src))
                yield out


def _local_box(box: tuple[float, float, float, float], px: int, py: int, pw: int, ph: int
               ) -> tuple[int, int, int, int] | None:
    """`box` (x0, y0, x1, y1) clipped to the piece at (px, py), as paint_tissue's (y0, y1, x0, x1)."""
    x0, y0 = max(box[0], px) - px, max(box[1], py) - py
    x1, y1 = min(box[2], px + pw) - px, min(box[3], py + ph) - py
    if x1 - x0 < 1 or y1 - y0 < 1:
        return None
    return int(y0), int(math.ceil(y1)), int(x0), int(math.ceil(x1))


def _ellipse_mask(px: int, py: int, pw: int, ph: int, w: int, h: int, seed: int) -> np.ndarray:
    """True inside the tissue: an ellipse filling the canvas with a wavy outline."""
    yy, xx = np.mgrid[py:py + ph, px:px + pw].astype(np.float32)
    dx, dy = (xx + 0.5 - w / 2) / (w / 2), (yy + 0.5 - h / 2) / (h / 2)
    angle = np.arctan2(dy, dx)
    phase = np.random.default_rng([seed, 7]).uniform(0, 2 * np.pi, 2)
    edge = 0.9 + 0.05 * np.sin(3 * angle + phase[0]) + 0.04 * np.sin(7 * angle + phase[1])
    return dx * dx + dy * dy <= edge * edge


def main(argv: list[str] | None = None) -> None:
    """`python -m edge_pcam.runtime.synthetic_slide OUT [--size N] [--mpp X] [--seed S] [--container C]
    [--compression C] [--marks]`."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m edge_pcam.runtime.synthetic_slide",
                                     description="Write a synthetic pyramidal TIFF slide with a planted tumour.")
    parser.add_argument("out", type=Path)
    parser.add_argument("--size", type=int, default=20_000, help="width and height of level 0 in pixels")
    parser.add_argument("--mpp", type=float, default=0.486, help="µm per pixel of level 0 (0.486: 20x)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--container", choices=CONTAINERS, default="tiff",
                        help="tiff (SubIFD pyramid), ome (OME-TIFF) or svs (Aperio layout)")
    parser.add_argument("--compression", default="zlib", help="zlib, lzw, jpeg, jpeg2000 or none")
    parser.add_argument("--marks", action="store_true", help="draw pen strokes and an out-of-focus square on it")
    args = parser.parse_args(argv)
    slide = write_synthetic_slide(args.out, args.size, args.size, mpp=args.mpp, seed=args.seed,
                                  container=args.container, compression=args.compression, marks=args.marks)
    print(f"{slide.path}: {slide.width}x{slide.height} at {slide.mpp} µm/px, {len(slide.levels)} levels; "
          f"tissue {slide.tissue}, tumour {slide.tumour} (x0, y0, x1, y1, level-0 pixels)")


if __name__ == "__main__":
    main()
