"""Tissue QC: pen ink, blur and background kept out of the tissue and the burden, excluded areas reported;
on synthetic patches and slides (and, where present, checked not to exclude real PCam tissue)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from edge_pcam.runtime.datasets.synthetic import open_synthetic, paint_tissue
from edge_pcam.runtime.tissue import (BACKGROUND, BLUR, INK, TISSUE, TissueQC, blurred, ink_pixels, sharpness,
                                      thumbnail_reasons)

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


def test_excluded_area_per_reason_and_blur_only_on_tissue():
    reasons = np.array([[TISSUE, TISSUE, INK], [BACKGROUND, TISSUE, BACKGROUND]], np.uint8)
    qc = TissueQC(reasons, cell_mm2=0.01).with_blur(np.array([[True, False, True], [True, False, False]]))
    assert qc.reasons.tolist() == [[BLUR, TISSUE, INK], [BACKGROUND, TISSUE, BACKGROUND]]
    assert qc.excluded_mm2() == pytest.approx({"background": 0.02, "ink": 0.01, "blur": 0.01})
    assert qc.as_dict()["tissue_mm2"] == pytest.approx(0.02) and qc.as_dict()["tissue_tiles"] == 2


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


# Pen strokes (level-0 pixels of a 4,000 x 4,000 slide at 0.486 µm/px) and a defocused patch of 3 x 3 tiles.
STROKES = [("black", [(100, 620), (1500, 330), (2600, 660)], 120), ("green", [(200, 3800), (3800, 3870)], 150),
           ("blue", [(3850, 200), (3720, 2200)], 150)]
BLUR_BOX = (2304, 2304, 2880, 2880)  # aligned to the 192-pixel tiles: columns and rows 12-14


def write_pyramid(path: Path, level0: np.ndarray, mpp: float) -> None:
    """A tiled pyramidal TIFF of `level0` (levels halving), with its µm/px in the resolution tags."""
    import tifffile

    levels = [level0]
    while max(levels[-1].shape[:2]) > 512:
        levels.append(np.asarray(Image.fromarray(levels[-1]).reduce(2)))
    width = level0.shape[1]
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        for index, level in enumerate(levels):
            per_cm = 1e4 / mpp * level.shape[1] / width
            options = dict(tile=(512, 512), photometric="rgb", compression="zlib", resolutionunit="CENTIMETER",
                           resolution=(per_cm, per_cm))
            options.update(subifds=len(levels) - 1) if index == 0 else options.update(subfiletype=1)
            tif.write(level, **options)


def marked_copy(clean: Path, path: Path, mpp: float) -> None:
    """`clean` with pen strokes and a red dot drawn on it and BLUR_BOX out of focus (3 scan pixels)."""
    import tifffile

    image = Image.fromarray(tifffile.TiffFile(clean).series[0].levels[0].asarray())
    draw = ImageDraw.Draw(image)
    for colour, points, width in STROKES:
        draw.line(points, fill=INKS[colour], width=width)
    draw.ellipse([(3340, 3440), (3460, 3560)], fill=INKS["red"])
    image.paste(image.crop(BLUR_BOX).filter(ImageFilter.GaussianBlur(6)), BLUR_BOX[:2])
    write_pyramid(path, np.asarray(image), mpp)


def result_of_scan(slide_path: Path, out: Path, card: dict, quality_control: bool = True):
    """The slide result from a finished scan's outputs (tiles.csv, thumbnail.png), QC as the scan will do it.

    Phase 1 of issue 13: the scan does not compute it yet, so blur is measured on the tiles read again.
    """
    from edge_pcam.runtime.burden import OperatingCharacteristics
    from edge_pcam.runtime.scan.geometry import TILE, iter_tiles, plan_geometry
    from edge_pcam.runtime.slide import open_slide
    from edge_pcam.runtime.slide_result import slide_result

    report = json.loads((out / "scan.json").read_text())
    with open_slide(slide_path) as slide:
        geometry = plan_geometry(slide, TILE)
        probabilities = np.full((geometry.rows, geometry.cols), np.nan)
        for line in (out / "tiles.csv").read_text().splitlines()[2:]:
            r, c, _, _, p = line.split(",")
            probabilities[int(r), int(c)] = float(p)
        cell_mm2 = (TILE * geometry.mpp / 1000) ** 2
        if quality_control:
            thumbnail = np.asarray(Image.open(out / "thumbnail.png").convert("RGB"))
            qc = TissueQC(thumbnail_reasons(thumbnail, geometry.rows, geometry.cols, TILE, TILE,
                                            geometry.mpp / report["settings"]["thumbnail_mpp"]), cell_mm2)
            soft = np.zeros(qc.reasons.shape, bool)
            for cells, tiles in iter_tiles(slide, geometry, qc.tissue & np.isfinite(probabilities)):
                soft[tuple(np.array(cells).T)] = blurred(tiles)
            qc = qc.with_blur(soft)
        else:  # every tile PCam's rule kept
            qc = TissueQC(np.where(np.isfinite(probabilities), TISSUE, BACKGROUND).astype(np.uint8), cell_mm2)
        return slide_result(probabilities, qc, OperatingCharacteristics.from_card(card), card["thresholds"],
                            geometry.origin, geometry.tile_level0, geometry.stride_level0,
                            slide.require_mpp()), report


@pytest.mark.slow
def test_ink_and_blur_leave_the_burden_within_a_point_and_are_reported(tmp_path):
    from edge_pcam.runtime.metadata import read_metadata
    from edge_pcam.runtime.scan import scan_slide
    from edge_pcam.runtime.synthetic_slide import write_synthetic_slide

    model = FIXTURES / "tiny_int8.tflite"
    if not model.is_file():
        pytest.skip(f"{model} not found: run tests/fixtures/make_fixtures.py")
    card = read_metadata(model)
    clean = write_synthetic_slide(tmp_path / "clean.tif", 4000, 4000, mpp=0.486, tissue=(400, 400, 3600, 3600),
                                  tumour=(1000, 1000, 1800, 1900), seed=3).path
    marked = tmp_path / "marked.tif"
    marked_copy(clean, marked, 0.486)
    for path in (clean, marked):
        scan_slide(path, tmp_path / path.stem, model)
    before, clean_report = result_of_scan(clean, tmp_path / "clean", card)
    after, marked_report = result_of_scan(marked, tmp_path / "marked", card)

    # PCam's saturation rule alone takes the ink for tissue; without QC the ink and blur move the burden.
    assert marked_report["tiles"]["tissue"] > clean_report["tiles"]["tissue"] + 20
    unchecked, _ = result_of_scan(marked, tmp_path / "marked", card, quality_control=False)
    assert abs(unchecked.burden - before.burden) > 0.01
    # With QC: within a point, the same size class, and the excluded areas reported per reason.
    assert abs(after.burden - before.burden) < 0.01
    assert after.category == before.category != "negative"
    assert before.qc["excluded_mm2"]["ink"] == 0 and before.qc["excluded_mm2"]["blur"] == 0
    cell_mm2 = (192 * 0.486 / 1000) ** 2
    assert after.qc["excluded_mm2"]["blur"] == pytest.approx(9 * cell_mm2)
    assert after.qc["excluded_mm2"]["ink"] > 20 * cell_mm2
