"""The demo's own pieces: the slide made of validation patches and the Grad-CAM inputs (no training here)."""

import numpy as np
from PIL import Image

from edge_pcam import demo
from edge_pcam.runtime.datasets import open_dataset


def test_mosaic_plants_the_stated_share_of_tumour_patches(tmp_path):
    dataset = open_dataset("synthetic:400")
    truth = demo._write_mosaic(dataset, tmp_path / "slide.png")
    image = np.asarray(Image.open(tmp_path / "slide.png"))
    g = demo.MOSAIC_GRID
    assert image.shape == (g * 96, g * 96, 3)
    assert truth["tumour_tiles"] == round(demo.MOSAIC_TUMOUR * g * g)
    valid = dataset.split("valid")
    tiles = image.reshape(g, 96, g, 96, 3).transpose(0, 2, 1, 3, 4).reshape(g * g, 96, 96, 3)
    # every tile is a valid patch, and exactly the planted number of them are tumour patches
    lookup = {valid.read([i])[0].tobytes(): valid.labels[i] for i in range(len(valid))}
    labels = np.array([lookup[t.tobytes()] for t in tiles])
    assert labels.sum() == truth["tumour_tiles"]


def test_gradcam_patches_are_balanced_and_named_by_label(tmp_path):
    paths = demo._write_gradcam_patches(open_dataset("synthetic:400"), tmp_path)
    assert len(paths) == demo.GRADCAM_PATCHES
    assert sum(p.stem.endswith("label1") for p in paths) == demo.GRADCAM_PATCHES // 2
    assert all(np.asarray(Image.open(p)).shape == (96, 96, 3) for p in paths)


def test_default_data_falls_back_to_synthetic(monkeypatch, tmp_path):
    monkeypatch.setattr(demo, "SUBSET", tmp_path / "absent")
    assert demo.default_data() == demo.SYNTHETIC
