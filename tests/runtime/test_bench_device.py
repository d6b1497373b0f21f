"""`edge-pcam bench` where TensorFlow is absent, device profiles and references, and model discovery.

The bench command runs in a process where TensorFlow cannot be imported (the
TF-free venv, or the workstation venv with TensorFlow masked in sys.modules): the .tflite rows
run, the Keras row stays in the report as skipped with the reason.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import h5py
import numpy as np
import pytest

from edge_pcam.bench.discover import describe_file, find_models
from edge_pcam.bench.reference import compare_with_reference, known_devices, read_reference, verdict
from edge_pcam.errors import EdgePcamError

REPO = Path(__file__).resolve().parents[2]
FIXTURE_MODELS = REPO / "tests" / "fixtures" / "models"
DEVICES = ("raspberry-pi-4", "raspberry-pi-5", "coral-usb", "coral-dev-board")
# Multiply-accumulates of the design's model per patch, counted by hand (SPEC: about 0.3775 GMAC):
# conv1 96^2*27*64 + conv2 48^2*576*128 + conv3 24^2*1152*256 + q, k, v 3*144*256*128
# + scores and context 2*144*144*128 + o 144*128*128 + fc 128*64 + logit 64
DESIGN_MACS = (96**2 * 27 * 64 + 48**2 * 576 * 128 + 24**2 * 1152 * 256 + 3 * 144 * 256 * 128
               + 2 * 144 * 144 * 128 + 144 * 128 * 128 + 128 * 64 + 64)

NO_TF_BENCH = r"""
import sys
for name in ("tensorflow", "tf_keras", "keras"):  # as if not installed: import fails, find_spec gives None
    sys.modules[name] = None
from edge_pcam.cli import main
sys.argv = ["edge-pcam", "bench"] + sys.argv[1:]
main()
"""


def _keras_h5(path: Path, layer_names: list[str]) -> Path:
    """An .h5 file carrying a Keras model config, as Keras writes it (no TensorFlow needed)."""
    config = {"class_name": "Functional", "config": {"layers": [
        {"class_name": "QuantizeWrapperV2" if n.startswith("quant_") else "Dense", "name": n, "config": {"name": n}}
        for n in layer_names]}}
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps(config)
    return path


def test_bench_runs_without_tensorflow(tmp_path):
    models = tmp_path / "models"
    shutil.copytree(FIXTURE_MODELS, models)
    (models / "truncated.tflite").write_bytes((models / "tiny_int8.tflite").read_bytes()[:300])
    out = tmp_path / "report"
    args = ["--models", str(models), "--data", "synthetic:300:1", "--out", str(out), "--threads", "1",
            "--budget", "0.05", "--no-peak", "--device", "raspberry-pi-4"]
    proc = subprocess.run([sys.executable, "-c", NO_TF_BENCH, *args], capture_output=True, text=True,
                          timeout=300, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads((out / "report.json").read_text())
    md = (out / "report.md").read_text()
    rows = {(Path(r["file"]).name, r["runtime"]): r for r in data["rows"]}

    keras = [r for r in data["rows"] if r["format"] == "keras-float"]
    assert len(keras) == 1 and keras[0]["status"] == "skipped" and "TensorFlow is not installed" in keras[0]["reason"]
    assert keras[0]["reason"] in md
    broken = rows[("truncated.tflite", "n/a")]
    assert broken["status"] == "failed" and "truncated.tflite" in broken["reason"]
    int8 = [r for r in data["rows"] if r["format"] == "int8"]
    assert int8 and all(r["status"] == "ok" for r in int8)
    assert {r["runtime"] for r in int8} <= {"ai-edge-litert", "tflite-runtime"}
    from edge_pcam.runtime.datasets import open_dataset
    from edge_pcam.runtime.interpreter import load_model
    split = open_dataset("synthetic:300:1").split(data["data"]["split"])
    assert data["data"]["n"] == len(split)
    for r in int8:
        # accuracy of the same file on the same patches, counted here
        probs = load_model(Path(r["file"]), runtime=r["runtime"]).predict(split.read(np.arange(len(split))))
        assert r["metrics"]["accuracy"] == pytest.approx(np.mean((probs >= 0.5) == (split.labels == 1)), abs=1e-9)
        assert r["latency"]["1"]["runs"] >= 20
        assert r["cold_start"]["peak_rss_mb"] > 20  # a Python process with numpy and an interpreter loaded
        assert r["macs"] == DESIGN_MACS
    assert [Path(p).name for p in data["companions"]] == ["tiny_gradcam.tflite"]
    assert data["peak"] is None and data["goals"]["vs_keras"]["met"] is None
    assert "not measured" in data["goals"]["vs_keras"]["detail"]
    assert data["reference"]["checks"] and "±30%" in md
    if importlib.util.find_spec("matplotlib") is not None:  # .venv: plots; the TF-free venv has no matplotlib
        assert data["plots"]["files"] and all((out / name).is_file() for name in data["plots"]["files"])
    else:
        assert not data["plots"]["files"]
        assert "matplotlib" in data["plots"]["reason"] and "Plots not written" in md


@pytest.mark.parametrize("device", DEVICES)
def test_device_folder_is_complete(device):
    folder = REPO / "devices" / device
    profile = tomllib.loads((folder / "profile.toml").read_text())
    assert {"device", "os", "runtime"} <= set(profile)
    assert profile["os"]["python"] and profile["runtime"]["delegate"]
    setup = folder / "setup.sh"
    assert os.access(setup, os.X_OK) and "tensorflow" not in setup.read_text().lower().replace("no tensorflow", "")
    assert (folder / "README.md").read_text().strip()
    lines = read_reference(folder / "reference.csv")
    assert lines and all(line.status == "estimate" and line.source and line.ms > 0 for line in lines)
    if device.startswith("coral"):
        assert "edgetpu" in {line.model for line in lines}
        assert "libedgetpu" in setup.read_text()
    assert device in known_devices()


def test_reference_csv_is_pycoral_style_with_sources():
    with open(REPO / "devices" / "raspberry-pi-4" / "reference.csv", newline="") as f:
        header = next(csv.reader(f))
    assert header[:2] == ["MODEL", "INFERENCE_TIME"] and "SOURCE" in header


def test_verdict_is_thirty_percent_either_way():
    assert verdict(12.9, 10) == "within ±30%" and verdict(7.1, 10) == "within ±30%"
    assert verdict(13.1, 10) == "slower" and verdict(6.9, 10) == "faster"


def test_compare_with_reference_matches_format_and_threads(tmp_path):
    ref = tmp_path / "reference.csv"
    ref.write_text("MODEL,INFERENCE_TIME,THREADS,RUNTIME,STATUS,SOURCE\n"
                   "int8,20,4,ai-edge-litert,estimate,scaled\nfloat32,50,4,ai-edge-litert,estimate,scaled\n")
    row = {"status": "ok", "format": "int8", "batch": 1, "label": "TFLite int8", "runtime": "ai-edge-litert",
           "latency": {"4": {"p50_ms": 30.0}, "1": {"p50_ms": 60.0}}}
    checks = compare_with_reference([row], ref)["checks"]
    int8 = next(c for c in checks if c["model"] == "int8")
    assert int8["measured_ms"] == 30.0 and int8["ratio"] == pytest.approx(1.5) and int8["verdict"] == "slower"
    assert next(c for c in checks if c["model"] == "float32")["verdict"].startswith("not measured")
    with pytest.raises(EdgePcamError, match="no such device profile"):
        compare_with_reference([row], "toaster")
    bad = tmp_path / "bad.csv"
    bad.write_text("MODEL,INFERENCE_TIME\nint8,3\n")
    with pytest.raises(EdgePcamError, match="lacks the column"):
        read_reference(bad)


def test_discovery_reads_metadata_not_names(tmp_path):
    shutil.copy(FIXTURE_MODELS / "tiny_int8.tflite", tmp_path / "float32_model.tflite")  # a misleading name
    shutil.copy(FIXTURE_MODELS / "tiny_gradcam.tflite", tmp_path / "x.tflite")
    _keras_h5(tmp_path / "int8.h5", ["conv1", "pool3", "logit"])
    _keras_h5(tmp_path / "b.h5", ["quant_conv1", "quant_logit"])
    with h5py.File(tmp_path / "data.h5", "w") as f:
        f["x"] = [1, 2, 3]
    (tmp_path / "notes.txt").write_text("ignored")
    candidates, companions = find_models(tmp_path)
    by_name = {c.path.name: c for c in candidates}
    assert by_name["float32_model.tflite"].format == "int8"
    assert by_name["int8.h5"].format == "keras-float" and by_name["b.h5"].format == "keras-qat"
    assert by_name["data.h5"].problem and "without a Keras model" in by_name["data.h5"].problem
    assert [p.name for p in companions] == ["x.tflite"]
    assert [c.format for c in candidates][:2] == ["keras-float", "keras-qat"]  # report order, not file order
    shutil.copy(FIXTURE_MODELS / "tiny_int8.tflite", tmp_path / "again.tflite")
    labels = [c.label for c in find_models(tmp_path)[0]]
    assert len(labels) == len(set(labels)) and any("again.tflite" in label for label in labels)
    text = tmp_path / "fake.tflite"
    text.write_text("not a model")
    assert describe_file(text).problem
