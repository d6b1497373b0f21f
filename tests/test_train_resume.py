"""Nothing lost on interruption: SIGKILL in the middle of an epoch, the same command again finishes the run."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.tf


def _command(out):
    return [sys.executable, "-m", "edge_pcam", "train", "--data", "synthetic:200", "--out", str(out),
            "--recipe", "subset-cpu", "--epochs", "3", "--batch-size", "8", "--set", "early_stopping.enabled=false"]


def test_sigkill_mid_epoch_then_same_command_finishes(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("TF_CONFIG", None)
    proc = subprocess.Popen(_command(out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    killed_during = None
    try:
        deadline = time.monotonic() + 240
        for line in proc.stderr:  # progress lines: "epoch 2/3 step 4/20 (20%) ..."
            if line.startswith("epoch 2/3 step"):
                assert list((out / "backup").rglob("checkpoint")), "epoch 1 finished but no backup was written"
                proc.send_signal(signal.SIGKILL)
                killed_during = line.strip()
                break
            assert time.monotonic() < deadline, "the run never reached the second epoch"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert killed_during, "the run ended before it could be killed"
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "metrics.json").exists()
    first_rows = list(csv.DictReader((out / "history.csv").open()))
    assert [r["epoch"] for r in first_rows] == ["1"]

    again = subprocess.run(_command(out), capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming" in again.stderr
    assert "epoch 1/3" not in again.stderr, "epoch 1 was trained again instead of restored"
    assert "epoch 2/3 done" in again.stderr and "epoch 3/3 done" in again.stderr
    rows = list(csv.DictReader((out / "history.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    assert rows[0] == first_rows[0], "the completed epoch's row changed"
    assert (out / "metrics.json").is_file() and not (out / "backup").exists()

    from edge_pcam.training.modelio import load_model
    assert load_model(out / "final.h5").count_params() == 494_337

    finished = subprocess.run(_command(out), capture_output=True, text=True, env=env, timeout=120)
    assert finished.returncode != 0 and "--overwrite" in finished.stderr


def test_save_is_atomic_when_interrupted(tmp_path, monkeypatch):
    """A save that dies half way leaves the previous good file in place and no temporary file."""
    from edge_pcam.model import build_model
    from edge_pcam.training.modelio import load_model, save_model_atomic
    model = build_model()
    path = tmp_path / "best.h5"
    save_model_atomic(model, path)
    before = path.read_bytes()

    def dies_half_way(self, filepath, *args, **kwargs):
        with open(filepath, "wb") as f:
            f.write(b"\x89HDF\r\n half a model")
        raise KeyboardInterrupt

    monkeypatch.setattr(type(model), "save", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        save_model_atomic(model, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["best.h5"]
    monkeypatch.undo()
    assert load_model(path).count_params() == 494_337
