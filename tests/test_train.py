"""`edge-pcam train` on tiny synthetic data: the run folder, the tuning split, refusals and bad input."""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

from edge_pcam.errors import EdgePcamError
from edge_pcam.runtime.datasets import open_dataset
from edge_pcam.runtime.metrics import binary_metrics, operating_points
from edge_pcam.training.recipe import load_recipe
from edge_pcam.training.splits import carve_tuning

pytestmark = pytest.mark.tf

REPO = Path(__file__).resolve().parents[1]
EDGE_PCAM = [sys.executable, "-m", "edge_pcam"]


def tiny(**extra):
    return load_recipe("subset-cpu").with_overrides({"training.epochs": 2, "training.batch_size": 8, **extra})


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    from edge_pcam.training.fit import train
    out = tmp_path_factory.mktemp("runs") / "run"
    result = train("synthetic:64", out, tiny(), strategy="cpu", verbose=0, log=lambda m: None)
    return out, result


def test_run_folder_layout(finished_run):
    out, result = finished_run
    for name in ("best.h5", "final.h5", "history.csv", "metrics.json", "recipe.toml", "versions.json", "data.json"):
        assert (out / name).is_file(), name
    assert list((out / "logs").rglob("events.out.tfevents.*")), "no TensorBoard event files"
    assert not (out / "backup").exists(), "the backup should be removed once the run is finished"
    assert not list(out.glob(".*tmp*")), "temporary files left behind"
    assert result.epochs_run == 2 and result.resumed_from_epoch == 0


def test_history_has_every_epoch(finished_run):
    out, _ = finished_run
    rows = list(csv.DictReader((out / "history.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    for key in ("lr", "loss", "accuracy", "auc", "val_loss", "val_accuracy", "val_auc"):
        assert all(r[key] for r in rows), key


def test_models_reload_and_metrics_match_best(finished_run):
    from edge_pcam.training.evaluate import predict_keras
    from edge_pcam.training.modelio import load_model
    out, _ = finished_run
    best, final = load_model(out / "best.h5"), load_model(out / "final.h5")
    assert best.count_params() == final.count_params() == 494_337
    valid = open_dataset("synthetic:64").split("valid")
    probs = predict_keras(best, valid)
    metrics = json.loads((out / "metrics.json").read_text())
    expected = operating_points(valid.labels, probs)
    for point in ("decision", "triage"):
        for key in ("accuracy", "precision", "recall", "specificity", "f1", "auc", "threshold"):
            assert metrics["valid"][point][key] == pytest.approx(expected[point][key], abs=1e-6), (point, key)
    assert metrics["valid"]["decision"]["threshold"] == 0.5
    assert metrics["thresholds"]["triage"] == metrics["valid"]["triage"]["threshold"]
    assert metrics["selection"]["split"] == "valid"
    history = list(csv.DictReader((out / "history.csv").open()))
    best_row = max(history, key=lambda r: float(r["val_auc"]))
    assert metrics["best_epoch"] == int(best_row["epoch"])


def test_recipe_versions_and_data_are_recorded(finished_run):
    out, _ = finished_run
    saved = load_recipe(out / "recipe.toml")
    assert saved.values == tiny().values
    assert "training.epochs=2" in (out / "recipe.toml").read_text()
    versions = json.loads((out / "versions.json").read_text())
    assert versions["packages"]["tensorflow"] and versions["python"] and versions["strategy"] == "cpu"
    data = json.loads((out / "data.json").read_text())
    assert data["spec"] == "synthetic:64" and data["counts"] == open_dataset("synthetic:64").counts()
    assert data["used"]["train"] == len(open_dataset("synthetic:64").split("train"))


def test_finished_run_is_refused_and_overwrite_replaces_it(finished_run, tmp_path):
    from edge_pcam.training.fit import train
    out, _ = finished_run
    with pytest.raises(EdgePcamError, match="--overwrite"):
        train("synthetic:64", out, tiny(), strategy="cpu", verbose=0, log=lambda m: None)
    with pytest.raises(EdgePcamError, match="nothing to resume"):
        train("synthetic:64", out, tiny(), strategy="cpu", resume=True, verbose=0, log=lambda m: None)
    # --overwrite on a copy (the fixture's run stays for the other tests)
    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    (copy / "notes.txt").write_text("mine")
    result = train("synthetic:64", copy, tiny(**{"training.epochs": 1}), strategy="cpu", overwrite=True,
                   verbose=0, log=lambda m: None)
    assert result.epochs_run == 1
    assert [r["epoch"] for r in csv.DictReader((copy / "history.csv").open())] == ["1"]
    assert (copy / "notes.txt").read_text() == "mine", "--overwrite must only remove edge-pcam's own files"


def test_unfinished_run_with_another_recipe_needs_resume(tmp_path):
    from edge_pcam.training import rundir
    run = rundir.RunDir(tmp_path / "run")
    run.path.mkdir()
    (run / "recipe.toml").write_text(tiny().to_toml())
    (run / "data.json").write_text(json.dumps({"spec": "synthetic:64"}))
    with pytest.raises(EdgePcamError, match="--resume.*--overwrite"):
        rundir.prepare(run, tiny(**{"training.epochs": 5}), "synthetic:64", resume=False, overwrite=False)
    recipe, data, resuming = rundir.prepare(run, None, None, resume=True, overwrite=False)
    assert resuming and data == "synthetic:64" and recipe.values == tiny().values
    recipe, _, resuming = rundir.prepare(run, tiny(), "synthetic:64", resume=False, overwrite=False)
    assert resuming, "the same command on an unfinished run continues it"
    with pytest.raises(EdgePcamError, match="no unfinished run"):
        rundir.prepare(rundir.RunDir(tmp_path / "empty"), tiny(), "synthetic:64", resume=True, overwrite=False)


def test_tuning_split_is_balanced_disjoint_and_deterministic():
    train_split = open_dataset("synthetic:200").split("train")
    rest, tune = carve_tuning(train_split, 30, seed=3)
    again_rest, again_tune = carve_tuning(train_split, 30, seed=3)
    assert np.array_equal(tune.indices, again_tune.indices) and np.array_equal(rest.indices, again_rest.indices)
    assert len(tune) == 30 and np.bincount(tune.labels, minlength=2).tolist() == [15, 15]
    assert not set(tune.indices) & set(rest.indices)
    assert sorted([*tune.indices, *rest.indices]) == list(range(len(train_split)))
    assert np.array_equal(tune.read([0, 1]), train_split.read(tune.indices[:2]))
    assert not np.array_equal(carve_tuning(train_split, 30, seed=4)[1].indices, tune.indices)
    with pytest.raises(Exception, match="only 160"):
        carve_tuning(train_split, 160, seed=0)


def test_tune_from_train_reports_tuning_and_valid(tmp_path):
    from edge_pcam.training.fit import train
    out = tmp_path / "run"
    result = train("synthetic:80", out, tiny(**{"training.epochs": 1, "training.tune_from_train": 16}),
                   strategy="cpu", verbose=0, log=lambda m: None)
    m = result.metrics
    assert m["selection"]["split"] == "tuning" and m["selection"]["n"] == 16
    assert set(m) >= {"tuning", "valid", "valid_at_tuning_thresholds"}
    assert m["thresholds"]["triage"] == m["tuning"]["triage"]["threshold"]
    assert m["valid_at_tuning_thresholds"]["triage"]["threshold"] == m["thresholds"]["triage"]
    data = json.loads((out / "data.json").read_text())
    assert data["used"]["train"] == 64 - 16 and data["tune_from_train"] == {"n": 16, "seed": 0}
    # the valid numbers at the tuning thresholds are recomputable from best.h5
    from edge_pcam.training.evaluate import predict_keras
    from edge_pcam.training.modelio import load_model
    valid = open_dataset("synthetic:80").split("valid")
    probs = predict_keras(load_model(out / "best.h5"), valid)
    want = binary_metrics(valid.labels, probs, m["thresholds"]["triage"])
    assert m["valid_at_tuning_thresholds"]["triage"]["recall"] == pytest.approx(want["recall"])


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli(*args, cwd=None):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("TF_CONFIG", None)
    return subprocess.run([*EDGE_PCAM, *args], capture_output=True, text=True, timeout=180, cwd=cwd, env=env)


def _one_line_error(proc, *words):
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("edge-pcam: error:")]
    assert len(errors) == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    for word in words:
        assert word in errors[0], errors[0]


def test_cli_bad_input_is_one_line(tmp_path, finished_run):
    bad = tmp_path / "bad.toml"
    bad.write_text("[training]\nepochs = 'many'\n")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    cases = [
        (["--strategy", "quantum"], ["unknown strategy 'quantum'"]),
        (["--recipe", str(bad)], ["bad.toml", "epochs", "integer"]),
        (["--recipe", "no-such-recipe"], ["unknown recipe"]),
        (["--set", "training.epoch=3"], ["unknown recipe key"]),
    ]
    for extra, words in cases:
        proc = _cli("train", "--data", "synthetic:64", "--out", str(tmp_path / "r"), *extra)
        _one_line_error(proc, *words)
    _one_line_error(_cli("train", "--data", "synthetic:64", "--out", str(blocker / "run")), "cannot write")
    _one_line_error(_cli("train", "--data", "synthetic:64", "--out", str(finished_run[0]), "--recipe", "subset-cpu",
                         "--epochs", "2", "--batch-size", "8"), "finished run", "--overwrite")


def test_cli_unreachable_tpu_fails_fast(tmp_path):
    port = _closed_port()
    proc = _cli("train", "--data", "synthetic:64", "--out", str(tmp_path / "r"), "--strategy", "tpu",
                "--tpu", f"grpc://127.0.0.1:{port}")
    _one_line_error(proc, "no TPU reachable", f"127.0.0.1:{port}")


def test_callbacks_replay_state_from_history(tmp_path):
    """EarlyStopping, ReduceLROnPlateau and BestCheckpoint pick up their counters from history.csv."""
    import tf_keras as keras

    from edge_pcam.training import callbacks as cb
    history = tmp_path / "history.csv"
    history.write_text("epoch,lr,val_auc\n1,0.001,0.80\n2,0.001,0.79\n3,0.0003,0.78\n")
    model = keras.Sequential([keras.layers.Dense(1, input_shape=(2,))])
    model.compile(optimizer=keras.optimizers.Adam(3e-4), loss="mse")

    early = cb.EarlyStopping(history, "val_auc", "max", patience=3)
    early.set_model(model)
    early.on_epoch_begin(3)  # resume at the 4th epoch: 2 epochs without improvement so far
    assert (early.state.best, early.state.wait) == (0.80, 2)
    early.on_epoch_end(3, {"val_auc": 0.70})
    assert model.stop_training and early.stopped_epoch == 4

    plateau = cb.ReduceLROnPlateau(history, "val_auc", "max", factor=0.5, patience=2, base_lr=1e-3)
    plateau.set_model(model)
    plateau.on_epoch_begin(3)
    assert plateau.state.wait == 0  # the reduction after epoch 3 reset it
    plateau.on_epoch_end(3, {"val_auc": 0.70})
    plateau.on_epoch_end(4, {"val_auc": 0.70})
    assert float(keras.backend.get_value(model.optimizer.learning_rate)) == pytest.approx(1.5e-4)

    csv_cb = cb.HistoryCSV(history)
    csv_cb.set_model(model)
    csv_cb.on_epoch_begin(2)  # the backup holds 2 epochs: the 3rd row is dropped
    csv_cb.on_epoch_end(2, {"val_auc": 0.9})
    assert [r["epoch"] for r in cb.read_history(history)] == [1, 2, 3]
    assert cb.read_history(history)[-1]["val_auc"] == pytest.approx(0.9)

    ckpt = cb.BestCheckpoint(history, tmp_path / "best.h5", "val_auc", "max")
    ckpt.set_model(model)
    ckpt.on_epoch_begin(3)
    assert ckpt.state.best == pytest.approx(0.9)
    ckpt.on_epoch_end(3, {"val_auc": 0.85})
    assert (tmp_path / "best.h5").exists(), "no best.h5 yet: the first epoch after resume writes one"
    (tmp_path / "best.h5").write_bytes(b"marker")
    ckpt.on_epoch_end(4, {"val_auc": 0.86})
    assert (tmp_path / "best.h5").read_bytes() == b"marker", "not a new best: best.h5 must not change"
    ckpt.on_epoch_end(5, {"val_auc": 0.95})
    assert (tmp_path / "best.h5").read_bytes() != b"marker" and ckpt.state.best_epoch == 6


def test_warmup_cosine_schedule():
    from edge_pcam.training.callbacks import WarmupCosine
    s = WarmupCosine(1e-3, total_steps=100, warmup_steps=10, min_lr=1e-5)
    values = [float(s(step)) for step in range(101)]
    assert values[0] == pytest.approx(1e-4)
    assert max(values) == pytest.approx(1e-3) and values[10] == pytest.approx(1e-3)
    assert values[100] == pytest.approx(1e-5)
    assert all(a >= b for a, b in zip(values[10:], values[11:]))


def test_cosine_recipe_trains(tmp_path):
    from edge_pcam.training.fit import train
    r = tiny(**{"training.epochs": 2, "optimizer.lr_schedule": "cosine", "optimizer.warmup_epochs": 1,
                "early_stopping.enabled": False})
    result = train("synthetic:64", tmp_path / "run", r, strategy="cpu", verbose=0, log=lambda m: None)
    lrs = [row["lr"] for row in result.history]
    assert len(lrs) == 2 and lrs[1] < 1e-3
    assert tomllib.loads((tmp_path / "run" / "recipe.toml").read_text())["optimizer"]["lr_schedule"] == "cosine"


def test_auto_strategy_stays_local(monkeypatch):
    """`auto` picks the CPU here without opening any connection (no TPU metadata probe)."""
    import tensorflow as tf

    from edge_pcam.training import strategy as st

    def no_network(*args, **kwargs):
        raise AssertionError("auto strategy tried to open a network connection")

    monkeypatch.delenv("TF_CONFIG", raising=False)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(st, "_local_tpu_present", lambda: False)
    info = st.make_strategy("auto")
    expected = "gpu" if tf.config.list_physical_devices("GPU") else "cpu"
    assert info.name.startswith(expected) and info.is_chief and info.replicas >= 1


def test_strategy_misuse_is_reported(monkeypatch):
    import tensorflow as tf

    from edge_pcam.errors import RuntimeUnavailableError
    from edge_pcam.training import strategy as st
    with pytest.raises(EdgePcamError, match="unknown strategy 'fast'"):
        st.make_strategy("fast")
    with pytest.raises(EdgePcamError, match="--strategy tpu or auto"):
        st.make_strategy("cpu", tpu="grpc://127.0.0.1:1")
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(EdgePcamError, match="needs TF_CONFIG"):
        st.make_strategy("multi-worker")
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(EdgePcamError, match="TF_CONFIG is not valid JSON"):
        st.make_strategy("multi-worker")
    with pytest.raises(RuntimeUnavailableError, match="grpc://HOST:PORT"):
        st._check_reachable("grpc://127.0.0.1")
    if not tf.config.list_physical_devices("GPU"):
        with pytest.raises(RuntimeUnavailableError, match="no GPU"):
            st.make_strategy("gpu")


@pytest.mark.parametrize("config, chief", [
    (None, True),
    ({"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 0}}, True),
    ({"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 1}}, False),
    ({"cluster": {"chief": ["c:1"], "worker": ["a:1"]}, "task": {"type": "worker", "index": 0}}, False),
    ({"cluster": {"chief": ["c:1"], "worker": ["a:1"]}, "task": {"type": "chief", "index": 0}}, True),
])
def test_chief_is_read_from_tf_config(monkeypatch, config, chief):
    from edge_pcam.training.fit import _is_chief_from_env
    if config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", json.dumps(config))
    assert _is_chief_from_env() is chief


# Ctrl-C while best.h5 is being scored, in a child process: the SIGINT comes from the kernel the
# moment scoring starts. Raising KeyboardInterrupt inside this pytest process instead left the first
# run's TensorFlow state (model, datasets, iterators, held by the traceback's reference cycle) to be
# torn down by the garbage collector in the middle of the rerun; under CPU load that aborted the
# whole suite ("free(): corrupted unsorted chunks", "Fatal Python error: Aborted" in make_iterator).
CTRL_C_WHILE_SCORING = r"""
import signal, sys
from edge_pcam.training import fit
# Ctrl-C as a terminal delivers it: a job started in the background (nohup, `&` without job control,
# some CI runners) inherits SIGINT ignored, and Python then installs no KeyboardInterrupt handler.
signal.signal(signal.SIGINT, signal.default_int_handler)
scoring = fit._predict

def interrupted(*args, **kwargs):
    signal.raise_signal(signal.SIGINT)  # the user's Ctrl-C, delivered as a signal
    return scoring(*args, **kwargs)

fit._predict = interrupted
from edge_pcam.cli import main
sys.argv = ["edge-pcam", *sys.argv[1:]]
main()
"""


@pytest.mark.parametrize("early_stop", [False, True])
def test_kill_while_scoring_then_rerun_trains_no_more(tmp_path, early_stop):
    """Training done, Ctrl-C while best.h5 was being scored: the same command again only scores."""
    out = tmp_path / "run"
    settings = ["--set", "early_stopping.patience=0", "--epochs", "3"] if early_stop else \
        ["--set", "early_stopping.enabled=false", "--epochs", "2"]
    args = ["train", "--data", "synthetic:64", "--out", str(out), "--recipe", "subset-cpu", "--batch-size", "8",
            "--strategy", "cpu", *settings]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("TF_CONFIG", None)
    killed = subprocess.run([sys.executable, "-c", CTRL_C_WHILE_SCORING, *args], capture_output=True, text=True,
                            env=env, timeout=600)
    assert killed.returncode == 130, killed.stderr[-3000:]
    assert "scoring best.h5" in killed.stderr and "interrupted: run the same command again" in killed.stderr
    assert "Traceback" not in killed.stderr and "Fatal Python error" not in killed.stderr
    assert not (out / "metrics.json").exists() and (out / "backup").is_dir()
    before = (out / "history.csv").read_text()

    again = subprocess.run([sys.executable, "-m", "edge_pcam", *args], capture_output=True, text=True, env=env,
                           timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (out / "history.csv").read_text() == before  # no epoch trained again or added
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs_run"] == (1 if early_stop else 2) and metrics["stopped_early"] is early_stop
    assert metrics["best_epoch"] >= 1 and not (out / "backup").exists()

    from edge_pcam.training.modelio import load_model
    assert load_model(out / "final.h5").count_params() == 494_337
