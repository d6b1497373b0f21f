"""Synthetic slides marked as real ones are: pen strokes and a defocused patch drawn on a clean slide
(the tissue-QC tests of the scan)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

INKS = {"blue": (40, 70, 170), "green": (40, 140, 80), "red": (205, 35, 45), "black": (25, 22, 28),
        "faded blue": (150, 170, 220)}
# Pen strokes (level-0 pixels of a 4,000 x 4,000 slide at 0.486 µm/px) and a defocused patch of 3 x 3 tiles.
STROKES = [("black", [(100, 620), (1500, 330), (2600, 660)], 120), ("green", [(200, 3800), (3800, 3870)], 150),
           ("blue", [(3850, 200), (3720, 2200)], 150)]
RED_DOT = [(3340, 3440), (3460, 3560)]
BLUR_BOX = (2304, 2304, 2880, 2880)  # aligned to the 192-pixel tiles: columns and rows 12-14


def write_pyramid(path: Path, level0: np.ndarray, mpp: float) -> None:
    """A tiled pyramidal TIFF of `level0` (levels halving), with its µm/px in the resolution tags."""
    import tifffile

    levels = [level0]
    while max(levels[-1].shape[:2]) > 512:
        levels.append(np.asarray(Image.fromarray(levels[-1]).reduce(2)))
    width = level0.shape[1]
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        for index, level in enumerate(levels):
            per_cm = 1e4 / mpp * level.shape[1] / width
            options = dict(tile=(512, 512), photometric="rgb", compression="zlib", resolutionunit="CENTIMETER",
                           resolution=(per_cm, per_cm))
            options.update(subifds=len(levels) - 1) if index == 0 else options.update(subfiletype=1)
            tif.write(level, **options)


def marked_copy(clean: Path, path: Path, mpp: float, strokes: bool = True,
                blur_box: tuple[int, int, int, int] = BLUR_BOX) -> None:
    """`clean` with pen strokes and a red dot drawn on it (unless not `strokes`) and `blur_box` out of
    focus (a Gaussian blur of 6 level-0 pixels, 3 scan pixels)."""
    import tifffile

    image = Image.fromarray(tifffile.TiffFile(clean).series[0].levels[0].asarray())
    if strokes:
        draw = ImageDraw.Draw(image)
        for colour, points, width in STROKES:
            draw.line(points, fill=INKS[colour], width=width)
        draw.ellipse(RED_DOT, fill=INKS["red"])
    image.paste(image.crop(blur_box).filter(ImageFilter.GaussianBlur(6)), blur_box[:2])
    write_pyramid(path, np.asarray(image), mpp)
