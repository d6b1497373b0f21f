"""Cold start and peak memory of fresh processes.

`measure_cold_start`: a process that loads one model and classifies one
patch. Run as `python -m edge_pcam.bench.coldstart FILE RUNTIME THREADS`, it
prints one JSON line as soon as the first result exists, with its own timings
(import, load, first inference) and its peak resident memory. The parent
times the whole thing from process start to that line, which is what a user
waits for when a device boots the classifier. RUNTIME "keras" loads a Keras
.h5 with TensorFlow and calls `model(x, training=False)`.

`time_process`: any command (`-m module args` or `-c code`) from start to
exit, e.g. `edge-pcam predict one.png` or `import tensorflow`, in any Python.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Runs the command in this process, then writes its peak RSS (VmHWM, KiB) to argv[1] at exit.
# VmHWM is the process's own peak: ru_maxrss would carry over the forking parent's.
_EXIT_PEAK = """
import atexit, runpy, sys
out, kind, rest = sys.argv[1], sys.argv[2], sys.argv[3:]
def peak():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            open(out, "w").write(line.split()[1])
atexit.register(peak)
if kind == "-m":
    sys.argv = rest
    runpy.run_module(rest[0], run_name="__main__", alter_sys=True)
else:
    exec(rest[0])
"""


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


def time_process(command: list[str], python: str | Path = sys.executable, repeats: int = 5,
                 cwd: str | Path | None = None) -> dict[str, Any]:
    """Median and fastest wall time from start to exit, and median peak RSS in MB, of `repeats` fresh
    processes of `python` running `command`: ["-m", module, *args] or ["-c", code] (Linux: reads /proc)."""
    if len(command) < 2 or command[0] not in ("-m", "-c"):
        raise ValueError(f"command must start with -m MODULE or -c CODE, got {command!r}")
    walls, peaks = [], []
    with tempfile.TemporaryDirectory(prefix="edge-pcam-cold-") as tmp:
        hwm = Path(tmp) / "vmhwm"
        for _ in range(repeats):
            hwm.unlink(missing_ok=True)
            start = time.perf_counter()
            proc = subprocess.run([str(python), "-c", _EXIT_PEAK, str(hwm), command[0], *command[1:]],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=cwd)
            walls.append(time.perf_counter() - start)
            if proc.returncode != 0:
                tail = " ".join(proc.stderr.strip().splitlines()[-1:]) or f"exit code {proc.returncode}"
                raise RuntimeError(f"{' '.join(command)[:200]} failed: {tail[:300]}")
            peaks.append(int(hwm.read_text()) / 1024 if hwm.is_file() else float("nan"))
    return {"wall_s": statistics.median(walls), "wall_min_s": min(walls), "peak_rss_mb": statistics.median(peaks),
            "repeats": repeats}


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
        from edge_pcam.bench.raw_interpreter import RawInterpreter
        t1 = time.perf_counter()
        model = RawInterpreter(path, "litert", threads)
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
