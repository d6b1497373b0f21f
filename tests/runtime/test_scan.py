"""`edge-pcam scan` on a 20,000 x 20,000 synthetic slide: finds the planted tumour, bounded memory,
resumes after SIGKILL, and one-line messages for bad input."""

from __future__ import annotations

import csv
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge_pcam.runtime.metadata import read_metadata, with_metadata
from edge_pcam.runtime.scan import scan_slide
from edge_pcam.runtime.scan.geometry import plan_geometry
from edge_pcam.runtime.scan.inference import LOG_GROUP, find_batched_variant
from edge_pcam.runtime.scan.report import top_tiles
from edge_pcam.runtime.scan.store import PROGRESS_FILE
from edge_pcam.runtime.slide import open_slide
from edge_pcam.runtime.synthetic_slide import write_synthetic_slide

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "models"
RSS_LIMIT_MB = 500
# Runs a command as a child and prints the child's peak resident set size (KB on Linux).
PEAK_RSS = ("import resource, subprocess, sys; rc = subprocess.call(sys.argv[1:]); "
            "print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
            "sys.exit(rc)")


@pytest.fixture(scope="session")
def model_file() -> Path:
    """The committed int8 fixture model (trained on synthetic patches) with its Grad-CAM companion."""
    path = FIXTURES / "tiny_int8.tflite"
    if not path.is_file():
        pytest.skip(f"{path} not found: run tests/fixtures/make_fixtures.py")
    return path


@pytest.fixture(scope="session")
def big_slide(tmp_path_factory):
    """20,000 x 20,000 pixels at 0.486 µm/px (20x), written tile by tile; tissue in the middle fifth."""
    return write_synthetic_slide(tmp_path_factory.mktemp("big") / "slide.tif", 20_000, 20_000, mpp=0.486)


@pytest.fixture(scope="session")
def small_slide(tmp_path_factory):
    """3,000 x 2,400 pixels at 0.243 µm/px (40x): PCam's 0.972 is its level 2."""
    return write_synthetic_slide(tmp_path_factory.mktemp("small") / "small.tif", 3000, 2400, mpp=0.243,
                                 tissue=(400, 300, 2600, 2100), tumour=(900, 800, 1500, 1400), tile=256)


def run_cli(*args, peak_rss=False, **kwargs) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "edge_pcam", "scan", *map(str, args)]
    if peak_rss:
        command = [sys.executable, "-c", PEAK_RSS, *command]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, **kwargs)


def overlaps(origin, size, box) -> bool:
    """Whether the tile at level-0 `origin` with side `size` shares pixels with `box`."""
    x, y = origin
    return x < box[2] and x + size > box[0] and y < box[3] and y + size > box[1]


def tile_table(out: Path) -> dict[tuple[int, int], tuple[int, int, float]]:
    """tiles.csv (plain CSV, header first) as {(row, col): (x, y, probability)}."""
    rows = list(csv.DictReader((out / "tiles.csv").read_text().splitlines()))
    table = {(int(r["row"]), int(r["col"])): (int(r["x"]), int(r["y"]), float(r["probability"])) for r in rows}
    assert len(table) == len(rows), "a tile was written twice"
    return table


def progress_table(out: Path) -> dict[tuple[int, int], tuple[int, int, float]]:
    """The progress log (key line, header, then row,col,x,y,probability,sharpness) as tile_table gives tiles.csv."""
    table = {}
    for line in (out / PROGRESS_FILE).read_text().splitlines()[2:]:
        r, c, x, y, p, _ = line.split(",")
        assert (int(r), int(c)) not in table, "a tile was written twice"
        table[int(r), int(c)] = (int(x), int(y), float(p))
    return table


def test_scan_finds_the_planted_tumour_in_bounded_memory(big_slide, model_file, tmp_path):
    out = tmp_path / "scan"
    result = run_cli(big_slide.path, "--out", out, "--model", model_file, peak_rss=True)
    assert result.returncode == 0, result.stderr
    peak_mb = int(result.stderr.rsplit("PEAK_RSS_KB", 1)[1].split()[0]) / 1024
    assert peak_mb < RSS_LIMIT_MB, f"peak RSS {peak_mb:.0f} MB"

    report = json.loads((out / "scan.json").read_text())
    assert report["settings"]["mpp"] == pytest.approx(0.972) and report["slide"]["level_read"] == 1
    assert report["tiles"]["grid"] == [104, 104]
    tissue = report["tiles"]["tissue"]
    assert 0 < tissue < 104 * 104 // 4 and report["tiles"]["computed"] == tissue
    assert report["model"]["sha256"] and report["model"]["thresholds"]

    size = report["settings"]["tile_level0_pixels"]
    assert size == pytest.approx(192)
    tiles = tile_table(out)
    assert len(tiles) == tissue
    # Every tissue tile lies over the tissue box (within a tile of it).
    tx0, ty0, tx1, ty1 = big_slide.tissue
    assert all(tx0 - size <= x < tx1 and ty0 - size <= y < ty1 for x, y, _ in tiles.values())
    # Tiles wholly inside the planted tumour score above tiles wholly outside it.
    x0, y0, x1, y1 = big_slide.tumour
    in_tumour = [p for x, y, p in tiles.values() if x0 <= x and x + size <= x1 and y0 <= y and y + size <= y1]
    outside = [p for x, y, p in tiles.values() if x + size <= x0 or x >= x1 or y + size <= y0 or y >= y1]
    assert len(in_tumour) >= 16 and len(outside) >= 100
    pairs = np.subtract.outer(np.array(in_tumour), np.array(outside))
    assert (pairs > 0).mean() + 0.5 * (pairs == 0).mean() > 0.95  # AUC of tumour vs other tissue tiles
    # The top tiles, and the heatmap's peak, cover part of the planted region.
    for entry in report["top_tiles"][:3]:
        assert overlaps((entry["x"], entry["y"]), size, big_slide.tumour), entry
    peak = max(tiles.values(), key=lambda t: t[2])
    assert overlaps(peak[:2], size, big_slide.tumour)
    # Burden: positives at the decision threshold are mostly tumour tiles, and fewer at high specificity.
    decision = report["tumour_burden"]["decision"]
    assert decision["fraction"] == pytest.approx(decision["positive_tiles"] / tissue)
    assert decision["positive_tiles"] >= len(in_tumour) // 2
    high = report["tumour_burden"]["high_specificity"]
    assert high["positive_tiles"] <= decision["positive_tiles"] or high["threshold"] < decision["threshold"]
    heatmap = Image.open(out / "heatmap.png")
    assert heatmap.mode == "RGB" and max(heatmap.size) >= 1000
    assert (out / report["top_tiles"][0]["image"]).is_file()


def test_killed_scan_resumes_without_recomputing_done_tiles(big_slide, model_file, tmp_path):
    out = tmp_path / "scan"
    command = [sys.executable, "-m", "edge_pcam", "scan", str(big_slide.path), "--out", str(out),
               "--model", str(model_file)]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = out / PROGRESS_FILE
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        # Killed as soon as the first group of tiles is on disk (the scan has ~375 to do).
        if log.is_file() and log.read_bytes().count(b"\n") >= 2 + LOG_GROUP:
            break
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the scan ended before it could be killed"
    assert not (out / "scan.json").exists() and not (out / "tiles.csv").exists()  # outputs come at the end
    before = progress_table(out)
    assert len(before) >= LOG_GROUP

    result = run_cli(big_slide.path, "--out", out, "--model", model_file)
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "scan.json").read_text())
    tiles = report["tiles"]
    assert 0 < tiles["resumed"] == len(before) < tiles["tissue"]
    assert tiles["computed"] == tiles["tissue"] - tiles["resumed"]
    after = tile_table(out)  # also checks that no tile was written twice
    assert len(after) == tiles["tissue"] and progress_table(out) == after
    assert all(after[cell] == value for cell, value in before.items())

    # Asking again with other settings is refused instead of mixing results.
    other = run_cli(big_slide.path, "--out", out, "--model", model_file, "--stride", "64")
    assert other.returncode == 2 and "other settings" in other.stderr
    assert len(other.stderr.strip().splitlines()) == 1


def test_scan_of_a_40x_slide_reads_level_2_and_explains_top_tiles(small_slide, model_file, tmp_path):
    with open_slide(small_slide.path) as slide:
        geometry = plan_geometry(slide, 96)
        assert geometry.level == 2 and geometry.mpp == pytest.approx(0.972, rel=1e-3)
        assert geometry.tile_level0 == pytest.approx(384, rel=1e-3)
    calls = []
    report = scan_slide(small_slide.path, tmp_path / "out", model_file, top_k=3, explain=True,
                        progress=lambda done, total: calls.append((done, total))).report
    assert calls[-1][0] == calls[-1][1] == report.tiles.computed >= report.tiles.tissue > 0
    assert [e.rank for e in report.top_tiles] == [1, 2, 3]
    for entry in report.top_tiles:
        overlay = np.asarray(Image.open(tmp_path / "out" / entry.gradcam))
        tile = np.asarray(Image.open(tmp_path / "out" / entry.image))
        assert overlay.shape == tile.shape == (96, 96, 3) and not np.array_equal(overlay, tile)
    top = report.top_tiles[0]
    assert overlaps((top.x, top.y), top.size, small_slide.tumour)


def test_bad_input_gives_one_line_messages(tmp_path, small_slide, model_file):
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    cut = tmp_path / "cut.tif"
    data = small_slide.path.read_bytes()
    cut.write_bytes(data[:len(data) * 2 // 3])
    no_mpp = tmp_path / "no_mpp.png"
    Image.fromarray(np.full((500, 500, 3), 200, np.uint8)).save(no_mpp)
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    alone = tmp_path / "alone" / model_file.name  # the model without its Grad-CAM companion
    alone.parent.mkdir()
    shutil.copy(model_file, alone)
    cases = [
        ((text, "--out", tmp_path / "o1"), "not an image or slide"),
        ((cut, "--out", tmp_path / "o2"), "truncated"),
        ((no_mpp, "--out", tmp_path / "o3"), "--mpp"),
        ((small_slide.path, "--out", blocker / "sub"), "cannot write the output folder"),
        ((small_slide.path, "--out", tmp_path / "o5", "--explain", "--model", alone), "companion"),
    ]
    for args, message in cases:
        result = run_cli("--model", model_file, *args)  # a later --model wins
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1 and message in lines[0], result.stderr
        assert lines[0].startswith("edge-pcam: error: ")


def test_glass_only_image_reports_no_tissue_and_exits_zero(tmp_path, model_file):
    glass = tmp_path / "glass.png"
    Image.fromarray(np.full((700, 900, 3), (243, 241, 245), np.uint8)).save(glass)
    # 2 µm/px (a 5x scan) is coarser than PCam's 0.972: upsampled, with a warning too.
    result = run_cli(glass, "--out", tmp_path / "out", "--model", model_file, "--mpp", "2")
    assert result.returncode == 0, result.stderr
    assert "warning" in result.stderr and "no tissue" in result.stderr and "upsampled" in result.stderr
    report = json.loads((tmp_path / "out" / "scan.json").read_text())
    assert report["tiles"]["tissue"] == 0 and report["top_tiles"] == []
    assert report["tumour_burden"]["decision"]["fraction"] is None
    assert report["warnings"] and (tmp_path / "out" / "heatmap.png").is_file()
    # The slide result: negative, burden 0, said in the first line.
    slide_result = report["slide_result"]
    assert slide_result["category"] == "negative" and slide_result["burden"] == 0.0
    assert slide_result["regions"] == [] and slide_result["qc"]["tissue_tiles"] == 0
    assert any("no tissue" in w for w in slide_result["warnings"])
    assert result.stdout.splitlines()[0].startswith("no tissue found") and "research use only" in result.stdout


def test_batched_conversion_beside_the_model_is_found_by_its_metadata(tmp_path, model_file):
    data = model_file.read_bytes()
    meta = read_metadata(model_file)
    source = {"file": "best.h5", "sha256": "ab" * 32}
    base = tmp_path / "m_int8.tflite"
    base.write_bytes(with_metadata(data, {**meta, "source_model": source}))
    for name, batch, fmt, src in [("m_int8_b16.tflite", 16, meta["format"], source),
                                  ("m_int8_b64.tflite", 64, meta["format"], source),
                                  ("m_f32_b64.tflite", 64, "float32", source),
                                  ("other_b32.tflite", 32, meta["format"], {"file": "x.h5", "sha256": "cd" * 32})]:
        (tmp_path / name).write_bytes(with_metadata(data, {**meta, "batch": batch, "format": fmt,
                                                           "source_model": src}))
    base_meta = read_metadata(base)
    assert find_batched_variant(base, base_meta, None) == tmp_path / "m_int8_b64.tflite"
    assert find_batched_variant(base, base_meta, 16) == tmp_path / "m_int8_b16.tflite"
    assert find_batched_variant(base, base_meta, 32) is None
    # Without a recorded source there is no telling which batched file is the same model.
    unknown = tmp_path / "unknown_int8.tflite"
    unknown.write_bytes(with_metadata(data, {**meta, "source_model": {"file": "?", "sha256": None}}))
    assert find_batched_variant(unknown, read_metadata(unknown), None) is None


def test_top_tiles_are_distinct_places():
    probs = np.full((6, 6), np.nan, np.float32)
    probs[2, 2], probs[2, 3], probs[3, 2], probs[5, 5], probs[0, 0] = 0.99, 0.98, 0.97, 0.5, 0.4
    # Stride 48: neighbours overlap the 96-pixel tile, so (2, 3) and (3, 2) are skipped.
    assert top_tiles(probs, 3, 48) == [(2, 2), (5, 5), (0, 0)]
    assert top_tiles(probs, 2, 96) == [(2, 2), (2, 3)]
    assert top_tiles(np.full((2, 2), np.nan), 3, 96) == []
    # Ties go to the tile whose neighbours score higher: the middle of a region, not its edge.
    tied = np.full((5, 5), 0.1, np.float32)
    tied[1:4, 1:4] = 0.9
    assert top_tiles(tied, 1, 96) == [(2, 2)]
