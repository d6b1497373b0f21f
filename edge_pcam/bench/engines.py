"""One interface over the things a benchmark row runs: a .tflite file in a TFLite interpreter, or a Keras model.

Each takes uint8 patches (N, 96, 96, 3) and returns P(tumour) (N,), so accuracy
and latency are measured the same way for every row. Besides edge-pcam's
runtime in each interpreter, `ai-edge-litert-raw` opens the file the way a
user's own code would, `ai_edge_litert.interpreter.Interpreter(model_path=...)`
with nothing of edge-pcam in between: the file runs as it was written, so the
two should be equally fast. TensorFlow is imported only for a Keras row.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edge_pcam.bench.discover import KERAS, Candidate
from edge_pcam.errors import RuntimeUnavailableError

KERAS_RUNTIME = "keras"
KERAS_BATCH = 64
RAW_LITERT = "ai-edge-litert-raw"
RAW_ALIASES = ("ai-edge-litert-raw", "litert-raw", "raw-litert")


class Engine(Protocol):
    runtime: str
    runtime_version: str
    batch: int

    def predict(self, images: np.ndarray) -> np.ndarray: ...


class TFLiteEngine:
    """A .tflite file in ai-edge-litert, tflite-runtime or tf.lite (edge_pcam.runtime.interpreter)."""

    def __init__(self, path: Path, runtime: str, threads: int, device: str | None = None):
        from edge_pcam.runtime.interpreter import load_model
        self.model = load_model(path, runtime=runtime, threads=threads, device=device)
        self.runtime = self.model.runtime
        self.runtime_version = self.model.runtime_version
        self.batch = self.model.batch
        self.threads = threads

    def predict(self, images: np.ndarray) -> np.ndarray:
        return self.model.predict(images)


class RawLiteRTEngine:
    """The file in ai-edge-litert's own Interpreter, tensors found by signature name, as a user's code runs it."""

    def __init__(self, path: Path, threads: int):
        try:
            from ai_edge_litert import __version__ as version
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise RuntimeUnavailableError("ai-edge-litert is not installed (`pip install ai-edge-litert`)") from None
        self._it = Interpreter(model_path=str(path), num_threads=threads)
        self._it.allocate_tensors()
        signature = self._it._get_full_signature_list()["serving_default"]
        details = {d["index"]: d for d in (*self._it.get_input_details(), *self._it.get_output_details())}
        self._input = details[signature["inputs"]["image"]]
        self._prob = details[signature["outputs"]["probability"]]
        self.runtime, self.runtime_version = RAW_LITERT, version
        self.batch = int(self._input["shape"][0])
        self.threads = threads

    def predict(self, images: np.ndarray) -> np.ndarray:
        images = np.asarray(images)
        images = images[None] if images.ndim == 3 else images
        out = np.empty(len(images), np.float32)
        scale, zero = self._prob["quantization"]
        for start in range(0, len(images), self.batch):
            chunk = images[start:start + self.batch]
            k = len(chunk)
            chunk = np.resize(chunk, (self.batch, *chunk.shape[1:])) if k < self.batch else chunk
            if self._input["dtype"] == np.float32:
                chunk = chunk.astype(np.float32) / np.float32(255.0)
            self._it.set_tensor(self._input["index"], chunk)
            self._it.invoke()
            prob = self._it.get_tensor(self._prob["index"])[:k, 0]
            out[start:start + k] = prob if prob.dtype == np.float32 else (prob.astype(np.float32) - zero) * scale
        return out


class KerasEngine:
    """A Keras .h5 model called as `model(x, training=False)`, the way the float model is used in Python."""

    def __init__(self, path: Path):
        if not keras_available():
            raise RuntimeUnavailableError("TensorFlow is not installed (a Keras .h5 model needs "
                                          "`pip install 'edge-pcam[train]'`; the .tflite rows do not)")
        import tf_keras

        from edge_pcam.training.evaluate import keras_probabilities
        self._probabilities = keras_probabilities
        self.model = load_keras(path)
        self.runtime = KERAS_RUNTIME
        self.runtime_version = f"tf-keras {tf_keras.__version__}"
        self.batch = 1
        self.threads = None

    def predict(self, images: np.ndarray) -> np.ndarray:
        return self._probabilities(self.model, images, KERAS_BATCH)


def keras_available() -> bool:
    """TensorFlow and tf_keras are importable (checked without importing them)."""
    try:
        return all(importlib.util.find_spec(name) is not None for name in ("tensorflow", "tf_keras"))
    except (ImportError, ValueError):
        return False


def load_keras(path: Path) -> Any:
    """A Keras model from .h5 (QAT models inside the quantize scope), through the training side's loader."""
    from edge_pcam.training.modelio import load_model
    return load_model(path)


def open_engine(candidate: Candidate, runtime: str, threads: int) -> Engine:
    """The engine for one row; RuntimeUnavailableError / ModelFileError say why it cannot run."""
    if candidate.kind == KERAS:
        return KerasEngine(candidate.path)
    if runtime == RAW_LITERT:
        return RawLiteRTEngine(candidate.path, threads)
    device = ":0" if candidate.format == "edgetpu" else None  # the first Edge TPU, USB or PCIe
    return TFLiteEngine(candidate.path, runtime, threads, device)
