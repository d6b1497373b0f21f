"""Helpers for the conversion tests: a small trained model on a task a few steps can learn.

The synthetic set's real task (large nuclei in the centre) needs hundreds of
steps; the conversion tests need confident probabilities, not pathology. So
tumour patches are also darkened to 60% brightness, which the model learns in
about 50 steps, and the parity gate sees probabilities near 0 and 1.
TensorFlow is imported inside the functions: conftest.py imports this module
in the TF-free venv too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_pcam.runtime.datasets.base import ArraySplit, PatchDataset

EASY_SPEC = "synthetic:320:7"


def easy_dataset(spec: str = EASY_SPEC) -> PatchDataset:
    """The synthetic splits of `spec` with tumour patches darkened (in memory)."""
    from edge_pcam.runtime.datasets.synthetic import open_synthetic

    source = open_synthetic(spec)
    splits = {}
    for name, split in source.splits.items():
        images = split.read(np.arange(len(split))).copy()
        tumour = split.labels == 1
        images[tumour] = (images[tumour] * 0.6).astype(np.uint8)
        splits[name] = ArraySplit(name, images, split.labels, prefix=f"easy:{name}")
    return PatchDataset(spec=f"easy({spec})", kind="synthetic", splits=splits)


def train_tiny_model(dataset: PatchDataset, path: Path, epochs: int = 3) -> Path:
    """build_model() fitted with plain Keras on the train split, saved as .h5."""
    import tf_keras as keras

    from edge_pcam.model import build_model

    keras.utils.set_random_seed(0)
    split = dataset.split("train")
    x = split.read(np.arange(len(split))).astype(np.float32) / 255.0
    model = build_model()
    model.compile(keras.optimizers.Adam(1e-3), "binary_crossentropy")
    model.fit(x, split.labels.astype(np.float32), batch_size=16, epochs=epochs, verbose=0)
    model.save(path, save_format="h5", include_optimizer=False)
    return path


def qat_tiny_model(dataset: PatchDataset, float_path: Path, path: Path) -> Path:
    """The float model made quantization-aware and fine-tuned for one epoch, saved as .h5."""
    import tf_keras as keras

    from edge_pcam.training.modelio import load_model
    from edge_pcam.training.qat_model import quantize_model

    keras.utils.set_random_seed(1)
    split = dataset.split("train")
    x = split.read(np.arange(len(split))).astype(np.float32) / 255.0
    model = quantize_model(load_model(float_path))
    model.compile(keras.optimizers.Adam(1e-4), "binary_crossentropy")
    model.fit(x, split.labels.astype(np.float32), batch_size=16, epochs=1, verbose=0)
    model.save(path, save_format="h5", include_optimizer=False)
    return path
