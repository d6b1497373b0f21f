"""ai-edge-litert against tf.lite on the bundled int8 file, paired: the issue-5 latency target.

Each round times 40 calls of each engine in turn (batch 1, one patch), 15 rounds after
50 warm-up calls; medians over rounds, so load that comes and goes hits every engine alike.
Writes benchmarks/results/litert_vs_tflite.md. Run it on a quiet machine:
    .venv/bin/python benchmarks/litert_vs_tflite.py
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from edge_pcam.bench.engines import RawLiteRTEngine
from edge_pcam.bench.machine import describe_machine, summary_line
from edge_pcam.runtime.bundled import default_model_path
from edge_pcam.runtime.interpreter import load_model

ROUNDS, CALLS, WARMUP = 15, 40, 50
OUT = Path(__file__).parent / "results" / "litert_vs_tflite.md"


def main() -> None:
    path = default_model_path()
    x = np.random.default_rng(0).integers(0, 256, (1, 96, 96, 3), dtype=np.uint8)
    load_before = os.getloadavg()
    rows = []
    for threads in (1, 2):
        engines = {
            "ai-edge-litert (edge-pcam's runtime)": load_model(path, runtime="litert", threads=threads),
            "ai-edge-litert (raw Interpreter, no edge-pcam)": RawLiteRTEngine(path, threads),
            "tf.lite (same bytes)": load_model(path, runtime="tf", threads=threads),
        }
        times: dict[str, list[float]] = {name: [] for name in engines}
        for model in engines.values():
            for _ in range(WARMUP):
                model.predict(x)
        for _ in range(ROUNDS):
            for name, model in engines.items():
                start = time.perf_counter()
                for _ in range(CALLS):
                    model.predict(x)
                times[name].append((time.perf_counter() - start) / CALLS * 1e3)
        rows += [(threads, name, float(np.median(t)), float(np.min(t))) for name, t in times.items()]
    lines = [
        "# ai-edge-litert vs tf.lite on the bundled int8 file (paired)", "",
        f"Machine: {summary_line(describe_machine())}; load average before / after: "
        f"{load_before[0]:.2f} / {os.getloadavg()[0]:.2f}. File: `edge_pcam/models/{path.name}`.",
        f"{ROUNDS} rounds of {CALLS} calls of each engine in turn (batch 1), after {WARMUP} warm-up calls; "
        "`PatchModel.predict` per patch (input, invoke, both outputs). Target (issue 5): <= 0.6 ms at 2 threads.", "",
        "| threads | engine | median ms/patch | fastest round ms/patch |", "|---:|---|---:|---:|",
        *[f"| {t} | {name} | {med:.3f} | {best:.3f} |" for t, name, med, best in rows], "",
        "Regenerate: `.venv/bin/python benchmarks/litert_vs_tflite.py` (needs TensorFlow for the tf.lite rows).",
    ]
    OUT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
