"""The slide result through a real scan: a planted block measured in mm by `edge-pcam scan`, the line a
person reads first, a model file without stored rates, and the blur check kept in (and upgraded into)
the progress log."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from viewer_support import asap_polygons

from edge_pcam.runtime.scan import pipeline, scan_slide
from edge_pcam.runtime.scan.findings import tile_weight
from edge_pcam.runtime.scan.store import PROGRESS_FILE
from edge_pcam.runtime.synthetic_slide import write_synthetic_slide
from edge_pcam.runtime.tissue import BLUR_RATIO

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
MODEL = FIXTURES / "models" / "tiny_int8.tflite"
LEGACY = FIXTURES / "legacy" / "tiny_int8_schema1.tflite"  # a card without operating characteristics
MPP = 0.486  # level 0: the scan reads level 1 at PCam's 0.972 µm/px, a tile is 192 level-0 pixels
TILE0 = 192
BLOCK = (5 * TILE0, 4 * TILE0, 11 * TILE0, 10 * TILE0)  # 6 x 6 tiles of tumour, on the grid's lines
TILE_MM = TILE0 * MPP / 1000


@pytest.fixture(scope="module")
def block_slide(tmp_path_factory) -> Path:
    return write_synthetic_slide(tmp_path_factory.mktemp("block") / "block.tif", 3200, 2900, mpp=MPP,
                                 tissue=(300, 300, 2900, 2600), tumour=BLOCK, tile=256, seed=4).path


def run_scan(*args) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "edge_pcam", "scan", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def test_a_planted_block_is_measured_in_mm_and_said_first(block_slide, tmp_path):
    result = run_scan(block_slide, "--out", tmp_path / "out", "--model", MODEL)
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "out" / "scan.json").read_text())
    slide_result = report["slide_result"]
    side_mm = (BLOCK[2] - BLOCK[0]) * MPP / 1000  # 0.56 mm: its diagonal 0.79 mm, a micrometastasis
    assert slide_result["region_count"] == len(slide_result["regions"]) == 1
    region = slide_result["regions"][0]
    # Sizes within the grid's resolution: a tile more or less along each side.
    assert abs(region["diameter_mm"] - side_mm * math.sqrt(2)) <= TILE_MM * math.sqrt(2)
    assert (side_mm - TILE_MM) ** 2 <= region["area_mm2"] <= (side_mm + TILE_MM) ** 2
    assert slide_result["largest_region_mm"] == region["diameter_mm"]
    assert slide_result["tumour_area_mm2"] == pytest.approx(region["area_mm2"])
    assert slide_result["category"] == region["category"] == "micromet"
    centre = ((BLOCK[0] + BLOCK[2]) / 2, (BLOCK[1] + BLOCK[3]) / 2)
    assert math.dist(region["centroid"], centre) <= TILE0 / 2
    assert region["mean_probability"] > report["model"]["thresholds"]["decision"]
    # The burden: an estimate with its interval, from the card's rates; the raw counts stay beside it.
    low, high = slide_result["burden_ci"]
    assert 0 <= low <= slide_result["burden"] <= high <= 1 and "rates from the valid split" in slide_result["method"]
    for point in ("decision", "high_specificity"):
        assert slide_result["raw_counts"][point] == report["tumour_burden"][point]
    assert slide_result["qc"]["tissue_tiles"] == report["tiles"]["tissue"]
    # The same region in QuPath's GeoJSON (first feature) and ASAP's XML.
    feature = json.loads((tmp_path / "out" / "scan.geojson").read_text())["features"][0]
    ring = feature["geometry"]["coordinates"][0]
    assert sorted(map(tuple, ring[:-1])) == sorted((round(x, 2), round(y, 2)) for x, y in region["outline"][:-1])
    assert feature["properties"]["name"] == f"Region 1: {region['diameter_mm']:.2f} mm, micromet"
    assert asap_polygons(tmp_path / "out" / "annotations.xml")["Tumor"] == [ring[:-1]]
    # The first line of the output is the result, in words, with the intended use.
    first = result.stdout.splitlines()[0]
    assert first.startswith(f"largest suspicious region {region['diameter_mm']:.2g} mm (micrometastasis size); "
                            f"tumour burden {slide_result['burden']:.1%} (95% CI ")
    assert first.endswith("; research use only")
    assert report["intended_use"].startswith("research use only")


def test_a_model_without_stored_rates_keeps_the_raw_counts_and_says_why(block_slide, tmp_path):
    result = run_scan(block_slide, "--out", tmp_path / "out", "--model", LEGACY)
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "out" / "scan.json").read_text())
    slide_result = report["slide_result"]
    assert slide_result["burden"] is None and slide_result["burden_ci"] is None and slide_result["method"] is None
    assert slide_result["raw_counts"]["decision"] == report["tumour_burden"]["decision"]
    assert report["tumour_burden"]["decision"]["positive_tiles"] >= 36
    assert slide_result["category"] == "micromet"  # the regions need no rates
    warned = [line for line in result.stderr.splitlines() if "edge-pcam calibrate" in line]
    assert len(warned) == 1 and "operating characteristics" in warned[0]  # one line, even in a log
    assert any("edge-pcam calibrate" in w for w in report["warnings"])
    assert "tumour burden not estimated" in result.stdout.splitlines()[0]


def cut_to_old_columns(log: Path, keep: int) -> None:
    """The progress log as edge-pcam wrote it before it kept the sharpness, cut back to `keep` rows."""
    lines = log.read_text().splitlines()
    rows = [",".join(line.split(",")[:5]) for line in lines[2:2 + keep]]
    log.write_text("\n".join([lines[0], "row,col,x,y,probability", *rows]) + "\n")


def test_the_blur_check_is_kept_in_the_log_and_measured_for_an_older_one(tmp_path, monkeypatch):
    slide = write_synthetic_slide(tmp_path / "marked.tif", 2400, 2400, mpp=MPP, tissue=(200, 200, 2200, 2200),
                                  tumour=(500, 500, 1100, 1100), seed=5, marks=True).path

    measured: list[int] = []
    measure = pipeline.measure_sharpness

    def counting(slide_, geometry, cells, record):
        measured.append(int(cells.sum()))
        return measure(slide_, geometry, cells, record)

    monkeypatch.setattr(pipeline, "measure_sharpness", counting)
    out = tmp_path / "out"
    fresh = scan_slide(slide, out, MODEL)
    assert fresh.report.slide_result.qc["excluded_mm2"]["blur"] == pytest.approx(9 * TILE_MM ** 2)
    log = out / PROGRESS_FILE
    rows = log.read_text().splitlines()[2:]
    assert len(rows) == fresh.report.tiles.computed == fresh.report.tiles.tissue + 9

    # Resumed from today's log: every tile's sharpness comes from it, no tile is read again.
    (out / "scan.json").unlink()
    again = scan_slide(slide, out, MODEL)
    assert again.report.tiles.resumed == len(rows) and again.report.tiles.computed == 0
    assert measured == [0, 0]
    assert again.report.slide_result == fresh.report.slide_result

    # Resumed from a log without the sharpness column, cut short by a kill after the blurred tiles:
    # upgraded, the tiles it holds read again for their sharpness only, the others classified; the same result.
    soft = [k for k, row in enumerate(rows) if float(row.split(",")[5]) < BLUR_RATIO]
    keep = soft[-1] + 1
    assert len(soft) == 9 and keep < len(rows)
    cut_to_old_columns(log, keep)
    (out / "scan.json").unlink()
    upgraded = scan_slide(slide, out, MODEL)
    assert upgraded.report.tiles.resumed == keep and measured[-1] == keep
    assert upgraded.report.slide_result == fresh.report.slide_result
    lines = log.read_text().splitlines()
    assert lines[1] == "row,col,x,y,probability,sharpness"
    # The kept rows, upgraded with an empty sharpness; then every tile's row as a fresh scan logs it.
    upgraded_rows = [",".join(row.split(",")[:5]) + "," for row in rows[:keep]]
    assert sorted(lines[2:]) == sorted(upgraded_rows + rows)


def test_overlapping_tiles_count_for_the_area_they_add():
    assert tile_weight(96) == 1.0 and tile_weight(192) == 1.0  # side by side, or gaps between
    assert tile_weight(48) == 0.25 and tile_weight(32) == pytest.approx(1 / 9)


def test_a_log_with_unknown_columns_is_refused_in_one_line(tmp_path):
    from edge_pcam.errors import EdgePcamError
    from edge_pcam.runtime.scan.store import ResumeKey, TileStore

    key = ResumeKey("ab" * 32, 1000, "cd" * 32, {"grid": [2, 4]})
    (tmp_path / PROGRESS_FILE).write_text(f"{key.header()}\nrow,col,probability\n0,1,0.5\n")
    with pytest.raises(EdgePcamError, match="unknown columns 'row,col,probability'; delete the file"):
        TileStore(tmp_path, key).open(np.ones((2, 4), bool))
