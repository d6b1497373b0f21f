"""The Grad-CAM companion: a float32 .tflite giving the logit and its gradient wrt pool3.

The deployed classifier (int8 or float) outputs the pool3 feature map. The
companion takes that map (float32 [1, 12, 12, 256]) and returns the logit [1, 1]
and d logit / d features [1, 12, 12, 256], so a device computes Grad-CAM
(edge_pcam.runtime.cam) without TensorFlow. It is the model's head written
out in TensorFlow ops from the Keras weights (for a QAT model, the float
weights its fake-quant nodes round), differentiated with GradientTape inside a
tf.function. ReLU is written as `maximum(x, 0)`: ReluGrad is not a TFLite
builtin, while the gradient of Maximum converts to builtin ops (SPEC section 3).

`keras_gradcam` is the reference: TensorFlow's Grad-CAM of the Keras model
itself. The gate (`companion_gate`) asks two things of the converted file:
- it computes what it was converted from: its Grad-CAM against TensorFlow's
  gradient of the same head function, correlation >= 0.999;
- it explains the model: against `keras_gradcam`, correlation >= 0.99 for a
  float model, >= 0.97 for a QAT one. A QAT model's own Grad-CAM runs through
  its fake-quant nodes (rounded activations, gradients cut outside each
  quantizer's range); the companion differentiates the float head that the
  int8 file approximates, so the two differ slightly by construction (0.990
  and 0.987 on two QAT models of the real subset, 0.996 on the one shipped
  with issue 16; >= 0.999 for float models).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tf_keras as keras

from edge_pcam.export.tflite import _quiet, find_layer
from edge_pcam.model import FEATURE_LAYER, LOGIT_LAYER
from edge_pcam.runtime.cam import cam_from_gradients
from edge_pcam.runtime.signature import COMPANION_INPUTS, COMPANION_OUTPUTS, FEATURE_SHAPE, signature_tensors

HEAD_DENSE = ("q", "k", "v", "o", "fc", LOGIT_LAYER)
MIN_CORRELATION = 0.99      # against keras_gradcam of a float model
MIN_CORRELATION_QAT = 0.97  # against keras_gradcam of a QAT model (fake-quantized activations)
MIN_HEAD_CORRELATION = 0.999  # against TensorFlow running the very function that was converted


def head_weights(model: keras.Model) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(kernel, bias) of every Dense layer after pool3, float32 (the unquantized weights of a QAT model)."""
    weights = {}
    for name in HEAD_DENSE:
        layer = find_layer(model, name)
        # A QuantizeWrapper lists the float kernel and bias among its own weights.
        by_name = {w.name.rsplit("/", 1)[-1].split(":")[0]: w for w in layer.weights}
        weights[name] = (by_name["kernel"].numpy().astype(np.float32), by_name["bias"].numpy().astype(np.float32))
    return weights


def attention_scale(model: keras.Model) -> float:
    """The factor of the `scale` (Rescaling) layer: 1/sqrt(128) in the design."""
    layer = find_layer(model, "scale")
    return float(getattr(layer, "layer", layer).get_config()["scale"])


def companion_function(model: keras.Model):
    """The tf.function (features -> {"logit", "gradient"}) that the companion is converted from."""
    w = {name: (tf.constant(k), tf.constant(b)) for name, (k, b) in head_weights(model).items()}
    scale = tf.constant(attention_scale(model), tf.float32)
    tokens_shape = (1, FEATURE_SHAPE[0] * FEATURE_SHAPE[1], FEATURE_SHAPE[2])

    def dense(x, name):
        kernel, bias = w[name]
        return tf.tensordot(x, kernel, axes=[[x.shape.rank - 1], [0]]) + bias

    def head(features):
        tokens = tf.reshape(features, tokens_shape)
        q, k, v = dense(tokens, "q"), dense(tokens, "k"), dense(tokens, "v")
        attn = tf.nn.softmax(tf.matmul(q, k, transpose_b=True) * scale, axis=-1)
        o = dense(tf.matmul(attn, v), "o")
        h = tf.maximum(dense(tf.reduce_mean(o, axis=1), "fc"), 0.0)
        return dense(h, LOGIT_LAYER)

    @tf.function(input_signature=[tf.TensorSpec([1, *FEATURE_SHAPE], tf.float32, name="features")])
    def gradcam(features):
        with tf.GradientTape() as tape:
            tape.watch(features)
            logit = head(features)
        return {"logit": logit, "gradient": tape.gradient(logit, features)}

    return gradcam


def convert_companion(model: keras.Model) -> bytes:
    """The companion as a float32 TFLite flatbuffer (builtin ops only)."""
    holder = tf.Module()
    holder.gradcam = companion_function(model)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([holder.gradcam.get_concrete_function()], holder)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    with _quiet():
        return converter.convert()


def keras_gradcam(model: keras.Model, images_float01: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """TensorFlow's Grad-CAM of the Keras model on pool3 wrt the logit: (N, 12, 12) in [0, 1]."""
    probe = keras.Model(model.inputs, [find_layer(model, FEATURE_LAYER).output,
                                       find_layer(model, LOGIT_LAYER).output])
    x = np.asarray(images_float01, dtype=np.float32)
    cams = np.empty((len(x), *FEATURE_SHAPE[:2]), np.float64)
    for start in range(0, len(x), batch_size):
        batch = tf.constant(x[start:start + batch_size])
        with tf.GradientTape() as tape:
            features, logit = probe(batch, training=False)
            target = tf.reduce_sum(logit)  # patches are independent: each gradient is its own
        grads = tape.gradient(target, features).numpy()
        for i, (f, g) in enumerate(zip(features.numpy(), grads)):
            cams[start + i] = cam_from_gradients(f, g)
    return cams


def companion_outputs(data: bytes, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Run the companion flatbuffer on float features (N, 12, 12, 256): logits (N,), gradients."""
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_content=data)
    it.allocate_tensors()
    inputs, outputs = signature_tensors(it, data, COMPANION_INPUTS, COMPANION_OUTPUTS, "companion",
                                        "Grad-CAM companion")
    inp, logit_out, grad_out = inputs["features"], outputs["logit"], outputs["gradient"]
    logits = np.empty(len(features), np.float32)
    grads = np.empty((len(features), *FEATURE_SHAPE), np.float32)
    for i, f in enumerate(np.asarray(features, dtype=np.float32)):
        it.set_tensor(inp["index"], f[None])
        it.invoke()
        logits[i] = it.get_tensor(logit_out["index"])[0, 0]
        grads[i] = it.get_tensor(grad_out["index"])[0]
    return logits, grads


def companion_correlation(model: keras.Model, data: bytes, images_float01: np.ndarray) -> dict[str, float]:
    """Compare the companion's Grad-CAM (on Keras float features) with `keras_gradcam`.

    Returns the Pearson correlation of all CAM values pooled, the worst per-patch
    correlation (patches with a constant CAM in both are skipped), the largest
    absolute CAM difference, and `head_correlation`: against TensorFlow's own
    gradient of the head function the companion was converted from.
    """
    x = np.asarray(images_float01, dtype=np.float32)
    features = keras.Model(model.inputs, find_layer(model, FEATURE_LAYER).output)(x, training=False).numpy()
    _, grads = companion_outputs(data, features)
    mine = np.stack([cam_from_gradients(f, g) for f, g in zip(features, grads)])
    reference = keras_gradcam(model, x)
    head = companion_function(model)
    head_cams = np.stack([cam_from_gradients(f, head(tf.constant(f[None]))["gradient"].numpy()[0]) for f in features])
    per_patch = [_pearson(a, b) for a, b in zip(mine, reference) if a.std() > 0 and b.std() > 0]
    return {"n": int(len(x)), "correlation": _pearson(mine, reference),
            "min_patch_correlation": float(min(per_patch)) if per_patch else float("nan"),
            "max_abs_difference": float(np.abs(mine - reference).max()),
            "head_correlation": _pearson(mine, head_cams)}


def companion_gate(check: dict[str, float], qat: bool) -> tuple[str, bool]:
    """The gate a companion must pass (as text) and whether `check` passes it."""
    floor = MIN_CORRELATION_QAT if qat else MIN_CORRELATION
    passed = check["correlation"] >= floor and check["head_correlation"] >= MIN_HEAD_CORRELATION
    return f"correlation >= {floor} and head_correlation >= {MIN_HEAD_CORRELATION}", passed


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    if a.std() == 0 or b.std() == 0:
        return 1.0 if np.allclose(a, b) else 0.0
    return float(np.corrcoef(a, b)[0, 1])
