"""Training-step rate: wall and CPU time of every `model.fit` step, read off a Keras callback.

TensorFlow is imported when a `StepTimer` is made, not with this module (the
rest of edge_pcam.bench runs on devices without it).
"""

from __future__ import annotations

import time
from typing import Any


class StepTimer:
    """Pass `.callback` to `model.fit`; `rate()` then gives the speed over the steps after the first `warmup`."""

    def __init__(self, warmup: int):
        import tf_keras as keras

        stamps: list[tuple[float, float]] = []

        class _StepEnds(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                stamps.append((time.perf_counter(), time.process_time()))

        self.warmup = warmup
        self.stamps = stamps
        self.callback = _StepEnds()

    def rate(self, batch_size: int, steps: int | None = None) -> dict[str, Any]:
        """Patches per wall-clock second, milliseconds a step and CPU milliseconds a patch (the process, all
        threads) over `steps` steps after the warm-up (default: every step recorded after it)."""
        if self.warmup < 1:
            raise ValueError("StepTimer needs at least one warm-up step (the first step's start is not seen)")
        window = self.stamps[self.warmup - 1:]
        if steps is not None:
            window = window[:steps + 1]
        timed = len(window) - 1
        if timed < 1:
            raise ValueError(f"no timed step: {len(self.stamps)} steps ran, {self.warmup} of them warm-up")
        wall = window[-1][0] - window[0][0]
        cpu = window[-1][1] - window[0][1]
        return {"steps": timed, "seconds": wall, "step_ms": 1000 * wall / timed,
                "patches_per_s": batch_size * timed / wall, "cpu_ms_per_patch": 1000 * cpu / (batch_size * timed)}
