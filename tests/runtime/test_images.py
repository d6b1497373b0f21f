"""load_patch: conversions to 8-bit RGB, centre crop, and one-line errors naming the file."""

import numpy as np
import pytest
from PIL import Image

from edge_pcam.errors import DataError
from edge_pcam.runtime.images import check_patch_files, load_patch, load_patches


def _rgb(seed=0, size=(96, 96)):
    return np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)


def test_rgb_png_is_read_exactly(tmp_path):
    pixels = _rgb()
    Image.fromarray(pixels).save(tmp_path / "p.png")
    out = load_patch(tmp_path / "p.png")
    assert out.dtype == np.uint8 and out.shape == (96, 96, 3)
    assert np.array_equal(out, pixels)


def test_jpeg_matches_pillow_decode(tmp_path):
    Image.fromarray(_rgb(1)).save(tmp_path / "p.jpg", quality=75)
    assert np.array_equal(load_patch(tmp_path / "p.jpg"), np.asarray(Image.open(tmp_path / "p.jpg")))


def test_grayscale_becomes_three_equal_channels(tmp_path):
    grey = _rgb(2)[..., 0]
    Image.fromarray(grey, "L").save(tmp_path / "g.png")
    out = load_patch(tmp_path / "g.png")
    assert out.shape == (96, 96, 3)
    for c in range(3):
        assert np.array_equal(out[..., c], grey)


def test_rgba_is_composited_on_white(tmp_path):
    rgba = np.zeros((96, 96, 4), np.uint8)
    rgba[..., :3] = (200, 50, 120)
    rgba[:48, :, 3] = 255   # opaque top half keeps its colour
    rgba[48:, :, 3] = 0     # transparent bottom half becomes white (glass)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    out = load_patch(tmp_path / "a.png")
    assert (out[:48] == (200, 50, 120)).all()
    assert (out[48:] == 255).all()


def test_palette_image_converts_to_its_colours(tmp_path):
    im = Image.fromarray(_rgb(3)).convert("P", palette=Image.ADAPTIVE, colors=16)
    im.save(tmp_path / "p.png")
    assert np.array_equal(load_patch(tmp_path / "p.png"), np.asarray(im.convert("RGB")))


def test_sixteen_bit_is_scaled_to_eight_bit(tmp_path):
    values = np.random.default_rng(4).integers(0, 256, (96, 96)).astype(np.uint16) * 257
    Image.fromarray(values).save(tmp_path / "g16.png")
    out = load_patch(tmp_path / "g16.png")
    assert np.array_equal(out[..., 1], (values // 257).astype(np.uint8))


def test_cmyk_is_converted(tmp_path):
    Image.new("CMYK", (96, 96), (0, 255, 0, 0)).save(tmp_path / "c.jpg")
    out = load_patch(tmp_path / "c.jpg")
    assert out.shape == (96, 96, 3)
    assert out[..., 1].mean() < 40 and out[..., 0].mean() > 200  # magenta ink: red and blue, little green


def test_larger_image_is_centre_cropped_or_refused(tmp_path):
    big = _rgb(5, (120, 100))   # height 120, width 100
    Image.fromarray(big).save(tmp_path / "big.png")
    assert np.array_equal(load_patch(tmp_path / "big.png"), big[12:108, 2:98])
    with pytest.raises(DataError, match=r"big\.png: image is 100x120, not 96x96"):
        load_patch(tmp_path / "big.png", crop=False)


def test_smaller_image_is_refused(tmp_path):
    Image.fromarray(_rgb(6, (64, 64))).save(tmp_path / "small.png")
    with pytest.raises(DataError, match=r"small\.png: image is 64x64, smaller than a 96x96 patch"):
        load_patch(tmp_path / "small.png")


def test_unreadable_and_missing_files(tmp_path):
    (tmp_path / "notes.jpg").write_text("not an image")
    with pytest.raises(DataError, match=r"notes\.jpg: not an image"):
        load_patch(tmp_path / "notes.jpg")
    with pytest.raises(DataError, match=r"gone\.png: no such image file"):
        load_patch(tmp_path / "gone.png")
    Image.fromarray(_rgb()).save(tmp_path / "cut.png")
    data = (tmp_path / "cut.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"cut\.png"):
        load_patch(tmp_path / "cut.png")


def test_strict_mode_and_header_check_refuse_non_rgb_patches(tmp_path):
    Image.fromarray(_rgb(7)[..., 0], "L").save(tmp_path / "grey.png")
    Image.fromarray(_rgb(8)).save(tmp_path / "ok.png")
    with pytest.raises(DataError, match=r"grey\.png: 96x96 L image, not a 96x96 RGB patch"):
        load_patch(tmp_path / "grey.png", strict=True)
    check_patch_files([tmp_path / "ok.png"])
    with pytest.raises(DataError, match=r"grey\.png"):
        check_patch_files([tmp_path / "ok.png", tmp_path / "grey.png"])
    stack = load_patches([tmp_path / "ok.png", tmp_path / "ok.png"], strict=True)
    assert stack.shape == (2, 96, 96, 3) and np.array_equal(stack[1], _rgb(8))
