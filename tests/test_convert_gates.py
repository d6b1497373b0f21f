"""The conversion gates exercised end to end against references computed here.

- parity: a converted file more accurate than Keras passes any bound; `convert(..., max_drop=X)`
  accepts a degraded file at one bound and puts it aside at a tighter one, the drop
  recomputed here from Keras and the written file;
- thresholds chosen on a tuning set keep their promise on that set (recall >= 95% at
  triage, specificity >= 99% at high specificity, decision 0.5), checked by counting.
"""

from __future__ import annotations

import numpy as np
import pytest
from threshold_checks import assert_high_specificity, assert_triage

from edge_pcam.runtime.metadata import read_metadata

pytestmark = pytest.mark.tf

LABELS = np.array([0, 0, 1, 1] * 25)


def _probs_with_errors(wrong: list[int]) -> np.ndarray:
    """0.1 / 0.9 by label, turned to the wrong side of 0.5 at the rows in `wrong`."""
    p = np.where(LABELS == 1, 0.9, 0.1)
    p[wrong] = 1.0 - p[wrong]
    return p


def test_a_converted_file_more_accurate_than_keras_passes_any_bound():
    from edge_pcam.export.parity import compare

    keras_probs = _probs_with_errors([0, 1, 2, 3])  # 96 of 100 right
    better = _probs_with_errors([2])                 # 99 of 100 right
    for max_drop in (0.0, 1.0):
        p = compare("int8", LABELS, keras_probs, better, max_drop=max_drop)
        assert p.passed and p.reason == ""
        assert p.accuracy_drop_points == pytest.approx(-3.0)
        assert p.agreement == pytest.approx(0.97)  # rows 0, 1 and 3 decided differently
        assert (p.keras["accuracy"], p.converted["accuracy"]) == (pytest.approx(0.96), pytest.approx(0.99))
    # the same file the other way round loses 3 points: fails at 2.99, passes at 3
    assert not compare("int8", LABELS, better, keras_probs, max_drop=2.99).passed
    assert compare("int8", LABELS, better, keras_probs, max_drop=3.0).passed


def test_float32_tolerance_is_strict():
    from edge_pcam.export.parity import compare

    keras_probs = _probs_with_errors([])
    assert compare("float32", LABELS, keras_probs, keras_probs + 0.99e-4).passed
    assert not compare("float32", LABELS, keras_probs, keras_probs + 1.01e-4).passed
    # float32 is held to the tolerance, not to accuracy: a better but different float32 file fails
    assert not compare("float32", LABELS, _probs_with_errors([0]), keras_probs, max_drop=100).passed


@pytest.fixture(scope="module")
def degraded_convert(tiny_model_h5, easy_data, tmp_path_factory):
    """`convert` whose float16 file comes from the model with its logit bias lowered by 2.5."""
    import tf_keras as keras

    from edge_pcam.export import tflite
    from edge_pcam.export.conversion import convert

    real = tflite.convert_model

    def degraded(model, fmt, **kwargs):
        worse = keras.models.clone_model(model)
        worse.set_weights(model.get_weights())
        kernel, bias = worse.get_layer("logit").get_weights()
        worse.get_layer("logit").set_weights([kernel, bias - 2.5])
        return real(worse, fmt, **kwargs)

    def run(max_drop: float, out):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(tflite, "convert_model", degraded)
            return convert(tiny_model_h5, out, easy_data, formats=["float16"], companion=False, max_drop=max_drop)

    return run, tmp_path_factory


def _drop_points(tiny_model_h5, easy_data, path) -> float:
    """Keras's accuracy minus the file's, in points, on the whole valid split (0.5 threshold)."""
    from edge_pcam.runtime.interpreter import load_model
    from edge_pcam.training.modelio import load_model as load_keras

    valid = easy_data.split("valid")
    images = valid.read(np.arange(len(valid)))
    keras_probs = load_keras(tiny_model_h5)(images.astype(np.float32) / 255.0, training=False).numpy().ravel()
    file_probs = load_model(path).predict(images)
    return 100.0 * (np.mean((keras_probs >= 0.5) == valid.labels) - np.mean((file_probs >= 0.5) == valid.labels))


def test_max_drop_accepts_at_one_bound_and_rejects_at_a_tighter_one(degraded_convert, tiny_model_h5, easy_data):
    run, tmp = degraded_convert
    loose = tmp.mktemp("loose")
    result = run(100.0, loose)
    result.raise_for_failures()
    accepted = loose / "edge_pcam_float16.tflite"
    drop = _drop_points(tiny_model_h5, easy_data, accepted)
    step = 100.0 / len(easy_data.split("valid"))
    assert drop >= 2 * step, f"the degraded file should lose accuracy (lost {drop:.2f} points)"
    assert read_metadata(accepted)["parity"]["accuracy_drop_points"] == pytest.approx(drop)

    exact = tmp.mktemp("exact")
    run(drop, exact).raise_for_failures()  # a drop equal to the bound passes
    assert (exact / "edge_pcam_float16.tflite").is_file()

    tight = tmp.mktemp("tight")
    result = run(drop - step / 2, tight)
    assert len(result.failures) == 1 and "points below Keras" in result.failures[0]
    assert f"--max-drop {drop - step / 2:g}" in result.failures[0]
    assert not (tight / "edge_pcam_float16.tflite").exists()
    rejected = tight / "edge_pcam_float16.rejected.tflite"
    assert read_metadata(rejected)["parity"]["passed"] is False
    assert _drop_points(tiny_model_h5, easy_data, rejected) == pytest.approx(drop)


def test_thresholds_from_the_tuning_set_keep_their_promise(tiny_model_h5, easy_data, tmp_path):
    from edge_pcam.export.conversion import convert
    from edge_pcam.runtime.interpreter import load_model
    from edge_pcam.training.splits import carve_tuning

    convert(tiny_model_h5, tmp_path, easy_data, formats=["float32"], companion=False,
            tune_from_train=80).raise_for_failures()
    path = tmp_path / "edge_pcam_float32.tflite"
    thresholds = read_metadata(path)["thresholds"]
    _, tuning = carve_tuning(easy_data.split("train"), 80, 0)  # the patches `edge-pcam train` carves
    probs = load_model(path).predict(tuning.read(np.arange(len(tuning))))
    assert thresholds["decision"] == 0.5
    assert_triage(tuning.labels, probs, thresholds["triage"])
    assert_high_specificity(tuning.labels, probs, thresholds["high_specificity"])


def test_conversion_report_parity_is_what_the_files_do(converted_dir, tiny_model_h5, easy_data):
    """conversion.json's parity figures, recomputed here from Keras and each written file."""
    import json

    from edge_pcam.runtime.interpreter import load_model
    from edge_pcam.training.modelio import load_model as load_keras

    valid = easy_data.split("valid")
    images = valid.read(np.arange(len(valid)))
    keras_probs = load_keras(tiny_model_h5)(images.astype(np.float32) / 255.0, training=False).numpy().ravel()
    keras_right = (keras_probs >= 0.5) == (valid.labels == 1)
    report = json.loads((converted_dir / "conversion.json").read_text())
    assert report["passed"] and report["failures"] == []
    for entry in report["files"]:
        probs = load_model(converted_dir / entry["file"]).predict(images)
        parity = entry["parity"]
        assert parity["n"] == len(valid)
        assert parity["max_abs_dprob"] == pytest.approx(np.abs(probs - keras_probs).max(), abs=1e-6)
        assert parity["agreement"] == pytest.approx(np.mean((probs >= 0.5) == (keras_probs >= 0.5)))
        drop = 100 * (keras_right.mean() - np.mean((probs >= 0.5) == (valid.labels == 1)))
        assert parity["accuracy_drop_points"] == pytest.approx(drop)
        assert parity["passed"] is bool(parity["max_abs_dprob"] < 1e-4 if entry["format"] == "float32" else drop <= 1.0)
