"""Keras model -> TFLite flatbuffer, from a fixed-batch concrete function (SPEC section 3).

`from_keras_model` keeps a dynamic batch (adding SHAPE/GATHER/PACK ops) and
leaves QAT Dense layers float, so every format is converted from a
`tf.function` with a static input signature [B, 96, 96, 3]. Every file names
its tensors in its serving_default signature: input `image`, outputs
`probability` [B, 1] and `features`, the pool3 feature map [B, 12, 12, 256]
(for Grad-CAM on the device).

Formats: float32; float16 (weights stored as float16); dynamic (int8 weights,
float activations); int8 (full integer, TFLITE_BUILTINS_INT8 only, uint8 input
taking raw pixels: scale 1/255, zero point 0; int8 outputs with their
quantization parameters). A QAT model converts the same way; it still needs a
representative dataset for uint8 input with TF 2.21.

The int8 file's quantization is settled here, not at load: the attention's K
and V are made symmetric (edge_pcam.runtime.symmetric_matmul), the form every
interpreter's fast path takes, so the bytes written are the bytes measured
and the bytes every interpreter runs.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf
import tf_keras as keras

from edge_pcam.errors import DataError, ModelFileError
from edge_pcam.model import FEATURE_LAYER, PATCH_SIZE
from edge_pcam.runtime.signature import CLASSIFIER_INPUTS, CLASSIFIER_OUTPUTS, signature_tensors
from edge_pcam.runtime.symmetric_matmul import symmetric_matmul_operands

FORMATS = ("float32", "float16", "dynamic", "int8")


@dataclass(frozen=True)
class InputSpec:
    """How the file's input tensor takes pixels (what the metadata's `input` says)."""

    shape: tuple[int, ...]
    dtype: str
    scale: float | None
    zero_point: int | None

    def as_metadata(self) -> dict[str, Any]:
        return {"shape": list(self.shape), "dtype": self.dtype, "scale": self.scale,
                "zero_point": self.zero_point, "range": [0, 1]}


def find_layer(model: keras.Model, name: str) -> keras.layers.Layer:
    """Layer `name`, or its QAT wrapper `quant_<name>`."""
    for candidate in (name, f"quant_{name}"):
        try:
            return model.get_layer(candidate)
        except ValueError:
            continue
    raise ModelFileError(f"{model.name}: no layer '{name}' (not an edge-pcam model)")


def deployment_model(model: keras.Model) -> keras.Model:
    """The same weights with two outputs: probability [B, 1] and the pool3 feature map."""
    return keras.Model(model.inputs, [model.outputs[0], find_layer(model, FEATURE_LAYER).output],
                       name=f"{model.name}_deploy")


def serving_function(model: keras.Model, batch: int = 1) -> tuple[Any, keras.Model]:
    """A concrete function with a static [batch, 96, 96, 3] float32 input and both outputs,
    and the two-output model it calls (the converter needs it to track the weights)."""
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    deploy = deployment_model(model)
    spec = tf.TensorSpec([batch, PATCH_SIZE, PATCH_SIZE, 3], tf.float32, name="image")

    @tf.function(input_signature=[spec])
    def serve(image):
        prob, features = deploy(image, training=False)
        return {"probability": prob, "features": features}

    return serve.get_concrete_function(), deploy


def convert_model(model: keras.Model, fmt: str, *, batch: int = 1,
                  representative: Callable[[], Iterator[list[np.ndarray]]] | None = None) -> bytes:
    """Convert `model` (float or QAT) to the TFLite format `fmt`; int8 needs `representative`."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown TFLite format '{fmt}' (known: {', '.join(FORMATS)})")
    concrete, deploy = serving_function(model, batch)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], deploy)
    if fmt == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif fmt == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif fmt == "int8":
        if representative is None:
            raise DataError("int8 conversion needs representative data (--data with a train split)")
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.int8
    with _quiet():
        data = converter.convert()
    if fmt == "int8":
        data, _ = symmetric_matmul_operands(data)
        check_int8_io(data)
    return data


def input_spec(data: bytes) -> InputSpec:
    """The `image` input of a classifier flatbuffer: shape, dtype and quantization (None for float)."""
    inputs, _ = signature_tensors(_interpreter(data), data, CLASSIFIER_INPUTS, CLASSIFIER_OUTPUTS, "converted model",
                                  "patch classifier", optional=("features",))
    detail = inputs["image"]
    dtype = np.dtype(detail["dtype"]).name
    scale, zero = detail["quantization"]
    quantized = dtype in ("uint8", "int8")
    return InputSpec(tuple(int(s) for s in detail["shape"]), dtype,
                     float(scale) if quantized else None, int(zero) if quantized else None)


def output_details(data: bytes) -> dict[str, dict[str, Any]]:
    """`probability` and `features` outputs of a classifier flatbuffer, by their signature names."""
    _, outputs = signature_tensors(_interpreter(data), data, CLASSIFIER_INPUTS, CLASSIFIER_OUTPUTS,
                                   "converted model", "patch classifier", optional=("features",))
    return outputs


def check_int8_io(data: bytes) -> None:
    """Assert the full-integer contract: uint8 raw-pixel input, int8 outputs, no float op left."""
    spec = input_spec(data)
    if spec.dtype != "uint8" or spec.zero_point != 0 or abs(spec.scale * 255.0 - 1.0) > 1e-6:
        raise DataError(f"int8 conversion gave input {spec.dtype} scale {spec.scale} zero point "
                        f"{spec.zero_point}, not uint8 1/255 0: the representative data must span [0, 1]")
    outputs = output_details(data)
    if set(outputs) != {"probability", "features"}:
        raise ModelFileError(f"int8 conversion lost an output (has {sorted(outputs)})")
    for name, out in outputs.items():
        if np.dtype(out["dtype"]) != np.int8:
            raise ModelFileError(f"int8 conversion gave a {np.dtype(out['dtype']).name} {name} output")


def _interpreter(data: bytes):
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_content=data)
    it.allocate_tensors()
    return it


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the converter's C++ chatter on stderr (errors still raise)."""
    fd = 2
    try:
        saved = os.dup(fd)
    except OSError:
        yield
        return
    with open(os.devnull, "wb") as devnull:
        os.dup2(devnull.fileno(), fd)
        try:
            with contextlib.redirect_stderr(io.StringIO()):
                yield
        finally:
            os.dup2(saved, fd)
            os.close(saved)
