"""The performance goals of issue 7, read off one benchmark run.

- int8 through the default runtime vs the Keras float model called as
  `model(x, training=False)`, per patch at batch 1: at least 15x faster;
- the same int8 file in tf.lite's interpreter: the default runtime no slower;
- the same file opened raw in ai-edge-litert (a user's own code, no edge-pcam):
  as fast as edge-pcam's runtime, since the file runs as written (measured when
  `--runtimes` includes ai-edge-litert-raw);
- the int8 throughput as a fraction of the machine's int8 arithmetic limit
  (edge_pcam.bench.peak) at the same thread count;
- cold start and peak memory of the default runtime next to TensorFlow's.
Each goal says what was compared with what; a goal whose rows are missing is
reported as not measured, with the reason.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

SETTLE_S = 0.05
SETTLE_CALLS = 3
KERAS_SPEEDUP_TARGET = 15.0
TF_LITE_RATIO_TARGET = 1.0
RAW_LITERT_RATIO_TARGET = 0.95  # raw ai-edge-litert within noise of edge-pcam's runtime (5%)


def performance_goals(result: dict[str, Any]) -> dict[str, Any]:
    """Goal name -> {value, target, met, detail}; `met` None when not measured."""
    default_runtime, threads, int8, keras, tflite = goal_rows(result)
    raw = _raw_row(result, int8)
    threads = str(threads)
    paired = result.get("paired") or {}

    def p50(row: dict[str, Any] | None, name: str) -> float | None:
        if name in paired.get("p50_ms", {}):
            return paired["p50_ms"][name]
        if row is None:
            return None
        lat = row["latency"].get(threads) or row["latency"].get("default")
        return lat["p50_ms"] / lat["batch"] if lat else None

    goals: dict[str, Any] = {"default_runtime": default_runtime, "threads": int(threads),
                             "int8_file": int8["file"] if int8 else None,
                             "method": (f"paired: {paired['rounds']} rounds of {paired['calls']} calls of each, "
                                        f"in rotating order, each block after a {SETTLE_S * 1e3:.0f} ms pause and "
                                        f"{SETTLE_CALLS} untimed calls; medians over all calls" if paired.get("rounds") else
                                        "from the rows' latency at that thread count")}
    a, b = p50(int8, "int8"), p50(keras, "keras")
    goals["vs_keras"] = _goal(b / a if a and b else None, KERAS_SPEEDUP_TARGET,
                              f"Keras float model(x, training=False) {_ms(b)} vs int8 on {default_runtime} "
                              f"{_ms(a)} per patch ({threads} threads)", "no int8 or Keras float row measured")
    c = p50(tflite, "tf.lite")
    goals["vs_tf_lite"] = _goal(c / a if a and c else None, TF_LITE_RATIO_TARGET,
                                f"tf.lite {_ms(c)} vs {default_runtime} {_ms(a)} per patch on the same int8 file "
                                f"({threads} threads); above 1 means {default_runtime} is faster",
                                "the int8 file was not measured in tf.lite (TensorFlow not installed?)")
    r = p50(raw, "ai-edge-litert-raw")
    goals["vs_raw_litert"] = _goal(a / r if a and r else None, RAW_LITERT_RATIO_TARGET,
                                   f"the same int8 file opened raw in ai-edge-litert {_ms(r)} vs edge-pcam on "
                                   f"{default_runtime} {_ms(a)} per patch ({threads} threads); 1 means as fast",
                                   "no ai-edge-litert-raw row (add it to --runtimes)")
    peak = (result.get("peak") or {}).get("gmac_per_s")
    rate = int8["macs"] / (a * 1e-3) / 1e9 if int8 and a and int8.get("macs") else None
    goals["fraction_of_int8_limit"] = {
        "value": rate / peak if rate and peak else None, "target": None, "met": None,
        "gmac_per_s": rate, "limit_gmac_per_s": peak, "macs_per_patch": int8.get("macs") if int8 else None,
        "detail": (f"{rate:.0f} GMAC/s of a measured {peak:.0f} GMAC/s limit" if rate and peak else
                   "not measured: " + ((result.get("peak") or {}).get("reason") or "no int8 row or no peak"))}
    cold = {}
    for name, row in (("runtime", int8), ("tensorflow", keras)):
        cs = (row or {}).get("cold_start") or {}
        cold[name] = {"seconds": cs.get("seconds"), "peak_rss_mb": cs.get("peak_rss_mb"),
                      "row": f"{row['label']} on {row['runtime']}" if row else None}
    goals["cold_start_and_memory"] = cold
    return goals


def goal_rows(result: dict[str, Any]) -> tuple[str | None, int, dict | None, dict | None, dict | None]:
    """(default runtime, thread count, int8 row on it, Keras float row, the int8 file's tf.lite row)."""
    from edge_pcam.runtime.interpreter import TF_LITE, default_threads, resolve_runtime

    rows = [r for r in result["rows"] if r["status"] == "ok"]
    try:
        default_runtime = resolve_runtime("auto").name
    except Exception:  # noqa: BLE001 - no interpreter at all: every goal is unmeasured
        default_runtime = None
    threads = _goal_threads(result["settings"]["threads"], default_threads())
    int8 = _pick(rows, default_runtime)
    keras = next((r for r in rows if r["format"] == "keras-float"), None)
    tflite = next((r for r in rows if int8 and r["file"] == int8["file"] and r["runtime"] == TF_LITE), None)
    return default_runtime, threads, int8, keras, tflite


def measure_paired(result: dict[str, Any], patch: np.ndarray, rounds: int = 15, calls: int = 20,
                   warmup: int = 10) -> dict[str, Any] | None:
    """The goals' latencies measured side by side: rounds of `calls` single-patch calls of each
    engine in rotating order, so that load from other work on a shared machine falls on all alike."""
    from edge_pcam.bench.discover import describe_file
    from edge_pcam.bench.engines import open_engine
    from edge_pcam.runtime.interpreter import TF_LITE

    default_runtime, threads, int8, keras, tflite = goal_rows(result)
    if int8 is None:
        return None
    cand = describe_file(Path(int8["file"]))
    engines = {"int8": open_engine(cand, default_runtime, threads)}
    if tflite is not None:
        engines["tf.lite"] = open_engine(cand, TF_LITE, threads)
    if _raw_row(result, int8) is not None:
        engines["ai-edge-litert-raw"] = open_engine(cand, "ai-edge-litert-raw", threads)
    if keras is not None:
        engines["keras"] = open_engine(describe_file(Path(keras["file"])), "keras", threads)
    if len(engines) < 2:
        return None
    samples: dict[str, list[float]] = {name: [] for name in engines}
    for engine in engines.values():
        for _ in range(warmup):
            engine.predict(patch)
    names = list(engines)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            predict = engines[name].predict
            # let the previous engine's worker threads go idle (TensorFlow's spin before sleeping),
            # then a few untimed calls: no engine pays for the one before it
            time.sleep(SETTLE_S)
            for _ in range(SETTLE_CALLS):
                predict(patch)
            for _ in range(calls):
                t0 = time.perf_counter()
                predict(patch)
                samples[name].append((time.perf_counter() - t0) * 1e3)
    return {"rounds": rounds, "calls": calls, "threads": threads,
            "p50_ms": {n: float(np.median(v)) for n, v in samples.items()},
            "p95_ms": {n: float(np.percentile(v, 95)) for n, v in samples.items()},
            "samples_ms": {n: np.round(v, 4).tolist() for n, v in samples.items()}}


def _raw_row(result: dict[str, Any], int8: dict[str, Any] | None) -> dict[str, Any] | None:
    """The int8 file's row opened raw in ai-edge-litert, if measured."""
    return next((r for r in result["rows"] if int8 and r["status"] == "ok" and r["file"] == int8["file"]
                 and r["runtime"] == "ai-edge-litert-raw"), None)


def _goal_threads(measured: list[int], default: int) -> int:
    """The runtime's default thread count (every core, up to 4) if measured, else the nearest below it."""
    if default in measured:
        return default
    below = [t for t in measured if t <= default]
    return max(below) if below else min(measured)


def _pick(rows: list[dict[str, Any]], runtime: str | None) -> dict[str, Any] | None:
    """The int8 batch-1 file on the default runtime: from QAT first (what edge-pcam bundles), else PTQ."""
    found = [r for r in rows if r["format"] == "int8" and r["batch"] == 1 and r["runtime"] == runtime]
    found.sort(key=lambda r: (r["source"] != "qat", r["file"]))
    return found[0] if found else None


def _goal(value: float | None, target: float, detail: str, missing: str) -> dict[str, Any]:
    return {"value": value, "target": target, "met": None if value is None else bool(value >= target),
            "detail": detail if value is not None else f"not measured: {missing}"}


def _ms(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f} ms"
