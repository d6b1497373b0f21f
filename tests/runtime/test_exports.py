"""Viewer files read back: GeoJSON checked against RFC 7946 and what QuPath reads, the ASAP XML's
polygons equal to the GeoJSON's regions, tiles.csv as plain CSV.

Regions are built by hand as the contract's `Region` (runtime/regions.py belongs to another
engineer): a 3 x 3 block of tiles with a hole in its middle, and a single tile, given in opposite
orientations so the exporter's orientation is tested, not assumed.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from viewer_support import Region, asap_polygons, check_qupath_properties, check_rfc7946_polygon

from edge_pcam.runtime import exports
from edge_pcam.runtime.exports import TILES_COLUMNS, Tiles, write_viewer_files

TILE = 384.0  # level-0 pixels: 96 at 0.972 µm/px on a 0.243 µm/px scan
ROWS, COLS = 8, 10
SLIDE = (int(COLS * TILE) - 10, int(ROWS * TILE) + 20)  # the last column's tiles end 10 px past the edge
THRESHOLD = 0.5


def square(x0, y0, x1, y1, clockwise_on_screen=True):
    ring = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)] if clockwise_on_screen else [(x0, y0), (x0, y1), (x1, y1), (x1, y0)]
    return ring + [ring[0]]


def origin(row, col):
    return col * TILE, row * TILE


@pytest.fixture()
def scan(tmp_path):
    """A grid with tissue in rows 1-6, a 3 x 3 positive block around a negative centre, one positive tile."""
    rng = np.random.default_rng(5)
    grid = np.full((ROWS, COLS), np.nan)
    grid[1:7, :] = rng.uniform(0.0, 0.4, (6, COLS))
    grid[2:5, 2:5] = rng.uniform(0.7, 1.0, (3, 3))
    grid[3, 3] = 0.2
    grid[6, 9] = 0.95  # at the clipped right edge
    big = Region(square(2 * TILE, 2 * TILE, 5 * TILE, 5 * TILE), [square(3 * TILE, 3 * TILE, 4 * TILE, 4 * TILE, False)],
                 (3.5 * TILE, 3.5 * TILE), 0.4, 0.08, 0.85, 0.99, 8)
    # Given without its closing point (the contract promises closed rings; the files must be closed anyway).
    small = Region(square(9 * TILE, 6 * TILE, 10 * TILE, 7 * TILE, False)[:-1], [], (9.5 * TILE, 6.5 * TILE),
                   0.09, 0.009, 0.95, 0.95, 1)
    tiles = Tiles.from_grid(grid, origin, TILE)
    files = write_viewer_files(tmp_path, tiles, [big, small], THRESHOLD, SLIDE, category=lambda d: "micromet")
    return tmp_path, grid, [big, small], files


def test_geojson_is_valid_and_holds_every_tile_and_region(scan):
    out, grid, regions, files = scan
    document = json.loads((out / files["geojson"]).read_text())
    assert document["type"] == "FeatureCollection"
    for feature in document["features"]:
        assert feature["type"] == "Feature"
        check_rfc7946_polygon(feature["geometry"], *SLIDE)
        check_qupath_properties(feature["properties"])
    annotations = [f for f in document["features"] if f["properties"]["objectType"] == "annotation"]
    tiles = [f for f in document["features"] if f["properties"]["objectType"] == "tile"]
    assert [a["properties"]["classification"]["name"] for a in annotations] == ["Tumor", "Tumor"]
    assert annotations[0]["properties"]["name"] == "Region 1: 0.40 mm, micromet"
    assert annotations[0]["properties"]["measurements"]["Tiles"] == 8
    assert len(annotations[0]["geometry"]["coordinates"]) == 2  # the outline and its hole
    # One tile feature per classified tile, at its place, classified at the threshold.
    assert len(tiles) == int((~np.isnan(grid)).sum())
    seen = set()
    for feature in tiles:
        ring = feature["geometry"]["coordinates"][0]
        x0, y0 = min(p[0] for p in ring), min(p[1] for p in ring)
        row, col = int(y0 // TILE), int(x0 // TILE)
        seen.add((row, col))
        p = grid[row, col]
        assert feature["properties"]["measurements"]["P(tumour)"] == pytest.approx(p, abs=1e-6)
        assert feature["properties"]["classification"]["name"] == ("Tumor" if p >= THRESHOLD else "Normal")
        assert max(q[0] for q in ring) == min((col + 1) * TILE, SLIDE[0])  # clipped at the slide's edge
    assert len(seen) == len(tiles)


def test_geojson_polygons_are_valid_geometries(scan):
    """shapely (dev extra) as an independent check: valid polygons, the hole inside its outline, and the
    positive tiles covered by the regions."""
    shapely = pytest.importorskip("shapely")
    from shapely.geometry import shape
    from shapely.ops import unary_union

    out, grid, _, files = scan
    document = json.loads((out / files["geojson"]).read_text())
    polygons = {"annotation": [], "tile": []}
    for feature in document["features"]:
        geometry = shape(feature["geometry"])
        assert geometry.is_valid, shapely.validation.explain_validity(geometry)
        polygons[feature["properties"]["objectType"]].append((geometry, feature["properties"]))
    assert polygons["annotation"][0][0].area == pytest.approx(8 * TILE * TILE)
    regions = unary_union([g for g, _ in polygons["annotation"]])
    for geometry, properties in polygons["tile"]:
        if properties["classification"]["name"] == "Tumor":
            assert regions.buffer(1e-6).contains(geometry)


def test_asap_xml_polygons_equal_the_geojson_regions(scan):
    out, _, _, files = scan
    document = json.loads((out / files["geojson"]).read_text())
    rings = [f["geometry"]["coordinates"] for f in document["features"]
             if f["properties"]["objectType"] == "annotation"]
    found = asap_polygons(out / files["asap_xml"])
    assert found["Tumor"] == [polygon[0][:-1] for polygon in rings]  # ASAP does not repeat the first point
    assert found["Exclusion"] == [hole[:-1] for polygon in rings for hole in polygon[1:]]


def test_tiles_csv_is_plain_csv_with_the_header_first(scan):
    out, grid, _, files = scan
    text = (out / files["tiles"]).read_text()
    assert text.splitlines()[0] == ",".join(TILES_COLUMNS)
    rows = list(csv.DictReader(text.splitlines()))
    assert len(rows) == int((~np.isnan(grid)).sum())
    for row in rows:
        r, c = int(row["row"]), int(row["col"])
        assert (float(row["x"]), float(row["y"])) == origin(r, c)
        assert float(row["width"]) == float(row["height"]) == TILE
        assert float(row["probability"]) == pytest.approx(grid[r, c], abs=1e-6)


def test_detection_objects_and_bad_object_type(tmp_path):
    grid = np.array([[0.9, np.nan]])
    tiles = Tiles.from_grid(grid, origin, TILE)
    document = exports.geojson_document(tiles, [], THRESHOLD, (1000, 1000), object_type="detection")
    assert [f["properties"]["objectType"] for f in document["features"]] == ["detection"]
    with pytest.raises(ValueError, match="object_type"):
        exports.geojson_document(tiles, [], THRESHOLD, (1000, 1000), object_type="cell")


def test_a_failed_write_leaves_the_earlier_file(scan, monkeypatch):
    out, grid, regions, files = scan
    before = (out / files["geojson"]).read_bytes()

    def full_disk(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("os.replace", full_disk)
    with pytest.raises(OSError):
        exports.write_geojson(out / files["geojson"], Tiles.from_grid(grid * 0, origin, TILE), regions, THRESHOLD, SLIDE)
    assert (out / files["geojson"]).read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == sorted(files.values())  # no temporary file left
