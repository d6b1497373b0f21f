"""The training loop: a recipe, a --data spec and a strategy in; a run folder out.

`train()` prepares the run folder (refusing a finished run, resuming an
unfinished one), builds the strategy first (multi-worker needs that before any
other TensorFlow op), reads the splits through edge_pcam.data.tfdata, fits the
design's model with resumable callbacks and Keras's BackupAndRestore, then
scores best.h5 on the selection split and the validation split.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from edge_pcam.errors import EdgePcamError
from edge_pcam.runtime.datasets.combined import join_sources
from edge_pcam.runtime.fileio import atomic_write_json, atomic_write_text
from edge_pcam.runtime.metrics import operating_points
from edge_pcam.training import rundir
from edge_pcam.training.recipe import Recipe, load_recipe
from edge_pcam.training.rundir import RunDir
from edge_pcam.training.strategy import STRATEGIES, make_strategy, worker_dir

Log = Callable[[str], None]


@dataclass
class TrainResult:
    """What a finished `train()` call produced."""

    run_dir: Path
    strategy: str
    replicas: int
    global_batch: int
    resumed_from_epoch: int
    epochs_run: int
    best_epoch: int
    stopped_early: bool
    metrics: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    is_chief: bool = True
    weights_sha256: str = ""


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _is_chief_from_env() -> bool:
    """Chief-ness from TF_CONFIG alone (before TensorFlow starts)."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return True
    try:
        config = json.loads(raw)
    except json.JSONDecodeError:
        return True  # make_strategy reports the bad JSON
    task = config.get("task", {})
    if task.get("type") == "chief":
        return True
    has_chief = bool(config.get("cluster", {}).get("chief"))
    return task.get("type", "worker") == "worker" and int(task.get("index", 0)) == 0 and not has_chief


def train(data: str | None, out: str | Path, recipe: Recipe | None, *, strategy: str = "auto",
          tpu: str | None = None, resume: bool = False, overwrite: bool = False,
          verbose: int | None = None, log: Log = _stderr,
          model_builder: Callable[[Recipe], object] | None = None) -> TrainResult:
    """Train the design's model on `data` with `recipe` into the run folder `out`.

    `recipe=None` or `data=None` are allowed with `resume` (taken from the run
    folder). `verbose` is Keras's (1 a progress bar, 2 a line per epoch, 0 our own
    progress lines every 10% of an epoch through `log`); default: a bar on a
    terminal, progress lines otherwise. Only the chief (or the single worker) writes `out`.
    `model_builder(recipe)` replaces the fresh build_model() (QAT fine-tuning starts
    from a trained model this way; it is called inside the strategy scope).
    """
    if strategy not in STRATEGIES:
        raise EdgePcamError(f"unknown strategy '{strategy}' (use one of: {', '.join(STRATEGIES)})")
    run = RunDir(Path(out))
    if data is None and recipe is not None and recipe["data"]["sources"]:
        data = join_sources(recipe["data"]["sources"])
    chief = _is_chief_from_env()
    if chief:
        recipe, data, resuming = rundir.prepare(run, recipe, data, resume=resume, overwrite=overwrite)
    else:
        recipe = recipe or load_recipe(run / "recipe.toml")
        data = data or run.saved_data_spec()
        resuming = run.started
    if data is None or recipe is None:
        raise EdgePcamError("give --data and --recipe (nothing saved in the run folder)")

    info = make_strategy(strategy, tpu)
    import tensorflow as tf
    import tf_keras as keras

    from edge_pcam.data.tfdata import make_dataset
    from edge_pcam.runtime.datasets import open_dataset
    from edge_pcam.training import callbacks as cb
    from edge_pcam.training.splits import carve_tuning, limit_train
    from edge_pcam.training.versions import versions

    wdir = worker_dir(run.path, info)
    wrun = RunDir(wdir)
    t = recipe["training"]
    keras.utils.set_random_seed(t["seed"])

    dataset = open_dataset(data)
    train_split, valid_split = dataset.split("train"), dataset.split("valid")
    tuning_split = None
    if t["tune_from_train"]:
        train_split, tuning_split = carve_tuning(train_split, t["tune_from_train"], t["seed"])
    if t["train_limit"]:
        train_split = limit_train(train_split, t["train_limit"], t["seed"])
    selection_split = tuning_split if tuning_split is not None else valid_split

    class_weight = balanced_class_weights(train_split.labels) if recipe["data"]["balance"] == "weights" else None
    global_batch = t["batch_size"] * info.replicas
    steps_per_epoch = len(train_split) // global_batch
    if steps_per_epoch < 1:
        raise EdgePcamError(f"{data}: {len(train_split)} training patches are fewer than one global batch "
                            f"({global_batch}); lower --batch-size")
    is_tpu = info.name.startswith("tpu")
    if info.is_chief:
        atomic_write_text(wrun / "recipe.toml", recipe.to_toml())
        atomic_write_json(wrun / "versions.json", {**versions(), "strategy": info.name, "replicas": info.replicas},
                          indent=2)
        atomic_write_json(wrun / "data.json", {
            "spec": data, "kind": dataset.kind, "counts": dataset.counts(),
            "used": {"train": len(train_split), "selection": selection_split.name, "selection_n": len(selection_split),
                     "valid": len(valid_split)},
            "tune_from_train": {"n": t["tune_from_train"], "seed": t["seed"]} if tuning_split is not None else None,
            "class_weight": class_weight,
        }, indent=2)
    if info.is_chief and class_weight is not None:
        log(f"class weights (balance = weights): normal {class_weight[0]:.3f}, tumour {class_weight[1]:.3f}")
    log(f"edge-pcam train: {data} -> {run.path} | {info.name} | global batch {global_batch} "
        f"({t['batch_size']} x {info.replicas}) | {len(train_split)} train, {len(selection_split)} {selection_split.name}"
        f"{'' if tuning_split is None else f', {len(valid_split)} valid (reported only)'}"
        f" | {'resuming' if resuming else 'new run'}")

    def shard(ds):
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        return ds.with_options(options)

    train_ds = shard(make_dataset(train_split, global_batch, training=True, seed=t["seed"], repeat=True,
                                  drop_remainder=True, augmentation=augmentation(recipe)))
    val_ds = shard(make_dataset(selection_split, global_batch, training=False, drop_remainder=is_tpu))

    o = recipe["optimizer"]
    epochs = t["epochs"]
    with info.strategy.scope():
        # On a TPU, run several steps per host round trip (Keras's usual TPU setting).
        model = compile_model(recipe, steps_per_epoch, model_builder(recipe) if model_builder is not None else None,
                              steps_per_execution=min(32, steps_per_epoch) if is_tpu else 1)

    history_read, history_write = run / "history.csv", wrun / "history.csv"
    ck = recipe["checkpoint"]
    history_cb = cb.HistoryCSV(history_write, history_read)
    best_cb = cb.BestCheckpoint(history_read, wrun / "best.h5", ck["monitor"], ck["mode"])
    callbacks: list = [history_cb, best_cb]
    early = None
    if recipe["early_stopping"]["enabled"]:
        early = cb.EarlyStopping(history_read, ck["monitor"], ck["mode"], recipe["early_stopping"]["patience"])
        callbacks.append(early)
    if o["lr_schedule"] == "plateau":
        r = recipe["reduce_lr"]
        callbacks.append(cb.ReduceLROnPlateau(history_read, ck["monitor"], ck["mode"], r["factor"], r["patience"],
                                              o["min_lr"], o["lr"], o["warmup_epochs"]))
    elif o["lr_schedule"] == "constant" and o["warmup_epochs"]:
        callbacks.append(cb.ReduceLROnPlateau(history_read, ck["monitor"], ck["mode"], 1.0, 10**9,
                                              o["min_lr"], o["lr"], o["warmup_epochs"]))
    callbacks.append(cb.TensorBoardScalars(wrun / "logs"))
    # Last, so history.csv and best.h5 are on disk before the backup says the epoch is done.
    # Kept after fit (deleted once metrics.json is written), so a kill while scoring loses nothing.
    callbacks.append(keras.callbacks.BackupAndRestore(str(run / "backup"), delete_checkpoint=False))

    # A resumed run that had already stopped early (killed while being scored) trains no further epoch.
    done = cb.read_history(history_read) if resuming else []
    fit_epochs = epochs
    if early is not None and done and early.would_stop(done):
        fit_epochs = int(done[-1]["epoch"])

    if verbose is None:
        verbose = 1 if sys.stdout.isatty() else 0
    if verbose == 0:
        callbacks.insert(0, cb.ProgressLines(epochs, steps_per_epoch, write=log))
    model.fit(train_ds, epochs=fit_epochs, steps_per_epoch=steps_per_epoch, validation_data=val_ds,
              callbacks=callbacks, verbose=verbose, class_weight=class_weight)
    if history_cb.first_epoch is None:  # no epoch left to run: take the callbacks' state from the history
        for c in (history_cb, best_cb, early):
            if c is not None:
                c.first_epoch = fit_epochs
                c.resume(done)
        if early is not None and early.would_stop(done):
            early.stopped_epoch = fit_epochs

    from edge_pcam.training.modelio import load_model, save_model_atomic
    save_model_atomic(model, wrun / "final.h5")
    history = cb.read_history(history_write)
    first_epoch = history_cb.first_epoch or 0
    best_state = best_cb.state
    result = TrainResult(run.path, info.name, info.replicas, global_batch, first_epoch, len(history),
                         best_state.best_epoch, bool(early and early.stopped_epoch), history=history,
                         is_chief=info.is_chief, weights_sha256=weights_digest(model))
    if not info.is_chief:
        shutil.rmtree(wdir, ignore_errors=True)
        return result

    log(f"scoring best.h5 (epoch {best_state.best_epoch}) on {selection_split.name}"
        f"{'' if tuning_split is None else ' and valid'}")
    best = load_model(run / "best.h5")
    probs = _predict(best, selection_split)
    sel_points = operating_points(selection_split.labels, probs)
    metrics: dict = {
        "model": "best.h5", "best_epoch": best_state.best_epoch, "epochs_run": len(history),
        "epochs_max": epochs, "stopped_early": result.stopped_early,
        "selection": {"split": selection_split.name, "n": len(selection_split), "monitor": ck["monitor"],
                      "best": None if math.isinf(best_state.best) else best_state.best},
        "thresholds": {k: v["threshold"] for k, v in sel_points.items()},
        selection_split.name: sel_points,
    }
    if tuning_split is not None:
        vprobs = _predict(best, valid_split)
        metrics["valid"] = operating_points(valid_split.labels, vprobs)
        metrics["valid_at_tuning_thresholds"] = operating_points(valid_split.labels, vprobs, metrics["thresholds"])
    atomic_write_json(run / "metrics.json", metrics, indent=2)
    shutil.rmtree(run / "backup", ignore_errors=True)
    result.metrics = metrics
    return result


def compile_model(recipe: Recipe, steps_per_epoch: int, model=None, steps_per_execution: int = 1):
    """`model` (default: a fresh build_model()) compiled as the recipe says; call inside the strategy's scope."""
    import tf_keras as keras

    from edge_pcam.model import build_model
    from edge_pcam.training.callbacks import WarmupCosine
    o, epochs = recipe["optimizer"], recipe["training"]["epochs"]
    if model is None:
        model = build_model(l2=recipe["model"]["l2"], dropout=recipe["model"]["dropout"],
                            precision=recipe["training"]["precision"])
    if o["lr_schedule"] == "cosine":
        lr = WarmupCosine(o["lr"], epochs * steps_per_epoch, o["warmup_epochs"] * steps_per_epoch, o["min_lr"])
    else:
        lr = o["lr"]
    loss = keras.losses.BinaryCrossentropy(label_smoothing=recipe["training"]["label_smoothing"])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=lr), loss=loss,
                  metrics=[keras.metrics.BinaryAccuracy(name="accuracy"), keras.metrics.AUC(name="auc")],
                  steps_per_execution=steps_per_execution)
    return model


def augmentation(recipe: Recipe):
    """The recipe's [augment] table as edge_pcam.data.augment.Augmentation ([1, 1] ranges = off)."""
    from edge_pcam.data.augment import Augmentation
    a = recipe["augment"]
    contrast = tuple(a["contrast"]) if a["contrast"] != [1.0, 1.0] else None
    saturation = tuple(a["saturation"]) if a["saturation"] != [1.0, 1.0] else None
    jpeg = tuple(a["jpeg"]) if a["jpeg"] != [0, 0] else None
    return Augmentation(flips=a["flips"], brightness=a["brightness"], contrast=contrast,
                        rotate90=a["rotate90"], hue=a["hue"], saturation=saturation, hed=a["hed"], jpeg=jpeg)


def balanced_class_weights(labels) -> dict[int, float]:
    """Weights that give each class half of the loss: n / (2 n_c) (1.0 each on balanced data)."""
    import numpy as np
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=2)
    if counts.min() == 0:
        raise EdgePcamError(f"balance = weights needs both classes in the train split (counts {counts.tolist()})")
    return {c: float(counts.sum() / (2 * counts[c])) for c in (0, 1)}


def weights_digest(model) -> str:
    """SHA-256 over every weight array of `model` (equal digests = identical weights, e.g. across workers)."""
    import hashlib

    import numpy as np
    digest = hashlib.sha256()
    for weights in model.get_weights():
        digest.update(np.ascontiguousarray(weights).tobytes())
    return digest.hexdigest()


def _predict(model, split) -> "object":
    from edge_pcam.training.evaluate import predict_keras
    return predict_keras(model, split, batch_size=256)
