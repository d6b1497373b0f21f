"""The Grad-CAM companion: builtin ops only, and the same Grad-CAM as TensorFlow's on the Keras model."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.tf


def _valid_float(easy_data, n=16):
    return easy_data.split("valid").read(np.arange(n)).astype(np.float32) / 255.0


def test_companion_has_only_builtin_ops(converted_dir):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(model_path=str(converted_dir / "edge_pcam_gradcam.tflite"),
                     experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    names = {op["op_name"] for op in it._get_ops_details()}
    assert names and not any(n.startswith(("Flex", "CUSTOM")) or "Grad" in n for n in names)
    assert {tuple(d["shape"]) for d in it.get_input_details()} == {(1, 12, 12, 256)}
    assert {tuple(d["shape"]) for d in it.get_output_details()} == {(1, 1), (1, 12, 12, 256)}


def test_companion_matches_tensorflow_gradients(converted_dir, tiny_model_h5, easy_data):
    import tensorflow as tf
    import tf_keras as keras

    from edge_pcam.export.gradcam_companion import companion_outputs
    from edge_pcam.training.modelio import load_model

    model = load_model(tiny_model_h5)
    probe = keras.Model(model.inputs, [model.get_layer("pool3").output, model.get_layer("logit").output])
    x = tf.constant(_valid_float(easy_data, 4))
    with tf.GradientTape() as tape:
        features, logit = probe(x, training=False)
        total = tf.reduce_sum(logit)
    grads = tape.gradient(total, features).numpy()
    c_logits, c_grads = companion_outputs((converted_dir / "edge_pcam_gradcam.tflite").read_bytes(), features.numpy())
    np.testing.assert_allclose(c_logits, logit.numpy().reshape(-1), rtol=1e-4, atol=1e-4)
    scale = np.abs(grads).max()
    assert scale > 0
    np.testing.assert_allclose(c_grads, grads, atol=1e-4 * scale)


def test_companion_cam_correlates_with_keras_gradcam(tiny_model_h5, easy_data):
    import tf_keras as keras

    from edge_pcam.export.gradcam_companion import (MIN_CORRELATION, MIN_HEAD_CORRELATION, companion_correlation,
                                                    companion_gate, convert_companion, keras_gradcam)
    from edge_pcam.training.modelio import load_model

    model = load_model(tiny_model_h5)
    x = _valid_float(easy_data)
    reference = keras_gradcam(model, x)
    assert reference.shape == (16, 12, 12)
    assert reference.min() >= 0 and reference.max() <= 1 and reference.max() == 1
    check = companion_correlation(model, convert_companion(model), x)
    assert check["correlation"] >= MIN_CORRELATION
    assert check["min_patch_correlation"] >= MIN_CORRELATION
    assert check["head_correlation"] >= MIN_HEAD_CORRELATION
    assert companion_gate(check, qat=False)[1]
    # The gate fails when the file does not compute its own head (here: the gradient of another model).
    other = keras.models.clone_model(model)
    assert not companion_gate(companion_correlation(model, convert_companion(other), x), qat=False)[1]


def test_qat_companion_uses_the_qat_weights(tiny_qat_h5, easy_data):
    from edge_pcam.export.gradcam_companion import (MIN_CORRELATION_QAT, MIN_HEAD_CORRELATION, companion_correlation,
                                                    companion_gate, convert_companion, head_weights)
    from edge_pcam.training.modelio import load_model

    model = load_model(tiny_qat_h5)
    kernel, bias = head_weights(model)["q"]
    assert kernel.shape == (256, 128) and bias.shape == (128,)
    np.testing.assert_array_equal(kernel, model.get_layer("quant_q").weights[0].numpy())
    check = companion_correlation(model, convert_companion(model), _valid_float(easy_data))
    assert check["correlation"] >= MIN_CORRELATION_QAT and check["head_correlation"] >= MIN_HEAD_CORRELATION
    assert companion_gate(check, qat=True)[1]


def test_device_side_gradcam_from_the_int8_file(converted_dir, tiny_model_h5, easy_data):
    """int8 features (dequantized) + companion give a Grad-CAM close to TensorFlow's float one."""
    from edge_pcam.export.gradcam_companion import companion_outputs, keras_gradcam
    from edge_pcam.runtime.cam import cam_from_gradients
    from edge_pcam.runtime.interpreter import load_model as load_tflite
    from edge_pcam.training.modelio import load_model

    images = easy_data.split("valid").read(np.arange(16))
    _, features = load_tflite(converted_dir / "edge_pcam_int8.tflite").predict_with_features(images)
    _, grads = companion_outputs((converted_dir / "edge_pcam_gradcam.tflite").read_bytes(), features)
    cams = np.stack([cam_from_gradients(f, g) for f, g in zip(features, grads)])
    reference = keras_gradcam(load_model(tiny_model_h5), images.astype(np.float32) / 255.0)
    assert np.corrcoef(cams.ravel(), reference.ravel())[0, 1] > 0.9
