"""The device side imports and runs with TensorFlow absent.

In .venv (TensorFlow installed) a subprocess blocks `tensorflow`, `tf_keras`
and `tensorflow_model_optimization` with a meta-path finder, imports every
runtime module and runs `edge-pcam predict` and `gradcam`. In the TF-free venv
(EDGE_PCAM_EXPECT_NO_TF=1, `make test-device`) it also checks that TensorFlow
really is not importable there.
"""

from __future__ import annotations

import importlib.util
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import edge_pcam.runtime

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
BLOCKED = ("tensorflow", "tf_keras", "tensorflow_model_optimization", "keras")

PROGRAM = r"""
import importlib, importlib.abc, pkgutil, sys
BLOCKED = {blocked!r}

class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"blocked for this test: {{name}}")
        return None

sys.meta_path.insert(0, Blocker())
import edge_pcam.runtime
for mod in pkgutil.walk_packages(edge_pcam.runtime.__path__, "edge_pcam.runtime."):
    importlib.import_module(mod.name)
import edge_pcam.cli
loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
assert not loaded, loaded
sys.argv = ["edge-pcam", *sys.argv[1:]]
try:
    edge_pcam.cli.main()
except SystemExit as exc:
    if exc.code:
        raise
loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
assert not loaded, loaded
print("NO-TF-OK")
"""


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PROGRAM.format(blocked=BLOCKED), *args],
                          capture_output=True, text=True, timeout=120)


def test_runtime_and_cli_run_with_tensorflow_blocked(tmp_path):
    model = str(FIXTURES / "models" / "tiny_int8.tflite")
    proc = _run("predict", str(FIXTURES / "patches"), "--model", model)
    assert proc.returncode == 0 and "NO-TF-OK" in proc.stdout, proc.stderr
    assert proc.stdout.startswith("path,probability,prediction")
    proc = _run("gradcam", str(FIXTURES / "patches" / "pcam_sample_x.h5"), "--model", model,
                "--out", str(tmp_path / "cams"))
    assert proc.returncode == 0 and "NO-TF-OK" in proc.stdout, proc.stderr


def test_runtime_modules_never_import_the_workstation_side():
    for mod in pkgutil.walk_packages(edge_pcam.runtime.__path__, "edge_pcam.runtime."):
        source = Path(importlib.util.find_spec(mod.name).origin).read_text()
        for forbidden in ("edge_pcam.training", "edge_pcam.export", "edge_pcam.data.", "edge_pcam.model",
                          "edge_pcam.bench"):
            assert f"from {forbidden}" not in source and f"import {forbidden}" not in source, (mod.name, forbidden)


@pytest.mark.skipif(os.environ.get("EDGE_PCAM_EXPECT_NO_TF") != "1", reason="only in the TF-free venv")
def test_tensorflow_really_absent_in_the_device_venv():
    for name in ("tensorflow", "tf_keras", "tensorflow_model_optimization"):
        assert importlib.util.find_spec(name) is None, f"{name} is installed in the device venv"
        with pytest.raises(ImportError):
            __import__(name)
    import numpy
    assert int(numpy.__version__.split(".")[0]) < 2  # the tflite-runtime stack
    assert importlib.util.find_spec("tflite_runtime") is not None
