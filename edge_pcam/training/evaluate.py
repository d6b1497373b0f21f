"""Evaluate a Keras .h5 or a .tflite model on a split: probabilities, then metrics.

Keras models take float RGB in [0, 1]; .tflite models go through the device
runtime (edge_pcam.runtime.interpreter), which takes uint8 patches and applies
the input quantization recorded in the file. `tta=True` averages the
probabilities over the 8 flips/rotations of the square (the dihedral group).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_pcam.errors import DataError, ModelFileError
from edge_pcam.runtime.datasets.base import Split
from edge_pcam.runtime.metrics import defined_operating_points

ProgressFn = Callable[[int], None]


@dataclass
class Evaluation:
    """Probabilities and metrics of one model on one split."""

    model: str
    data: str
    split: str
    n: int
    tta: bool
    metrics: dict[str, dict[str, float | None]]
    probabilities: np.ndarray = field(repr=False)
    labels: np.ndarray = field(repr=False)
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"model": self.model, "data": self.data, "split": self.split, "n": self.n, "tta": self.tta,
                "metrics": self.metrics, "warnings": self.warnings}


def _predict(batch_fn: Callable[[np.ndarray], np.ndarray], split: Split, batch_size: int,
             limit: int | None, tta: bool, progress: ProgressFn | None) -> np.ndarray:
    n = len(split) if limit is None else min(limit, len(split))
    probs = np.empty(n, np.float64)
    if tta:
        from edge_pcam.runtime.tta import dihedral_views
    for images, _, idx in split.batches(batch_size, np.arange(n)):
        if tta:
            probs[idx] = np.mean([batch_fn(view) for view in dihedral_views(images)], axis=0)
        else:
            probs[idx] = batch_fn(images)
        if progress is not None:
            progress(len(idx))
    return probs


def keras_probabilities(model, images: np.ndarray, batch_size: int = 128) -> np.ndarray:
    """P(tumour) of a Keras model on uint8 patches (N, 96, 96, 3) or one patch: x / 255, inference mode,
    `model(x, training=False)` in batches; float32 (N,). The one way every part of edge-pcam runs Keras."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[None]
    out = np.empty(len(images), np.float32)
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size].astype(np.float32) / np.float32(255.0)
        out[start:start + len(x)] = np.asarray(model(x, training=False)).reshape(-1)
    return out


def predict_keras(model, split: Split, batch_size: int = 256, limit: int | None = None, tta: bool = False,
                  progress: ProgressFn | None = None) -> np.ndarray:
    """P(tumour) for the first `limit` rows (all by default) of `split`, shape (N,)."""
    def run(images: np.ndarray) -> np.ndarray:
        return keras_probabilities(model, images, batch_size).astype(np.float64)
    return _predict(run, split, batch_size, limit, tta, progress)


def predict_tflite(patch_model, split: Split, batch_size: int = 256, limit: int | None = None, tta: bool = False,
                   progress: ProgressFn | None = None) -> np.ndarray:
    """As predict_keras, for a loaded edge_pcam.runtime.interpreter.PatchModel."""
    def run(images: np.ndarray) -> np.ndarray:
        return np.asarray(patch_model.predict(images), np.float64).reshape(-1)
    return _predict(run, split, batch_size, limit, tta, progress)


def evaluate_model(model_path: str | Path, data: str, split: str = "valid", *, batch_size: int = 256,
                   limit: int | None = None, tta: bool = False, progress: ProgressFn | None = None) -> Evaluation:
    """Load `model_path` (.h5 or .tflite), predict `split` of `data` and compute the operating points."""
    from edge_pcam.runtime.datasets import open_dataset

    model_path = Path(model_path)
    if not model_path.is_file():
        raise ModelFileError(f"{model_path}: no such model file")
    if limit is not None and limit < 1:
        raise DataError(f"--limit {limit}: must be at least 1")
    part = open_dataset(data).split(split)
    suffix = model_path.suffix.lower()
    if suffix in (".h5", ".hdf5", ".keras"):
        from edge_pcam.training.modelio import load_model
        probs = predict_keras(load_model(model_path), part, batch_size, limit, tta, progress)
    elif suffix == ".tflite":
        from edge_pcam.runtime.interpreter import load_model as load_tflite
        probs = predict_tflite(load_tflite(model_path), part, batch_size, limit, tta, progress)
    else:
        raise ModelFileError(f"{model_path}: expected a Keras .h5 or a .tflite file")
    labels = part.labels[:len(probs)]
    points, warnings = defined_operating_points(labels, probs)
    return Evaluation(str(model_path), data, split, len(probs), tta, points, probs, labels, warnings)
