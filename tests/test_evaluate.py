"""`edge-pcam evaluate`: Keras .h5 and .tflite alike, the 8-way TTA, --limit, and bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from threshold_checks import assert_high_specificity, assert_triage

from edge_pcam.runtime.datasets import open_dataset

pytestmark = pytest.mark.tf

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "models"


@pytest.fixture(scope="module")
def h5_model(tmp_path_factory):
    import tf_keras as keras

    from edge_pcam.model import build_model
    from edge_pcam.training.modelio import save_model_atomic
    keras.utils.set_random_seed(1)
    path = tmp_path_factory.mktemp("models") / "model.h5"
    save_model_atomic(build_model(), path)
    return path


def _keras_probs(path, images):
    from edge_pcam.training.modelio import load_model
    return load_model(path)(images.astype(np.float32) / 255.0, training=False).numpy().reshape(-1)


def test_h5_metrics_match_direct_prediction(h5_model):
    from edge_pcam.training.evaluate import evaluate_model
    result = evaluate_model(h5_model, "synthetic:64", "valid", batch_size=4)
    split = open_dataset("synthetic:64").split("valid")
    probs = _keras_probs(h5_model, split.read(np.arange(len(split))))
    assert result.n == len(split)
    np.testing.assert_allclose(result.probabilities, probs, atol=1e-5)
    # counted here: accuracy at 0.5, and a triage threshold that keeps its promise on these probabilities
    accuracy = np.mean((result.probabilities >= 0.5) == (split.labels == 1))
    assert result.metrics["decision"]["accuracy"] == pytest.approx(accuracy, abs=1e-12)
    assert_triage(split.labels, result.probabilities, result.metrics["triage"]["threshold"])
    assert_high_specificity(split.labels, result.probabilities, result.metrics["high_specificity"]["threshold"])


def test_tta_averages_the_eight_flips_and_rotations(h5_model):
    from edge_pcam.training.evaluate import evaluate_model
    result = evaluate_model(h5_model, "synthetic:64", "test", limit=5, tta=True)
    images = open_dataset("synthetic:64").split("test").read(np.arange(5))
    views = []
    for flipped in (images, images[:, :, ::-1]):
        views += [np.rot90(flipped, k, axes=(1, 2)) for k in range(4)]
    expected = np.mean([_keras_probs(h5_model, np.ascontiguousarray(v)) for v in views], axis=0)
    assert result.n == 5 and result.tta
    np.testing.assert_allclose(result.probabilities, expected, atol=1e-5)
    plain = evaluate_model(h5_model, "synthetic:64", "test", limit=5).probabilities
    assert not np.allclose(plain, result.probabilities, atol=1e-7), "TTA changed nothing: views not applied?"


def test_tflite_is_evaluated_through_the_device_runtime():
    from edge_pcam.runtime.interpreter import load_model
    from edge_pcam.training.evaluate import evaluate_model
    model = FIXTURES / "tiny_int8.tflite"
    if not model.is_file():
        pytest.skip(f"{model} not present (made by tests/fixtures/make_fixtures.py)")
    result = evaluate_model(model, "synthetic:64", "valid", limit=6, batch_size=4)
    images = open_dataset("synthetic:64").split("valid").read(np.arange(6))
    np.testing.assert_allclose(result.probabilities, load_model(model).predict(images), atol=1e-6)
    assert result.metrics["decision"]["n"] == 6


def _cli(*args):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", "edge_pcam", "evaluate", *args], capture_output=True, text=True,
                          timeout=180, env=env)


def test_cli_writes_table_and_json(h5_model, tmp_path):
    out = tmp_path / "m.json"
    proc = _cli(str(h5_model), "--data", "synthetic:64", "--limit", "5", "--json", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "triage" in proc.stdout and "AUC" in proc.stdout
    saved = json.loads(out.read_text())
    assert saved["n"] == 5 and saved["split"] == "valid" and set(saved["metrics"]) >= {"decision", "triage"}


def test_cli_bad_input_is_one_line(tmp_path):
    text = tmp_path / "model.txt"
    text.write_text("not a model")
    broken = tmp_path / "broken.h5"
    broken.write_bytes(b"\x89HDF\r\n\x1a\n truncated")
    for args, words in [
        ((str(tmp_path / "missing.h5"), "--data", "synthetic:64"), ["no such model file"]),
        ((str(text), "--data", "synthetic:64"), ["expected a Keras .h5 or a .tflite"]),
        ((str(broken), "--data", "synthetic:64"), ["broken.h5", "cannot load"]),
        ((str(broken), "--data", "synthetic:64", "--split", "nope"), ["no 'nope' split"]),
    ]:
        proc = _cli(*args)
        assert proc.returncode != 0
        errors = [line for line in proc.stderr.splitlines() if line.startswith("edge-pcam: error:")]
        assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
        for word in words:
            assert word in errors[0], errors[0]
