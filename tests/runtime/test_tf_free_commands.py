"""The TensorFlow-free install: workstation commands refuse in one line before creating anything,
and `info` works (issue 14, item 5).

In .venv a subprocess makes TensorFlow, tf-keras and TFMOT unimportable (as
test_no_tensorflow.py does, with find_spec answering "not installed"); in the
TF-free venv they are absent anyway.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
INSTALL = "pip install 'edge-pcam[train]'"

PROGRAM = r"""
import importlib.abc, sys
BLOCKED = {"tensorflow", "tf_keras", "tensorflow_model_optimization", "keras", "tensorflow_datasets"}

class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NotInstalled())
import edge_pcam.cli
sys.argv = ["edge-pcam", *sys.argv[1:]]
try:
    edge_pcam.cli.main()
finally:
    assert not [m for m in sys.modules if m.split(".")[0] in BLOCKED]
"""


def without_tf(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PROGRAM, *args], capture_output=True, text=True, cwd=cwd,
                          timeout=120)


COMMANDS = [  # (arguments, what the line names)
    (["train", "--data", "synthetic:16", "--out", "runs/train"], "edge-pcam train"),
    (["train", "--out", "runs/train", "--resume"], "edge-pcam train"),
    (["qat", "model.h5", "--data", "synthetic:16", "--out", "runs/qat"], "edge-pcam qat"),
    (["convert", "model.h5", "--data", "synthetic:16", "--out", "runs/models", "--int8"], "edge-pcam convert"),
    (["evaluate", "model.h5", "--data", "synthetic:16", "--json", "runs/eval.json"], "model.h5"),
    (["demo", "--out", "runs/demo"], "edge-pcam demo"),
]


@pytest.mark.parametrize("args,names", COMMANDS, ids=lambda v: v[0] if isinstance(v, list) else None)
def test_workstation_commands_say_what_to_install_and_create_nothing(tmp_path, args, names):
    (tmp_path / "model.h5").write_bytes((FIXTURES / "models" / "tiny.h5").read_bytes())
    before = sorted(p.name for p in tmp_path.rglob("*"))
    proc = without_tf(*args, cwd=tmp_path)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith("edge-pcam: error: ") and names in lines[0] and lines[0].endswith(INSTALL)
    assert "needs TensorFlow" in lines[0]
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # train left an empty run folder before


def test_evaluate_of_a_tflite_file_still_runs_without_tensorflow(tmp_path):
    proc = without_tf("evaluate", str(FIXTURES / "models" / "tiny_int8.tflite"), "--data", "synthetic:40",
                      cwd=tmp_path)
    assert proc.returncode == 0 and "decision" in proc.stdout, proc.stderr


def test_info_without_a_file_shows_the_design_without_tensorflow(tmp_path):
    proc = without_tf("info", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for name in ("conv1", "pool3", "tokens", "scores", "context", "logit", "prob"):
        assert f" {name} " in proc.stdout
    assert "(12, 12, 256)" in proc.stdout and "(144, 144)" in proc.stdout and "295,168" in proc.stdout
    assert "Total parameters: 494,337" in proc.stdout
