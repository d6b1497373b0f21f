"""The viewer files a real scan of a JPEG-tiled SVS writes, read back: scan.geojson against RFC 7946 and what
QuPath reads, every tile inside the slide and equal to tiles.csv; annotations.xml as ASAP parses it; and the
slide-level findings (`scan.findings.slide_findings`) reaching the GeoJSON, the XML, the heatmap and the
summary fields."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from viewer_support import Region, asap_polygons, check_qupath_properties, check_rfc7946_polygon

from edge_pcam.runtime.scan import pipeline, scan_slide
from edge_pcam.runtime.scan.batch import summary_fields
from edge_pcam.runtime.scan.findings import SlideFindings
from edge_pcam.runtime.synthetic_slide import write_synthetic_slide

pytest.importorskip("imagecodecs", reason="writes the JPEG tiles")
MODEL = Path(__file__).resolve().parents[1] / "fixtures" / "models" / "tiny_int8.tflite"
SIZE = (4100, 3900)  # level-0 pixels at 0.25 µm/px: the grid does not end on the slide's edge


@pytest.fixture(scope="module")
def svs(tmp_path_factory) -> Path:
    return write_synthetic_slide(tmp_path_factory.mktemp("svs") / "slide.svs", *SIZE, mpp=0.25, container="svs",
                                 compression="jpeg", tissue=(200, 300, 3900, 3700), tumour=(900, 900, 1800, 1800)).path


@pytest.fixture(scope="module")
def scanned(svs, tmp_path_factory):
    return scan_slide(svs, tmp_path_factory.mktemp("scan") / "out", MODEL)


def test_the_geojson_of_a_real_scan_is_valid_and_holds_every_tile_inside_the_slide(scanned):
    report = json.loads((scanned.folder / "scan.json").read_text())
    width, height = report["slide"]["width"], report["slide"]["height"]
    assert (width, height) == SIZE
    document = json.loads((scanned.folder / report["files"]["geojson"]).read_text())
    assert document["type"] == "FeatureCollection"
    decision = report["model"]["thresholds"]["decision"]
    table = {(float(r["x"]), float(r["y"])): r for r in
             csv.DictReader((scanned.folder / report["files"]["tiles"]).read_text().splitlines())}
    regions = report["slide_result"]["regions"]
    annotations, tiles = document["features"][:len(regions)], document["features"][len(regions):]
    for feature in tiles:
        assert feature["type"] == "Feature" and feature["properties"]["objectType"] == "tile"
        check_rfc7946_polygon(feature["geometry"], width, height)  # closed, wound, inside the slide
        check_qupath_properties(feature["properties"])
        ring = feature["geometry"]["coordinates"][0]
        x0, y0 = min(p[0] for p in ring), min(p[1] for p in ring)
        row = table[x0, y0]
        side = float(row["width"])
        assert side == pytest.approx(report["settings"]["tile_level0_pixels"], abs=0.01)
        assert max(p[0] for p in ring) == pytest.approx(min(x0 + side, width), abs=0.01)
        p = feature["properties"]["measurements"]["P(tumour)"]
        assert p == pytest.approx(float(row["probability"]), abs=1e-6)
        assert feature["properties"]["classification"]["name"] == ("Tumor" if p >= decision else "Normal")
    assert len(tiles) == len(table) == report["tiles"]["tissue"] > 0
    assert {c["name"] for c in (f["properties"]["classification"] for f in tiles)} == {"Tumor", "Normal"}
    # The suspicious regions are scan.json's slide result's, first, in its order: the same outlines, names
    # and sizes, in QuPath's GeoJSON and in ASAP's XML.
    assert report["slide_result"]["region_count"] == len(regions) >= 1
    polygons = asap_polygons(scanned.folder / report["files"]["asap_xml"])
    assert len(polygons["Tumor"]) == len(regions) and polygons["Exclusion"] == []
    for number, (feature, region, polygon) in enumerate(zip(annotations, regions, polygons["Tumor"]), start=1):
        properties = feature["properties"]
        assert properties["objectType"] == "annotation"
        check_rfc7946_polygon(feature["geometry"], width, height)
        check_qupath_properties(properties)
        assert properties["name"] == f"Region {number}: {region['diameter_mm']:.2f} mm, {region['category']}"
        assert properties["measurements"]["Longest diameter (mm)"] == pytest.approx(region["diameter_mm"], abs=1e-4)
        assert properties["measurements"]["Area (mm^2)"] == pytest.approx(region["area_mm2"], abs=1e-5)
        assert properties["measurements"]["Tiles"] == region["tiles"]
        ring = feature["geometry"]["coordinates"][0]
        assert sorted(map(tuple, ring[:-1])) == sorted((round(x, 2), round(y, 2)) for x, y in region["outline"][:-1])
        assert polygon == ring[:-1]


def test_tiles_csv_matches_the_scan_grid(scanned):
    rows = list(csv.DictReader((scanned.folder / "tiles.csv").read_text().splitlines()))
    geometry = scanned.report.geometry
    assert len(rows) == int(scanned.tissue.sum())
    for row in rows:
        r, c = int(row["row"]), int(row["col"])
        assert scanned.tissue[r, c]
        assert (int(row["x"]), int(row["y"])) == geometry.origin(r, c)
        assert float(row["probability"]) == pytest.approx(float(scanned.probabilities[r, c]), abs=1e-6)


def test_the_findings_reach_every_output(svs, scanned, tmp_path, monkeypatch):
    top = scanned.report.top_tiles[0]
    x0, y0, side = top.x, top.y, top.size  # a region over the most suspicious tile, given clockwise on screen
    region = Region([(x0, y0), (x0 + side, y0), (x0 + side, y0 + side), (x0, y0 + side), (x0, y0)], [],
                    (x0 + side / 2, y0 + side / 2), 0.13, 0.0089, top.probability, top.probability, 1)
    pen = np.zeros(scanned.tissue.shape, bool)
    pen[:2, :] = True
    findings = SlideFindings(regions=[region], excluded={"pen": pen}, category=lambda d: "itc",
                             summary={"largest_region_mm": 0.13, "largest_region_class": "itc"})
    monkeypatch.setattr(pipeline, "slide_findings", lambda *args: SlideFindings())
    scan_slide(svs, tmp_path / "plain", MODEL)  # no regions, nothing left out
    monkeypatch.setattr(pipeline, "slide_findings", lambda *args: findings)
    result = scan_slide(svs, tmp_path / "out", MODEL)

    document = json.loads((tmp_path / "out" / "scan.geojson").read_text())
    annotations = [f for f in document["features"] if f["properties"]["objectType"] == "annotation"]
    assert [a["properties"]["name"] for a in annotations] == ["Region 1: 0.13 mm, itc"]
    ring = annotations[0]["geometry"]["coordinates"][0]
    assert sorted(map(tuple, ring[:-1])) == sorted((float(x), float(y)) for x, y in region.outline[:-1])
    assert asap_polygons(tmp_path / "out" / "annotations.xml")["Tumor"] == [ring[:-1]]
    assert summary_fields(result)["largest_region_mm"] == 0.13
    assert summary_fields(result)["largest_region_class"] == "itc"
    # The heatmap outlines the region (black on a white halo) and keys it and the QC hatching in the legend.
    plain = np.asarray(Image.open(tmp_path / "plain" / "heatmap.png")).astype(int)
    marked = np.asarray(Image.open(tmp_path / "out" / "heatmap.png")).astype(int)
    assert marked.shape[0] > plain.shape[0] and marked.shape[1] == plain.shape[1]  # two more legend lines
    picture = slice(0, plain.shape[0] - 100)  # above the legends

    def black(image: np.ndarray) -> int:
        return int((image[picture] == 0).all(axis=-1).sum())

    assert black(marked) > black(plain)


def test_findings_take_only_the_summary_columns_they_fill():
    with pytest.raises(ValueError, match="not slide-level summary fields"):
        SlideFindings(summary={"tissue_tiles": 3})
