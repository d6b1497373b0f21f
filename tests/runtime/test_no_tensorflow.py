"""The device side imports and runs without TensorFlow, proven rather than assumed.

Two independent checks:
- behaviour: in a fresh interpreter with nothing blocked (in .venv TensorFlow is
  installed and importable), import every `edge_pcam.runtime` module, and run
  each device command (`predict`, `gradcam`, `scan`, `calibrate`, `info FILE`,
  `data info`) in a process of its own; afterwards no TensorFlow package may be
  in `sys.modules`. A blocker would hide an import that fails quietly behind a
  `try`; here any import of TensorFlow would load it and be seen.
- source: every runtime module's imports, found with the AST at any depth
  (inside functions, `try` blocks and `if` branches; relative imports resolved;
  `importlib.import_module("...")` and `__import__("...")` with a literal name)
  never reach TensorFlow or the workstation side.
In the TF-free venv (EDGE_PCAM_EXPECT_NO_TF=1, `make test-device`) a third test
checks that TensorFlow really is not importable there.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import edge_pcam.runtime

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
INT8 = FIXTURES / "models" / "tiny_int8.tflite"
RUNTIME_DIR = Path(edge_pcam.runtime.__file__).resolve().parent
TF_PACKAGES = ("tensorflow", "tf_keras", "tensorflow_model_optimization", "keras", "tensorflow_datasets")
WORKSTATION = ("edge_pcam.export", "edge_pcam.training", "edge_pcam.data", "edge_pcam.bench", "edge_pcam.model",
               "edge_pcam.demo")
# The one TensorFlow import the runtime may hold: `--runtime tf` runs a file with tf.lite's interpreter when a
# user asks for it (never by default), imported inside a function so the module loads without TensorFlow.
OPT_IN_TF = {"interpreter.py": "tensorflow"}

# Runs one device command (or only the imports) with nothing blocked, then reports what got loaded.
PROGRAM = r"""
import importlib, json, pkgutil, sys
TF = {tf!r}
if sys.argv[1] == "--import-all":
    import edge_pcam.runtime
    names = [m.name for m in pkgutil.walk_packages(edge_pcam.runtime.__path__, "edge_pcam.runtime.")]
    for name in names:
        importlib.import_module(name)
    code = 0
else:
    names = []
    import edge_pcam.cli
    sys.argv = ["edge-pcam", *sys.argv[1:]]
    try:
        edge_pcam.cli.main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
loaded = sorted(m for m in sys.modules if m.split(".")[0] in TF)
print("\nREPORT " + json.dumps({{"code": code, "imported": names, "loaded": loaded}}))
"""


def _run(*args: str, cwd: Path | None = None) -> dict:
    proc = subprocess.run([sys.executable, "-c", PROGRAM.format(tf=TF_PACKAGES), *args], capture_output=True,
                          text=True, timeout=300, cwd=cwd)
    assert "REPORT " in proc.stdout, f"{args}: {proc.stderr[-3000:]}"
    report = json.loads(proc.stdout.rsplit("REPORT ", 1)[1])
    assert proc.returncode == 0 and report["code"] == 0, f"{args}: {proc.stderr[-3000:]}"
    return report


def test_every_runtime_module_imports_without_loading_tensorflow():
    report = _run("--import-all")
    expected = {"edge_pcam.runtime." + ".".join(p.relative_to(RUNTIME_DIR).with_suffix("").parts)
                for p in RUNTIME_DIR.rglob("*.py") if p.name != "__init__.py"}
    assert expected <= set(report["imported"]), sorted(expected - set(report["imported"]))
    assert report["loaded"] == [], f"importing the runtime loaded {report['loaded']}"


@pytest.fixture(scope="module")
def slide(tmp_path_factory) -> Path:
    from edge_pcam.runtime.synthetic_slide import write_synthetic_slide
    return write_synthetic_slide(tmp_path_factory.mktemp("slide") / "small.tif", 1600, 1200, mpp=0.486,
                                 tissue=(200, 200, 1400, 1000), tumour=(600, 400, 1000, 800), tile=256).path


def _device_commands(tmp: Path, slide: Path) -> dict[str, list[str]]:
    model = str(INT8)
    return {
        "predict": ["predict", str(FIXTURES / "patches"), "--model", model],
        "gradcam": ["gradcam", str(FIXTURES / "patches" / "pcam_sample_x.h5"), "--model", model,
                    "--out", str(tmp / "cams")],
        "scan": ["scan", str(slide), "--out", str(tmp / "scan"), "--model", model],
        "calibrate": ["calibrate", model, "--data", "synthetic:200:3", "--out", str(tmp / "recalibrated.tflite")],
        "info FILE": ["info", model],
        "data info": ["data", "info", "synthetic:40"],
    }


@pytest.mark.parametrize("command", ["predict", "gradcam", "scan", "calibrate", "info FILE", "data info"])
def test_device_command_runs_without_loading_tensorflow(command, tmp_path, slide):
    args = _device_commands(tmp_path, slide)[command]
    report = _run(*args, cwd=tmp_path)
    assert report["loaded"] == [], f"`edge-pcam {' '.join(args[:2])}` loaded {report['loaded']}"


def imported_names(source: str, rel: str) -> list[tuple[int, str, bool]]:
    """(line, absolute module name, inside a function) of every import in the runtime module at `rel`
    (a path under edge_pcam/runtime/), at any depth."""
    parts = ["edge_pcam", "runtime", *Path(rel).with_suffix("").parts]
    package = ".".join(parts[:-1])  # a package's __init__ resolves relative imports against itself
    found: list[tuple[int, str, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend((child.lineno, alias.name, inner) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    parts = package.split(".")
                    anchor = ".".join(parts[:len(parts) - child.level + 1])
                    base = f"{anchor}.{base}" if base else anchor
                found.append((child.lineno, base, inner))
                # `from edge_pcam import export` imports a module too
                found.extend((child.lineno, f"{base}.{alias.name}", inner) for alias in child.names)
            elif isinstance(child, ast.Call) and child.args and isinstance(child.args[0], ast.Constant) \
                    and isinstance(child.args[0].value, str) and _is_import_call(child.func):
                found.append((child.lineno, child.args[0].value, inner))
            visit(child, inner)

    visit(ast.parse(source, rel), False)
    return found


def _is_import_call(func: ast.expr) -> bool:
    if isinstance(func, ast.Name):
        return func.id in ("__import__", "import_module")
    return isinstance(func, ast.Attribute) and func.attr == "import_module"


def forbidden_imports(source: str, rel: str) -> list[str]:
    """The imports of runtime module `rel` that reach TensorFlow or the workstation side (allowances applied)."""
    bad = []
    for line, name, in_function in imported_names(source, rel):
        top = name.split(".")[0]
        if top in TF_PACKAGES and not (in_function and OPT_IN_TF.get(rel) == name):
            bad.append(f"{rel}:{line} imports {name}")
        elif any(name == w or name.startswith(w + ".") for w in WORKSTATION):
            bad.append(f"{rel}:{line} imports {name}")
    return bad


def test_runtime_sources_never_import_tensorflow_or_the_workstation_side():
    files = sorted(RUNTIME_DIR.rglob("*.py"))
    assert len(files) > 20
    problems = []
    for path in files:
        problems += forbidden_imports(path.read_text(encoding="utf-8"), path.relative_to(RUNTIME_DIR).as_posix())
    assert problems == [], "\n".join(problems)


def test_the_import_check_sees_hidden_imports():
    """The AST check catches what a substring search misses: imports inside functions and try blocks,
    relative imports, aliased and dynamic ones."""
    cases = {
        "def f():\n    try:\n        import tensorflow as t\n    except ImportError:\n        pass\n": "tensorflow",
        "if False:\n    from tensorflow.python import keras\n": "tensorflow.python",
        "from ...export import parity\n": "edge_pcam.export.parity",
        "from ... import training\n": "edge_pcam.training",
        "from edge_pcam import bench as b\n": "edge_pcam.bench",
        "import importlib\ndef g():\n    return importlib.import_module('tf_keras')\n": "tf_keras",
        "def h():\n    import tensorflow_model_optimization\n": "tensorflow_model_optimization",
    }
    for source, name in cases.items():
        assert any(p.endswith(f"imports {name}") for p in forbidden_imports(source, "datasets/probe.py")), source
    allowed = "from edge_pcam.runtime.metrics import roc_auc\nfrom . import base\nfrom ..cam import upsample_cam\n"
    assert forbidden_imports(allowed, "datasets/probe.py") == []
    assert [n for _, n, _ in imported_names(allowed, "datasets/probe.py")][2:] == [
        "edge_pcam.runtime.datasets", "edge_pcam.runtime.datasets.base", "edge_pcam.runtime.cam",
        "edge_pcam.runtime.cam.upsample_cam"]
    # tf.lite is allowed only where a user opts in, and only inside a function
    assert forbidden_imports("def backend():\n    import tensorflow as pkg\n", "interpreter.py") == []
    assert forbidden_imports("import tensorflow\n", "interpreter.py") == ["interpreter.py:1 imports tensorflow"]


@pytest.mark.skipif(os.environ.get("EDGE_PCAM_EXPECT_NO_TF") != "1", reason="only in the TF-free venv")
def test_tensorflow_really_absent_in_the_device_venv():
    for name in ("tensorflow", "tf_keras", "tensorflow_model_optimization"):
        assert importlib.util.find_spec(name) is None, f"{name} is installed in the device venv"
        with pytest.raises(ImportError):
            __import__(name)
    import numpy
    assert int(numpy.__version__.split(".")[0]) < 2  # the tflite-runtime stack
    assert importlib.util.find_spec("tflite_runtime") is not None
