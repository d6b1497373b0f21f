"""Slide readers, magnification, resampling, PCam's tissue rule and the synthetic slide writer."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image

from edge_pcam.errors import DataError
from edge_pcam.runtime.constants import PCAM_MPP
from edge_pcam.runtime.slide import open_slide
from edge_pcam.runtime.slide_base import resize_nearest
from edge_pcam.runtime.synthetic_slide import GLASS, write_synthetic_slide
from edge_pcam.runtime.tissue import saturation, sharpness, tile_maximum, tissue_tiles


@pytest.fixture(scope="module")
def small_slide(tmp_path_factory):
    """A 3000x2400 pyramidal TIFF at 0.243 µm/px (40x) with tiles of 256: levels 0.243, 0.486, 0.972, ..."""
    path = tmp_path_factory.mktemp("slide") / "small.tif"
    return write_synthetic_slide(path, 3000, 2400, mpp=0.243, tissue=(600, 500, 2400, 1900),
                                 tumour=(1000, 900, 1400, 1300), tile=256, min_level_size=200)


def level_array(path, level):
    with tifffile.TiffFile(path) as tif:
        return tif.series[0].levels[level].asarray()


def test_tiff_levels_and_mpp_come_from_the_file(small_slide):
    with open_slide(small_slide.path) as slide:
        assert slide.reader == "tifffile"
        assert slide.mpp == pytest.approx(0.243, rel=1e-6)
        assert slide.mpp_source == "TIFF resolution tags"
        assert [(lv.width, lv.height) for lv in slide.levels] == list(small_slide.levels)
        assert slide.level_mpp(2) == pytest.approx(0.972, rel=1e-3)
        assert slide.best_level(PCAM_MPP) == 2
        assert slide.best_level(0.5) == 1  # 0.486 is the coarsest level at least as fine as 0.5
        assert slide.best_level(0.1) == 0


@pytest.mark.parametrize("level", [0, 1, 3])
def test_read_region_matches_the_whole_level_across_tile_borders_and_edges(small_slide, level):
    full = level_array(small_slide.path, level)
    h, w = full.shape[:2]
    with open_slide(small_slide.path) as slide:
        for x, y, rw, rh in [(200, 230, 300, 70), (w - 50, h - 40, 90, 100), (-20, -30, 60, 50)]:
            region = slide.read_region(level, x, y, rw, rh)
            expected = np.full((rh, rw, 3), 255, np.uint8)
            xs, ys = slice(max(0, x), min(w, x + rw)), slice(max(0, y), min(h, y + rh))
            expected[ys.start - y:ys.stop - y, xs.start - x:xs.stop - x] = full[ys, xs]
            assert np.array_equal(region, expected)


def test_read_scaled_uses_an_exact_level_as_it_is_and_resamples_otherwise(small_slide):
    level2 = level_array(small_slide.path, 2)
    with open_slide(small_slide.path) as slide:
        exact_mpp = slide.level_mpp(2)
        assert np.array_equal(slide.read_scaled(exact_mpp, 100, 120, 96, 96), level2[120:216, 100:196])
        # PCam's 0.972 is 0.03% off level 2 here: resampled from level 2, nearly identical.
        scaled = slide.read_scaled(PCAM_MPP, 100, 120, 96, 96)
        assert np.abs(scaled.astype(int) - level2[120:216, 100:196]).mean() < 12
        # 1.5 µm/px comes from level 2 shrunk by 0.648 (area average): compare with Pillow on the whole level.
        (w, h), ratio = slide.size_at(1.5), 1.5 / slide.level_mpp(2)
        whole = np.asarray(Image.fromarray(level2).resize((w, h), Image.BOX, box=(0, 0, w * ratio, h * ratio)))
        part = slide.read_scaled(1.5, 150, 100, 120, 90)
        assert np.abs(part.astype(int) - whole[100:190, 150:270]).mean() < 1


def test_a_slightly_coarser_level_is_enlarged_by_repeating_pixels_not_softened(tmp_path):
    """A level up to 5% coarser than asked (a 40x scan's 1.0 µm/px level for PCam's 0.972) is enlarged
    with the nearest pixel: interpolating at fractional offsets softens every tile and lowered the
    model's sensitivity (benchmarks/results/softness.md)."""
    texture = np.random.default_rng(5).integers(0, 256, (400, 400, 3), np.uint8)
    path = tmp_path / "texture.png"
    Image.fromarray(texture).save(path)
    with open_slide(path, mpp=1.0) as slide:
        assert slide.best_level(PCAM_MPP) == 0  # 1.0 is within the tolerance: enlarged, not refused
        tile = slide.read_scaled(PCAM_MPP, 50, 60, 96, 96)
    window = texture[55:160, 45:150].reshape(-1, 3)  # the source pixels the tile can come from
    colours = {tuple(c) for c in window}
    from_source = np.mean([tuple(c) in colours for c in tile.reshape(-1, 3)])
    assert from_source == 1.0  # an interpolated colour is almost never one of the noise's colours
    assert sharpness(tile[None])[0] >= 0.9 * sharpness(texture[60:156, 50:146][None])[0]


def test_nearest_resize_picks_the_pixels_pillow_picks():
    """`resize_nearest` (numpy, columns copied in runs) gives exactly Pillow's NEAREST resize with a box at
    fractional offsets, as `read_scaled` asks it: a scan resumed on another build reads the same tiles.
    Pillow is the reference, not the code under test. Its box is float32: the same arithmetic in float64
    picks a neighbouring pixel in about one row or column in 500, which these 3,000 regions catch."""
    rng = np.random.default_rng(21)
    for _ in range(3000):
        ratio = float(rng.uniform(0.5, 2.0))  # level pixels per output pixel: enlarging and shrinking
        width, height = int(rng.integers(20, 400)), int(rng.integers(1, 6))
        x, y = (int(v) for v in rng.integers(0, 200_000, 2))
        bx0, by0, bx1, by1 = x * ratio, y * ratio, (x + width) * ratio, (y + height) * ratio
        ix0, iy0 = int(np.floor(bx0)), int(np.floor(by0))
        region = rng.integers(0, 256, (int(np.ceil(by1)) - iy0, int(np.ceil(bx1)) - ix0, 3), np.uint8)
        box = (bx0 - ix0, by0 - iy0, bx1 - ix0, by1 - iy0)
        expected = np.asarray(Image.fromarray(region).resize((width, height), Image.Resampling.NEAREST, box=box))
        assert np.array_equal(resize_nearest(region, (width, height), box), expected), (ratio, x, y, width)


def test_read_scaled_enlarges_as_pillow_does_from_the_level_it_reads(tmp_path):
    """The whole path: a 40x scan's 1.0 µm/px level read for 0.972, region by region, equals Pillow's
    nearest enlargement of the whole image cut at the same places."""
    texture = np.random.default_rng(9).integers(0, 256, (900, 700, 3), np.uint8)
    path = tmp_path / "texture.png"
    Image.fromarray(texture).save(path)
    with open_slide(path, mpp=1.0) as slide:
        ratio = PCAM_MPP / 1.0
        for x, y, w, h in [(0, 0, 96, 96), (13, 517, 384, 288), (600, 800, 101, 97)]:
            box = (x * ratio, y * ratio, (x + w) * ratio, (y + h) * ratio)
            ix0, iy0 = int(np.floor(box[0])), int(np.floor(box[1]))
            source = Image.fromarray(texture[iy0:int(np.ceil(box[3])), ix0:int(np.ceil(box[2]))])
            expected = source.resize((w, h), Image.Resampling.NEAREST,
                                     box=(box[0] - ix0, box[1] - iy0, box[2] - ix0, box[3] - iy0))
            assert np.array_equal(slide.read_scaled(PCAM_MPP, x, y, w, h), np.asarray(expected))


def test_thumbnail_in_blocks_equals_one_read(small_slide):
    with open_slide(small_slide.path) as slide:
        mpp = 4.0
        w, h = slide.size_at(mpp)
        blocks = slide.thumbnail(mpp, max_source=64)
        assert blocks.shape == (h, w, 3)
        assert np.abs(blocks.astype(int) - slide.read_scaled(mpp, 0, 0, w, h)).mean() < 3


def test_synthetic_slide_levels_agree_and_planted_region_is_where_described(small_slide):
    level0, level2 = level_array(small_slide.path, 0), level_array(small_slide.path, 2)
    # Level 2 is level 0 shrunk 4x: compare block means.
    shrunk = level0[:2400 // 4 * 4, :3000 // 4 * 4].reshape(600, 4, 750, 4, 3).mean(axis=(1, 3))
    assert np.abs(shrunk - level2[:600, :750]).mean() < 6
    x0, y0, x1, y1 = small_slide.tumour
    tumour, glass = level0[y0:y1, x0:x1], level0[:400, :400]
    assert (glass == GLASS).all()
    assert tumour.mean() < level0[700:900, 1600:2000].mean() - 20  # dense dark nuclei vs stroma


def test_synthetic_slide_needs_no_whole_image_in_memory(tmp_path):
    """The tile iterator writes a 4096x4096 slide; tifffile sees tiles and the resolution tags."""
    info = write_synthetic_slide(tmp_path / "s.tif", 4096, 4096, mpp=0.486, tile=512)
    with tifffile.TiffFile(info.path) as tif:
        page = tif.pages[0]
        assert page.is_tiled and (page.tilewidth, page.tilelength) == (512, 512)
        assert page.tags["ResolutionUnit"].value == 3
        assert len(tif.series[0].levels) == len(info.levels) > 3


def test_plain_image_mpp_from_dpi_unknown_without_and_override(tmp_path):
    rgb = np.full((300, 400, 3), 200, np.uint8)
    with_dpi, without, jpeg = tmp_path / "a.png", tmp_path / "b.png", tmp_path / "c.jpg"
    Image.fromarray(rgb).save(with_dpi, dpi=(25400 / 0.5, 25400 / 0.5))
    Image.fromarray(rgb).save(without)
    Image.fromarray(rgb).save(jpeg, dpi=(72, 72))
    with open_slide(with_dpi) as slide:
        assert slide.reader == "pillow" and slide.mpp == pytest.approx(0.5, rel=1e-3)
        assert slide.read_region(0, 390, 290, 20, 20)[15, 15].tolist() == [255, 255, 255]
    for path in (without, jpeg):
        with open_slide(path) as slide:
            assert slide.mpp is None
            with pytest.raises(DataError, match="--mpp"):
                slide.require_mpp()
    with open_slide(jpeg, mpp=0.25) as slide:
        assert slide.mpp == 0.25 and slide.mpp_source == "--mpp"
    with pytest.raises(DataError, match="not a microscope"):
        open_slide(without, mpp=500)


def test_grey_strip_tiff_reads_as_rgb(tmp_path):
    grey = (np.arange(700 * 500) % 251).astype(np.uint8).reshape(700, 500)
    path = tmp_path / "grey.tif"
    tifffile.imwrite(path, grey, rowsperstrip=64, resolution=(1e4 / 0.5, 1e4 / 0.5), resolutionunit="CENTIMETER")
    with open_slide(path) as slide:
        region = slide.read_region(0, 10, 60, 50, 20)
        assert slide.mpp == pytest.approx(0.5)
        assert region.shape == (20, 50, 3) and np.array_equal(region[..., 1], grey[60:80, 10:60])


def test_bad_files_give_one_line_errors(tmp_path, small_slide):
    text = tmp_path / "notes.txt"
    text.write_text("not a slide\n")
    with pytest.raises(DataError, match="not an image or slide"):
        open_slide(text)
    truncated = tmp_path / "cut.tif"
    data = small_slide.path.read_bytes()
    truncated.write_bytes(data[:len(data) // 2])
    with pytest.raises(DataError, match="truncated|not a readable TIFF") as exc:
        open_slide(truncated)
    assert "\n" not in str(exc.value)
    with pytest.raises(DataError, match="no such file"):
        open_slide(tmp_path / "missing.svs")


def test_saturation_and_pcam_background_rule():
    pixels = np.array([[[255, 255, 255], [243, 241, 245], [232, 168, 205], [0, 0, 0]]], np.uint8)
    assert saturation(pixels)[0].tolist() == pytest.approx([0, 4 / 245, 64 / 232, 0])
    thumb = np.full((40, 60, 3), 243, np.uint8)
    thumb[8:16, 24:32] = (232, 168, 205)  # stroma filling tile (1, 3)'s 8x8 footprint
    thumb[30, 50] = (240, 228, 235)  # a faint speck: saturation 0.05, still background
    mask = tissue_tiles(thumb, rows=5, cols=7, stride=96, tile=96, scale=8 / 96)
    assert np.argwhere(mask).tolist() == [[1, 3]]


def test_tile_maximum_matches_brute_force_with_overlapping_tiles():
    rng = np.random.default_rng(3)
    values = rng.random((57, 83)).astype(np.float32)
    stride, tile, scale = 40, 96, 0.21
    rows, cols = 12, 19
    got = tile_maximum(values, rows, cols, stride, tile, scale)
    for r in range(rows):
        for c in range(cols):
            y0, x0 = min(56, round(r * stride * scale)), min(82, round(c * stride * scale))
            y1 = max(y0 + 1, min(57, round((r * stride + tile) * scale)))
            x1 = max(x0 + 1, min(83, round((c * stride + tile) * scale)))
            assert got[r, c] == values[y0:y1, x0:x1].max()
