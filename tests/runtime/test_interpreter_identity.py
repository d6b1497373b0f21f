"""The bundled int8 file gives the same outputs in every interpreter that runs it.

Its quantization is settled at export (nothing is rewritten at load), so tf.lite (TensorFlow),
ai-edge-litert opened by a user's own code, and edge-pcam's runtime on ai-edge-litert compute
identical int8 outputs. tflite-runtime 2.14 has no XNNPACK path for int8 and runs its builtin
kernels, which round differently: it must reproduce its own recorded outputs exactly and stay
within MAX_STEPS of tf.lite's. Runs in both venvs against tests/fixtures/golden/bundled_int8.json
(tf.lite's section recorded in .venv, tflite-runtime's in .venv-tflite; see
tests/fixtures/make_bundled_golden.py).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_pcam.runtime.bundled import default_model_path
from edge_pcam.runtime.interpreter import LITERT, TFLITE_RUNTIME, load_model
from edge_pcam.runtime.metadata import read_metadata

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from identity_support import (GOLDEN, TF_LITE, feature_digest, identity_inputs, raw_outputs,  # noqa: E402
                              requantize)

HAVE_LITERT = importlib.util.find_spec("ai_edge_litert") is not None
HAVE_TFLITE_RUNTIME = importlib.util.find_spec("tflite_runtime") is not None
# tflite-runtime's builtin int8 kernels vs XNNPACK, in steps of 1/256; measured on these inputs: 7 at most
# (4 on the fixture patches before tests/fixtures/make_fixtures.py remade them for the Grad-CAM tests)
MAX_STEPS = 7
REGENERATE = ("regenerate it: .venv/bin/python tests/fixtures/make_bundled_golden.py and "
              ".venv-tflite/bin/python tests/fixtures/make_bundled_golden.py")


@pytest.fixture(scope="module")
def golden() -> dict:
    data = json.loads(GOLDEN.read_text())
    card = read_metadata(default_model_path())
    assert data["model_sha256"] == card["integrity"]["model_sha256"], f"{GOLDEN} is for another file; {REGENERATE}"
    assert {TF_LITE, TFLITE_RUNTIME} <= set(data), f"{GOLDEN} lacks an interpreter's section; {REGENERATE}"
    return data


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return identity_inputs()


def _expected(golden: dict, name: str) -> dict:
    return {k: golden[name][k] for k in ("probability", "features_sha256")}


@pytest.mark.tf
def test_tf_lite_reproduces_the_golden(golden, images):
    assert raw_outputs(TF_LITE, default_model_path(), images) == _expected(golden, TF_LITE)


@pytest.mark.skipif(not HAVE_LITERT, reason="ai-edge-litert not installed here")
def test_raw_ai_edge_litert_is_identical_to_tf_lite(golden, images):
    assert raw_outputs(LITERT, default_model_path(), images) == _expected(golden, TF_LITE)


@pytest.mark.skipif(not HAVE_TFLITE_RUNTIME, reason="tflite-runtime not installed here")
def test_raw_tflite_runtime_reproduces_its_golden_within_steps_of_tf_lite(golden, images):
    got = raw_outputs(TFLITE_RUNTIME, default_model_path(), images)
    assert got == _expected(golden, TFLITE_RUNTIME)
    steps = np.abs(np.array(got["probability"]) - np.array(golden[TF_LITE]["probability"]))
    assert steps.max() <= MAX_STEPS


def test_edge_pcam_runtime_is_identical_to_the_raw_interpreter(golden, images):
    model = load_model(threads=2)  # the bundled file, in the interpreter `edge-pcam predict` picks
    probs, features = model.predict_with_features(images)
    outputs = model.metadata["outputs"]
    got = {"probability": requantize(probs, outputs["probability"]).tolist(),
           "features_sha256": [feature_digest(f) for f in requantize(features, outputs["features"])]}
    reference = {LITERT: TF_LITE, TFLITE_RUNTIME: TFLITE_RUNTIME}[model.runtime]
    assert got == _expected(golden, reference)
