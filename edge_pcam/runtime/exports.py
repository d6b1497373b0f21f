"""A scan's results as files pathology viewers open: QuPath GeoJSON, ASAP XML, a plain tile table.

Plain data in (the classified tiles, the suspicious regions, the decision
threshold, the slide's size), files out, each written atomically (a reader
sees the old file or the whole new one):

- `scan.geojson`: a GeoJSON FeatureCollection (RFC 7946) that QuPath imports
  (File > Import objects): one annotation per suspicious region, classified
  "Tumor", with its measurements; then one feature per classified tile
  (`objectType` "tile", or "detection"), classified "Tumor" or "Normal" at the
  decision threshold, with P(tumour) as a measurement. Coordinates are level-0
  pixels, origin at the top-left, as QuPath's own exports; rings are closed
  and follow RFC 7946's right-hand rule in those numbers (exterior rings
  counter-clockwise with y pointing up, holes clockwise), whatever the
  orientation the regions come with; QuPath accepts either.
- `annotations.xml`: the same regions in ASAP's XML (the Camelyon16 format):
  outlines in group "Tumor", holes as annotations in group "Exclusion"
  (Camelyon16's convention for non-tumour areas inside a tumour outline),
  oriented as in the GeoJSON, without repeating the first point.
- `tiles.csv`: plain CSV, header on the first line: x, y, width, height
  (level-0 pixels), probability, row, col.

No geometry library is needed: the regions come traced (`runtime/regions.py`,
numpy only), and this module only orients, clips and writes them.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edge_pcam.runtime.metadata import atomic_write_bytes

GEOJSON_FILE, ASAP_FILE, TILES_CSV = "scan.geojson", "annotations.xml", "tiles.csv"
TILES_COLUMNS = ("x", "y", "width", "height", "probability", "row", "col")
TUMOUR = ("Tumor", (200, 0, 0))  # QuPath's built-in class name and colour
NORMAL = ("Normal", (60, 160, 60))
EXCLUSION_GROUP = "Exclusion"
ASAP_COLOURS = {TUMOUR[0]: "#C80000", EXCLUSION_GROUP: "#3CA03C"}
OBJECT_TYPES = ("tile", "detection")
DECIMALS = 2  # coordinates to 1/100 pixel, as QuPath writes them
Point = tuple[float, float]


class RegionShape(Protocol):
    """What the exports read of a suspicious region (`runtime.regions.Region` has it)."""

    outline: Sequence[Point]
    holes: Sequence[Sequence[Point]]
    diameter_mm: float
    area_mm2: float
    mean_probability: float
    max_probability: float
    tiles: int


@dataclass(frozen=True)
class Tiles:
    """The classified tiles of one scan: grid cell, level-0 top-left, probability; one entry per tile."""

    rows: np.ndarray
    cols: np.ndarray
    x: np.ndarray
    y: np.ndarray
    probability: np.ndarray
    size: float  # tile side in level-0 pixels

    @classmethod
    def from_grid(cls, probabilities: np.ndarray, origin: Callable[[int, int], Point], size: float) -> Tiles:
        """From the scan's (rows, cols) grid (NaN where no tile was classified) and its (row, col) ->
        level-0 (x, y) mapping."""
        rows, cols = np.nonzero(~np.isnan(probabilities))
        xy = np.array([origin(int(r), int(c)) for r, c in zip(rows, cols)], np.float64).reshape(-1, 2)
        return cls(rows, cols, xy[:, 0], xy[:, 1], probabilities[rows, cols].astype(np.float64), float(size))

    def __len__(self) -> int:
        return len(self.probability)


def write_viewer_files(out: str | os.PathLike, tiles: Tiles, regions: Sequence[RegionShape], threshold: float,
                       slide_size: tuple[int, int], object_type: str = "tile",
                       category: Callable[[float], str] | None = None) -> dict[str, str]:
    """Write scan.geojson, annotations.xml and tiles.csv into `out`; their names by kind (for scan.json)."""
    out = Path(out)
    write_tiles_csv(out / TILES_CSV, tiles)
    write_geojson(out / GEOJSON_FILE, tiles, regions, threshold, slide_size, object_type, category)
    write_asap_xml(out / ASAP_FILE, regions, slide_size, category)
    return {"tiles": TILES_CSV, "geojson": GEOJSON_FILE, "asap_xml": ASAP_FILE}


def write_tiles_csv(path: str | os.PathLike, tiles: Tiles) -> None:
    """tiles.csv: header, then one row per tile in scan order (row, then column)."""
    order = np.lexsort((tiles.cols, tiles.rows))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(TILES_COLUMNS)
    size = _number(tiles.size)
    for i in order:
        writer.writerow((_number(tiles.x[i]), _number(tiles.y[i]), size, size, f"{tiles.probability[i]:.6f}",
                         int(tiles.rows[i]), int(tiles.cols[i])))
    atomic_write_bytes(path, buffer.getvalue().encode())


def geojson_document(tiles: Tiles, regions: Sequence[RegionShape], threshold: float, slide_size: tuple[int, int],
                     object_type: str = "tile", category: Callable[[float], str] | None = None) -> dict[str, Any]:
    """The FeatureCollection: one annotation per region (largest first, as given), then the tiles."""
    if object_type not in OBJECT_TYPES:
        raise ValueError(f"object_type must be one of {OBJECT_TYPES}, not {object_type!r}")
    width, height = slide_size
    features = []
    for number, region in enumerate(regions, start=1):
        rings = [orient(clip_ring(region.outline, width, height), exterior=True)]
        rings += [orient(clip_ring(hole, width, height), exterior=False) for hole in region.holes]
        features.append({
            "type": "Feature",
            "geometry": {"type": "Polygon", "coordinates": rings},
            "properties": {
                "objectType": "annotation", "name": region_name(number, region, category),
                "classification": {"name": TUMOUR[0], "color": list(TUMOUR[1])},
                "measurements": {"Longest diameter (mm)": round(region.diameter_mm, 4),
                                 "Area (mm^2)": round(region.area_mm2, 5),
                                 "Mean P(tumour)": round(region.mean_probability, 6),
                                 "Max P(tumour)": round(region.max_probability, 6), "Tiles": int(region.tiles)},
            },
        })
    for i in range(len(tiles)):
        x0, y0 = float(tiles.x[i]), float(tiles.y[i])
        square = [(x0, y0), (x0 + tiles.size, y0), (x0 + tiles.size, y0 + tiles.size), (x0, y0 + tiles.size), (x0, y0)]
        p = float(tiles.probability[i])
        name, colour = TUMOUR if p >= threshold else NORMAL
        features.append({
            "type": "Feature",
            "geometry": {"type": "Polygon", "coordinates": [orient(clip_ring(square, width, height), exterior=True)]},
            "properties": {"objectType": object_type, "classification": {"name": name, "color": list(colour)},
                           "measurements": {"P(tumour)": round(p, 6)}},
        })
    return {"type": "FeatureCollection", "features": features}


def write_geojson(path: str | os.PathLike, tiles: Tiles, regions: Sequence[RegionShape], threshold: float,
                  slide_size: tuple[int, int], object_type: str = "tile",
                  category: Callable[[float], str] | None = None) -> None:
    document = geojson_document(tiles, regions, threshold, slide_size, object_type, category)
    atomic_write_bytes(path, json.dumps(document, separators=(",", ":"), allow_nan=False).encode() + b"\n")


def asap_xml(regions: Sequence[RegionShape], slide_size: tuple[int, int],
             category: Callable[[float], str] | None = None) -> bytes:
    """ASAP_Annotations XML: each region's outline in group Tumor, each of its holes in group Exclusion."""
    width, height = slide_size
    root = ET.Element("ASAP_Annotations")
    annotations = ET.SubElement(root, "Annotations")
    for number, region in enumerate(regions, start=1):
        rings = [(region_name(number, region, category), TUMOUR[0], region.outline)]
        rings += [(f"Region {number} hole {k}", EXCLUSION_GROUP, hole) for k, hole in enumerate(region.holes, 1)]
        for name, group, ring in rings:
            element = ET.SubElement(annotations, "Annotation", Name=name, Type="Polygon", PartOfGroup=group,
                                    Color=ASAP_COLOURS[group])
            coordinates = ET.SubElement(element, "Coordinates")
            points = orient(clip_ring(ring, width, height), exterior=group == TUMOUR[0])
            for order, (x, y) in enumerate(points[:-1]):  # ASAP closes polygons itself
                ET.SubElement(coordinates, "Coordinate", Order=str(order), X=_number(x), Y=_number(y))
    groups = ET.SubElement(root, "AnnotationGroups")
    for group, colour in ASAP_COLOURS.items():
        ET.SubElement(ET.SubElement(groups, "Group", Name=group, PartOfGroup="None", Color=colour), "Attributes")
    ET.indent(root, space="\t")
    return b'<?xml version="1.0"?>\n' + ET.tostring(root, encoding="utf-8") + b"\n"


def write_asap_xml(path: str | os.PathLike, regions: Sequence[RegionShape], slide_size: tuple[int, int],
                   category: Callable[[float], str] | None = None) -> None:
    atomic_write_bytes(path, asap_xml(regions, slide_size, category))


def region_name(number: int, region: RegionShape, category: Callable[[float], str] | None) -> str:
    """"Region 2: 1.35 mm" (and the Camelyon17 size class when `category` gives it)."""
    kind = f", {category(region.diameter_mm)}" if category else ""
    return f"Region {number}: {region.diameter_mm:.2f} mm{kind}"


def clip_ring(ring: Sequence[Point], width: float, height: float) -> list[list[float]]:
    """The ring's points inside [0, width] x [0, height], rounded to DECIMALS, closed (first == last)."""
    points = [[round(min(max(float(x), 0.0), width), DECIMALS), round(min(max(float(y), 0.0), height), DECIMALS)]
              for x, y in ring]
    if not all(math.isfinite(v) for p in points for v in p):
        raise ValueError("a region or tile has a coordinate that is not a number")
    if points and points[0] != points[-1]:
        points.append(list(points[0]))
    return points


def signed_area(ring: Sequence[Sequence[float]]) -> float:
    """Shoelace area of a closed ring: positive when counter-clockwise with y pointing up."""
    return 0.5 * sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(ring[:-1], ring[1:]))


def orient(ring: list[list[float]], exterior: bool) -> list[list[float]]:
    """RFC 7946's right-hand rule: exterior rings counter-clockwise, holes clockwise."""
    return ring if (signed_area(ring) > 0) == exterior else ring[::-1]


def _number(value: float) -> str:
    """A coordinate as text: integers without decimals, others to DECIMALS places."""
    value = float(value)
    return str(int(value)) if value.is_integer() else f"{value:.{DECIMALS}f}".rstrip("0").rstrip(".")
