"""Timing loops every benchmark shares: calls of one function, and several engines in paired rounds.

`time_calls` warms a function up, then times single calls (a fixed count, or
until a time budget is spent) and reports percentiles of the wall time per
call, with the process's CPU time beside them (all threads; less disturbed by
other work on a shared machine than wall time).

`paired_rounds` times several engines side by side: rounds of `calls` calls
of each in rotating order, so load that comes and goes on a shared machine
falls on all of them alike. Medians are over every call; the fastest round
(the mean of one block) is the figure least touched by other work.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

# No pause before a block by default: measured on the shared 2-core machine (December 2026, load 11-13, both
# variants as blocks of one rotation), a 50 ms pause was never faster and made the blocks after it slower in
# most rounds (p95 up at 2 threads in every run): sleeping gives the cores away to other work. The untimed
# calls alone let the previous engine's threads go.
PAUSE_S = 0.0
SETTLE_CALLS = 3


def time_calls(fn: Callable[[], Any], *, warmup: int = 10, runs: int | None = None, budget_s: float | None = None,
               min_runs: int = 20, max_runs: int = 1000) -> dict[str, Any]:
    """Warm up, then time `runs` calls of `fn`, or (runs None) call it until `budget_s` is spent,
    between `min_runs` and `max_runs` calls. Times in milliseconds per call."""
    if runs is None and budget_s is None:
        raise ValueError("give runs or budget_s")
    for _ in range(warmup):
        fn()
    samples: list[float] = []
    cpu0, start = time.process_time(), time.perf_counter()
    deadline = start + (budget_s or 0.0)
    while (len(samples) < runs) if runs is not None else \
            (len(samples) < max_runs and (len(samples) < min_runs or time.perf_counter() < deadline)):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu0
    return {**summarize(samples), "cpu_ms": cpu / len(samples) * 1e3, "cores": cpu / wall if wall > 0 else None}


def summarize(samples_ms: list[float]) -> dict[str, Any]:
    """p50, p95, p10, mean and min of times in milliseconds, with the samples themselves."""
    arr = np.asarray(samples_ms, dtype=np.float64)
    if not arr.size:
        raise ValueError("no samples to summarize")
    return {"p50_ms": float(np.percentile(arr, 50)), "p95_ms": float(np.percentile(arr, 95)),
            "p10_ms": float(np.percentile(arr, 10)), "mean_ms": float(arr.mean()), "min_ms": float(arr.min()),
            "runs": int(arr.size), "samples_ms": arr.round(4).tolist()}


def paired_rounds(engines: dict[str, Callable[[], Any]], *, rounds: int = 15, calls: int = 20, warmup: int = 10,
                  pause_s: float = PAUSE_S, settle_calls: int = SETTLE_CALLS) -> dict[str, Any]:
    """Time each engine (a name -> a function making one call) in `rounds` rounds of `calls` calls.

    The order rotates every round. Before each engine's block: a pause of `pause_s`
    seconds (0: none) and `settle_calls` untimed calls, so that no engine is timed
    while the one before it still holds the cores.
    """
    if len(engines) < 1 or rounds < 1 or calls < 1:
        raise ValueError("paired_rounds needs at least one engine, one round and one call")
    for fn in engines.values():
        for _ in range(warmup):
            fn()
    names = list(engines)
    samples: dict[str, list[float]] = {name: [] for name in names}
    round_means: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            fn = engines[name]
            if pause_s > 0:
                time.sleep(pause_s)
            for _ in range(settle_calls):
                fn()
            block = []
            for _ in range(calls):
                t0 = time.perf_counter()
                fn()
                block.append((time.perf_counter() - t0) * 1e3)
            samples[name] += block
            round_means[name].append(float(np.mean(block)))
    return {"rounds": rounds, "calls": calls, "warmup": warmup, "pause_s": pause_s, "settle_calls": settle_calls,
            "p50_ms": {n: float(np.median(v)) for n, v in samples.items()},
            "p95_ms": {n: float(np.percentile(v, 95)) for n, v in samples.items()},
            "fastest_round_ms": {n: min(v) for n, v in round_means.items()},
            "round_means_ms": {n: np.round(v, 4).tolist() for n, v in round_means.items()},
            "samples_ms": {n: np.round(v, 4).tolist() for n, v in samples.items()}}
