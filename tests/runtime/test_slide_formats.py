"""Slide formats on the default install: each format tifffile can write here, read through each reader.

The reference pixels come from the same synthetic slide written uncompressed and read with
tifffile's own `asarray` (not through edge-pcam's readers). NDPI, MRXS and DICOM cannot be
written here in full: a minimal NDPI (one JPEG per level and Hamamatsu's tags, which OpenSlide
reads) checks the reader choice, and the others check the error path.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import tifffile

from edge_pcam.errors import DataError
from edge_pcam.runtime import slide_openslide
from edge_pcam.runtime.slide import open_slide
from edge_pcam.runtime.synthetic_slide import write_synthetic_slide

pytest.importorskip("imagecodecs", reason="imagecodecs (a base dependency) writes the JPEG/LZW test files")
openslide = pytest.importorskip("openslide", reason="openslide-bin/openslide-python (base dependencies)")

MPP = 0.25
SIZE = (2000, 1600)
LAYOUT = dict(tissue=(400, 300, 1600, 1300), tumour=(700, 600, 1000, 900), tile=256, min_level_size=150)
# (container, compression, lossless)
FORMATS = [("svs", "jpeg", False), ("svs", "jpeg2000", False), ("tiff", "lzw", True), ("tiff", "zlib", True),
           ("tiff", "jpeg", False), ("ome", "jpeg", False), ("ome", "lzw", True)]
WINDOWS = [(0, 700, 600, 300, 200), (0, 1900, 1500, 150, 150), (2, 100, 80, 120, 100)]  # level, x, y, w, h


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """Every format of FORMATS, plus the uncompressed reference, written once."""
    folder = tmp_path_factory.mktemp("formats")
    files = {}
    for container, compression, _ in FORMATS + [("tiff", "none", True)]:
        suffix = {"svs": ".svs", "ome": ".ome.tif", "tiff": ".tif"}[container]
        path = folder / f"{container}_{compression}{suffix}"
        write_synthetic_slide(path, *SIZE, mpp=MPP, container=container, compression=compression, **LAYOUT)
        files[container, compression] = path
    return files


def reference_level(written, level):
    with tifffile.TiffFile(written["tiff", "none"]) as tif:
        return tif.series[0].levels[level].asarray()


def expected_window(full, x, y, w, h):
    out = np.full((h, w, 3), 255, np.uint8)
    part = full[y:y + h, x:x + w]
    out[:part.shape[0], :part.shape[1]] = part
    return out


@pytest.mark.parametrize("container,compression,lossless", FORMATS)
@pytest.mark.parametrize("reader", ["tifffile", "openslide"])
def test_format_reads_the_reference_pixels(written, container, compression, lossless, reader):
    path = written[container, compression]
    if (container, compression, reader) == ("tiff", "jpeg2000", "openslide"):
        pytest.skip("OpenSlide's generic TIFF driver has no JPEG 2000")
    with open_slide(path, reader=reader) as slide:
        assert slide.reader == reader
        assert slide.mpp == pytest.approx(MPP, rel=1e-4)
        # OpenSlide sees an SVS's pyramid; in tifffile-style files (SubIFDs) only level 0.
        pyramid = reader == "tifffile" or container == "svs"
        with tifffile.TiffFile(written["tiff", "none"]) as tif:
            levels = len(tif.series[0].levels)
        assert len(slide.levels) == (levels if pyramid else 1)
        for level, x, y, w, h in WINDOWS:
            if level >= len(slide.levels):
                continue
            got = slide.read_region(level, x, y, w, h).astype(int)
            want = expected_window(reference_level(written, level), x, y, w, h).astype(int)
            error = np.abs(got - want).mean()
            assert error == 0 if lossless else error < 3.0, (level, error)


@pytest.mark.parametrize("container,compression,expected", [
    ("svs", "jpeg", ("tifffile", "Aperio MPP")),
    ("svs", "jpeg2000", ("tifffile", "Aperio MPP")),
    ("tiff", "lzw", ("tifffile", "TIFF resolution tags")),
    ("ome", "jpeg", ("tifffile", "OME PhysicalSizeX")),
])
def test_auto_reads_svs_and_generic_pyramids_with_tifffile(written, container, compression, expected):
    with open_slide(written[container, compression]) as slide:
        assert (slide.reader, slide.mpp_source) == expected
        assert slide.passed_over == ()
        report = slide.describe()
        assert report["reader"] == expected[0] and report["readers_passed_over"] == []
        assert "imagecodecs" in report["reader_version"]


def test_openslide_reads_the_svs_metadata_too(written):
    with open_slide(written["svs", "jpeg"], reader="openslide") as slide:
        assert slide.mpp_source == "OpenSlide properties (aperio)" and slide.mpp == pytest.approx(0.25)
        assert "OpenSlide 4" in slide.describe()["reader_version"]


def planar_svs(path):
    """An Aperio SVS stored plane by plane (PlanarConfiguration 2): OpenSlide reads it, tifffile's path does not."""
    rng = np.random.default_rng(1)
    image = rng.integers(100, 200, (3, 512, 768), dtype=np.uint8)
    desc = "Aperio Image Library v12.0.16 \r\n768x512 [0,0 768x512] (256x256) RAW|AppMag = 40|MPP = 0.2500"
    with tifffile.TiffWriter(path) as tif:
        tif.write(image, tile=(256, 256), compression="zlib", photometric="rgb", planarconfig="separate",
                  description=desc, metadata=None)
    return np.moveaxis(image, 0, -1)


def test_auto_passes_over_a_reader_that_cannot_open_the_file(tmp_path):
    path = tmp_path / "planar.svs"
    image = planar_svs(path)
    with open_slide(path) as slide:
        assert slide.reader == "openslide"
        assert slide.passed_over == ("tifffile: planar (separate-plane) TIFFs are not supported",)
        assert slide.describe()["readers_passed_over"] == list(slide.passed_over)
        assert np.array_equal(slide.read_region(0, 0, 0, 768, 512), image)


BLOCK_IMAGECODECS = r"""
import importlib.abc, sys
class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "imagecodecs":
            raise ImportError("blocked for this test")
sys.meta_path.insert(0, Blocker())
from edge_pcam.runtime.slide import open_slide
with open_slide(sys.argv[1]) as slide:
    print(slide.reader, len(slide.levels), "|".join(slide.passed_over))
"""


@pytest.mark.parametrize("container,levels", [("svs", 5), ("ome", 1)])
def test_auto_passes_over_a_reader_that_cannot_decode_the_tiles(written, container, levels):
    """Without imagecodecs tifffile opens a JPEG SVS or OME-TIFF but cannot decode it: OpenSlide reads it
    instead (an OME-TIFF's SubIFD pyramid only at level 0)."""
    result = subprocess.run([sys.executable, "-c", BLOCK_IMAGECODECS, str(written[container, "jpeg"])],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    reader, found, passed_over = result.stdout.strip().split(" ", 2)
    assert (reader, int(found)) == ("openslide", levels)
    assert passed_over.startswith("tifffile: its tiles need imagecodecs")


def test_a_damaged_tile_fails_every_reader_with_one_line(written, tmp_path):
    path = tmp_path / "damaged.svs"
    data = bytearray(written["svs", "jpeg"].read_bytes())
    with tifffile.TiffFile(written["svs", "jpeg"]) as tif:
        page = tif.pages[0]
        nx = -(-page.imagewidth // page.tilewidth)
        centre = (page.imagelength // 2 // page.tilelength) * nx + page.imagewidth // 2 // page.tilewidth
        offset, count = page.dataoffsets[centre], page.databytecounts[centre]
    data[offset:offset + count] = bytes(count)  # the tile at the centre of level 0: zeros
    path.write_bytes(bytes(data))
    with pytest.raises(DataError) as exc:
        open_slide(path)
    message = str(exc.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: no reader could read it (tifffile: tile ")
    assert "; openslide: OpenSlide cannot read level 0" in message


def minimal_ndpi(path, image, mpp):
    """Hamamatsu's layout in its simplest form: one JPEG per level, the NDPI tags OpenSlide needs."""
    import imagecodecs

    ndpi_tags = [(65420, "I", 1, 1, True), (65421, "f", 1, 40.0, True),
                 (65422, "i", 1, 0, True), (65423, "i", 1, 0, True), (65424, "i", 1, 0, True)]
    with tifffile.TiffWriter(path) as tif:
        for i in range(2):
            level = np.ascontiguousarray(image[::2 ** i, ::2 ** i])
            tif.write(iter([imagecodecs.jpeg8_encode(level, level=95)]), shape=level.shape, dtype=np.uint8,
                      compression="jpeg", photometric="ycbcr", rowsperstrip=level.shape[0], metadata=None,
                      resolution=(1e4 / mpp / 2 ** i,) * 2, resolutionunit="CENTIMETER", extratags=ndpi_tags)


def test_ndpi_goes_to_openslide(tmp_path):
    yy, xx = np.mgrid[:512, :768]
    image = np.dstack([xx * 255 // 768, yy * 255 // 512, np.full_like(xx, 90)]).astype(np.uint8)
    path = tmp_path / "minimal.ndpi"
    minimal_ndpi(path, image, 0.23)
    with open_slide(path) as slide:
        assert (slide.reader, slide.mpp) == ("openslide", pytest.approx(0.23))
        assert slide.mpp_source == "OpenSlide properties (hamamatsu)"
        assert np.abs(slide.read_region(0, 300, 200, 64, 64).astype(int) - image[200:264, 300:364]).mean() < 3


def test_formats_only_openslide_reads_say_what_is_missing(tmp_path, monkeypatch):
    mrxs, dicom = tmp_path / "slide.mrxs", tmp_path / "slide.dcm"
    mrxs.write_text("[GENERAL]\nSLIDE_ID=1\n")  # the index alone: its data folder is missing
    dicom.write_bytes(bytes(128) + b"DICM" + b"\x02\x00\x00\x00UL\x04\x00" + b"cut short")
    for path, kind in ((mrxs, "MIRAX"), (dicom, "DICOM WSI")):
        with pytest.raises(DataError, match=f"OpenSlide does not recognise it as {kind}"):
            open_slide(path)
    monkeypatch.setattr(slide_openslide, "openslide_module", lambda: None)
    with pytest.raises(DataError, match="MIRAX needs OpenSlide, which is not installed here"):
        open_slide(mrxs)
    with pytest.raises(DataError, match="OpenSlide is not installed here"):
        open_slide(dicom, reader="openslide")


def test_without_openslide_an_svs_is_read_by_tifffile(written, monkeypatch):
    monkeypatch.setattr(slide_openslide, "openslide_module", lambda: None)
    with open_slide(written["svs", "jpeg"]) as slide:
        assert slide.reader == "tifffile" and slide.mpp_source == "Aperio MPP"


def test_unknown_reader_lists_the_readers(written):
    with pytest.raises(DataError, match="unknown slide reader 'tiffslide' \\(auto, openslide, tifffile, pillow\\)"):
        open_slide(written["svs", "jpeg"], reader="tiffslide")
