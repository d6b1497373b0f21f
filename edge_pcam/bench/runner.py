"""`edge-pcam bench`: every model format x every runtime, measured on one data split.

For each row (a model file found by its metadata, in one interpreter) it
measures: file size; accuracy, precision, recall, F1 and AUC on the data;
latency p50/p95 at batch 1 for each thread count after warm-up; throughput;
cold start (a fresh process from start to its first probability) and that
process's peak memory. A row that cannot run keeps its place with the reason
(status "skipped" when something is absent — a runtime, TensorFlow, an Edge
TPU —, "failed" when running it went wrong). The result is one JSON-ready
dict; `edge_pcam.bench.report.write_report` turns it into report.md, report.json
and plots.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edge_pcam.bench.discover import KERAS, Candidate, find_models
from edge_pcam.bench.engines import KERAS_RUNTIME, RAW_ALIASES, RAW_LITERT, keras_available, open_engine
from edge_pcam.bench.machine import describe_machine
from edge_pcam.errors import DataError, EdgePcamError, RuntimeUnavailableError
from edge_pcam.runtime import metrics as M

SCHEMA_VERSION = 1
ROW_FIELDS = ("file", "format", "source", "label", "batch", "runtime", "runtime_version", "status", "reason",
              "size_bytes", "sha256", "macs", "metrics", "operating_points", "roc", "latency", "threads_best",
              "ms_per_patch", "p95_ms_per_patch", "patches_per_s", "eval_patches_per_s", "load_s", "cold_start")
ROC_POINTS = 200


@dataclass
class BenchSettings:
    """What to measure. `runtimes` None means every installed TFLite interpreter."""

    models: Path
    data: str
    out: Path
    split: str | None = None
    runtimes: list[str] | None = None
    threads: list[int] = field(default_factory=lambda: [1, 2, 4])
    limit: int | None = None
    device: str | None = None
    warmup: int = 10
    budget_s: float = 2.0
    min_runs: int = 20
    max_runs: int = 1000
    cold_start: bool = True
    peak: bool = True
    peak_model: Path | None = None
    paired: bool = True
    seed: int = 0
    command: str = ""


Log = Callable[[str], None]


def run_bench(settings: BenchSettings, log: Log = lambda msg: None) -> dict[str, Any]:
    """Measure every row and return the whole report as a dict (see ROW_FIELDS for a row's keys)."""
    from edge_pcam.runtime.datasets.spec import open_dataset

    started = time.time()
    load_before = _loadavg()
    candidates, companions = find_models(settings.models)
    if not candidates:
        raise EdgePcamError(f"{settings.models}: no .tflite or .h5 model files found")
    runtimes, missing = resolve_runtimes(settings.runtimes)
    if settings.device:
        from edge_pcam.bench.reference import read_reference, reference_path
        read_reference(reference_path(settings.device))  # a wrong --device fails now, not after the run

    dataset = open_dataset(settings.data)
    split = dataset.split(settings.split or default_split(dataset.splits))
    indices = sample_indices(len(split), settings.limit, settings.seed)
    log(f"reading {len(indices)} patches from {settings.data} ({split.name})")
    images = np.concatenate([split.read(indices[i:i + 512]) for i in range(0, len(indices), 512)])
    labels = split.labels[indices]
    if len(np.unique(labels)) < 2:
        raise DataError(f"{settings.data} ({split.name}): the {len(labels)} patches benchmarked hold one "
                        "class only; AUC and F1 need both (raise --limit or use another split)")

    # the limit is measured before and after the rows, and the better kept: a busy machine only lowers it
    peak = measure_machine_peak(settings, log) if settings.peak else None
    rows: list[dict[str, Any]] = []
    for cand in candidates:
        for runtime in _row_runtimes(cand, runtimes + missing):
            log(f"{cand.label} on {runtime}")
            rows.append(measure_row(cand, runtime, images, labels, settings, runtime in missing))

    if peak and peak.get("gmac_per_s"):
        again = measure_machine_peak(settings, log)
        rounds = [peak["gmac_per_s"], again.get("gmac_per_s") or 0.0]
        peak = max(peak, again, key=lambda p: p.get("gmac_per_s") or 0.0)
        peak["gmac_per_s_before_after"] = rounds
    result: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": settings.command,
        "machine": {**describe_machine(), "load_average_before": load_before, "load_average_after": _loadavg()},
        "data": {"spec": settings.data, "split": split.name, "n": int(len(labels)),
                 "tumour": int(labels.sum()), "limit": settings.limit, "seed": settings.seed},
        "settings": {"threads": settings.threads, "runtimes": runtimes, "runtimes_not_installed": missing,
                     "warmup": settings.warmup, "budget_s": settings.budget_s, "min_runs": settings.min_runs,
                     "max_runs": settings.max_runs, "models": str(settings.models)},
        "companions": [str(p) for p in companions],
        "peak": peak,
        "rows": rows,
        "duration_s": None,
        "paired": None,
    }
    from edge_pcam.bench.goals import measure_paired, performance_goals
    if settings.paired:
        log("measuring the goals' latencies side by side")
        try:
            result["paired"] = measure_paired(result, images[:1])
        except EdgePcamError as exc:
            result["paired"] = {"reason": str(exc)}
    result["goals"] = performance_goals(result)
    result["reference"] = None
    if settings.device:
        from edge_pcam.bench.reference import compare_with_reference
        result["reference"] = compare_with_reference(rows, settings.device)
    result["duration_s"] = time.time() - started
    return result


def _row_runtimes(cand: Candidate, runtimes: list[str]) -> list[str]:
    """Keras files run in Keras; an unreadable file gets one row, not one per runtime."""
    if cand.problem:
        return ["n/a"]
    return [KERAS_RUNTIME] if cand.kind == KERAS else runtimes


def resolve_runtimes(requested: list[str] | None) -> tuple[list[str], list[str]]:
    """(installed runtimes to run, requested runtimes that are not installed), by canonical name."""
    from edge_pcam.runtime.interpreter import LITERT, RUNTIME_ALIASES, installed_runtimes

    installed = installed_runtimes()
    if not requested:
        return installed, []
    installed += [RAW_LITERT] if LITERT in installed else []
    names = []
    for name in requested:
        key = RAW_LITERT if name.strip().lower() in RAW_ALIASES else RUNTIME_ALIASES.get(name.strip().lower())
        if key is None or key == "auto":
            raise RuntimeUnavailableError(f"--runtimes: unknown runtime '{name}' (use ai-edge-litert, "
                                          f"{RAW_LITERT}, tflite-runtime or tf.lite)")
        if key not in names:
            names.append(key)
    return [n for n in names if n in installed], [n for n in names if n not in installed]


def default_split(splits: dict[str, Any]) -> str:
    """test if the data has it, else valid, else its only split."""
    for name in ("test", "valid"):
        if name in splits:
            return name
    return next(iter(splits))


def sample_indices(n: int, limit: int | None, seed: int = 0) -> np.ndarray:
    """All rows, or `limit` of them drawn at random (sorted; a folder split is ordered by label)."""
    if limit is None or limit >= n:
        return np.arange(n)
    if limit < 1:
        raise DataError(f"--limit must be at least 1, got {limit}")
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))


def empty_row(cand: Candidate, runtime: str) -> dict[str, Any]:
    row = dict.fromkeys(ROW_FIELDS)
    row.update(file=str(cand.path), format=cand.format, source=cand.source, label=cand.label,
               batch=cand.batch, runtime=runtime, latency={}, size_bytes=cand.size_bytes)
    if cand.kind != KERAS:
        from edge_pcam.runtime.metadata import sha256_file
        row["sha256"] = sha256_file(cand.path)
    return row


def measure_row(cand: Candidate, runtime: str, images: np.ndarray, labels: np.ndarray,
                settings: BenchSettings, not_installed: bool = False) -> dict[str, Any]:
    """Every figure for one (file, runtime); status and reason instead of figures when it cannot run."""
    row = empty_row(cand, runtime)
    if cand.problem:
        return {**row, "status": "failed", "reason": cand.problem}
    if not_installed:
        return {**row, "status": "skipped", "reason": f"runtime {runtime} is not installed here"}
    if cand.kind == KERAS and not keras_available():
        return {**row, "status": "skipped",
                "reason": "TensorFlow is not installed (Keras rows need `pip install 'edge-pcam[train]'`)"}
    try:
        _measure(row, cand, runtime, images, labels, settings)
        row["status"] = "ok"
    except RuntimeUnavailableError as exc:
        row.update(status="skipped", reason=str(exc))
    except Exception as exc:  # noqa: BLE001 - any failure becomes the row's reason, never a lost row
        row.update(status="failed", reason=f"{type(exc).__name__}: {' '.join(str(exc).split())[:400]}")
    return row


def _measure(row: dict[str, Any], cand: Candidate, runtime: str, images: np.ndarray, labels: np.ndarray,
             settings: BenchSettings) -> None:
    from edge_pcam.runtime.interpreter import default_threads

    start = time.perf_counter()
    engine = open_engine(cand, runtime, default_threads())
    row["load_s"] = time.perf_counter() - start
    row["runtime_version"] = engine.runtime_version
    if cand.kind != KERAS:
        row["macs"] = _count_file_macs(cand, runtime)

    start = time.perf_counter()
    probs = np.concatenate([engine.predict(images[i:i + 256]) for i in range(0, len(images), 256)])
    row["eval_patches_per_s"] = len(images) / (time.perf_counter() - start)
    if not np.all(np.isfinite(probs)):
        raise ValueError(f"{int(np.sum(~np.isfinite(probs)))} non-finite probabilities")
    row["metrics"] = M.binary_metrics(labels, probs, 0.5)
    row["operating_points"] = M.operating_points(labels, probs)
    fpr, tpr, _ = M.roc_curve(labels, probs)
    keep = np.unique(np.linspace(0, len(fpr) - 1, min(len(fpr), ROC_POINTS)).astype(int))
    row["roc"] = {"fpr": fpr[keep].round(5).tolist(), "tpr": tpr[keep].round(5).tolist()}

    batch = engine.batch
    sample = images[:batch] if len(images) >= batch else np.resize(images, (batch, *images.shape[1:]))
    if cand.kind == KERAS:  # TensorFlow's thread pools are fixed at start-up: one measurement, all cores
        row["latency"]["default"] = time_calls(lambda: engine.predict(sample[:1]), settings, batch=1)
    else:
        for threads in settings.threads:
            eng = engine if threads == getattr(engine, "threads", None) else open_engine(cand, runtime, threads)
            row["latency"][str(threads)] = time_calls(lambda e=eng: e.predict(sample), settings, batch=batch)
    best_key = min(row["latency"], key=lambda k: row["latency"][k]["p50_ms"])
    best = row["latency"][best_key]
    row["threads_best"] = None if best_key == "default" else int(best_key)
    row["ms_per_patch"] = best["p50_ms"] / batch
    row["p95_ms_per_patch"] = best["p95_ms"] / batch
    row["patches_per_s"] = batch * 1000.0 / best["mean_ms"]

    if settings.cold_start:
        from edge_pcam.bench.coldstart import measure_cold_start
        row["cold_start"] = measure_cold_start(cand.path, runtime if cand.kind != KERAS else KERAS_RUNTIME,
                                               default_threads())


def time_calls(fn: Callable[[], Any], settings: BenchSettings, batch: int = 1) -> dict[str, Any]:
    """Warm up, then call `fn` until the time budget is spent (between min_runs and max_runs calls)."""
    for _ in range(settings.warmup):
        fn()
    samples: list[float] = []
    deadline = time.perf_counter() + settings.budget_s
    while len(samples) < settings.max_runs and (len(samples) < settings.min_runs or time.perf_counter() < deadline):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
    arr = np.asarray(samples)
    return {"p50_ms": float(np.percentile(arr, 50)), "p95_ms": float(np.percentile(arr, 95)),
            "mean_ms": float(arr.mean()), "min_ms": float(arr.min()), "runs": len(samples),
            "batch": batch, "samples_ms": arr.round(4).tolist()}


def _count_file_macs(cand: Candidate, runtime: str) -> int | None:
    from edge_pcam.bench.macs import count_macs
    from edge_pcam.runtime.interpreter import open_interpreter, read_model_file, resolve_runtime

    try:
        _, content, _ = read_model_file(cand.path)
        backend = resolve_runtime("litert" if runtime == RAW_LITERT else runtime)
        return count_macs(open_interpreter(content, backend, 1, name=str(cand.path)))
    except EdgePcamError:
        return None


def measure_machine_peak(settings: BenchSettings, log: Log) -> dict[str, Any] | None:
    """The int8 arithmetic limit at the machine's core count through the default runtime (see peak.py)."""
    from edge_pcam.bench.peak import build_fc_probe, measure_peak
    from edge_pcam.runtime.interpreter import default_threads

    probe = settings.peak_model or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / \
        "edge-pcam" / "int8_fc_probe.tflite"
    try:
        if not Path(probe).is_file():
            if not keras_available():
                return {"gmac_per_s": None, "reason": "building the int8 probe file needs TensorFlow; "
                        "pass --peak-model with a probe built elsewhere"}
            log("building the int8 FULLY_CONNECTED probe")
            build_fc_probe(probe)
        log("measuring the int8 arithmetic limit")
        return measure_peak(probe, "auto", default_threads())
    except Exception as exc:  # noqa: BLE001 - the report says why instead of stopping the benchmark
        return {"gmac_per_s": None, "reason": f"{type(exc).__name__}: {exc}"}


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def command_line() -> str:
    """The command as typed (program name shortened to edge-pcam)."""
    args = sys.argv[1:]
    return " ".join(["edge-pcam", *args])
