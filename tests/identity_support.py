"""The bundled int8 file run raw in one TFLite interpreter: shared by the identity test and its golden maker.

Inputs: the committed fixture patches (synthetic; tests/fixtures/patches, read with Pillow and h5py
as `edge-pcam predict` reads them) and three flips/rotations of each, so both venvs (numpy 1 and 2)
see exactly the same pixels. Outputs: the int8 codes of `probability` and the SHA-256 of each
patch's int8 `features` map, read through the file's serving_default signature.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PATCHES = REPO / "tests" / "fixtures" / "patches"
GOLDEN = REPO / "tests" / "fixtures" / "golden" / "bundled_int8.json"
TF_LITE, TFLITE_RUNTIME, LITERT = "tf.lite", "tflite-runtime", "ai-edge-litert"


def identity_inputs() -> np.ndarray:
    """uint8 (N, 96, 96, 3): every fixture patch, flipped left-right, flipped up-down and rotated 90°."""
    from edge_pcam.runtime.classify import expand_inputs, iter_patches

    sources, problems = expand_inputs([PATCHES])
    assert not problems, problems
    x = np.stack([patch for _, patch, error in iter_patches(sources) if error is None])
    return np.ascontiguousarray(np.concatenate([x, x[:, :, ::-1], x[:, ::-1], np.rot90(x, 1, (1, 2))]))


def interpreter_class(name: str) -> Any:
    if name == TF_LITE:
        import tensorflow as tf
        return tf.lite.Interpreter
    if name == LITERT:
        from ai_edge_litert.interpreter import Interpreter
        return Interpreter
    from tflite_runtime.interpreter import Interpreter
    return Interpreter


def raw_outputs(name: str, path: Path, images: np.ndarray) -> dict[str, list]:
    """The file as a user's own code runs it: `Interpreter(model_path=...)`, tensors by signature name."""
    it = interpreter_class(name)(model_path=str(path), num_threads=2)
    it.allocate_tensors()
    sig = it._get_full_signature_list()["serving_default"]
    probability, features = [], []
    for patch in images:
        it.set_tensor(sig["inputs"]["image"], patch[None])
        it.invoke()
        probability.append(int(it.get_tensor(sig["outputs"]["probability"])[0, 0]))
        features.append(feature_digest(it.get_tensor(sig["outputs"]["features"])[0]))
    return {"probability": probability, "features_sha256": features}


def feature_digest(codes: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(codes, dtype=np.int8).tobytes()).hexdigest()


def requantize(values: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    """Dequantized outputs (what PatchModel returns) back to the file's int8 codes."""
    scale, zero = detail["scale"], detail["zero_point"]
    return np.round(np.asarray(values, np.float64) / scale + zero).astype(np.int8)
