"""`edge-pcam bench` on a tiny model in every format this machine can make: a report is written, rows that
cannot run stay in it with their reason, and report.json has every field."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

pytestmark = pytest.mark.tf

DATA = "synthetic:400:3"  # test split: 40 patches of both classes
CONV_FILTERS = 4


def _tiny_keras():
    import tf_keras as keras

    x = keras.Input((96, 96, 3))
    # (not a strided 'same' convolution: tf.lite 2.21's XNNPACK returns a constant 0.5 for a 3x3, stride-4,
    # 'same' Conv2D here, while ai-edge-litert and Keras agree)
    h = keras.layers.Conv2D(CONV_FILTERS, 3, padding="same", activation="relu")(x)
    h = keras.layers.MaxPooling2D(4)(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    p = keras.layers.Dense(1, activation="sigmoid")(h)
    return keras.Model(x, p)


def _convert(model, mode: str) -> bytes:
    import tensorflow as tf

    fn = tf.function(lambda image: {"probability": model(image, training=False)},  # edge-pcam's signature names
                     input_signature=[tf.TensorSpec([1, 96, 96, 3], tf.float32, name="image")])
    converter = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], model)
    if mode == "int8":
        rng = np.random.default_rng(0)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([rng.uniform(0, 1, (1, 96, 96, 3)).astype(np.float32)]
                                                    for _ in range(8))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.uint8
    return converter.convert()


def _meta(fmt: str, source: str) -> dict:
    counts = {"tp": 1, "fn": 1, "fp": 1, "tn": 1}
    dtype = "uint8" if fmt in ("int8", "edgetpu") else "float32"
    return {"format": fmt, "source": source, "batch": 1, "labels": ["normal", "tumour"],
            "input": {"shape": [1, 96, 96, 3], "dtype": dtype},
            "outputs": {"probability": {"shape": [1, 1], "dtype": dtype}},
            "thresholds": {"decision": 0.5, "triage": 0.3, "high_specificity": 0.9},
            "operating_characteristics": {"split": "valid", "description": "made up for the test", "n_positive": 2,
                                          "n_negative": 2, "points": {"decision": {"threshold": 0.5, **counts}}}}


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    """float32 and int8 .tflite + Keras .h5 of a tiny model, a broken .tflite, an 'edgetpu' file
    (no Edge TPU here) and a Grad-CAM companion (not a classifier). Names say nothing of the format."""
    from edge_pcam.runtime.metadata import with_metadata

    folder = tmp_path_factory.mktemp("models")
    model = _tiny_keras()
    model.save(folder / "a.h5")
    float_bytes, int8_bytes = _convert(model, "float32"), _convert(model, "int8")
    (folder / "b.tflite").write_bytes(with_metadata(float_bytes, _meta("float32", "float")))
    (folder / "c.tflite").write_bytes(with_metadata(int8_bytes, _meta("int8", "ptq")))
    (folder / "d.tflite").write_bytes(with_metadata(int8_bytes, _meta("edgetpu", "ptq")))
    (folder / "e.tflite").write_bytes(with_metadata(float_bytes, {**_meta("gradcam", "float")}))
    (folder / "f.tflite").write_bytes(int8_bytes[:200])  # truncated: no metadata, not loadable
    return folder


@pytest.fixture(scope="module")
def report(models, tmp_path_factory) -> tuple[Path, dict, str]:
    from edge_pcam.cli import app

    out = tmp_path_factory.mktemp("report")
    result = CliRunner().invoke(app, [
        "bench", "--models", str(models), "--data", DATA, "--out", str(out), "--threads", "1,4",
        "--runtimes", "ai-edge-litert,ai-edge-litert-raw,tflite-runtime,tf.lite", "--budget", "0.05",
        "--device", "raspberry-pi-4",
        "--no-peak"])
    assert result.exit_code == 0, result.output
    return out, json.loads((out / "report.json").read_text()), (out / "report.md").read_text()


def _rows(data: dict, **match) -> list[dict]:
    return [r for r in data["rows"] if all(r[k] == v for k, v in match.items())]


def test_report_files_are_written(report):
    out, _, md = report
    for name in ("report.md", "report.json", "machine.json", "latency_vs_accuracy.png", "roc_curves.png"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "roc_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert md.count("\n| ") >= 8


def test_formats_come_from_metadata_and_every_runtime_has_a_row(report, models):
    _, data, _ = report
    by_file = {Path(r["file"]).name: r["format"] for r in data["rows"]}
    assert by_file["a.h5"] == "keras-float"
    assert by_file["b.tflite"] == "float32" and by_file["c.tflite"] == "int8" and by_file["d.tflite"] == "edgetpu"
    assert [Path(p).name for p in data["companions"]] == ["e.tflite"]
    assert {r["runtime"] for r in _rows(data, format="int8")} == {"ai-edge-litert", "ai-edge-litert-raw",
                                                                  "tflite-runtime", "tf.lite"}
    assert len(_rows(data, format="keras-float")) == 1


def test_rows_that_cannot_run_say_why(report):
    _, data, md = report
    broken = _rows(data, format="unknown")
    assert broken and all(r["status"] == "failed" and "f.tflite" in r["reason"] for r in broken)
    tpu = _rows(data, format="edgetpu", runtime="ai-edge-litert")[0]
    assert tpu["status"] == "skipped" and "Edge TPU" in tpu["reason"]
    missing = _rows(data, runtime="tflite-runtime")
    assert missing and all(r["status"] == "skipped" and "not installed" in r["reason"] for r in missing)
    assert "❌ failed [" in md and "➖ skipped [" in md
    assert tpu["reason"] in md and broken[0]["reason"] in md


def test_json_has_every_field(report):
    from edge_pcam.bench.runner import ROW_FIELDS

    _, data, _ = report
    for key in ("schema_version", "created", "command", "machine", "data", "settings", "peak", "rows", "goals",
                "paired", "reference", "plots", "duration_s", "companions"):
        assert key in data, key
    for key in ("cpu", "cores", "memory_gb", "os", "python", "packages"):
        assert data["machine"][key] is not None, key
    assert data["machine"]["packages"]["tensorflow"]
    for row in data["rows"]:
        assert set(ROW_FIELDS) <= set(row), set(ROW_FIELDS) - set(row)
    ok = _rows(data, status="ok")
    assert {(r["format"], r["runtime"]) for r in ok} >= {("keras-float", "keras"), ("float32", "ai-edge-litert"),
                                                           ("int8", "ai-edge-litert"), ("int8", "tf.lite")}
    for row in ok:
        m = row["metrics"]
        assert m["n"] == data["data"]["n"]
        assert set(row["operating_points"]) == {"decision", "triage", "high_specificity"}
        assert len(row["roc"]["fpr"]) == len(row["roc"]["tpr"]) >= 2
        # measurements: no value to expect, but a Python process with an interpreter loaded holds more
        # than 20 MB, and the summary figures come from the fastest thread count's latency
        assert row["cold_start"]["seconds"] > 0 and row["cold_start"]["peak_rss_mb"] > 20
        best = min(row["latency"].values(), key=lambda lat: lat["p50_ms"])
        assert row["ms_per_patch"] == pytest.approx(best["p50_ms"] / best["batch"])
        assert row["patches_per_s"] == pytest.approx(best["batch"] * 1000.0 / best["mean_ms"])
        for lat in row["latency"].values():
            assert lat["runs"] >= 20 and lat["p50_ms"] <= lat["p95_ms"] and len(lat["samples_ms"]) == lat["runs"]
        if row["runtime"] != "keras":
            assert set(row["latency"]) == {"1", "4"}


def _accuracy_and_auc(labels: np.ndarray, probs: np.ndarray) -> tuple[float, float]:
    """By counting: accuracy at 0.5 and AUC as the share of (tumour, normal) pairs ranked right (ties 1/2)."""
    pos, neg = probs[labels == 1], probs[labels == 0]
    auc = np.mean((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :]))
    return float(np.mean((probs >= 0.5) == (labels == 1))), float(auc)


def test_metrics_match_predictions_made_here(report, models):
    """Each row's accuracy and AUC equal those of the same file run here, counted here."""
    from edge_pcam.runtime.datasets import open_dataset
    from edge_pcam.runtime.interpreter import load_model
    from edge_pcam.training.modelio import load_model as load_keras

    _, data, _ = report
    split = open_dataset(DATA).split(data["data"]["split"])
    images = split.read(np.arange(len(split)))
    assert data["data"]["n"] == len(split)
    keras_probs = load_keras(models / "a.h5")(images.astype(np.float32) / 255.0, training=False).numpy().ravel()
    expected = {"keras": _accuracy_and_auc(split.labels, keras_probs)}
    for name, runtime in (("b.tflite", "litert"), ("c.tflite", "litert"), ("c.tflite", "tf")):
        expected[name, runtime] = _accuracy_and_auc(split.labels, load_model(models / name, runtime=runtime)
                                                    .predict(images))
    rows = {"keras": _rows(data, format="keras-float")[0], ("b.tflite", "litert"): _rows(data, format="float32",
            runtime="ai-edge-litert")[0], ("c.tflite", "litert"): _rows(data, format="int8", runtime="ai-edge-litert")[0],
            ("c.tflite", "tf"): _rows(data, format="int8", runtime="tf.lite")[0]}
    for key, row in rows.items():
        accuracy, auc = expected[key]
        assert row["metrics"]["accuracy"] == pytest.approx(accuracy, abs=1e-9), key
        assert row["metrics"]["auc"] == pytest.approx(auc, abs=1e-6), key


def test_accuracy_agrees_across_runtimes_and_macs_are_counted(report):
    _, data, _ = report
    int8 = {r["runtime"]: r["metrics"] for r in _rows(data, format="int8", status="ok")}
    assert int8["ai-edge-litert-raw"] == int8["ai-edge-litert"]  # the same file, the same numbers
    float_rows = _rows(data, format="float32", status="ok") + _rows(data, format="keras-float", status="ok")
    aucs = {round(r["metrics"]["auc"], 4) for r in float_rows}
    assert len(aucs) == 1, aucs  # the same float model gives the same ranking everywhere
    expected = 96 * 96 * CONV_FILTERS * 3 * 3 * 3 + CONV_FILTERS  # conv + Dense(1)
    for row in _rows(data, format="int8", status="ok"):
        assert row["macs"] == expected


def test_goals_and_device_reference(report):
    _, data, md = report
    goals = data["goals"]
    paired = data["paired"]
    assert set(paired["p50_ms"]) == {"int8", "tf.lite", "keras", "ai-edge-litert-raw"}
    assert all(len(v) == paired["rounds"] * paired["calls"] for v in paired["samples_ms"].values())
    assert goals["vs_keras"]["value"] == pytest.approx(paired["p50_ms"]["keras"] / paired["p50_ms"]["int8"])
    # the documented goals: int8 at least 15x faster than Keras, and no slower than tf.lite
    assert goals["vs_keras"]["target"] == 15.0 and goals["vs_tf_lite"]["target"] == 1.0
    assert goals["vs_keras"]["met"] is (goals["vs_keras"]["value"] >= 15.0)
    assert goals["vs_tf_lite"]["value"] == pytest.approx(paired["p50_ms"]["tf.lite"] / paired["p50_ms"]["int8"])
    assert goals["vs_tf_lite"]["met"] is (goals["vs_tf_lite"]["value"] >= 1.0)
    raw = goals["vs_raw_litert"]  # the file opened raw in ai-edge-litert, next to edge-pcam's runtime
    assert raw["value"] == pytest.approx(paired["p50_ms"]["int8"] / paired["p50_ms"]["ai-edge-litert-raw"])
    assert raw["target"] == 0.95 and raw["met"] is (raw["value"] >= 0.95)
    assert "raw ai-edge-litert vs edge-pcam" in md
    assert goals["fraction_of_int8_limit"]["value"] is None  # --no-peak
    assert goals["fraction_of_int8_limit"]["met"] is None and "not measured" in goals["fraction_of_int8_limit"]["detail"]
    assert goals["cold_start_and_memory"]["tensorflow"]["peak_rss_mb"] > 100  # importing TensorFlow alone takes more
    checks = data["reference"]["checks"]
    assert {c["model"] for c in checks} == {"float32", "float16", "dynamic", "int8"}
    measured = [c for c in checks if c["measured_ms"] is not None]
    assert measured and all(c["verdict"] in ("within ±30%", "slower", "faster") for c in measured)
    assert all("not measured" in c["verdict"] for c in checks if c["model"] in ("float16", "dynamic"))
    assert "## Performance goals" in md and "## Against the `raspberry-pi-4` reference" in md


def test_peak_probe_counts_its_macs(tmp_path):
    from edge_pcam.bench.peak import build_fc_probe, measure_peak

    probe = build_fc_probe(tmp_path / "probe.tflite", rows=8, depth=64, width=32)
    peak = measure_peak(probe, threads=1, rounds=2, invokes=3)
    assert peak["macs_per_invoke"] == 8 * 64 * 32
    assert peak["ops"] == ["FULLY_CONNECTED"] and peak["gmac_per_s"] > 0  # a rate: no value to expect


def test_bad_arguments_are_one_line_errors(models, tmp_path):
    from edge_pcam.cli import app

    runner = CliRunner()
    for args, text in ((["--threads", "0"], "--threads"), (["--runtimes", "onnx"], "unknown runtime"),
                       (["--device", "toaster"], "no such device profile")):
        result = runner.invoke(app, ["bench", "--models", str(models), "--data", DATA, "--out", str(tmp_path),
                                     "--no-cold-start", "--no-peak", "--budget", "0", *args])
        assert result.exit_code != 0 and text in str(result.exception), args


def test_a_report_rewritten_without_plots_leaves_none_of_the_earlier_ones(report, tmp_path):
    from edge_pcam.bench.report import write_report

    out, data, _ = report
    folder = tmp_path / "again"
    shutil.copytree(out, folder)
    for row in data["rows"]:
        row.update(status="failed", reason="planted: nothing ran this time")
    write_report(data, folder)
    assert sorted(p.name for p in folder.iterdir()) == ["machine.json", "report.json", "report.md"]
    assert json.loads((folder / "report.json").read_text())["plots"] == {"files": [], "reason": "no row ran"}
