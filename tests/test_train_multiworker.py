"""Two workers as separate processes on 127.0.0.1 (TF_CONFIG): identical weights, only the chief writes the run."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys

import pytest

pytestmark = pytest.mark.tf


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def test_two_workers_end_identical_and_only_the_chief_writes(tmp_path):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    out = tmp_path / "run"
    procs, tmpdirs = [], []
    for index in range(2):
        tmpdir = tmp_path / f"tmp{index}"
        tmpdir.mkdir()
        tmpdirs.append(tmpdir)
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TMPDIR": str(tmpdir),
               "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "edge_pcam", "train", "--data", "synthetic:64", "--out", str(out),
             "--recipe", "subset-cpu", "--epochs", "2", "--batch-size", "4", "--strategy", "multi-worker"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
    logs = []
    try:
        for proc in procs:
            stdout, stderr = proc.communicate(timeout=300)
            logs.append(stdout + stderr)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    for proc, log in zip(procs, logs):
        assert proc.returncode == 0, log[-3000:]

    digests = [re.search(r"final weights sha256 ([0-9a-f]{64})", log).group(1) for log in logs]
    assert digests[0] == digests[1], "the two workers ended with different weights"
    assert "global batch 8 (4 x 2)" in logs[0]

    # The run folder is the chief's, and holds its final weights.
    from edge_pcam.training.fit import weights_digest
    from edge_pcam.training.modelio import load_model
    assert weights_digest(load_model(out / "final.h5")) == digests[0]
    assert "the chief wrote the run folder" in logs[1]
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(["best.h5", "final.h5", "history.csv", "metrics.json", "recipe.toml", "versions.json",
                            "data.json", "logs"]), names
    assert not [p for p in out.rglob("*") if "workertemp" in p.name], "a worker's temporary files were left in the run"
    history = (out / "history.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in history[1:]] == ["1", "2"]
    assert json.loads((out / "versions.json").read_text())["replicas"] == 2
    # The non-chief's own copy went to its temporary folder and was removed.
    assert not list(tmpdirs[1].glob("edge-pcam-worker*"))
