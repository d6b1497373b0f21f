"""Suspicious regions of a scanned slide in millimetres, and the slide's size class (Camelyon17).

A region is a connected group of positive tiles after smoothing:

1. Evidence. Each tile's probability becomes log-odds, with P clipped to
   [1/256, 255/256] (an int8 model's output step): for a calibrated model the
   log-odds is the tile's log-likelihood ratio, so adding log-odds over tiles
   adds independent evidence, and the clip keeps one overconfident tile from
   outweighing its neighbours.
2. Smoothing. The mean log-odds over each tile's 3 x 3 neighbourhood (tissue
   tiles only). A tile seeds a region where that mean is at least
   logit(threshold) + SEED_MARGIN: the neighbourhood together is at least e
   (2.7) times as likely tumour as the threshold's odds. An isolated false
   positive among normal tiles cannot reach it, and a group of a few must be
   dense; a block of tumour reaches it well inside its edge.
3. Extent. The seeds, plus the tiles at or above `threshold` that touch a
   seed: the rim of the tumour down to its corners, which the 3 x 3 mean
   alone erodes (and a square's longest diameter runs corner to corner).
4. Support. Groups (8-connected) holding fewer than MIN_AREA_MM2 of tiles at
   or above `threshold` (8 of PCam's tiles) are dropped: at a false-positive
   rate near 10% per tile such groups arise by chance in normal tissue, so a
   scan cannot tell isolated tumour cells (<= 0.2 mm, one or two tiles) from
   noise, and reports none rather than false ones.

The parameters were chosen on a pilot of benchmarks/burden.py (mosaics of real
patches; other seeds than the reported run) and on 1,000 simulated mosaics per
planted size drawn from the model's probabilities on the valid split: a
smaller margin or no support rule let chance groups in tumour-free mosaics pass
as micrometastases, a larger margin lost more 4 x 4 blocks, and a floor on
the rim tiles' own neighbourhood mean trimmed stray positives off the rim but
lost more 4 x 4 blocks.
Results: benchmarks/results/burden.md.

Tile extent. Tiles of 96 pixels at PCam's 0.972 µm/px step by `stride`; PCam
labels a patch by its centre 32 x 32 pixels. Each tile stands for the square
of side `stride` centred on its centre (its Voronoi cell in the grid): at
stride 96 the whole tile, at stride 32 exactly the labelled centre. The cells
tile the plane without overlap, so outlines are unions of cells and areas add up.

Outlines are traced along the cells' edges in level-0 pixels: the outer ring
counter-clockwise and holes clockwise by the signed (shoelace) area of the (x,
y) numbers, GeoJSON's right-hand rule (on screen, with y pointing down, the
outer ring turns clockwise). Diagonal neighbours belong to one region.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edge_pcam.runtime.constants import PATCH_SHAPE, PCAM_MPP

PROBABILITY_STEP = 1 / 256
SEED_MARGIN = 1.0  # log-odds
PCAM_TILE_MM = PATCH_SHAPE[0] * PCAM_MPP / 1000
MIN_AREA_MM2 = 8 * PCAM_TILE_MM ** 2
ITC_MM, MICROMET_MM = 0.2, 2.0  # Camelyon17: ITC <= 0.2 mm < micrometastasis <= 2 mm < macrometastasis

Point = tuple[float, float]
NEIGHBOURS = [(dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1) if (dr, dc) != (0, 0)]


@dataclass(frozen=True)
class Region:
    """One suspicious region: outline and holes in level-0 pixels, sizes in mm, probabilities of its tiles."""

    outline: list[Point]  # closed ring (first == last), counter-clockwise
    holes: list[list[Point]]  # closed rings, clockwise; may be empty
    centroid: Point
    diameter_mm: float  # longest diameter
    area_mm2: float
    mean_probability: float
    max_probability: float
    tiles: int


def size_category(diameter_mm: float) -> str:
    """Camelyon17's class of a metastasis by its longest diameter: negative, itc, micromet or macromet."""
    if not diameter_mm > 0:
        return "negative"
    if diameter_mm <= ITC_MM:
        return "itc"
    return "micromet" if diameter_mm <= MICROMET_MM else "macromet"


def neighbourhood_mean(values: np.ndarray) -> np.ndarray:
    """Mean over each cell's 3 x 3 neighbourhood of the finite values (NaN where the cell itself is NaN)."""
    finite = np.isfinite(values)
    padded = np.pad(np.where(finite, values, 0.0), 1)
    present = np.pad(finite.astype(np.float64), 1)
    rows, cols = values.shape
    total = sum(padded[1 + dr:1 + dr + rows, 1 + dc:1 + dc + cols] for dr, dc in [(0, 0), *NEIGHBOURS])
    count = sum(present[1 + dr:1 + dr + rows, 1 + dc:1 + dc + cols] for dr, dc in [(0, 0), *NEIGHBOURS])
    return np.where(finite, total / np.maximum(count, 1), np.nan)


def region_mask(probabilities: np.ndarray, threshold: float) -> np.ndarray:
    """Boolean grid of the tiles in suspicious regions (before the support rule): seeds and their rim."""
    p = np.asarray(probabilities, np.float64)
    q = np.clip(p, PROBABILITY_STEP, 1 - PROBABILITY_STEP)
    t = min(max(threshold, PROBABILITY_STEP), 1 - PROBABILITY_STEP)
    level = math.log(t / (1 - t))
    with np.errstate(invalid="ignore"):
        seeds = neighbourhood_mean(np.log(q / (1 - q))) >= level + SEED_MARGIN
        rim = p >= threshold
    return seeds | (_dilate(seeds) & rim)


def find_regions(probabilities: np.ndarray, threshold: float, origin: Callable[[int, int], tuple[float, float]],
                 tile_level0: float, stride_level0: float, mpp_level0: float) -> list[Region]:
    """Suspicious regions of the (rows, cols) probability grid (NaN: not tissue), largest diameter first.

    `origin(row, col)` is the level-0 (x, y) of a tile's top-left corner; tiles are `tile_level0`
    level-0 pixels a side, `stride_level0` apart; level 0 has `mpp_level0` µm per pixel.
    """
    p = np.asarray(probabilities, np.float64)
    if p.ndim != 2:
        raise ValueError(f"probabilities must be a (rows, cols) grid, got shape {p.shape}")
    return regions_from_mask(region_mask(p, threshold), p, threshold, origin, tile_level0, stride_level0,
                             mpp_level0)


def regions_from_mask(mask: np.ndarray, probabilities: np.ndarray, threshold: float,
                      origin: Callable[[int, int], tuple[float, float]], tile_level0: float,
                      stride_level0: float, mpp_level0: float, min_area_mm2: float = MIN_AREA_MM2
                      ) -> list[Region]:
    """Regions of the 8-connected groups of `mask` holding at least `min_area_mm2` of tiles at or above
    `threshold`, largest diameter first; the other arguments as `find_regions`."""
    p = np.asarray(probabilities, np.float64)
    cell_mm = stride_level0 * mpp_level0 / 1000
    min_tiles = math.ceil(round(min_area_mm2 / cell_mm ** 2, 6))
    x0, y0 = origin(0, 0)
    corner = (x0 + tile_level0 / 2 - stride_level0 / 2, y0 + tile_level0 / 2 - stride_level0 / 2)

    def to_level0(point: tuple[int, int]) -> Point:
        return (corner[0] + point[0] * stride_level0, corner[1] + point[1] * stride_level0)

    regions = []
    for cells in _components(mask):
        values = p[tuple(np.array(cells).T)]
        if int((values >= threshold).sum()) < min_tiles:
            continue
        rings = [[to_level0(v) for v in ring] for ring in _trace(set(cells))]
        outer = [r for r in rings if _signed_area(r) > 0]
        holes = [r for r in rings if _signed_area(r) < 0]
        centres = np.array([origin(r, c) for r, c in cells], np.float64) + tile_level0 / 2
        centroid = tuple(float(v) for v in centres.mean(axis=0))
        regions.append(Region(outline=outer[0], holes=holes, centroid=centroid,
                              diameter_mm=_diameter(outer[0]) * mpp_level0 / 1000,
                              area_mm2=len(cells) * cell_mm ** 2, mean_probability=float(np.nanmean(values)),
                              max_probability=float(np.nanmax(values)), tiles=len(cells)))
    return sorted(regions, key=lambda r: (-r.diameter_mm, -r.area_mm2))


def _dilate(mask: np.ndarray) -> np.ndarray:
    """Cells with a True cell among their 8 neighbours or themselves."""
    padded = np.pad(mask, 1)
    rows, cols = mask.shape
    out = mask.copy()
    for dr, dc in NEIGHBOURS:
        out |= padded[1 + dr:1 + dr + rows, 1 + dc:1 + dc + cols]
    return out


def _components(mask: np.ndarray) -> list[list[tuple[int, int]]]:
    """8-connected groups of True cells, each a list of (row, col) in reading order."""
    todo = {(int(r), int(c)) for r, c in zip(*np.nonzero(mask))}
    groups = []
    while todo:
        start = min(todo)
        todo.remove(start)
        group, stack = [start], [start]
        while stack:
            r, c = stack.pop()
            for dr, dc in NEIGHBOURS:
                cell = (r + dr, c + dc)
                if cell in todo:
                    todo.remove(cell)
                    group.append(cell)
                    stack.append(cell)
        groups.append(sorted(group))
    return groups


def _trace(cells: set[tuple[int, int]]) -> list[list[tuple[int, int]]]:
    """Closed rings (lattice points (x = col, y = row)) around a set of cells, collinear points removed.

    Each cell contributes its edges counter-clockwise; edges between two cells of the set cancel.
    At a vertex where two rings touch, the ring turns right, so diagonal cells share one ring.
    """
    following: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for r, c in cells:
        square = [(c, r), (c + 1, r), (c + 1, r + 1), (c, r + 1)]
        beyond = [(r - 1, c), (r, c + 1), (r + 1, c), (r, c - 1)]  # the cell across each edge
        for k, other in enumerate(beyond):
            if other not in cells:
                following.setdefault(square[k], []).append(square[(k + 1) % 4])

    def successor(edge: tuple[tuple[int, int], tuple[int, int]]) -> tuple[tuple[int, int], tuple[int, int]]:
        (ax, ay), (bx, by) = edge
        d = (bx - ax, by - ay)

        def turn(end: tuple[int, int]) -> int:  # < 0 right, 0 straight, > 0 left
            return d[0] * (end[1] - by) - d[1] * (end[0] - bx)

        return (bx, by), min(following[(bx, by)], key=turn)

    unused = {(a, b) for a, ends in following.items() for b in ends}
    rings = []
    while unused:
        first = min(unused)
        ring, edge = [], first
        while True:
            unused.discard(edge)
            ring.append(edge[0])
            edge = successor(edge)
            if edge == first:
                break
        rings.append(_drop_collinear(ring))
    return rings


def _drop_collinear(ring: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The ring's corners only, closed (first == last), starting at its lowest (y, x) corner."""
    n = len(ring)
    corners = [ring[i] for i in range(n)
               if (ring[i][0] - ring[i - 1][0]) * (ring[(i + 1) % n][1] - ring[i][1])
               != (ring[i][1] - ring[i - 1][1]) * (ring[(i + 1) % n][0] - ring[i][0])]
    start = min(range(len(corners)), key=lambda i: (corners[i][1], corners[i][0]))
    corners = corners[start:] + corners[:start]
    return corners + corners[:1]


def _signed_area(ring: list[Point]) -> float:
    """Shoelace area of a closed ring: positive counter-clockwise (in x-right, y-up numbers)."""
    xs, ys = np.array(ring).T
    return float((xs[:-1] * ys[1:] - xs[1:] * ys[:-1]).sum() / 2)


def _diameter(ring: list[Point]) -> float:
    """Longest distance between two points of the ring (its vertices hold the extremes)."""
    points = np.unique(np.array(ring[:-1], np.float64), axis=0)
    hull = _convex_hull(points)
    gaps = hull[:, None, :] - hull[None, :, :]
    return float(np.sqrt((gaps ** 2).sum(-1)).max()) if len(hull) > 1 else 0.0


def _convex_hull(points: np.ndarray) -> np.ndarray:
    """Vertices of the convex hull (Andrew's monotone chain) of sorted unique points."""
    def half(seq: np.ndarray) -> list[np.ndarray]:
        chain: list[np.ndarray] = []
        for p in seq:
            while len(chain) >= 2 and _cross(chain[-2], chain[-1], p) <= 0:
                chain.pop()
            chain.append(p)
        return chain[:-1]

    if len(points) < 3:
        return points
    return np.array(half(points) + half(points[::-1]))


def _cross(o: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """z of (a - o) x (b - o): positive when o -> a -> b turns counter-clockwise."""
    return float((a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]))
