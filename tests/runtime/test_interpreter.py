"""load_model: interpreter choice, batching, tensors by signature name, the file run as written, clear errors.

Runs in both venvs: ai-edge-litert in .venv, tflite-runtime in .venv-tflite.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_pcam.errors import ModelFileError, RuntimeUnavailableError
from edge_pcam.runtime import interpreter as interp
from edge_pcam.runtime.interpreter import (LITERT, TFLITE_RUNTIME, default_threads, installed_runtimes, load_model,
                                           resolve_runtime)
from edge_pcam.runtime.metadata import metadata_from_bytes, model_bytes, with_metadata
from edge_pcam.runtime.symmetric_matmul import symmetric_matmul_operands

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from card_support import LEGACY_INT8, raw_file  # noqa: E402
from test_upgrade import matmul_operand_zero_points  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
INT8 = FIXTURES / "models" / "tiny_int8.tflite"
COMPANION = FIXTURES / "models" / "tiny_gradcam.tflite"
HAVE_LITERT = importlib.util.find_spec("ai_edge_litert") is not None
HAVE_TFLITE_RUNTIME = importlib.util.find_spec("tflite_runtime") is not None


def _patches(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 96, 96, 3), dtype=np.uint8)


def _variant(tmp_path: Path, name: str, data: bytes | None = None, **changes) -> Path:
    """The int8 fixture (or `data`) with metadata fields changed."""
    raw = INT8.read_bytes()
    meta = {**metadata_from_bytes(raw), **changes}
    path = tmp_path / name
    path.write_bytes(with_metadata(model_bytes(raw) if data is None else data, meta))
    return path


@pytest.fixture(scope="module")
def model():
    return load_model(INT8, threads=2)


def test_auto_prefers_litert_then_tflite_runtime(model):
    expected = LITERT if HAVE_LITERT else TFLITE_RUNTIME
    assert model.runtime == expected
    assert resolve_runtime("auto").name == expected
    assert expected in installed_runtimes()
    assert model.runtime in model.describe() and "int8" in model.describe()
    assert 1 <= default_threads() <= 4


def test_predict_shapes_batching_and_features(model):
    x = _patches(5)
    probs = model.predict(x)
    assert probs.shape == (5,) and probs.dtype == np.float32
    assert np.all((probs >= 0) & (probs <= 1))
    one_by_one = np.array([model.predict(x[i])[0] for i in range(5)])
    np.testing.assert_array_equal(probs, one_by_one)  # chunking and padding change nothing
    p2, feats = model.predict_with_features(x)
    np.testing.assert_array_equal(p2, probs)
    assert feats.shape == (5, 12, 12, 256) and feats.dtype == np.float32
    assert feats.min() >= 0 and feats.max() > 0  # after ReLU and max-pooling
    assert model.batch == 1 and model.has_features
    assert set(model.thresholds) >= {"decision", "triage", "high_specificity"}
    with pytest.raises(ValueError):
        model.predict(x.astype(np.float32))


def test_unknown_or_missing_runtime_is_a_clear_error():
    with pytest.raises(RuntimeUnavailableError, match="unknown runtime"):
        load_model(INT8, runtime="onnx")
    if not HAVE_TFLITE_RUNTIME:
        with pytest.raises(RuntimeUnavailableError, match="tflite-runtime is not installed"):
            load_model(INT8, runtime="tflite-runtime")
    if importlib.util.find_spec("tensorflow") is None:
        with pytest.raises(RuntimeUnavailableError, match="tf.lite is not installed"):
            load_model(INT8, runtime="tf")


@pytest.mark.skipif(not HAVE_TFLITE_RUNTIME, reason="tflite-runtime not installed here")
def test_explicit_tflite_runtime(model):
    other = load_model(INT8, runtime="tflite-runtime", threads=2)
    assert other.runtime == TFLITE_RUNTIME
    x = _patches(3)
    np.testing.assert_allclose(other.predict(x), model.predict(x), atol=4 / 256)


@pytest.mark.tf
def test_tf_lite_only_on_request(model):
    tf_model = load_model(INT8, runtime="tf", threads=2)
    assert tf_model.runtime == "tf.lite"
    x = _patches(3)
    np.testing.assert_allclose(tf_model.predict(x), model.predict(x), atol=4 / 256)


def test_truncated_plain_corrupt_and_foreign_files(tmp_path):
    raw = INT8.read_bytes()
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(raw[: len(raw) // 2])
    plain = tmp_path / "plain.tflite"
    plain.write_bytes(model_bytes(raw))
    png = tmp_path / "image.tflite"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    for path, words in ((truncated, "truncated"), (plain, "without edge-pcam metadata"), (png, "not a TFLite")):
        with pytest.raises(ModelFileError, match=words) as exc:
            load_model(path)
        assert str(path) in str(exc.value)
    body = bytearray(model_bytes(raw))
    body[64:len(body) // 2] = b"\xff" * (len(body) // 2 - 64)
    corrupt = _variant(tmp_path, "corrupt.tflite", bytes(body))
    with pytest.raises(ModelFileError, match="damaged model file") as exc:
        load_model(corrupt)
    assert str(corrupt) in str(exc.value)
    with pytest.raises(ModelFileError, match="cannot read"):
        load_model(tmp_path / "missing.tflite")
    with pytest.raises(ModelFileError, match="folder"):
        load_model(tmp_path)


def test_companion_edgetpu_and_dynamic_formats_refused_clearly(tmp_path, monkeypatch):
    with pytest.raises(ModelFileError, match="Grad-CAM companion, not a classifier"):
        load_model(COMPANION)
    with pytest.raises(ModelFileError, match="--device"):
        load_model(_variant(tmp_path, "tpu.tflite", format="edgetpu"))
    dynamic = _variant(tmp_path, "dynamic.tflite", format="dynamic")
    fake = interp.Backend(TFLITE_RUNTIME, object, lambda *a, **k: None, "2.14.0")
    monkeypatch.setattr(interp, "resolve_runtime", lambda runtime="auto": fake)
    with pytest.raises(RuntimeUnavailableError, match="FULLY_CONNECTED version 12"):
        load_model(dynamic)


def test_not_a_patch_classifier(tmp_path):
    # the companion's flatbuffer with classifier metadata: its signature names other tensors
    fake = _variant(tmp_path, "fake.tflite", model_bytes(COMPANION.read_bytes()))
    with pytest.raises(ModelFileError, match=r"not an edge-pcam patch classifier \(its serving_default inputs are "
                                             r"features; expected image\)"):
        load_model(fake)


def test_tensors_are_found_by_signature_name_and_a_file_without_one_is_refused(tmp_path, monkeypatch):
    from edge_pcam.runtime.flatbuffer import signatures

    model = load_model(INT8, threads=1)
    names = signatures(model_bytes(INT8.read_bytes()))["serving_default"]["outputs"]
    assert model._prob["index"] == names["probability"] and model._feat["index"] == names["features"]
    # a file whose signature is gone (as early companions were made)
    raw = bytearray(model_bytes(INT8.read_bytes()))
    key = raw.find(b"\x0f\x00\x00\x00serving_default")  # the signature key (a 15-byte flatbuffer string)
    assert key > 0
    raw[key + 4:key + 19] = b"serving_other__"
    unsigned = tmp_path / "unsigned.tflite"
    unsigned.write_bytes(raw_file(bytes(raw), {**metadata_from_bytes(INT8.read_bytes()), "integrity": {
        "algorithm": "sha256", "model_sha256": __import__("hashlib").sha256(bytes(raw)).hexdigest()}}))
    with pytest.raises(ModelFileError, match="no serving_default signature"):
        load_model(unsigned)


def test_load_model_runs_the_file_as_written(monkeypatch):
    seen = []
    real = interp.open_interpreter
    monkeypatch.setattr(interp, "open_interpreter", lambda content, *a, **k: seen.append(content) or real(content, *a, **k))
    load_model(INT8, threads=1)
    assert seen == [model_bytes(INT8.read_bytes())]


def test_edge_tpu_without_libedgetpu_is_a_clear_error():
    with pytest.raises(RuntimeUnavailableError, match="use usb, pci"):
        load_model(INT8, device="firewire")
    try:
        load_model(INT8, device="usb")
    except RuntimeUnavailableError as exc:
        assert "libedgetpu" in str(exc)
    else:  # a machine with a Coral attached and libedgetpu installed
        pass


def test_bundled_model_missing_is_a_clear_error(tmp_path, monkeypatch):
    from edge_pcam.runtime import bundled
    monkeypatch.setattr(bundled, "MODELS_DIR", tmp_path)
    with pytest.raises(ModelFileError, match="--model"):
        load_model()
    (tmp_path / bundled.DEFAULT_MODEL).write_bytes(INT8.read_bytes())
    assert load_model().path == tmp_path / bundled.DEFAULT_MODEL


def test_symmetric_rewrite_zeroes_the_operands_in_place_and_once():
    """What the exporter applies to int8 files (and `upgrade` to old ones): K/V made symmetric."""
    data = model_bytes(LEGACY_INT8.read_bytes())
    assert any(z != 0 for z in matmul_operand_zero_points(data))
    patched, changed = symmetric_matmul_operands(data)
    assert changed == 4 and len(patched) == len(data)  # K and V, each through its RESHAPE
    assert matmul_operand_zero_points(patched) == [0, 0]
    again, changed_again = symmetric_matmul_operands(patched)
    assert changed_again == 0 and again == patched
    assert matmul_operand_zero_points(model_bytes(INT8.read_bytes())) == [0, 0]  # the fixture as written


@pytest.mark.skipif(not HAVE_LITERT, reason="ai-edge-litert not installed here")
def test_litert_runs_the_attention_products_in_xnnpack(model):
    """Why the quantization is settled at export: XNNPACK refuses an asymmetric second operand."""
    assert _builtin_matmuls(model._interpreter) == 0
    legacy = interp.open_interpreter(model_bytes(LEGACY_INT8.read_bytes()), resolve_runtime("litert"), 2)
    assert _builtin_matmuls(legacy) > 0


def _builtin_matmuls(it) -> int:
    ops = it._get_ops_details()
    delegates = [o for o in ops if o["op_name"] == "DELEGATE"]
    assert delegates, "XNNPACK did not take any part of the int8 model"
    from_delegate = {int(t) for o in delegates for t in o["outputs"]}
    needed = {int(t) for o in delegates for t in o["inputs"]}
    return sum(1 for op in ops if op["op_name"] == "BATCH_MATMUL"
               and {int(t) for t in op["outputs"]} & (needed - from_delegate))
