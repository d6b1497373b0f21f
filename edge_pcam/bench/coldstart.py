"""Cold start and peak memory: a fresh process that loads one model and classifies one patch.

Run as `python -m edge_pcam.bench.coldstart FILE RUNTIME THREADS`; it prints
one JSON line as soon as the first result exists, with its own timings
(import, load, first inference) and its peak resident memory. The parent
(`measure_cold_start`) times the whole thing from process start to that line,
which is what a user waits for when a device boots the classifier.
RUNTIME "keras" loads a Keras .h5 with TensorFlow and calls `model(x, training=False)`.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def measure_cold_start(path: str | Path, runtime: str, threads: int, timeout: float = 300.0) -> dict[str, Any]:
    """Seconds from process start to the first probability, and the child's peak RSS in MB."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "edge_pcam.bench.coldstart", str(path), runtime, str(threads)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        seconds = time.perf_counter() - start
        _, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise RuntimeError(f"cold start took more than {timeout:.0f} s") from None
    try:
        child = json.loads(line)
    except ValueError:
        tail = " ".join((stderr or "").strip().splitlines()[-1:]) or f"exit code {proc.returncode}"
        raise RuntimeError(f"cold-start process failed: {tail[:300]}") from None
    return {"seconds": seconds, **child}


def _first_result(path: str, runtime: str, threads: int) -> dict[str, Any]:
    import numpy as np

    t0 = time.perf_counter()
    patch = np.zeros((1, 96, 96, 3), np.uint8)
    if runtime == "keras":
        import tf_keras  # noqa: F401  (the import is part of what is timed)
        t1 = time.perf_counter()
        from edge_pcam.bench.engines import load_keras
        model = load_keras(Path(path))
        t2 = time.perf_counter()
        prob = float(np.asarray(model(patch.astype(np.float32) / 255.0, training=False)).reshape(-1)[0])
    elif runtime == "ai-edge-litert-raw":
        from edge_pcam.bench.engines import RawLiteRTEngine
        t1 = time.perf_counter()
        model = RawLiteRTEngine(Path(path), threads)
        t2 = time.perf_counter()
        prob = float(model.predict(patch)[0])
    else:
        from edge_pcam.runtime.interpreter import load_model
        t1 = time.perf_counter()
        model = load_model(path, runtime=runtime, threads=threads)
        t2 = time.perf_counter()
        prob = float(model.predict(patch)[0])
    t3 = time.perf_counter()
    return {"import_s": t1 - t0, "load_s": t2 - t1, "first_inference_s": t3 - t2, "probability": prob,
            "peak_rss_mb": _peak_rss_mb()}


def _peak_rss_mb() -> float:
    """This process's peak resident memory. VmHWM on Linux: ru_maxrss would carry over the
    parent's peak across fork + exec and report the benchmark's own memory instead."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024 ** 2 if sys.platform == "darwin" else rss / 1024  # bytes on macOS, KiB elsewhere

if __name__ == "__main__":
    result = _first_result(sys.argv[1], sys.argv[2], int(sys.argv[3]))
    print(json.dumps(result), flush=True)
