"""edge_pcam.export.conversion: every format, metadata, the parity gate both ways, batched files."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_pcam.errors import DataError, EdgePcamError, ModelFileError
from edge_pcam.runtime.metadata import model_bytes, read_metadata, sha256_file

pytestmark = pytest.mark.tf

FORMATS = ("float32", "float16", "dynamic", "int8")


def test_every_format_is_written_with_metadata(converted_dir, easy_data, tiny_model_h5):
    from edge_pcam.runtime.interpreter import load_model
    from edge_pcam.runtime.metrics import operating_points

    valid = easy_data.split("valid")
    images = valid.read(np.arange(len(valid)))
    companion = converted_dir / "edge_pcam_gradcam.tflite"
    sizes = {}
    for fmt in FORMATS:
        path = converted_dir / f"edge_pcam_{fmt}.tflite"
        meta = read_metadata(path)
        assert meta["schema_version"] == 2 and meta["format"] == fmt
        assert meta["integrity"] == {"algorithm": "sha256",
                                     "model_sha256": hashlib.sha256(model_bytes(path.read_bytes())).hexdigest()}
        assert meta["source"] == ("float" if fmt == "float32" else "ptq")
        assert meta["batch"] == 1 and meta["input"]["shape"] == [1, 96, 96, 3]
        assert meta["labels"] == ["normal", "tumour"]
        assert meta["source_model"] == {"file": tiny_model_h5.name, "sha256": sha256_file(tiny_model_h5)}
        assert meta["companion"] == {"file": companion.name, "sha256": sha256_file(companion)}
        assert meta["validation"]["n"] == len(valid) and meta["validation"]["split"] == "valid"
        assert meta["outputs"]["probability"]["shape"] == [1, 1]
        assert meta["outputs"]["features"]["shape"] == [1, 12, 12, 256]
        assert "tensorflow" in meta["versions"] and meta["recipe"]["formats"] == list(FORMATS)
        # Thresholds and metrics were measured on this very file.
        probs = load_model(path).predict(images)
        points = operating_points(valid.labels, probs)
        for name, point in points.items():
            assert meta["thresholds"][name] == pytest.approx(point["threshold"])
            assert meta["metrics"][name]["accuracy"] == pytest.approx(point["accuracy"])
        assert meta["thresholds"]["decision"] == 0.5
        sizes[fmt] = path.stat().st_size
    assert sizes["float32"] > sizes["float16"] > sizes["int8"]
    assert sizes["float32"] > sizes["dynamic"]
    leftovers = [p.name for p in converted_dir.iterdir() if "partial" in p.name or p.name.startswith(".")]
    assert leftovers == []


def test_int8_takes_raw_pixels_and_has_feature_output(converted_dir):
    meta = read_metadata(converted_dir / "edge_pcam_int8.tflite")
    assert meta["input"]["dtype"] == "uint8"
    assert meta["input"]["zero_point"] == 0
    assert meta["input"]["scale"] == pytest.approx(1 / 255, rel=1e-6)
    assert meta["outputs"]["features"]["dtype"] == "int8"
    assert meta["outputs"]["features"]["scale"] > 0
    assert meta["edgetpu"]["op_count"] > meta["edgetpu"]["ops_on_edgetpu"] > 0
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_path=str(converted_dir / "edge_pcam_int8.tflite"))
    ops = {op["op_name"] for op in it._get_ops_details()}
    assert {"CONV_2D", "BATCH_MATMUL", "SOFTMAX", "FULLY_CONNECTED"} <= ops
    assert "DEQUANTIZE" not in ops  # every op integer


def test_report_records_parity(converted_dir):
    report = json.loads((converted_dir / "conversion.json").read_text())
    assert report["passed"] and report["failures"] == []
    by_format = {f["format"]: f for f in report["files"]}
    assert set(by_format) == set(FORMATS)
    assert by_format["float32"]["parity"]["max_abs_dprob"] < 1e-4
    int8 = by_format["int8"]["parity"]
    assert int8["agreement"] >= 0.9 and int8["accuracy_drop_points"] <= 1.0
    assert report["companion"]["parity"]["correlation"] >= 0.99
    assert report["edgetpu_partition"]["op_count"] > 0
    summary = (converted_dir / "summary.md").read_text()
    for fmt in FORMATS:
        assert f"edge_pcam_{fmt}.tflite" in summary
    assert "Edge TPU" in summary and "all gates passed" in summary


def test_metadata_and_inference_without_tensorflow(converted_dir, easy_data):
    """The device side reads every file's metadata and runs int8 with TensorFlow unimportable."""
    images = easy_data.split("valid").read(np.arange(4))
    np.save(converted_dir.parent / "four.npy", images)
    code = (
        "import sys, json, numpy as np\n"
        "sys.modules['tensorflow'] = None\n"
        "from edge_pcam.runtime.metadata import read_metadata\n"
        "from edge_pcam.runtime.interpreter import load_model\n"
        f"d = {str(converted_dir)!r}\n"
        "formats = [read_metadata(f'{d}/edge_pcam_{f}.tflite')['format'] for f in "
        "('float32', 'float16', 'dynamic', 'int8')]\n"
        "m = load_model(f'{d}/edge_pcam_int8.tflite')\n"
        f"p = m.predict(np.load({str(converted_dir.parent / 'four.npy')!r}))\n"
        "print(json.dumps({'formats': formats, 'probs': p.tolist(), 'tf': 'tensorflow.python' in sys.modules}))\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["formats"] == list(FORMATS) and out["tf"] is False
    assert len(out["probs"]) == 4 and all(0.0 <= p <= 1.0 for p in out["probs"])


def test_gate_fails_deliberately_and_puts_the_file_aside(tiny_model_h5, easy_data, tmp_path, monkeypatch):
    """A broken int8 conversion (its logit negated) must fail the gate and never be deployable."""
    import tf_keras as keras

    from edge_pcam.export import tflite
    from edge_pcam.export.conversion import convert

    real = tflite.convert_model

    def broken(model, fmt, **kwargs):
        flipped = keras.models.clone_model(model)
        flipped.set_weights(model.get_weights())
        logit = flipped.get_layer("logit")
        logit.set_weights([-w for w in logit.get_weights()])
        return real(flipped, fmt, **kwargs)

    monkeypatch.setattr(tflite, "convert_model", broken)
    result = convert(tiny_model_h5, tmp_path, easy_data, formats=["int8"], companion=False, representative=32)
    assert len(result.failures) == 1
    assert "points below Keras" in result.failures[0] and "edge_pcam_int8.rejected.tflite" in result.failures[0]
    assert not (tmp_path / "edge_pcam_int8.tflite").exists()
    rejected = tmp_path / "edge_pcam_int8.rejected.tflite"
    assert rejected.is_file() and read_metadata(rejected)["parity"]["passed"] is False
    report = json.loads((tmp_path / "conversion.json").read_text())
    assert report["passed"] is False and report["files"][0]["accepted"] is False
    assert "FAILED" in (tmp_path / "summary.md").read_text()
    with pytest.raises(EdgePcamError, match="points below Keras"):
        result.raise_for_failures()
    assert not [p for p in tmp_path.iterdir() if "partial" in p.name]


def test_batched_variant_for_scanning(tiny_model_h5, easy_data, tmp_path):
    from edge_pcam.export.conversion import convert
    from edge_pcam.runtime.interpreter import load_model

    result = convert(tiny_model_h5, tmp_path, easy_data, formats=["int8"], companion=False, representative=32,
                     batch=4, limit=10)
    result.raise_for_failures()
    path = tmp_path / "edge_pcam_int8_b4.tflite"
    meta = read_metadata(path)
    assert meta["batch"] == 4 and meta["input"]["shape"] == [4, 96, 96, 3]
    assert meta["validation"]["n"] == 10
    model = load_model(path)
    assert model.batch == 4
    images = easy_data.split("valid").read(np.arange(6))
    probs = model.predict(images)  # one full batch, one padded
    assert probs.shape == (6,)
    np.testing.assert_allclose(probs, np.r_[model.predict(images[:4]), model.predict(images[4:])])


def test_qat_model_converts_the_same_way(tiny_qat_h5, easy_data, tmp_path):
    from edge_pcam.export.conversion import convert

    result = convert(tiny_qat_h5, tmp_path, easy_data, formats=["int8"], representative=32)
    result.raise_for_failures()
    meta = read_metadata(tmp_path / "edge_pcam_int8.tflite")
    assert meta["source"] == "qat"
    assert meta["input"]["dtype"] == "uint8" and meta["input"]["scale"] == pytest.approx(1 / 255, rel=1e-6)
    assert meta["parity"]["agreement"] >= 0.95
    assert result.companion.accepted and result.companion.parity["correlation"] >= 0.99
    assert read_metadata(tmp_path / "edge_pcam_gradcam.tflite")["source"] == "qat"


def test_thresholds_chosen_on_a_tuning_set_carved_from_train(tiny_model_h5, easy_data, tmp_path):
    from edge_pcam.export.conversion import convert
    from edge_pcam.runtime.interpreter import load_model
    from edge_pcam.runtime.metrics import binary_metrics, choose_thresholds
    from edge_pcam.training.splits import carve_tuning

    result = convert(tiny_model_h5, tmp_path, easy_data, formats=["float32", "int8"], companion=False,
                     representative=32, tune_from_train=60)
    result.raise_for_failures()
    _, tuning = carve_tuning(easy_data.split("train"), 60, 0)  # the patches `edge-pcam train` would carve
    valid = easy_data.split("valid")
    for fmt in ("float32", "int8"):
        path = tmp_path / f"edge_pcam_{fmt}.tflite"
        meta, model = read_metadata(path), load_model(path)
        expected = choose_thresholds(tuning.labels, model.predict(tuning.read(np.arange(len(tuning)))))
        assert meta["thresholds"] == pytest.approx(expected)
        assert meta["validation"]["thresholds_from"] == {"split": "tuning", "carved_from": "train", "n": 60, "seed": 0}
        valid_probs = model.predict(valid.read(np.arange(len(valid))))
        triage = binary_metrics(valid.labels, valid_probs, expected["triage"])
        assert meta["metrics"]["triage"]["n"] == len(valid)
        assert meta["metrics"]["triage"]["recall"] == pytest.approx(triage["recall"])
    assert "60 tuning patches carved from the train split" in (tmp_path / "summary.md").read_text()
    with pytest.raises(DataError, match="tune_from_train"):
        convert(tiny_model_h5, tmp_path / "x", easy_data, formats=["float32"], tune_from_train=10_000)
    assert not (tmp_path / "x").exists()


def test_bad_input_raises_before_writing(tiny_model_h5, easy_data, tmp_path):
    import tf_keras as keras

    from edge_pcam.export.conversion import convert
    from edge_pcam.runtime.datasets.base import ArraySplit, PatchDataset

    other = tmp_path / "other.h5"
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, name="dense")]).save(other, save_format="h5")
    with pytest.raises(ModelFileError, match="not an edge-pcam model"):
        convert(other, tmp_path / "a", easy_data, formats=["float32"])
    with pytest.raises(ModelFileError, match="no such model file"):
        convert(tmp_path / "missing.h5", tmp_path / "b", easy_data, formats=["float32"])

    empty_train = PatchDataset("empty-train", "synthetic", {
        "train": ArraySplit("train", np.zeros((0, 96, 96, 3), np.uint8), np.zeros(0, np.uint8)),
        "valid": easy_data.split("valid")})
    with pytest.raises(DataError, match="empty"):
        convert(tiny_model_h5, tmp_path / "c", empty_train, formats=["int8"])
    no_train = PatchDataset("valid-only", "synthetic", {"valid": easy_data.split("valid")})
    with pytest.raises(DataError, match="no 'train' split"):
        convert(tiny_model_h5, tmp_path / "d", no_train, formats=["int8"])

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(EdgePcamError, match="cannot write the output folder"):
        convert(tiny_model_h5, blocker / "out", easy_data, formats=["float32"])
    with pytest.raises(EdgePcamError, match="unknown format 'int4'"):
        convert(tiny_model_h5, tmp_path / "e", easy_data, formats=["int4"])
    for name in "abcde":
        assert not (tmp_path / name).exists() or not any((tmp_path / name).iterdir())


def test_parity_compare_both_ways():
    from edge_pcam.export.parity import compare

    labels = np.array([0, 0, 1, 1] * 25)
    keras_probs = np.where(labels == 1, 0.9, 0.1)
    ok = compare("float32", labels, keras_probs, keras_probs + 5e-5)
    assert ok.passed and ok.max_abs_dprob == pytest.approx(5e-5)
    bad = compare("float32", labels, keras_probs, keras_probs + 2e-4)
    assert not bad.passed and "2.00e-04" in bad.reason
    flipped = keras_probs.copy()
    flipped[:2] = 0.9  # two normals now called tumour: 2 points of accuracy lost
    assert compare("int8", labels, keras_probs, flipped, max_drop=2.0).passed
    failed = compare("int8", labels, keras_probs, flipped, max_drop=1.0)
    assert not failed.passed and failed.accuracy_drop_points == pytest.approx(2.0)
    assert failed.agreement == pytest.approx(0.98)


def test_int8_is_settled_measured_as_written_and_described_for_tflite_tools(converted_dir, easy_data):
    import io
    import zipfile

    from edge_pcam.export.tflite_metadata import read_tflite_metadata
    from edge_pcam.runtime.flatbuffer import signatures

    sys.path.insert(0, str(Path(__file__).resolve().parent / "runtime"))
    from test_upgrade import matmul_operand_zero_points

    path = converted_dir / "edge_pcam_int8.tflite"
    data = path.read_bytes()
    flatbuffer = model_bytes(data)
    assert matmul_operand_zero_points(flatbuffer) == [0, 0]  # K/V symmetric in the bytes written
    meta = read_metadata(path)
    assert meta["validation"]["runtime"].startswith("ai-edge-litert ")
    oc = meta["operating_characteristics"]
    valid = easy_data.split("valid")
    assert oc["split"] == "valid" and oc["n_positive"] == int(valid.labels.sum())
    assert oc["n_positive"] + oc["n_negative"] == meta["validation"]["n"]
    for name, point in oc["points"].items():
        m = meta["metrics"][name]
        assert point == {"threshold": m["threshold"], "tp": m["tp"], "fn": m["fn"], "fp": m["fp"], "tn": m["tn"]}

    tflite = read_tflite_metadata(flatbuffer)
    assert tflite["name"] == "edge-pcam int8 patch classifier" and tflite["license"] == "Apache-2.0"
    assert tflite["author"] == "edge-pcam contributors" and tiny_model_version_ok(tflite["version"])
    assert tflite["min_parser_version"] == "1.0.0"
    (image,) = tflite["inputs"]
    assert image["name"] == "image" and image["content"] == "image" and image["normalization"] == (0.0, 255.0)
    names = signatures(flatbuffer)["serving_default"]["outputs"]
    from edge_pcam.runtime.flatbuffer import Table
    order = Table.root(flatbuffer).tables(2)[0].ints(2)
    assert [t["name"] for t in tflite["outputs"]] == [next(k for k, v in names.items() if v == i) for i in order]
    probability = next(t for t in tflite["outputs"] if t["name"] == "probability")
    assert probability["associated_files"] == [{"name": "labels.txt", "type": 2}]  # TENSOR_AXIS_LABELS
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.read("labels.txt") == b"tumour\n"
        assert all(i.compress_type == zipfile.ZIP_STORED for i in zf.infolist())  # TFLite's extractor needs it
    companion = read_tflite_metadata(model_bytes((converted_dir / "edge_pcam_gradcam.tflite").read_bytes()))
    assert companion["name"] == "edge-pcam Grad-CAM companion"
    assert [t["name"] for t in companion["inputs"]] == ["features"]


def tiny_model_version_ok(version: str) -> bool:
    return version.startswith("edge-pcam ") and "from tiny.h5 (sha256 " in version
