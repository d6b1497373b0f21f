"""The typed scan report: scan.json keeps its layout, reads back to the same report, and the burden
counts what it says."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from edge_pcam.runtime.scan import ScanReport, scan_slide
from edge_pcam.runtime.scan.report import Burden, tumour_burden
from edge_pcam.runtime.synthetic_slide import write_synthetic_slide

MODEL = Path(__file__).resolve().parents[1] / "fixtures" / "models" / "tiny_int8.tflite"

# scan.json as users and scripts read it (edge-pcam 0.1's keys, in order, plus the resume key's slide.digest,
# slide.bytes and model.inference_sha256, the viewer files, the intended use and the slide result).
LAYOUT = {
    "intended_use": None,
    "slide": ["path", "reader", "width", "height", "levels", "mpp", "mpp_source", "level_read", "level_mpp",
              "digest", "bytes"],
    "settings": ["stride", "tile", "mpp", "pcam_mpp", "tile_level0_pixels", "batch", "top_k", "explain",
                 "tissue_rule", "thumbnail_mpp"],
    "model": ["path", "sha256", "format", "thresholds", "runtime", "runtime_version", "threads", "inference_file",
              "inference_batch", "inference_sha256"],
    "tiles": ["grid", "tissue", "computed", "resumed"],
    "tumour_burden": ["decision", "high_specificity", "definition"],
    "slide_result": ["burden", "burden_ci", "method", "largest_region_mm", "tumour_area_mm2", "region_count",
                     "category", "regions", "raw_counts", "qc", "warnings", "intended_use"],
    "top_tiles": None,
    "warnings": None,
    "timing": ["wall_seconds", "tile_seconds", "tile_cpu_seconds", "inference_seconds", "tiles_per_second",
               "definition"],
    "files": ["tiles", "geojson", "asap_xml", "heatmap", "thumbnail"],
    "created": None,
}
TOP_TILE_KEYS = ["rank", "row", "col", "probability", "x", "y", "size", "centre", "image", "gradcam"]
REGION_KEYS = ["outline", "holes", "centroid", "diameter_mm", "area_mm2", "mean_probability", "max_probability",
               "tiles", "category"]
QC_KEYS = ["tissue_mm2", "excluded_mm2", "tissue_tiles", "sharpness", "rules"]
SHARPNESS_KEYS = ["median", "reference", "soft_below", "soft"]


@pytest.fixture(scope="module")
def scanned(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    slide = write_synthetic_slide(folder / "slide.tif", 1600, 1400, mpp=0.486, tissue=(100, 100, 1500, 1300),
                                  tumour=(300, 300, 800, 800), tile=256)
    return scan_slide(slide.path, folder / "out", MODEL, top_k=3, explain=True)


def test_scan_json_keeps_its_layout(scanned):
    data = json.loads((scanned.folder / "scan.json").read_text())
    assert list(data) == list(LAYOUT)
    for section, keys in LAYOUT.items():
        if keys is not None:
            assert list(data[section]) == keys, section
    assert [list(entry) for entry in data["top_tiles"]] == [TOP_TILE_KEYS] * 3
    assert data["tumour_burden"]["definition"].startswith("positive tissue tiles / tissue tiles")
    result = data["slide_result"]
    assert result["region_count"] == len(result["regions"]) >= 1
    assert [list(region) for region in result["regions"]] == [REGION_KEYS] * result["region_count"]
    assert list(result["qc"]) == QC_KEYS and list(result["qc"]["excluded_mm2"]) == ["background", "ink", "blur"]
    assert list(result["qc"]["sharpness"]) == SHARPNESS_KEYS
    assert data["intended_use"].startswith("research use only") and result["intended_use"] == "research use only"


def test_report_reads_back_from_scan_json(scanned):
    data = json.loads((scanned.folder / "scan.json").read_text())
    report = ScanReport.from_json(data)
    assert report == scanned.report
    assert report.to_json() == data
    geometry = report.geometry
    assert geometry.origin(3, 5) == scanned.report.geometry.origin(3, 5) == (5 * 192, 3 * 192)
    assert geometry.tile_level0 == 192 and geometry.stride_level0 == 192 and geometry.slide_mpp == 0.486


def test_result_grids_match_tiles_csv(scanned):
    rows = csv.DictReader((scanned.folder / "tiles.csv").read_text().splitlines())
    cells = {(int(r["row"]), int(r["col"])): float(r["probability"]) for r in rows}
    assert set(map(tuple, np.argwhere(scanned.tissue))) == set(cells)
    assert set(map(tuple, np.argwhere(~np.isnan(scanned.probabilities)))) == set(cells)
    assert all(scanned.probabilities[cell] == np.float32(p) for cell, p in cells.items())
    assert scanned.report.tiles.tissue == len(cells)


def test_burden_counts_tissue_tiles_at_or_above_each_threshold():
    grid = np.array([[np.nan, 0.1, 0.5], [0.49, 0.95, np.nan]], np.float32)
    burden = tumour_burden(grid, {"decision": 0.5, "triage": 0.2})
    assert burden == {"decision": Burden(0.5, 2, 0.5), "high_specificity": None}
    empty = tumour_burden(np.full((2, 2), np.nan, np.float32), {"decision": 0.5, "high_specificity": 0.9})
    assert empty == {"decision": Burden(0.5, 0, None), "high_specificity": Burden(0.9, 0, None)}
