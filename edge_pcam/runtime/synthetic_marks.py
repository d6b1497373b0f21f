"""What real slides carry besides tissue, drawn on a synthetic one: pen strokes and an out-of-focus patch.

For the tissue quality control's tests and the README's picture
(`python -m edge_pcam.runtime.synthetic_slide OUT --marks`): black, green and
blue marker strokes and a red dot on the glass around the tissue, the black
one across its edge (where pens mark slides), and a square of 3 x 3 scan tiles (96 pixels at PCam's 0.972 µm/px, on the
scan grid of stride 96) blurred by a Gaussian of BLUR_PIXELS, as a focus
failure leaves it. Drawn on the synthetic slide's painting at PCam's scale
(`synthetic_slide._TissueCanvas`), one piece at a time, so memory stays
bounded whatever the slide's size.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

PENS = {"black": (25, 22, 28), "green": (40, 140, 80), "blue": (40, 70, 170), "red": (205, 35, 45)}
# Strokes as (pen, points, width), in fractions of the tissue's bounding box (width for x, height for y)
# and of its shorter side for the width; the red dot is a stroke of one point.
STROKES = (("black", ((0.00, 0.07), (0.30, 0.00), (0.62, 0.03)), 0.03),
           ("green", ((0.02, 0.99), (0.98, 0.985)), 0.03),
           ("blue", ((0.995, 0.02), (0.985, 0.60)), 0.03),
           ("red", ((0.93, 0.93),), 0.05))
BLUR_CENTRE = (0.68, 0.66)  # the out-of-focus square's centre, as a fraction of the box
BLUR_TILES, GRID = 3, 96  # a square of 3 x 3 tiles of the scan grid (canvas pixels are scan pixels)
BLUR_PIXELS = 3.0  # Gaussian radius in scan pixels (3 µm)
PIECE = 256


def draw_marks(canvas: np.ndarray, origin: tuple[int, int]) -> tuple[int, int, int, int]:
    """Draw the strokes and the blurred square on `canvas` ((h, w, 3) uint8, PCam's scale, its top-left at
    `origin` on the slide's grid at that scale); the blurred square (x0, y0, x1, y1) in those coordinates."""
    h, w = canvas.shape[:2]
    side = min(w, h)
    strokes = [(np.array(PENS[pen], np.uint8), np.array([(x * w, y * h) for x, y in points]), width * side / 2)
               for pen, points, width in STROKES]
    for py in range(0, h, PIECE):
        for px in range(0, w, PIECE):
            piece = canvas[py:py + PIECE, px:px + PIECE]
            yy, xx = np.mgrid[py:py + piece.shape[0], px:px + piece.shape[1]] + 0.5
            for colour, points, reach in strokes:
                piece[_distance(xx, yy, points) <= reach] = colour
    size = BLUR_TILES * GRID
    x0 = int(round((origin[0] + BLUR_CENTRE[0] * w - size / 2) / GRID)) * GRID - origin[0]
    y0 = int(round((origin[1] + BLUR_CENTRE[1] * h - size / 2) / GRID)) * GRID - origin[1]
    margin = int(4 * BLUR_PIXELS)
    cx0, cy0 = max(0, x0 - margin), max(0, y0 - margin)
    crop = Image.fromarray(np.ascontiguousarray(canvas[cy0:y0 + size + margin, cx0:x0 + size + margin]))
    soft = np.asarray(crop.filter(ImageFilter.GaussianBlur(BLUR_PIXELS)))
    canvas[y0:y0 + size, x0:x0 + size] = soft[y0 - cy0:y0 - cy0 + size, x0 - cx0:x0 - cx0 + size]
    return origin[0] + x0, origin[1] + y0, origin[0] + x0 + size, origin[1] + y0 + size


def _distance(xx: np.ndarray, yy: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Distance of each pixel centre to the polyline through `points` (to the point, for one)."""
    if len(points) == 1:
        return np.hypot(xx - points[0, 0], yy - points[0, 1])
    best = np.full(xx.shape, np.inf)
    for (ax, ay), (bx, by) in zip(points[:-1], points[1:]):
        dx, dy = bx - ax, by - ay
        t = np.clip(((xx - ax) * dx + (yy - ay) * dy) / (dx * dx + dy * dy), 0, 1)
        best = np.minimum(best, np.hypot(xx - ax - t * dx, yy - ay - t * dy))
    return best
