"""Where the scan's tiles are and how they are read: the grid at PCam's µm/px, the tissue mask,
tiles cut from blocks of the slide, and the pictures the outputs draw on."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from edge_pcam.errors import EdgePcamError
from edge_pcam.runtime.constants import PATCH_SHAPE, PCAM_MPP
from edge_pcam.runtime.slide_base import Slide
from edge_pcam.runtime.tissue import TissueQC, thumbnail_reasons

TILE = PATCH_SHAPE[0]  # tiles are the model's input: 96 pixels at PCam's µm/px
EXACT_LEVEL = 0.01  # a pyramid level within 1% of PCam's µm/px is read as it is, not resampled
THUMBNAIL_PIXELS_PER_STRIDE = 8
THUMBNAIL_SIDE = (1024, 4096)  # the thumbnail's long side, at least / at most
HEATMAP_SIDE = 1200  # the heatmap's long side (the tissue's bounding box), unless finer than the scan
BLOCK_PIXELS = 384  # tiles are cut from regions of about this many scan pixels a side: small enough that a
# region, its resampled copy and its tiles stay in the CPU cache (768 took more CPU per tile on the scan benchmark)


@dataclass(frozen=True)
class ScanGeometry:
    """Where the tiles are: the scan grid at `mpp` µm/px and its mapping to level-0 pixels.

    Tile (row, col) covers scan pixels [row*stride, row*stride + TILE) (likewise
    for columns); `origin` gives its top-left corner in level-0 pixels.
    """

    mpp: float  # µm per pixel the tiles are cut at
    level: int  # pyramid level read
    rows: int
    cols: int
    stride: int  # scan pixels between tiles
    slide_mpp: float  # µm per pixel of the slide's level 0

    @property
    def shape(self) -> tuple[int, int]:
        return self.rows, self.cols

    @property
    def level0_per_scan_pixel(self) -> float:
        return self.mpp / self.slide_mpp

    def origin(self, row: int, col: int) -> tuple[int, int]:
        """Level-0 (x, y) of tile (row, col)'s top-left corner."""
        f = self.level0_per_scan_pixel
        return int(round(col * self.stride * f)), int(round(row * self.stride * f))

    @property
    def tile_level0(self) -> float:
        """A tile's side in level-0 pixels."""
        return TILE * self.level0_per_scan_pixel

    @property
    def stride_level0(self) -> float:
        """The grid's step in level-0 pixels."""
        return self.stride * self.level0_per_scan_pixel

    @property
    def cell_mm2(self) -> float:
        """The area one grid cell stands for (a stride square), in mm²."""
        return (self.stride * self.mpp / 1000) ** 2


def plan_geometry(slide: Slide, stride: int) -> ScanGeometry:
    """The scan grid: PCam's µm/px (or an exact pyramid level), tiles of 96 at `stride`."""
    level = slide.best_level(PCAM_MPP)
    level_mpp = slide.level_mpp(level)
    mpp = level_mpp if abs(level_mpp / PCAM_MPP - 1) <= EXACT_LEVEL else PCAM_MPP
    width, height = slide.size_at(mpp)
    rows = (height - TILE) // stride + 1 if height >= TILE else 0
    cols = (width - TILE) // stride + 1 if width >= TILE else 0
    if rows == 0 or cols == 0:
        raise EdgePcamError(f"{slide.path}: {width}x{height} pixels at {mpp:.3f} µm/px is smaller than "
                            f"one {TILE}-pixel tile")
    return ScanGeometry(mpp, level, rows, cols, stride, slide.require_mpp())


def find_tissue(slide: Slide, geometry: ScanGeometry) -> tuple[np.ndarray, float, TissueQC]:
    """A thumbnail (about THUMBNAIL_PIXELS_PER_STRIDE pixels per stride), its µm/px, and each tile's
    quality-control reason from it (`runtime.tissue.thumbnail_reasons`): tissue by PCam's saturation
    rule with ink left out, background or ink. Blur is measured later, on the tiles classified."""
    extent = max(slide.size_at(geometry.mpp))
    thumb_mpp = geometry.mpp * geometry.stride / THUMBNAIL_PIXELS_PER_STRIDE
    thumb_mpp = min(max(thumb_mpp, geometry.mpp * extent / THUMBNAIL_SIDE[1]),
                    max(geometry.mpp, geometry.mpp * extent / THUMBNAIL_SIDE[0]))
    thumbnail = slide.thumbnail(thumb_mpp)
    reasons = thumbnail_reasons(thumbnail, geometry.rows, geometry.cols, geometry.stride, TILE,
                                geometry.mpp / thumb_mpp)
    return thumbnail, thumb_mpp, TissueQC(reasons, geometry.cell_mm2)


def iter_regions(slide: Slide, geometry: ScanGeometry, cells: np.ndarray
                 ) -> Iterator[tuple[list[tuple[int, int]], np.ndarray, list[tuple[int, int]]]]:
    """(cells, region, offsets) per block of the grid: each block's region read and resampled once, and
    where in it each cell's tile begins ((y, x) in region pixels; the tile is TILE a side from there).

    `cells` is a boolean (rows, cols) grid of the tiles to read. The region read is
    the bounding box of the block's marked tiles, not the whole block.
    """
    stride = geometry.stride
    per_block = max(1, (BLOCK_PIXELS - TILE) // stride + 1)
    for r0 in range(0, geometry.rows, per_block):
        for c0 in range(0, geometry.cols, per_block):
            block = cells[r0:r0 + per_block, c0:c0 + per_block]
            if not block.any():
                continue
            rs, cs = np.nonzero(block)
            top, left = int(rs.min()), int(cs.min())
            dr, dc = rs - top, cs - left  # grid offsets inside the region
            height, width = int(dr.max()) * stride + TILE, int(dc.max()) * stride + TILE
            region = slide.read_scaled(geometry.mpp, (c0 + left) * stride, (r0 + top) * stride, width, height)
            yield ([(r0 + int(r), c0 + int(c)) for r, c in zip(rs, cs)], region,
                   [(int(r) * stride, int(c) * stride) for r, c in zip(dr, dc)])


def read_tile(slide: Slide, geometry: ScanGeometry, row: int, col: int) -> np.ndarray:
    """Tile (row, col) as uint8 (96, 96, 3) at scan scale."""
    return slide.read_scaled(geometry.mpp, col * geometry.stride, row * geometry.stride, TILE, TILE)


def tissue_picture(slide: Slide, geometry: ScanGeometry, tissue: np.ndarray, thumbnail: np.ndarray,
                   thumb_mpp: float) -> tuple[np.ndarray, float, tuple[float, float]]:
    """The heatmap's background: the tissue's bounding box (plus two tiles) read at HEATMAP_SIDE pixels.

    Returns the picture, its µm/px and the scan-pixel (x, y) of its top-left;
    the whole thumbnail when there is no tissue.
    """
    if not tissue.any():
        return thumbnail, thumb_mpp, (0.0, 0.0)
    rows, cols = np.nonzero(tissue)
    stride, margin = geometry.stride, 2 * TILE
    width, height = slide.size_at(geometry.mpp)
    x0, y0 = max(0, cols.min() * stride - margin), max(0, rows.min() * stride - margin)
    x1, y1 = min(width, cols.max() * stride + TILE + margin), min(height, rows.max() * stride + TILE + margin)
    mpp = max(geometry.mpp, geometry.mpp * max(x1 - x0, y1 - y0) / HEATMAP_SIDE)
    f = geometry.mpp / mpp
    box = (int(x0 * f), int(y0 * f), max(1, int((x1 - x0) * f)), max(1, int((y1 - y0) * f)))
    return slide.thumbnail(mpp, box), mpp, (box[0] / f, box[1] / f)
