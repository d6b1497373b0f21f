"""Which scan tiles hold tissue: PCam's own rule on a low-resolution thumbnail.

PCam kept a patch only when its HSV saturation reached 0.07 somewhere: glass,
dust-free background and pen-free white areas stay below it, stained tissue
(eosin pink, haematoxylin purple) is well above. Here the rule is applied to
the maximum saturation over each tile's footprint on a thumbnail, so deciding
costs one small image, not a read of the whole slide.
"""

from __future__ import annotations

import numpy as np

SATURATION_THRESHOLD = 0.07


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
    if rows == 0 or cols == 0:
        return np.zeros((rows, cols), values.dtype)
    y0, y1 = footprints(rows, stride, tile, scale, values.shape[0])
    x0, x1 = footprints(cols, stride, tile, scale, values.shape[1])
    by_col = np.stack([values[:, a:b].max(axis=1) for a, b in zip(x0, x1)], axis=1)
    return np.stack([by_col[a:b].max(axis=0) for a, b in zip(y0, y1)], axis=0)


def tissue_tiles(thumbnail: np.ndarray, rows: int, cols: int, stride: int, tile: int, scale: float,
                 threshold: float = SATURATION_THRESHOLD) -> np.ndarray:
    """Boolean (rows, cols): True where a tile's maximum saturation reaches `threshold` (PCam's rule)."""
    return tile_maximum(saturation(thumbnail), rows, cols, stride, tile, scale) >= threshold
