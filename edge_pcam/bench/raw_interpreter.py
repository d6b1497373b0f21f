"""A model file in a TFLite interpreter with nothing of edge-pcam's runtime in between, and how its graph ran.

`RawInterpreter` gives the file's flatbuffer (the bytes before the model
card's archive) unchanged to ai-edge-litert, tflite-runtime or tf.lite, with
any of the interpreter's own constructor options, and calls it directly: set
the input, invoke, read every output. Benchmarks time it beside the runtime's
`PatchModel` to show what the runtime adds or changes. `xnnpack_partitions`
says which ops the XNNPACK delegate took and which ran on the builtin kernels.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from edge_pcam.runtime.interpreter import read_model_file, resolve_runtime


class RawInterpreter:
    """The file as it is in one interpreter; `options` go to the Interpreter constructor as given, except
    `experimental_op_resolver_type`, which may be named (AUTO, BUILTIN, BUILTIN_WITHOUT_DEFAULT_DELEGATES)."""

    def __init__(self, path: str | Path, runtime: str, threads: int, **options: Any):
        _, content, _ = read_model_file(path)
        backend = resolve_runtime(runtime)
        resolver = options.get("experimental_op_resolver_type")
        if isinstance(resolver, str):
            module = sys.modules[backend.interpreter_class.__module__]
            options["experimental_op_resolver_type"] = getattr(module.OpResolverType, resolver)
        self.runtime, self.runtime_version, self.threads = backend.name, backend.version, threads
        self.interpreter = backend.interpreter_class(model_content=content, num_threads=threads, **options)
        self.interpreter.allocate_tensors()
        self._input = self.interpreter.get_input_details()[0]
        self._outputs = [d["index"] for d in self.interpreter.get_output_details()]

    def predict(self, images: np.ndarray) -> list[np.ndarray]:
        """Every output tensor for uint8 patches of the file's batch (divided by 255 for a float input)."""
        x = np.asarray(images)
        if self._input["dtype"] == np.float32:
            x = x.astype(np.float32) / np.float32(255.0)
        self.interpreter.set_tensor(self._input["index"], x)
        self.interpreter.invoke()
        return [self.interpreter.get_tensor(i) for i in self._outputs]


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
