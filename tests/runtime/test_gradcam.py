"""Device Grad-CAM: files written, same maps and labels as ai-edge-litert's golden ones, companion checks,
and (with TensorFlow) fidelity to Grad-CAM computed in TensorFlow ops on the same Keras model.

Golden maps: identical on the interpreter that wrote them; under tflite-runtime
(other int8 rounding) within CROSS_INTERPRETER_CAM of them (measured: 0.019 at
most on the fixture patches)."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gradcam_reference import same_interpreter_as_golden, tf_gradcam

from edge_pcam.errors import ModelFileError
from edge_pcam.runtime.gradcam import gradcam_maps, jet, load_companion, overlay_image, run_gradcam
from edge_pcam.runtime.interpreter import load_model

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
MODELS = FIXTURES / "models"
INT8 = MODELS / "tiny_int8.tflite"
PATCHES = FIXTURES / "patches"
CROSS_INTERPRETER_CAM = 0.05
FLOAT32_CAM = 1e-5  # measured: 1.0e-6
INT8_CAM = 0.02  # measured: 0.0066 (correlation 0.99999)


def _rel(pid: str) -> str:
    path, hash_, row = pid.partition("#")
    return Path(path).resolve().relative_to(FIXTURES).as_posix() + hash_ + row


@pytest.fixture(scope="module")
def model():
    return load_model(INT8, threads=2)


def test_gradcam_files_labels_and_maps_match_golden(tmp_path, model):
    result = run_gradcam([PATCHES], model, tmp_path / "cams")
    assert not result.errors and result.rows
    with open(FIXTURES / "golden" / "predictions.csv", newline="") as f:
        labels = {r["path"]: r["prediction"] for r in csv.DictReader(f)}
    maps = np.load(FIXTURES / "golden" / "gradcam.npz")
    index = list(csv.DictReader(open(tmp_path / "cams" / "gradcam.csv", newline="")))
    assert len(index) == len(result.rows) == len(labels)
    stems = set()
    same = same_interpreter_as_golden(model)
    for row in index:
        key = _rel(row["path"])
        assert row["prediction"] == labels[key], f"{key}: {model.runtime} label differs from ai-edge-litert's"
        overlay = Image.open(tmp_path / "cams" / row["overlay"])
        heat = Image.open(tmp_path / "cams" / row["heatmap"])
        assert overlay.size == heat.size == (96, 96) and overlay.mode == heat.mode == "RGB"
        cam = np.load(tmp_path / "cams" / row["cam"])
        assert cam.shape == (12, 12) and cam.dtype == np.float32
        if same:
            np.testing.assert_array_equal(cam, maps[key], err_msg=key)
        else:
            np.testing.assert_allclose(cam, maps[key], rtol=0, atol=CROSS_INTERPRETER_CAM, err_msg=key)
        stems.add(row["overlay"])
    assert len(stems) == len(index)  # one file per patch, HDF5 rows included


def test_cli_gradcam(tmp_path):
    import h5py
    with h5py.File(PATCHES / "pcam_sample_x.h5") as f:
        rows = len(f["x"])
    proc = subprocess.run([sys.executable, "-m", "edge_pcam", "gradcam", str(PATCHES / "pcam_sample_x.h5"),
                           "--model", str(INT8), "--out", str(tmp_path / "out")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "out"
    for kind in ("overlay.png", "heatmap.png", "cam.npy"):
        assert len(list(out.glob(f"*_{kind}"))) == rows, kind
    assert len((out / "gradcam.csv").read_text().splitlines()) == rows + 1
    assert "Grad-CAM maps" in proc.stderr


def test_overlay_shows_the_map_and_the_centre_box():
    patch = np.full((96, 96, 3), 128, np.uint8)
    cam = np.zeros((12, 12))
    out = overlay_image(patch, cam)
    assert (out[31, 31] == 255).all()  # dotted box corner
    inside = out[40:56, 40:56]
    assert (inside == 128).all()  # a zero map leaves the tissue as it is
    cam[6, 6] = 1.0
    hot = overlay_image(patch, cam)
    assert hot[50, 50, 0] > 128 and not np.array_equal(hot, out)
    np.testing.assert_array_equal(jet(np.array([0.0, 1.0]))[[0, 1], [2, 0]], [128, 128])


def test_companion_missing_or_mismatched(tmp_path, model):
    lonely = tmp_path / "alone"
    lonely.mkdir()
    shutil.copy(INT8, lonely / INT8.name)
    with pytest.raises(ModelFileError, match="companion .* not found"):
        load_companion(load_model(lonely / INT8.name))
    # a companion of the right name but other weights
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(INT8, other / INT8.name)
    from edge_pcam.runtime.metadata import metadata_from_bytes, model_bytes, with_metadata
    data = (MODELS / "tiny_gradcam.tflite").read_bytes()
    weights = bytearray(model_bytes(data))
    weights[len(weights) // 2] ^= 0xFF  # other weights, with a card of its own that matches them
    changed = with_metadata(bytes(weights), metadata_from_bytes(data))
    (other / "tiny_gradcam.tflite").write_bytes(changed)
    with pytest.raises(ModelFileError, match="sha256"):
        load_companion(load_model(other / INT8.name))


@pytest.mark.tf
def test_fidelity_to_tensorflow_gradcam(tmp_path, model):
    """Against Grad-CAM in TensorFlow ops on the same Keras model: the float32 file (with the companion) to
    within FLOAT32_CAM per value; the int8 file (features rounded to int8) to within INT8_CAM."""
    from edge_pcam.export.tflite import convert_model
    from edge_pcam.runtime.images import load_patches
    from edge_pcam.runtime.metadata import read_metadata, with_metadata
    from edge_pcam.training.modelio import load_model as load_keras

    keras_model = load_keras(MODELS / "tiny.h5")
    files = sorted(PATCHES.glob("*.png"))
    x = load_patches(files)
    reference = tf_gradcam(keras_model, x.astype(np.float32) / 255.0)
    meta = {**read_metadata(INT8), "format": "float32", "source": "float",
            "input": {"shape": [1, 96, 96, 3], "dtype": "float32", "scale": None, "zero_point": None,
                      "range": [0, 1]}}
    f32 = tmp_path / "tiny_float32.tflite"
    f32.write_bytes(with_metadata(convert_model(keras_model, "float32"), meta))
    shutil.copy(MODELS / "tiny_gradcam.tflite", tmp_path)
    m = load_model(f32, threads=2)
    _, cams = gradcam_maps(m, load_companion(m), x)
    np.testing.assert_allclose(cams, reference, rtol=0, atol=FLOAT32_CAM)
    m = load_model(INT8, threads=2)
    _, cams = gradcam_maps(m, load_companion(m), x)
    np.testing.assert_allclose(cams, reference, rtol=0, atol=INT8_CAM)
