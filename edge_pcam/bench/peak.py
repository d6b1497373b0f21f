"""The machine's int8 arithmetic limit, measured: GMAC/s of one large int8 FULLY_CONNECTED op.

Method: a .tflite holding a single fully-quantized FULLY_CONNECTED layer
(int8 weights and activations, [rows x depth] times [depth x width]; by default
256 x 2048 x 2048, 1.07 GMAC an invoke) is run through the chosen interpreter
(XNNPACK's int8 kernels, as for the model) at the given thread count; the best
of several timed rounds of repeated invokes gives GMAC/s. That is the rate the
interpreter reaches on large, cache-friendly matrices: no real model can beat
it on this machine, so a model's GMAC/s divided by it says how much of the
machine the model uses.

Building the probe file needs TensorFlow (workstation side); it is cached, so
a device with only a TFLite interpreter can reuse a file built elsewhere
(`--peak-model`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from edge_pcam.runtime.fileio import atomic_write_bytes

ROWS, DEPTH, WIDTH = 256, 2048, 2048


def build_fc_probe(path: str | Path, rows: int = ROWS, depth: int = DEPTH, width: int = WIDTH) -> Path:
    """Write an int8 FULLY_CONNECTED-only .tflite of shape [rows, depth] x [depth, width] (needs TensorFlow)."""
    import tensorflow as tf

    path = Path(path)
    rng = np.random.default_rng(0)
    weights = tf.constant(rng.normal(0, 0.02, (depth, width)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([rows, depth], tf.float32)])
    def fc(x):
        return tf.matmul(x, weights)

    def representative():
        for _ in range(4):
            yield [rng.uniform(-1, 1, (rows, depth)).astype(np.float32)]

    converter = tf.lite.TFLiteConverter.from_concrete_functions([fc.get_concrete_function()], fc)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, converter.convert())
    return path


def measure_peak(probe: str | Path, runtime: str = "auto", threads: int = 2, rounds: int = 5,
                 invokes: int = 20) -> dict[str, Any]:
    """GMAC/s of the probe file's FULLY_CONNECTED op: the best of `rounds` rounds of `invokes` invokes."""
    from edge_pcam.bench.macs import count_macs
    from edge_pcam.runtime.interpreter import open_interpreter, resolve_runtime

    backend = resolve_runtime(runtime)
    interpreter = open_interpreter(Path(probe).read_bytes(), backend, threads, name=str(probe))
    detail = interpreter.get_input_details()[0]
    interpreter.set_tensor(detail["index"], np.random.default_rng(1).integers(
        -128, 128, detail["shape"], dtype=np.int8))
    macs = count_macs(interpreter)
    ops = sorted({op["op_name"] for op in interpreter._get_ops_details()} - {"DELEGATE"})
    for _ in range(3):
        interpreter.invoke()
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(invokes):
            interpreter.invoke()
        best = min(best, (time.perf_counter() - start) / invokes)
    return {
        "gmac_per_s": macs / best / 1e9 if macs else None,
        "ms_per_invoke": best * 1e3,
        "macs_per_invoke": macs,
        "shape": [int(s) for s in detail["shape"]] + [int(interpreter.get_output_details()[0]["shape"][-1])],
        "ops": ops,
        "runtime": backend.name,
        "runtime_version": backend.version,
        "threads": threads,
        "method": (f"int8 FULLY_CONNECTED-only .tflite ({' x '.join(map(str, detail['shape']))} input, "
                   f"{interpreter.get_output_details()[0]['shape'][-1]} outputs) through {backend.name} "
                   f"{backend.version}, {threads} threads; best of {rounds} rounds of {invokes} invokes"),
    }
