"""Tissue QC: pen ink, blur and background kept out of the tissue and the burden, excluded areas reported;
on synthetic patches and slides (and, where present, checked not to exclude real PCam tissue)."""

from __future__ import annotations

import colorsys
import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from edge_pcam.runtime.datasets.synthetic import open_synthetic, paint_tissue
from edge_pcam.runtime.tissue import (BACKGROUND, BLUR, BLUR_RATIO, INK, PCAM_SHARPNESS_MEDIAN, TISSUE, TissueQC, blurred,
                                      hue, ink_pixels, median_in_focus, sharpness, thumbnail_reasons, tissue_tiles)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "models"
GLASS = (243, 241, 245)
INKS = {"blue": (40, 70, 170), "green": (40, 140, 80), "red": (205, 35, 45), "black": (25, 22, 28),
        "faded blue": (150, 170, 220)}


def test_ink_colours_are_found_and_stained_tissue_is_not():
    rng = np.random.default_rng(0)
    tissue = paint_tissue(rng, 256, 256)
    assert ink_pixels(tissue).mean() < 0.001
    for name, colour in INKS.items():
        swatch = np.full((4, 4, 3), colour, np.uint8)
        assert ink_pixels(swatch).all(), name
    assert not ink_pixels(np.full((4, 4, 3), GLASS, np.uint8)).any()
    eosin, haematoxylin = np.full((2, 2, 3), (232, 168, 205), np.uint8), np.full((2, 2, 3), (92, 60, 150), np.uint8)
    assert not ink_pixels(eosin).any() and not ink_pixels(haematoxylin).any()


def test_hue_is_the_standard_hsv_hue_in_every_sector_and_zero_for_greys():
    levels = (0, 1, 2, 37, 128, 200, 254, 255)
    grid = np.array([(r, g, b) for r in levels for g in levels for b in levels], np.uint8)
    colours = np.concatenate([grid, np.random.default_rng(3).integers(0, 256, (3000, 3), dtype=np.uint8)])
    expected = np.array([colorsys.rgb_to_hsv(*(c / 255.0))[0] * 360 for c in colours.astype(np.float64)])
    got = hue(colours.reshape(1, -1, 3))[0]
    assert got.dtype == np.float32
    np.testing.assert_array_max_ulp(got, expected.astype(np.float32), maxulp=4)


def test_ink_ranges_are_half_open_at_their_documented_edges():
    # Colours whose hue is exactly an edge (rational arithmetic: 60 x (b - r) / span + 240 for blue
    # highest, 60 x (g - b) / span for red highest, mod 360): blue-green is [70, 240), red below 15
    # or from 345 degrees; black is a value below 0.2 (51 / 255 is 0.2 exactly: not black); the
    # saturations are from their edge up: 51 / 255 = 0.2 for blue-green, 130 / 200 = 0.65 for red.
    edges = {(0, 0, 200): False,  # 240 degrees: not blue-green
             (200, 50, 0): False,  # 15 degrees: not red
             (200, 0, 50): True,  # 345 degrees: red
             (51, 51, 51): False, (50, 50, 50): True,
             (204, 255, 230): True,  # 151 degrees at saturation 0.2: blue-green
             (200, 70, 70): True}  # 0 degrees at saturation 0.65: red
    colours = np.array([list(edges)], np.uint8)
    assert ink_pixels(colours)[0].tolist() == list(edges.values())


def test_black_ink_is_found_beside_bright_pixels():
    thumb = np.array([[INKS["black"], GLASS], [GLASS, INKS["black"]]], np.uint8)
    assert ink_pixels(thumb).tolist() == [[True, False], [False, True]]


def test_a_tile_is_ink_from_exactly_five_percent_of_its_pixels():
    # One tile whose thumbnail footprint is 20 x 20 = 400 pixels; 20 ink pixels are 5% exactly.
    for inked, expected in ((20, INK), (19, BACKGROUND)):
        thumb = np.full((20, 20, 3), GLASS, np.uint8)
        thumb.reshape(-1, 3)[:inked] = INKS["blue"]
        reasons = thumbnail_reasons(thumb, 1, 1, stride=96, tile=96, scale=20 / 96)
        assert reasons.dtype == np.uint8 and reasons.tolist() == [[expected]], inked


def test_one_pixel_at_pcams_saturation_makes_a_clean_tile_tissue():
    thumb = np.full((8, 8, 3), GLASS, np.uint8)
    thumb[4, 4] = (200, 186, 186)  # saturation 14 / 200 = 0.07 exactly: PCam's rule keeps it
    assert thumbnail_reasons(thumb, 1, 1, stride=96, tile=96, scale=8 / 96).tolist() == [[TISSUE]]


def test_blur_is_strictly_below_the_ratio(monkeypatch):
    from edge_pcam.runtime import tissue
    monkeypatch.setattr(tissue, "sharpness", lambda tiles: np.array([BLUR_RATIO, np.nextafter(BLUR_RATIO, 0)]))
    assert blurred(np.zeros((2, 4, 4, 3), np.uint8)).tolist() == [False, True]
    qc = TissueQC(np.array([[TISSUE, TISSUE]], np.uint8), cell_mm2=0.01)
    assert qc.with_sharpness(np.array([[BLUR_RATIO, np.nextafter(BLUR_RATIO, 0)]])).reasons.tolist() == [[TISSUE, BLUR]]


def test_reasons_per_tile_from_the_thumbnail():
    # A thumbnail of 4 x 4 tiles, 8 pixels each: glass, tissue, ink on glass, tissue with a stroke.
    rng = np.random.default_rng(1)
    thumb = np.empty((32, 32, 3), np.uint8)
    thumb[:] = GLASS
    thumb[:, 8:] = paint_tissue(rng, 32, 24)
    thumb[0:8, 0:8] = GLASS
    thumb[8:16, 0:8, :] = INKS["green"]  # ink on glass: ink, not tissue
    thumb[16:18, 8:16] = INKS["blue"]  # a stroke over a quarter of a tissue tile
    thumb[24, 24] = INKS["black"]  # one speck: under 5% of the tile, still tissue
    thumb[3, 3] = INKS["red"]  # one speck on glass: still glass (ink does not count as stain)
    reasons = thumbnail_reasons(thumb, 4, 4, stride=96, tile=96, scale=8 / 96)
    assert reasons[0, 0] == BACKGROUND and reasons[1, 0] == INK
    assert reasons[2, 1] == INK and reasons[3, 3] == TISSUE and reasons[0, 2] == TISSUE


def test_blur_is_found_at_scan_scale_and_sharp_tissue_passes():
    patches = open_synthetic("synthetic:200:5").split("train").read(np.arange(64))
    assert not blurred(patches).any()

    def soft(radius: float) -> np.ndarray:
        return np.stack([np.asarray(Image.fromarray(p).filter(ImageFilter.GaussianBlur(radius))) for p in patches])

    assert blurred(soft(1)).mean() < 0.1  # slightly soft (1 µm): kept
    assert blurred(soft(3)).all()  # out of focus by 3 µm: excluded
    assert sharpness(np.full((1, 96, 96, 3), 200, np.uint8))[0] == 0.0  # flat: no detail, no division by zero


def textbook_sharpness(tile: np.ndarray) -> float:
    """The sharpness of one (H, W, 3) uint8 tile in float64: Laplacian variance over grey variance."""
    grey = tile.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    lap = grey[:-2, 1:-1] + grey[2:, 1:-1] + grey[1:-1, :-2] + grey[1:-1, 2:] - 4 * grey[1:-1, 1:-1]
    return float(lap.var() / grey.var()) if grey.var() > 0 else 0.0


def test_sharpness_of_many_tiles_is_each_tiles_own():
    """Measured a few tiles at a time: each value is its tile's Laplacian variance over grey variance,
    computed here in float64 with the textbook formula, whatever the count and the chunk boundaries."""
    patches = open_synthetic("synthetic:200:5").split("train").read(np.arange(19))
    patches[4] = 180  # flat: 0

    expected = [textbook_sharpness(p) for p in patches]
    for count in (1, 8, 9, 19):
        assert sharpness(patches[:count]) == pytest.approx(expected[:count], rel=1e-4, abs=1e-9)


def test_sharpness_is_each_tiles_own_whatever_was_measured_before_and_beside_it():
    """The float arrays it is computed in are kept and reused, one set per thread: after more tiles or
    fewer, after tiles of another size, and while another thread measures other tiles, each value is
    still its own tile's (sharing one set between threads fails the last part)."""
    patches = open_synthetic("synthetic:200:5").split("train").read(np.arange(16))
    smaller = patches[:, 10:74, 5:85]  # 64 x 80 tiles, not contiguous
    expected = [textbook_sharpness(p) for p in patches]
    expected_smaller = [textbook_sharpness(p) for p in smaller]
    for tiles, want in ((patches, expected), (smaller[:3], expected_smaller[:3]), (patches[5:7], expected[5:7]),
                        (smaller, expected_smaller), (patches[2:11], expected[2:11])):
        assert sharpness(tiles) == pytest.approx(want, rel=1e-4, abs=1e-9)

    halves = {0: patches[:8], 1: patches[8:]}
    measured: dict[int, list[np.ndarray]] = {0: [], 1: []}
    start = threading.Barrier(2)

    def measure(half: int) -> None:
        start.wait()
        for _ in range(200):
            measured[half].append(sharpness(halves[half]))

    threads = [threading.Thread(target=measure, args=(half,)) for half in halves]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for half, values in measured.items():
        assert len(values) == 200
        for v in values:
            assert v == pytest.approx(expected[8 * half:8 * half + 8], rel=1e-4, abs=1e-9)


def test_excluded_area_per_reason_and_blur_only_on_tissue():
    reasons = np.array([[TISSUE, TISSUE, INK], [BACKGROUND, TISSUE, BACKGROUND]], np.uint8)
    qc = TissueQC(reasons, cell_mm2=0.01).with_blur(np.array([[True, False, True], [True, False, False]]))
    assert qc.reasons.tolist() == [[BLUR, TISSUE, INK], [BACKGROUND, TISSUE, BACKGROUND]]
    assert qc.excluded_mm2() == pytest.approx({"background": 0.02, "ink": 0.01, "blur": 0.01})
    assert qc.as_dict()["tissue_mm2"] == pytest.approx(0.02) and qc.as_dict()["tissue_tiles"] == 2


def test_measured_sharpness_marks_blur_and_a_flat_tile_is_background():
    reasons = np.array([[TISSUE, TISSUE, TISSUE, TISSUE, INK]], np.uint8)
    values = np.array([[0.5, 0.01, 0.0, np.nan, 0.0]])  # sharp, soft, flat, not measured; ink stays ink
    qc = TissueQC(reasons, cell_mm2=0.01).with_sharpness(values)
    assert qc.reasons.tolist() == [[TISSUE, BLUR, BACKGROUND, TISSUE, INK]]
    assert qc.excluded_mm2() == pytest.approx({"background": 0.01, "ink": 0.01, "blur": 0.01})


@pytest.mark.real_data
def test_real_pcam_tissue_is_rarely_excluded(subset_dir):
    from edge_pcam.runtime.datasets.spec import open_dataset

    split = open_dataset(str(subset_dir)).split("valid")
    patches = split.read(np.arange(0, len(split), 3))
    # As a scan sees them: thumbnail pixels of 12 x 12 scan pixels, and the tiles themselves.
    thumbs = np.stack([np.asarray(Image.fromarray(p).reduce(12)) for p in patches])
    row = np.concatenate(list(thumbs), axis=1)
    reasons = thumbnail_reasons(row, 1, len(patches), stride=96, tile=96, scale=8 / 96)
    assert (reasons == INK).mean() < 0.005
    assert blurred(patches).mean() < 0.005


@pytest.mark.slow
def test_ink_and_blur_leave_the_burden_within_a_point_and_are_reported(tmp_path, monkeypatch):
    from edge_pcam.runtime.scan import geometry, scan_slide
    from edge_pcam.runtime.scan_heatmap import QC_COLOURS
    from edge_pcam.runtime.synthetic_slide import write_synthetic_slide

    model = FIXTURES / "tiny_int8.tflite"
    if not model.is_file():
        pytest.skip(f"{model} not found: run tests/fixtures/make_fixtures.py")
    # The same slide (6,000 pixels a side at 0.486 µm/px) without and with pen strokes and an out-of-focus patch.
    layout = dict(mpp=0.486, tissue=(600, 600, 5400, 5400), tumour=(1500, 1500, 2700, 2850), seed=3)
    clean = write_synthetic_slide(tmp_path / "clean.tif", 6000, 6000, **layout).path
    soft = write_synthetic_slide(tmp_path / "marked.tif", 6000, 6000, marks=True, **layout).blurred
    marked = tmp_path / "marked.tif"
    reports = {}
    for path in (clean, marked):
        command = [sys.executable, "-m", "edge_pcam", "scan", str(path), "--out", str(tmp_path / path.stem),
                   "--model", str(model)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        reports[path.stem] = json.loads((tmp_path / path.stem / "scan.json").read_text())
    before, after = reports["clean"]["slide_result"], reports["marked"]["slide_result"]

    # Within a point, the same size class, and the excluded areas reported per reason.
    assert abs(after["burden"] - before["burden"]) < 0.01
    assert after["category"] == before["category"] != "negative"
    assert before["qc"]["excluded_mm2"]["ink"] == 0 and before["qc"]["excluded_mm2"]["blur"] == 0
    cell_mm2 = (192 * 0.486 / 1000) ** 2
    assert after["qc"]["excluded_mm2"]["blur"] == pytest.approx(9 * cell_mm2)
    assert after["qc"]["excluded_mm2"]["ink"] > 20 * cell_mm2
    for point in ("decision", "high_specificity"):  # the raw counts are of the same tiles
        assert reports["marked"]["tumour_burden"][point] == after["raw_counts"][point]
    # The tiles left out are in no output: tiles.csv holds the tiles that count, none in the blurred patch.
    rows = (tmp_path / "marked" / "tiles.csv").read_text().splitlines()[1:]
    assert len(rows) == reports["marked"]["tiles"]["tissue"] == after["qc"]["tissue_tiles"]
    x0, y0, x1, y1 = soft
    assert not [r for r in rows if x0 <= int(r.split(",")[0]) < x1 and y0 <= int(r.split(",")[1]) < y1]
    # The heatmap hatches what was left out (blur in its own colour, here only).
    def hatched(name: str) -> int:
        picture = np.asarray(Image.open(tmp_path / name / "heatmap.png").convert("RGB")).astype(int)
        return int((np.abs(picture - (0.86 * np.array(QC_COLOURS[1]) + 0.14 * 210)).max(axis=-1) < 30).sum())

    assert hatched("clean") == 0 and hatched("marked") > 2000

    # Without the QC (PCam's saturation rule alone, no blur check) the marks count as tissue and move the burden.
    monkeypatch.setattr(geometry, "thumbnail_reasons", lambda thumb, rows, cols, stride, tile, scale: np.where(
        tissue_tiles(thumb, rows, cols, stride, tile, scale), TISSUE, BACKGROUND).astype(np.uint8))
    monkeypatch.setattr(TissueQC, "with_sharpness", lambda qc, values: qc)
    unchecked = scan_slide(marked, tmp_path / "unchecked", model).report
    assert unchecked.tiles.tissue > reports["clean"]["tiles"]["tissue"] + 20
    assert abs(unchecked.slide_result.burden - before["burden"]) > 0.01


def test_a_slide_is_soft_by_the_median_sharpness_of_the_tiles_that_pass():
    """Soft below 80% of PCam's median (6.64 * 0.8 = 5.312); background, blurred and unmeasured tiles
    do not count."""
    reasons = np.array([[TISSUE, TISSUE, TISSUE, TISSUE, BACKGROUND]], np.uint8)
    soft = TissueQC(reasons, 0.01).with_sharpness(np.array([[1.0, 2.0, 3.0, 100.0, 100.0]]))
    assert soft.median_sharpness == pytest.approx(2.5)  # of 1, 2, 3 and 100
    assert soft.as_dict()["sharpness"] == soft.softness() == {
        "median": pytest.approx(2.5), "reference": 6.64, "soft_below": pytest.approx(5.312), "soft": True}
    sharp = TissueQC(reasons, 0.01).with_sharpness(np.array([[0.01, 0.01, 7.0, np.nan, 1.0]]))
    assert sharp.median_sharpness == pytest.approx(7.0)  # two blurred, one not measured
    assert not sharp.softness()["soft"]
    line = TissueQC(reasons, 0.01).with_sharpness(np.array([[5.2, 5.2, 5.4, 5.4, 0.0]]))
    assert line.median_sharpness == pytest.approx(5.3) and line.softness()["soft"]  # just below 5.312
    assert TissueQC(reasons, 0.01).median_sharpness is None and not TissueQC(reasons, 0.01).softness()["soft"]
    # Against a lab's own patches (calibrate stores their median): 2.5 is not soft next to 3.0, and is next to 4.
    assert not soft.softness(3.0)["soft"] and soft.softness(4.0) == {
        "median": pytest.approx(2.5), "reference": 4.0, "soft_below": pytest.approx(3.2), "soft": True}


def test_median_in_focus_leaves_out_blurred_flat_and_unmeasured_values():
    """The scan's median and calibrate's use one rule: values below BLUR_RATIO (0.03) and NaN do not count."""
    assert median_in_focus(np.array([0.0, 0.01, np.nan, 2.0, 4.0, 9.0])) == pytest.approx(4.0)
    assert median_in_focus(np.array([0.03, 1.0])) == pytest.approx(0.515)
    assert median_in_focus(np.array([0.0, 0.02, np.nan])) is None and median_in_focus(np.array([])) is None


def test_pcam_sharpness_median_is_the_valid_splits(subset_dir):
    """The reference a slide is compared with is the median sharpness of PCam's valid patches."""
    from edge_pcam.runtime.datasets import open_dataset
    part = open_dataset(str(subset_dir)).split("valid")
    median = float(np.median(sharpness(part.read(np.arange(len(part))))))
    assert median == pytest.approx(PCAM_SHARPNESS_MEDIAN, rel=0.01)
