"""The runtime feeds the interpreter exactly what training fed the model.

Training reads patches through edge_pcam.data.tfdata.make_dataset (TensorFlow
decodes PNG/JPEG, scales to [0, 1]); the device reads them with
runtime.images.load_patch (Pillow) and PatchModel converts them for the
interpreter (x/255 for float files, raw uint8 = round(x*255) for int8 files).
The two must agree to the bit on the same files: synthetic PNG and JPEG files,
and real subset files where ../shared/data/pcam-subset is present.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge_pcam.runtime.images import load_patch
from edge_pcam.runtime.interpreter import load_model
from edge_pcam.runtime.metadata import metadata_from_bytes, with_metadata

pytestmark = pytest.mark.tf

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
INT8 = FIXTURES / "models" / "tiny_int8.tflite"
REAL_FILES = 64


def _training_tensors(folder: Path) -> tuple[list[str], np.ndarray]:
    from edge_pcam.data.tfdata import make_dataset
    from edge_pcam.runtime.datasets import open_dataset
    split = open_dataset(str(folder)).split("valid")
    batches = [x.numpy() for x, _ in make_dataset(split, 16, training=False)]
    return split.files(), np.concatenate(batches)




def _runtime_tensors(files: list[str], model) -> np.ndarray:
    return np.stack([model._to_input(load_patch(f)[None])[0] for f in files])


def _synthetic_folder(tmp_path: Path) -> Path:
    from edge_pcam.runtime.datasets import open_dataset
    split = open_dataset("synthetic:60:5").split("train")
    for i in range(12):
        label_dir = tmp_path / "valid" / str(int(split.labels[i]))
        label_dir.mkdir(parents=True, exist_ok=True)
        im = Image.fromarray(split.read([i])[0])
        if i % 2:
            im.save(label_dir / f"p{i}.jpg", quality=int(70 + 2 * i))
        else:
            im.save(label_dir / f"p{i}.png")
    return tmp_path


def _check(files: list[str], train_x: np.ndarray, tmp_path: Path) -> None:
    # int8 file: uint8 pixels straight in, equal to the training tensor times 255
    int8 = load_model(INT8)
    as_uint8 = _runtime_tensors(files, int8)
    assert as_uint8.dtype == np.uint8
    np.testing.assert_array_equal(as_uint8, np.round(train_x * 255).astype(np.uint8))
    # float32-input file: x / 255 in float32, bit-identical to tf.data's
    raw = INT8.read_bytes()
    from edge_pcam.export.tflite import convert_model
    from edge_pcam.training.modelio import load_model as load_keras
    f32 = tmp_path / "f32.tflite"
    meta = {**metadata_from_bytes(raw), "format": "float32", "companion": None}
    f32.write_bytes(with_metadata(convert_model(load_keras(FIXTURES / "models" / "tiny.h5"), "float32"), meta))
    as_float = _runtime_tensors(files, load_model(f32))
    assert as_float.dtype == np.float32
    np.testing.assert_array_equal(as_float, train_x)


def test_synthetic_png_and_jpeg_files(tmp_path):
    folder = _synthetic_folder(tmp_path / "data")
    files, train_x = _training_tensors(folder)
    assert any(f.endswith(".jpg") for f in files) and any(f.endswith(".png") for f in files)
    _check(files, train_x, tmp_path)


@pytest.mark.real_data
def test_real_subset_files(tmp_path, subset_dir):
    valid = sorted((subset_dir / "valid").rglob("*.jpg"))[:REAL_FILES]
    folder = tmp_path / "data"
    for f in valid:
        target = folder / "valid" / f.parent.name / f.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(f)
    files, train_x = _training_tensors(folder)
    assert len(files) == len(valid)
    _check(files, train_x, tmp_path)
