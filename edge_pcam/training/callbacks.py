"""Keras callbacks that survive a kill: their state is rebuilt from history.csv on resume.

Keras's BackupAndRestore brings back the weights, the optimizer (learning rate
included) and the epoch counter after an interruption, but not the state of
the other callbacks (best value so far, epochs without improvement). Here that
state is replayed from `history.csv`, which `HistoryCSV` writes at every
epoch's end *before* the backup is taken (it comes first in the callback list),
and truncates on resume to the epochs the backup holds. So after any kill the
history is continuous and every callback picks up where it left off.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import tf_keras as keras

from edge_pcam.runtime.fileio import atomic_write_text
from edge_pcam.training.modelio import save_model_atomic


def read_history(path: Path) -> list[dict[str, float]]:
    """Rows of a history.csv as dicts of floats (epoch is 1-based)."""
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(f)]


def _current_lr(model: keras.Model) -> float:
    opt = model.optimizer
    lr = opt.learning_rate
    if isinstance(lr, keras.optimizers.schedules.LearningRateSchedule):
        return float(lr(opt.iterations))
    return float(keras.backend.get_value(lr))


class _Resumable(keras.callbacks.Callback):
    """Calls `resume(rows)` once, at the first epoch fit runs, with the history before it."""

    def __init__(self, history_path: Path):
        super().__init__()
        self.history_path = history_path
        self.first_epoch: int | None = None

    def on_epoch_begin(self, epoch, logs=None):
        if self.first_epoch is None:
            self.first_epoch = epoch
            self.resume([r for r in read_history(self.history_path) if r["epoch"] <= epoch])

    def resume(self, rows: list[dict[str, float]]) -> None:
        """Rebuild state from the completed epochs `rows` (empty on a fresh start)."""


class HistoryCSV(_Resumable):
    """history.csv: one row per finished epoch (epoch, lr, losses and metrics), rewritten atomically.

    Written to `path`; on resume the completed epochs are read from `read_path`
    (the chief's file: another worker writes its own copy elsewhere).
    """

    def __init__(self, path: Path, read_path: Path | None = None):
        super().__init__(read_path or path)
        self.path = path
        self.rows: list[dict[str, float]] = []

    def resume(self, rows):
        self.rows = rows
        self._write()

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": epoch + 1, "lr": _current_lr(self.model)}
        row.update({k: float(v) for k, v in (logs or {}).items() if k != "lr"})
        self.rows.append(row)
        self._write()

    def _write(self) -> None:
        columns: list[str] = []
        for row in self.rows:
            columns += [k for k in row if k not in columns]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns or ["epoch"], lineterminator="\n")
        writer.writeheader()
        for row in self.rows:
            writer.writerow({k: (int(v) if k == "epoch" else repr(v)) for k, v in row.items()})
        atomic_write_text(self.path, buf.getvalue())


class _Monitor:
    """Best value of a logged quantity and epochs since it improved."""

    def __init__(self, monitor: str, mode: str, min_delta: float = 0.0):
        self.monitor, self.mode, self.min_delta = monitor, mode, min_delta
        self.best = -math.inf if mode == "max" else math.inf
        self.best_epoch = 0
        self.wait = 0

    def update(self, value: float | None, epoch: int) -> bool:
        """Record `value` at `epoch` (1-based); True when it is a new best."""
        if value is None or math.isnan(value):
            self.wait += 1
            return False
        better = value > self.best + self.min_delta if self.mode == "max" else value < self.best - self.min_delta
        if better:
            self.best, self.best_epoch, self.wait = value, epoch, 0
        else:
            self.wait += 1
        return better


class BestCheckpoint(_Resumable):
    """Save the model to `path` (atomically) whenever `monitor` improves."""

    def __init__(self, history_path: Path, path: Path, monitor: str = "val_auc", mode: str = "max"):
        super().__init__(history_path)
        self.path = path
        self.state = _Monitor(monitor, mode)

    def resume(self, rows):
        for row in rows:
            self.state.update(row.get(self.state.monitor), int(row["epoch"]))

    def on_epoch_end(self, epoch, logs=None):
        if self.state.update((logs or {}).get(self.state.monitor), epoch + 1) or not self.path.exists():
            save_model_atomic(self.model, self.path)


class EarlyStopping(_Resumable):
    """Stop when `monitor` has not improved for `patience` epochs."""

    def __init__(self, history_path: Path, monitor: str, mode: str, patience: int):
        super().__init__(history_path)
        self.state = _Monitor(monitor, mode)
        self.patience = patience
        self.stopped_epoch = 0

    def resume(self, rows):
        for row in rows:
            self.state.update(row.get(self.state.monitor), int(row["epoch"]))

    def would_stop(self, rows: list[dict[str, float]]) -> bool:
        """True when these completed epochs already met the stopping rule."""
        replay = _Monitor(self.state.monitor, self.state.mode)
        for row in rows:
            replay.update(row.get(self.state.monitor), int(row["epoch"]))
            if replay.wait >= self.patience:
                return True
        return False

    def on_epoch_end(self, epoch, logs=None):
        self.state.update((logs or {}).get(self.state.monitor), epoch + 1)
        if self.state.wait >= self.patience:
            self.stopped_epoch = epoch + 1
            self.model.stop_training = True


class ReduceLROnPlateau(_Resumable):
    """Multiply the learning rate by `factor` after `patience` epochs without improvement.

    With `warmup_epochs`, the rate rises linearly over the first epochs to its
    recipe value and plateaus are not counted until warm-up ends.
    """

    def __init__(self, history_path: Path, monitor: str, mode: str, factor: float, patience: int,
                 min_lr: float = 0.0, base_lr: float = 1e-3, warmup_epochs: int = 0):
        super().__init__(history_path)
        self.state = _Monitor(monitor, mode)
        self.factor, self.patience, self.min_lr = factor, patience, min_lr
        self.base_lr, self.warmup_epochs = base_lr, warmup_epochs

    def resume(self, rows):
        # The learning rate itself comes back with the optimizer; only the counters are replayed.
        for row in rows:
            self._observe(row.get(self.state.monitor), int(row["epoch"]), apply=False)

    def on_epoch_begin(self, epoch, logs=None):
        super().on_epoch_begin(epoch, logs)
        if epoch < self.warmup_epochs:
            keras.backend.set_value(self.model.optimizer.learning_rate,
                                    self.base_lr * (epoch + 1) / (self.warmup_epochs + 1))
        elif epoch == self.warmup_epochs and self.warmup_epochs:
            keras.backend.set_value(self.model.optimizer.learning_rate, self.base_lr)

    def on_epoch_end(self, epoch, logs=None):
        self._observe((logs or {}).get(self.state.monitor), epoch + 1, apply=True)

    def _observe(self, value, epoch: int, apply: bool) -> None:
        if epoch <= self.warmup_epochs:
            return
        self.state.update(value, epoch)
        if self.state.wait >= max(self.patience, 1):
            self.state.wait = 0
            if apply:
                lr = float(keras.backend.get_value(self.model.optimizer.learning_rate))
                keras.backend.set_value(self.model.optimizer.learning_rate, max(lr * self.factor, self.min_lr))


class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up over `warmup_steps`, then cosine decay from `lr` to `min_lr` at `total_steps`."""

    def __init__(self, lr: float, total_steps: int, warmup_steps: int = 0, min_lr: float = 0.0):
        self.lr, self.total_steps, self.warmup_steps, self.min_lr = lr, total_steps, warmup_steps, min_lr

    def __call__(self, step):
        import tensorflow as tf
        step = tf.cast(step, tf.float32)
        warm = float(max(self.warmup_steps, 1))
        decay_steps = float(max(self.total_steps - self.warmup_steps, 1))
        progress = tf.clip_by_value((step - self.warmup_steps) / decay_steps, 0.0, 1.0)
        cosine = self.min_lr + (self.lr - self.min_lr) * 0.5 * (1.0 + tf.cos(math.pi * progress))
        if not self.warmup_steps:
            return cosine
        return tf.where(step < self.warmup_steps, self.lr * (step + 1.0) / warm, cosine)

    def get_config(self):
        return {"lr": self.lr, "total_steps": self.total_steps, "warmup_steps": self.warmup_steps,
                "min_lr": self.min_lr}


class TensorBoardScalars(keras.callbacks.Callback):
    """Per-epoch scalars as TensorBoard event files in `log_dir`/train and /validation.

    Written with `tf.summary.write` (in TensorFlow itself), so logging needs no
    `tensorboard` package; install it only to view the logs (`tensorboard --logdir RUN/logs`).
    """

    def __init__(self, log_dir: Path):
        super().__init__()
        self.log_dir = Path(log_dir)
        self._writers: dict = {}

    def _writer(self, name: str):
        import tensorflow as tf
        if name not in self._writers:
            self._writers[name] = tf.summary.create_file_writer(str(self.log_dir / name))
        return self._writers[name]

    def on_epoch_end(self, epoch, logs=None):
        import tensorflow as tf
        from tensorflow.core.framework import summary_pb2

        meta = summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))
        values = dict(logs or {})
        values["lr"] = _current_lr(self.model)
        for key, value in values.items():
            writer = self._writer("validation" if key.startswith("val_") else "train")
            with writer.as_default():
                tf.summary.write(f"epoch_{key.removeprefix('val_')}", tf.constant(float(value)), step=epoch + 1,
                                 metadata=meta)
        for writer in self._writers.values():
            writer.flush()

    def on_train_end(self, logs=None):
        for writer in self._writers.values():
            writer.close()


class ProgressLines(keras.callbacks.Callback):
    """Readable progress where no terminal is attached (logs, CI): a line every `every` of an epoch.

    On a terminal Keras's own progress bar is used instead (verbose=1).
    """

    def __init__(self, epochs: int, steps: int, every: float = 0.1, write=print):
        super().__init__()
        self.epochs, self.steps, self.write = epochs, steps, write
        self.stride = max(1, int(steps * every))
        self._t0 = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        import time
        self._t0 = time.monotonic()
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        import time
        done = batch + 1
        if done % self.stride == 0 and done < self.steps:
            took = time.monotonic() - self._t0
            eta = took / done * (self.steps - done)
            metrics = " ".join(f"{k} {v:.4f}" for k, v in (logs or {}).items())
            self.write(f"epoch {self._epoch + 1}/{self.epochs} step {done}/{self.steps} "
                       f"({100 * done / self.steps:.0f}%) {metrics} | {took:.0f}s, ~{eta:.0f}s left")

    def on_epoch_end(self, epoch, logs=None):
        import time
        metrics = " ".join(f"{k} {v:.4f}" for k, v in (logs or {}).items())
        self.write(f"epoch {epoch + 1}/{self.epochs} done in {time.monotonic() - self._t0:.0f}s: {metrics}")
