"""Save and load Keras models as .h5, atomically (a kill never leaves half a file)."""

from __future__ import annotations

import warnings
from pathlib import Path

import h5py
import tf_keras as keras

from edge_pcam.errors import ModelFileError
from edge_pcam.model import custom_objects
from edge_pcam.runtime.fileio import atomic_path


def save_model_atomic(model: keras.Model, path: str | Path, include_optimizer: bool = False) -> Path:
    """Write `model` to `path` (.h5) through a temporary file in the same folder, then rename.
    A mixed-precision model is written as its float32 twin (same weights)."""
    path = Path(path)
    twin = float32_twin(model)
    if twin is not model:
        model, include_optimizer = twin, False
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*HDF5 file.*legacy", category=UserWarning)
        model.save(str(tmp), save_format="h5", include_optimizer=include_optimizer)
    return path


def float32_twin(model: keras.Model) -> keras.Model:
    """`model` itself when every layer computes in float32; else the same architecture in float32
    carrying the same weights (mixed-precision weights are float32 already)."""
    if all(layer.dtype_policy.name == "float32" for layer in model.layers):
        return model
    config = model.get_config()
    for layer in config["layers"]:
        layer["config"]["dtype"] = "float32"
    twin = keras.Model.from_config(config)
    twin.set_weights(model.get_weights())
    return twin


def is_qat_file(path: str | Path) -> bool:
    """True when the .h5 file holds a quantization-aware model (layers named quant_*)."""
    with h5py.File(path, "r") as f:
        config = f.attrs.get("model_config")
    if config is None:
        return False
    if isinstance(config, bytes):
        config = config.decode("utf-8")
    return '"quant_' in config or "QuantizeWrapper" in config


def load_model(path: str | Path, compile: bool = False) -> keras.Model:
    """Load a .h5 model saved by edge-pcam (float, or QAT inside the quantize scope)."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file")
    if path.suffix.lower() not in (".h5", ".hdf5", ".keras"):
        raise ModelFileError(f"{path}: expected a Keras .h5 file")
    try:
        if path.suffix.lower() != ".keras" and is_qat_file(path):
            from edge_pcam.training.qat import quantize_scope
            with quantize_scope():
                return keras.models.load_model(path, custom_objects=custom_objects(), compile=compile)
        return keras.models.load_model(path, custom_objects=custom_objects(), compile=compile)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelFileError(f"{path}: cannot load the model ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
