"""A model file the way a user's own code runs it, with nothing of edge-pcam's runtime in between.

`RawInterpreter` opens the file with the interpreter's own class
(`Interpreter(model_path=..., num_threads=...)`, plus any of its constructor
options) in ai-edge-litert, tflite-runtime or tf.lite, finds the input `image`
and the output `probability` by their names in the file's serving_default
signature, and calls it directly: set the input, invoke, read and dequantize
the probability. Benchmarks time it beside the runtime's `PatchModel`: a file
that runs as it was written is as fast raw as through edge-pcam.
`xnnpack_partitions` says which ops the XNNPACK delegate took.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from edge_pcam.errors import ModelFileError
from edge_pcam.runtime.interpreter import resolve_runtime
from edge_pcam.runtime.signature import SIGNATURE


class RawInterpreter:
    """P(tumour) (N,) for uint8 patches (N, 96, 96, 3), from the file in one interpreter as it is.

    `options` go to the Interpreter constructor as given, except
    `experimental_op_resolver_type`, which may be named (AUTO, BUILTIN,
    BUILTIN_WITHOUT_DEFAULT_DELEGATES).
    """

    def __init__(self, path: str | Path, runtime: str, threads: int, **options: Any):
        backend = resolve_runtime(runtime)
        resolver = options.get("experimental_op_resolver_type")
        if isinstance(resolver, str):
            module = sys.modules[backend.interpreter_class.__module__]
            options["experimental_op_resolver_type"] = getattr(module.OpResolverType, resolver)
        self.runtime, self.runtime_version, self.threads = backend.name, backend.version, threads
        self.interpreter = backend.interpreter_class(model_path=str(path), num_threads=threads, **options)
        self.interpreter.allocate_tensors()
        signature = self.interpreter._get_full_signature_list().get(SIGNATURE)
        if signature is None:
            raise ModelFileError(f"{path}: no {SIGNATURE} signature (not made by a current `edge-pcam convert`)")
        details = {d["index"]: d for d in (*self.interpreter.get_input_details(),
                                           *self.interpreter.get_output_details())}
        self._input = details[signature["inputs"]["image"]]
        self._prob = details[signature["outputs"]["probability"]]
        self.batch = int(self._input["shape"][0])

    def predict(self, images: np.ndarray) -> np.ndarray:
        images = np.asarray(images)
        images = images[None] if images.ndim == 3 else images
        out = np.empty(len(images), np.float32)
        scale, zero = self._prob["quantization"]
        for start in range(0, len(images), self.batch):
            chunk = images[start:start + self.batch]
            k = len(chunk)
            chunk = np.resize(chunk, (self.batch, *chunk.shape[1:])) if k < self.batch else chunk
            if self._input["dtype"] == np.float32:
                chunk = chunk.astype(np.float32) / np.float32(255.0)
            self.interpreter.set_tensor(self._input["index"], chunk)
            self.interpreter.invoke()
            prob = self.interpreter.get_tensor(self._prob["index"])[:k, 0]
            out[start:start + k] = prob if prob.dtype == np.float32 else (prob.astype(np.float32) - zero) * scale
        return out


def xnnpack_partitions(interpreter: Any) -> dict[str, Any]:
    """XNNPACK partitions and the ops that run outside them ({} where the interpreter cannot list its ops).

    A DELEGATE node lists the tensors entering and leaving its partition; an
    original node runs on the builtin kernels when something outside every
    partition (another builtin op, or a model output) needs one of its outputs.
    """
    try:
        ops = interpreter._get_ops_details()
    except Exception:  # noqa: BLE001 - a private API, absent in some versions
        return {}
    delegates = [o for o in ops if o["op_name"] == "DELEGATE"]
    originals = [o for o in ops if o["op_name"] != "DELEGATE"]
    from_delegate = {int(t) for o in delegates for t in o["outputs"]}
    needed = {int(t) for o in delegates for t in o["inputs"]}
    needed |= {int(d["index"]) for d in interpreter.get_output_details()}
    builtin: set[int] = set()
    while True:
        new = {o["index"] for o in originals if o["index"] not in builtin
               and any(int(t) in needed and int(t) not in from_delegate for t in o["outputs"])}
        if not new:
            break
        builtin |= new
        needed |= {int(t) for o in originals if o["index"] in new for t in o["inputs"]}
    left = [o["op_name"] for o in originals if o["index"] in builtin]
    return {"xnnpack_partitions": len(delegates), "builtin_ops": left, "builtin_kinds": sorted(set(left))}
