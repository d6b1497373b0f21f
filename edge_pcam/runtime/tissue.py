"""Which scan tiles hold tissue worth classifying: PCam's own rule, and quality control on top.

PCam kept a patch only when its HSV saturation reached 0.07 somewhere: glass,
dust-free background and pen-free white areas stay below it, stained tissue
(eosin pink, haematoxylin purple) is well above. Here the rule is applied to
the maximum saturation over each tile's footprint on a thumbnail, so deciding
costs one small image, not a read of the whole slide.

Quality control keeps out of the tissue what the rule lets in and the model
was never shown, each tile getting one reason (`REASONS`):

- background: no pixel reaches PCam's saturation (empty glass, or white
  overexposed areas), ink pixels not counted.
- ink: at least INK_FRACTION of the tile's thumbnail pixels are pen or marker
  ink. H&E stains lie between purple and pink (hue 255-345 degrees on real
  PCam patches, none below 240 degrees at saturation 0.25 and above), so blue
  and green ink are hues 70-240 degrees with saturation >= 0.2; red ink is
  hue within 15 degrees of red at saturation >= 0.65 (eosin's pink stays
  under 0.6); black ink, and any near-black debris, has value < 0.2.
- blur: the tile, at scan scale, has little fine detail for its contrast:
  variance of the Laplacian over variance of the grey levels below
  BLUR_RATIO (a sharp tile's fine detail is a large part of its variation, a
  defocused one's is not, whatever the stain's strength). Measured on tiles
  the scan reads, so it runs on the batches being classified. A tile without
  any variation (empty glass at the tissue's edge that the thumbnail's
  coarser pixels took for tissue) is background, not blur.

Softness of the whole slide. Tiles far softer than BLUR_RATIO's defocus
still pass, but the model's rates move long before: a Gaussian blur of a
third of a pixel or more lowers its sensitivity and biases a 25% burden by
2 points or more (benchmarks/results/softness.md). So the median
sharpness of the tiles that pass is compared with that of PCam's validation
patches (PCAM_SHARPNESS_MEDIAN), or with that of a lab's own patches where
`edge-pcam calibrate` stored it with the rates it measured on them; below
SOFT_SLIDE_RATIO of it the slide is soft and the scan warns that the burden
may be underestimated.

`thumbnail_reasons` needs only the thumbnail the scan reads for its tissue
mask; `blurred` takes the tiles as they are classified; `TissueQC` holds the
per-tile reasons and reports the excluded area per reason in mm^2.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

SATURATION_THRESHOLD = 0.07
REASONS = ("tissue", "background", "ink", "blur")
TISSUE, BACKGROUND, INK, BLUR = range(len(REASONS))
INK_FRACTION = 0.05
BLUE_GREEN_HUE = (70.0, 240.0)  # degrees
BLUE_GREEN_SATURATION = 0.2
RED_HUE_REACH = 15.0  # degrees either side of 0
RED_SATURATION = 0.65
DARK_VALUE = 0.2  # of 1: black ink and debris
BLUR_RATIO = 0.03
PCAM_SHARPNESS_MEDIAN = 6.64  # median sharpness of PCam's 3,000 valid patches (benchmarks/softness.py)
SOFT_SLIDE_RATIO = 0.8  # of PCAM_SHARPNESS_MEDIAN: below it the model's sensitivity falls (softness.md)
GREY_WEIGHTS = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R BT.601 luma
SHARPNESS_CHUNK = 8  # tiles measured at a time: their float copies stay in cache (64 at once: half the speed)


def saturation(rgb: np.ndarray) -> np.ndarray:
    """HSV saturation (max - min) / max of uint8 RGB, float32 in [0, 1] (0 for black)."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    high = np.maximum(np.maximum(r, g), b)
    low = np.minimum(np.minimum(r, g), b)
    return ((high - low) / np.maximum(high, 1).astype(np.float32)).astype(np.float32)


def footprints(count: int, stride: int, tile: int, scale: float, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive) thumbnail pixels of `count` tiles along one axis.

    Edges are rounded to the nearest pixel (not outwards, which would let a
    tile see its neighbour's tissue); every footprint has at least one pixel.
    """
    starts = np.minimum(limit - 1, np.round(np.arange(count) * stride * scale).astype(np.int64))
    ends = np.minimum(limit, np.round((np.arange(count) * stride + tile) * scale).astype(np.int64))
    return starts, np.maximum(ends, starts + 1)


def tile_maximum(values: np.ndarray, rows: int, cols: int, stride: int, tile: int, scale: float) -> np.ndarray:
    """Maximum of `values` (a thumbnail-sized map) over each tile's footprint: (rows, cols).

    Tile (r, c) covers scan pixels [r*stride, r*stride + tile) and likewise for
    columns; `scale` is thumbnail pixels per scan pixel.
    """
    return _over_footprints(values, rows, cols, stride, tile, scale, np.max)


def tile_mean(values: np.ndarray, rows: int, cols: int, stride: int, tile: int, scale: float) -> np.ndarray:
    """Mean of `values` over each tile's footprint, as `tile_maximum` takes the maximum."""
    total = _over_footprints(values.astype(np.float64), rows, cols, stride, tile, scale, np.sum)
    area = _over_footprints(np.ones(values.shape[:2]), rows, cols, stride, tile, scale, np.sum)
    return total / area


def _over_footprints(values: np.ndarray, rows: int, cols: int, stride: int, tile: int, scale: float,
                     reduce: Any) -> np.ndarray:
    if rows == 0 or cols == 0:
        return np.zeros((rows, cols), values.dtype)
    y0, y1 = footprints(rows, stride, tile, scale, values.shape[0])
    x0, x1 = footprints(cols, stride, tile, scale, values.shape[1])
    by_col = np.stack([reduce(values[:, a:b], axis=1) for a, b in zip(x0, x1)], axis=1)
    return np.stack([reduce(by_col[a:b], axis=0) for a, b in zip(y0, y1)], axis=0)


def tissue_tiles(thumbnail: np.ndarray, rows: int, cols: int, stride: int, tile: int, scale: float,
                 threshold: float = SATURATION_THRESHOLD) -> np.ndarray:
    """Boolean (rows, cols): True where a tile's maximum saturation reaches `threshold` (PCam's rule)."""
    return tile_maximum(saturation(thumbnail), rows, cols, stride, tile, scale) >= threshold


def hue(rgb: np.ndarray) -> np.ndarray:
    """HSV hue of uint8 RGB in degrees [0, 360), float32 (0 for greys)."""
    x = rgb.astype(np.float32)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    high, low = x.max(axis=-1), x.min(axis=-1)
    span = np.maximum(high - low, 1e-6)
    sector = np.where(high == r, ((g - b) / span) % 6, np.where(high == g, (b - r) / span + 2, (r - g) / span + 4))
    return np.where(high > low, sector * 60, 0).astype(np.float32)


def ink_pixels(thumbnail: np.ndarray) -> np.ndarray:
    """Boolean map of pen or marker ink (blue, green, red, black) on a uint8 RGB thumbnail."""
    sat, h = saturation(thumbnail), hue(thumbnail)
    value = thumbnail.max(axis=-1) / 255.0
    blue_green = (h >= BLUE_GREEN_HUE[0]) & (h < BLUE_GREEN_HUE[1]) & (sat >= BLUE_GREEN_SATURATION)
    red = ((h < RED_HUE_REACH) | (h >= 360 - RED_HUE_REACH)) & (sat >= RED_SATURATION)
    return blue_green | red | (value < DARK_VALUE)


def thumbnail_reasons(thumbnail: np.ndarray, rows: int, cols: int, stride: int, tile: int,
                      scale: float) -> np.ndarray:
    """(rows, cols) uint8 reason per tile from the thumbnail alone: TISSUE, BACKGROUND or INK.

    Arguments as `tissue_tiles`. Ink is left out of PCam's saturation rule, so ink on glass is not tissue.
    """
    ink = ink_pixels(thumbnail)
    clean_saturation = np.where(ink, 0.0, saturation(thumbnail))
    has_tissue = tile_maximum(clean_saturation, rows, cols, stride, tile, scale) >= SATURATION_THRESHOLD
    inked = tile_mean(ink, rows, cols, stride, tile, scale) >= INK_FRACTION
    return np.where(inked, INK, np.where(has_tissue, TISSUE, BACKGROUND)).astype(np.uint8)


def sharpness(tiles: np.ndarray) -> np.ndarray:
    """Per tile of (N, H, W, 3) uint8: variance of the grey Laplacian over variance of grey (0: flat)."""
    space = _workspace(*tiles.shape[1:3])
    if len(tiles) <= SHARPNESS_CHUNK:
        return _sharpness(tiles, space)
    return np.concatenate([_sharpness(tiles[i:i + SHARPNESS_CHUNK], space)
                           for i in range(0, len(tiles), SHARPNESS_CHUNK)])


class _Workspace:
    """The float arrays `_sharpness` computes in, for SHARPNESS_CHUNK tiles of `height` x `width`: kept by
    each thread and reused, because fresh ones (over a megabyte a chunk) are new pages for the kernel to
    map and zero at every call (about six page faults a tile), and cold in the caches."""

    def __init__(self, height: int, width: int):
        n, size = SHARPNESS_CHUNK, height * width
        self.tile_shape = (height, width)
        self.rgb = np.empty((n, height, width, 3), np.float32)
        self.grey = np.empty((n, size), np.float32)
        self.lap = np.empty((n, size - 2 * width), np.float32)
        self.term = np.empty((n, size - 2 * width), np.float32)
        self.interior = np.empty((n, (height - 2) * (width - 2)), np.float32)


_workspaces = threading.local()


def _workspace(height: int, width: int) -> _Workspace:
    space = getattr(_workspaces, "space", None)
    if space is None or space.tile_shape != (height, width):
        space = _workspaces.space = _Workspace(height, width)
    return space


def _sharpness(tiles: np.ndarray, space: _Workspace) -> np.ndarray:
    n, height, width = tiles.shape[:3]
    rgb, grey, lap, term = space.rgb[:n], space.grey[:n], space.lap[:n], space.term[:n]
    np.copyto(rgb, tiles, casting="unsafe")
    np.matmul(rgb, GREY_WEIGHTS, out=grey.reshape(n, height, width))
    # The 4-neighbour Laplacian at every pixel of rows 1 to height-2, each tile's rows taken as one run so that
    # every term is one slice; a row's first and last pixel take a wrapped neighbour and are dropped below.
    w = width
    np.add(grey[:, :-2 * w], grey[:, 2 * w:], out=lap)
    lap += grey[:, w - 1:-w - 1]
    lap += grey[:, w + 1:height * w - w + 1]
    lap -= np.multiply(grey[:, w:-w], 4, out=term)
    interior = space.interior[:n]  # the tiles' columns 1..w-2
    np.copyto(interior.reshape(n, height - 2, w - 2), lap.reshape(n, height - 2, w)[:, :, 1:-1])
    spread = _variance_in_place(grey)
    return np.where(spread > 0, _variance_in_place(interior) / np.maximum(spread, 1e-6), 0.0)


def _variance_in_place(values: np.ndarray) -> np.ndarray:
    """Population variance of each row of the 2-D float array `values`, which is centred in place."""
    values -= values.mean(axis=1, keepdims=True)
    return np.einsum("ij,ij->i", values, values) / values.shape[1]


def median_in_focus(values: np.ndarray) -> float | None:
    """Median of the sharpness `values` the scan keeps (at or above BLUR_RATIO; NaN: not measured), None if none.

    The one rule for a slide's tiles and for the patches it is compared with (PCAM_SHARPNESS_MEDIAN, calibrate).
    """
    values = np.asarray(values, np.float64)
    kept = values[values >= BLUR_RATIO]
    return float(np.median(kept)) if len(kept) else None


def blurred(tiles: np.ndarray) -> np.ndarray:
    """Boolean per tile: out of focus (sharpness below BLUR_RATIO)."""
    return sharpness(tiles) < BLUR_RATIO


@dataclass(frozen=True)
class TissueQC:
    """Per-tile reasons (uint8 codes into REASONS) and the area one grid cell stands for."""

    reasons: np.ndarray
    cell_mm2: float  # (stride x µm/px of the scan / 1000)^2
    sharpness: np.ndarray | None = None  # (rows, cols) measured sharpness, NaN where not measured

    @property
    def median_sharpness(self) -> float | None:
        """Median sharpness of the tiles that pass QC (None before any was measured)."""
        return None if self.sharpness is None else median_in_focus(self.sharpness[self.tissue])

    def softness(self, reference: float | None = None) -> dict[str, Any]:
        """The slide's median sharpness against `reference`, the median of the patches the model's rates
        were measured on (None: PCam's validation patches); soft below SOFT_SLIDE_RATIO of it."""
        median, reference = self.median_sharpness, reference or PCAM_SHARPNESS_MEDIAN
        return {"median": median, "reference": reference, "soft_below": SOFT_SLIDE_RATIO * reference,
                "soft": median is not None and median < SOFT_SLIDE_RATIO * reference}

    @property
    def tissue(self) -> np.ndarray:
        return self.reasons == TISSUE

    def excluded_mm2(self) -> dict[str, float]:
        """Area kept out of the tissue, per reason (background, ink, blur)."""
        counts = np.bincount(self.reasons.reshape(-1), minlength=len(REASONS))
        return {name: float(counts[code] * self.cell_mm2) for code, name in enumerate(REASONS) if code != TISSUE}

    def with_blur(self, cells: np.ndarray) -> TissueQC:
        """A copy where the tissue tiles marked in the boolean grid `cells` are out of focus."""
        return TissueQC(np.where(cells & self.tissue, BLUR, self.reasons).astype(np.uint8), self.cell_mm2,
                        self.sharpness)

    def with_sharpness(self, values: np.ndarray) -> TissueQC:
        """A copy with the tiles' measured `sharpness` (a (rows, cols) grid, NaN where not measured) applied:
        tissue tiles below BLUR_RATIO are out of focus, except those without any variation (sharpness 0:
        empty glass the thumbnail took for tissue at the tissue's edge), which are background."""
        flat = (values == 0) & self.tissue
        qc = TissueQC(np.where(flat, BACKGROUND, self.reasons).astype(np.uint8), self.cell_mm2, values)
        return qc.with_blur(values < BLUR_RATIO)

    def as_dict(self, reference_sharpness: float | None = None) -> dict[str, Any]:
        """The QC as JSON; `reference_sharpness` as `softness`."""
        return {"tissue_mm2": float(self.tissue.sum() * self.cell_mm2), "excluded_mm2": self.excluded_mm2(),
                "tissue_tiles": int(self.tissue.sum()), "sharpness": self.softness(reference_sharpness),
                "rules": {"background": f"no pixel at HSV saturation >= {SATURATION_THRESHOLD} (PCam's rule)",
                          "ink": f">= {INK_FRACTION:.0%} of the tile's thumbnail pixels blue, green, red or black ink",
                          "blur": f"Laplacian variance / grey variance < {BLUR_RATIO} at scan scale"}}
