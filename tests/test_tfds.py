"""tfds:patch_camelyon: a clear error where TensorFlow Datasets is missing or unprepared, and the reader's
logic against a stand-in for the parts of the tensorflow_datasets API it uses (the real package and its
7 GB of prepared data are not installed here)."""

import importlib.util
import sys
import types

import numpy as np
import pytest

from edge_pcam.errors import DataError
from edge_pcam.runtime.datasets import open_dataset

pytestmark = pytest.mark.tf
tf = pytest.importorskip("tensorflow")


@pytest.mark.skipif(importlib.util.find_spec("tensorflow_datasets") is not None,
                    reason="tensorflow-datasets is installed here")
def test_missing_package_is_a_clear_error():
    with pytest.raises(DataError, match="tfds:patch_camelyon: tensorflow-datasets is not installed"):
        open_dataset("tfds:patch_camelyon")


def _fake_tfds(splits: dict[str, tuple[np.ndarray, np.ndarray]]):
    """The slice of the tensorflow_datasets API that edge_pcam.data.tfds calls."""
    module = types.ModuleType("tensorflow_datasets")
    module.decode = types.SimpleNamespace(SkipDecoding=lambda: "skip")
    module.ReadConfig = lambda shuffle_seed=None: {"shuffle_seed": shuffle_seed}
    module.as_numpy = lambda ds: ds.as_numpy_iterator()
    module.opened = []

    class Builder:
        data_dir = "/nowhere/patch_camelyon/2.0.0"
        info = types.SimpleNamespace(splits={"train": 1, "validation": 1, "test": 1} if splits else {})

        def as_dataset(self, split, shuffle_files=False, decoders=None, read_config=None):
            module.opened.append((split, decoders))
            images, labels = splits[split]
            encoded = [tf.io.encode_png(i).numpy() for i in images] if decoders else None
            return tf.data.Dataset.from_tensor_slices(
                {"image": encoded if decoders else images, "label": labels.astype(np.int64)})

    module.builder = lambda name: Builder()
    return module


def test_reader_with_a_stand_in_for_tensorflow_datasets(monkeypatch):
    from edge_pcam.data.tfdata import make_dataset
    rng = np.random.default_rng(0)
    data = {name: (rng.integers(0, 256, (n, 96, 96, 3), dtype=np.uint8), rng.integers(0, 2, n))
            for name, n in (("train", 20), ("validation", 8), ("test", 6))}
    fake = _fake_tfds(data)
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", fake)
    ds = open_dataset("tfds:patch_camelyon")
    assert ds.kind == "tfds" and set(ds.splits) == {"train", "valid", "test"}
    valid = ds.split("valid")
    assert np.array_equal(valid.labels, data["validation"][1])
    assert ("validation", {"image": "skip"}) in fake.opened        # labels read without decoding images
    x = data["validation"][0]
    assert np.array_equal(valid.read([0, 1, 2]), x[:3])
    assert np.array_equal(valid.read([3, 4]), x[3:5])              # continues the open stream
    assert np.array_equal(valid.read([6, 2, 2, 7]), x[[6, 2, 2, 7]])
    batches = list(make_dataset(valid, 3, training=False))
    assert np.array_equal(np.concatenate([b[0].numpy() for b in batches]), x.astype(np.float32) / 255)
    train = list(make_dataset(ds.split("train"), 8, training=True, seed=1))
    assert sum(b[0].shape[0] for b in train) == 20


def test_unprepared_data_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", _fake_tfds({}))
    with pytest.raises(DataError, match=r"not prepared in /nowhere/patch_camelyon/2.0.0 \(run `tfds build"):
        open_dataset("tfds:patch_camelyon")
