"""Golden-file and Grad-CAM references shared by the Grad-CAM tests.

`tf_gradcam` is Grad-CAM computed entirely in TensorFlow ops (GradientTape on
the Keras model, tf.reduce_mean for the channel weights, the weighted sum,
ReLU and the division by the maximum), so it shares no code with
edge_pcam.runtime.cam. TensorFlow is imported inside it: the TF-free venv
imports this module too.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

FIXTURES = Path(__file__).resolve().parent / "fixtures"
GOLDEN = FIXTURES / "golden"


def golden_runtime() -> str:
    """The interpreter (name and version) that wrote the golden files, as predictions.csv records it."""
    with open(GOLDEN / "predictions.csv", newline="") as f:
        return {row["runtime"] for row in csv.DictReader(f)}.pop()


def same_interpreter_as_golden(model) -> bool:
    """Whether `model` runs on the very interpreter and version that wrote the golden files."""
    return golden_runtime() == f"{model.runtime} {model.runtime_version}"


def tf_gradcam(keras_model, images_float01: np.ndarray) -> np.ndarray:
    """Grad-CAM (N, 12, 12) of the Keras model on pool3 wrt the logit, in TensorFlow ops only."""
    import tensorflow as tf
    import tf_keras as keras

    layers = {layer.name.removeprefix("quant_"): layer for layer in keras_model.layers}  # QAT: quant_<name>
    probe = keras.Model(keras_model.inputs, [layers["pool3"].output, layers["logit"].output])
    with tf.GradientTape() as tape:
        features, logit = probe(tf.constant(images_float01, tf.float32), training=False)
        total = tf.reduce_sum(logit)  # patches are independent: each one's gradient is its own
    return tf_cam(features, tape.gradient(total, features))


def tf_cam(features, gradients) -> np.ndarray:
    """Grad-CAM (N, H, W) from features and gradients (N, H, W, C), in TensorFlow ops."""
    import tensorflow as tf

    features = tf.convert_to_tensor(features, tf.float32)
    weights = tf.reduce_mean(tf.convert_to_tensor(gradients, tf.float32), axis=(1, 2))  # (N, C): spatial means
    cam = tf.nn.relu(tf.einsum("nhwc,nc->nhw", features, weights))
    return tf.math.divide_no_nan(cam, tf.reduce_max(cam, axis=(1, 2), keepdims=True)).numpy().astype(np.float64)
