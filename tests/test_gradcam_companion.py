"""The Grad-CAM companion: builtin ops only, and the same Grad-CAM as TensorFlow's on the Keras model.

References are independent of the code under test: gradients from
tf.GradientTape on the Keras model itself, Grad-CAM in TensorFlow ops
(tests/gradcam_reference.py), and the gate's two conditions checked each alone.
"""

from __future__ import annotations

import numpy as np
import pytest
from gradcam_reference import tf_cam, tf_gradcam

pytestmark = pytest.mark.tf

# The gate as documented: against TensorFlow's Grad-CAM of the model, correlation >= 0.99 (float) or
# >= 0.97 (QAT); against the head it was converted from, >= 0.999.
FLOAT_FLOOR, QAT_FLOOR, HEAD_FLOOR = 0.99, 0.97, 0.999


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


def _pearson(a, b) -> float:
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


def test_companion_cam_correlates_with_keras_gradcam(tiny_model_h5, easy_data):
    import tensorflow as tf
    import tf_keras as keras

    from edge_pcam.export.gradcam_companion import (companion_correlation, companion_gate, companion_outputs,
                                                    convert_companion, keras_gradcam)
    from edge_pcam.training.modelio import load_model

    model = load_model(tiny_model_h5)
    x = _valid_float(easy_data)
    reference = tf_gradcam(model, x)
    peaks = reference.max(axis=(1, 2))  # 1, or 0 where no location contributes positively
    assert reference.shape == (16, 12, 12) and set(np.unique(peaks)) <= {0.0, 1.0} and peaks.sum() >= 8
    np.testing.assert_allclose(keras_gradcam(model, x), reference, atol=1e-5)
    data = convert_companion(model)
    check = companion_correlation(model, data, x)
    # Recomputed here from Keras's own gradients (GradientTape on the model), not from the head function
    # the companion was converted from: the companion's Grad-CAM against TensorFlow's.
    probe = keras.Model(model.inputs, [model.get_layer("pool3").output, model.get_layer("logit").output])
    with tf.GradientTape() as tape:
        features, logit = probe(tf.constant(x), training=False)
        total = tf.reduce_sum(logit)
    keras_grads = tape.gradient(total, features)
    _, grads = companion_outputs(data, features.numpy())
    mine = tf_cam(features, grads)
    assert check["n"] == 16
    assert check["correlation"] == pytest.approx(_pearson(mine, reference), abs=1e-6)
    assert check["head_correlation"] == pytest.approx(_pearson(mine, tf_cam(features, keras_grads)), abs=1e-6)
    assert check["max_abs_difference"] == pytest.approx(np.abs(mine - reference).max(), abs=1e-5)
    assert check["max_abs_difference"] < 1e-3 and check["min_patch_correlation"] > 0.9999
    assert check["correlation"] >= FLOAT_FLOOR and check["head_correlation"] >= HEAD_FLOOR
    assert companion_gate(check, qat=False)[1]


def _companion_cams(model, x) -> np.ndarray:
    """Grad-CAM (TensorFlow ops) from the Keras model's features and a freshly converted companion's gradients."""
    import tf_keras as keras

    from edge_pcam.export.gradcam_companion import companion_outputs, convert_companion
    pool3 = [layer for layer in model.layers if layer.name.removeprefix("quant_") == "pool3"][0]
    features = keras.Model(model.inputs, pool3.output)(x, training=False).numpy()
    _, grads = companion_outputs(convert_companion(model), features)
    return tf_cam(features, grads)


def test_companion_of_another_model_fails_the_gate(tiny_model_h5, easy_data):
    import tf_keras as keras

    from edge_pcam.export.gradcam_companion import companion_correlation, companion_gate, convert_companion
    from edge_pcam.training.modelio import load_model

    model = load_model(tiny_model_h5)
    x = _valid_float(easy_data)
    # The gate fails when the file does not compute its own head (here: the gradient of another model).
    other = keras.models.clone_model(model)
    check = companion_correlation(model, convert_companion(other), x)
    assert check["correlation"] < FLOAT_FLOOR and check["head_correlation"] < HEAD_FLOOR
    assert not companion_gate(check, qat=False)[1]


@pytest.mark.parametrize("qat", [False, True])
def test_gate_fails_on_either_condition_alone(qat):
    from edge_pcam.export.gradcam_companion import companion_gate

    floor = QAT_FLOOR if qat else FLOAT_FLOOR
    below = np.nextafter(floor, 0.0)
    cases = {  # (correlation, head_correlation) -> passes
        (floor, HEAD_FLOOR): True,                       # both exactly at their limits
        (1.0, 1.0): True,
        (below, 1.0): False,                             # only the correlation with Keras's Grad-CAM fails
        (1.0, np.nextafter(HEAD_FLOOR, 0.0)): False,     # only the head correlation fails
        (0.5, 0.5): False,
    }
    for (corr, head), passes in cases.items():
        gate, passed = companion_gate({"correlation": corr, "head_correlation": head}, qat=qat)
        assert bool(passed) is passes, (qat, corr, head)
        assert f"{floor}" in gate and f"{HEAD_FLOOR}" in gate
    # a QAT model's companion is held to 0.97, a float model's to 0.99
    assert companion_gate({"correlation": 0.98, "head_correlation": 1.0}, qat=True)[1]
    assert not companion_gate({"correlation": 0.98, "head_correlation": 1.0}, qat=False)[1]


@pytest.mark.parametrize("failing", ["correlation", "head_correlation"])
def test_convert_puts_aside_a_companion_that_fails_one_condition(failing, tiny_model_h5, easy_data, tmp_path,
                                                                 monkeypatch):
    """`convert` keeps a companion whose check fails either condition alone out of the deployable name."""
    from edge_pcam.export import gradcam_companion
    from edge_pcam.export.conversion import convert
    from edge_pcam.runtime.metadata import read_metadata

    real = gradcam_companion.companion_correlation

    def one_condition_fails(model, data, images):
        return {**real(model, data, images), failing: 0.95}

    monkeypatch.setattr(gradcam_companion, "companion_correlation", one_condition_fails)
    result = convert(tiny_model_h5, tmp_path, easy_data, formats=["float32"], limit=8)
    assert not result.companion.accepted
    assert not (tmp_path / "edge_pcam_gradcam.tflite").exists()
    rejected = tmp_path / "edge_pcam_gradcam.rejected.tflite"
    assert rejected.is_file() and read_metadata(rejected)["parity"]["passed"] is False
    assert len(result.failures) == 1 and result.failures[0].startswith("gradcam:")
    assert read_metadata(tmp_path / "edge_pcam_float32.tflite").get("companion") is None


def test_qat_companion_uses_the_qat_weights(tiny_qat_h5, easy_data):
    from edge_pcam.export.gradcam_companion import (companion_correlation, companion_gate, convert_companion,
                                                    head_weights)
    from edge_pcam.training.modelio import load_model

    model = load_model(tiny_qat_h5)
    kernel, bias = head_weights(model)["q"]
    assert kernel.shape == (256, 128) and bias.shape == (128,)
    np.testing.assert_array_equal(kernel, model.get_layer("quant_q").weights[0].numpy())
    x = _valid_float(easy_data)
    check = companion_correlation(model, convert_companion(model), x)
    assert check["correlation"] >= QAT_FLOOR and check["head_correlation"] >= HEAD_FLOOR
    assert check["correlation"] == pytest.approx(_pearson(_companion_cams(model, x), tf_gradcam(model, x)), abs=1e-6)
    assert companion_gate(check, qat=True)[1]


def test_device_side_gradcam_from_the_int8_file(converted_dir, tiny_model_h5, easy_data):
    """int8 features (dequantized) + companion give a Grad-CAM close to TensorFlow's float one."""
    from edge_pcam.export.gradcam_companion import companion_outputs
    from edge_pcam.runtime.cam import cam_from_gradients
    from edge_pcam.runtime.interpreter import load_model as load_tflite
    from edge_pcam.training.modelio import load_model

    images = easy_data.split("valid").read(np.arange(16))
    _, features = load_tflite(converted_dir / "edge_pcam_int8.tflite").predict_with_features(images)
    _, grads = companion_outputs((converted_dir / "edge_pcam_gradcam.tflite").read_bytes(), features)
    cams = np.stack([cam_from_gradients(f, g) for f, g in zip(features, grads)])
    reference = tf_gradcam(load_model(tiny_model_h5), images.astype(np.float32) / 255.0)
    # measured: correlation 0.99991, mean absolute difference 0.0005 (int8 features are rounded)
    assert _pearson(cams, reference) >= 0.999 and np.abs(cams - reference).mean() <= 0.005
