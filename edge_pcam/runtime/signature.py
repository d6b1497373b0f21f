"""An edge-pcam file's tensors, found by their names in its serving_default signature.

Every file `edge-pcam convert` writes names its tensors in the signature the
converter records: a classifier's input `image` [B, 96, 96, 3] and outputs
`probability` [B, 1] and `features` [B, 12, 12, 256] (the pool3 map); the
Grad-CAM companion's input `features` [1, 12, 12, 256] and outputs `logit`
[1, 1] and `gradient` [1, 12, 12, 256]. This is the one place that finds
them, for the runtime and the exporter alike; the shapes are a check.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edge_pcam.errors import ModelFileError
from edge_pcam.runtime.constants import FEATURE_SHAPE, PATCH_SHAPE
from edge_pcam.runtime.flatbuffer import signatures

SIGNATURE = "serving_default"
CLASSIFIER_INPUTS = {"image": (None, *PATCH_SHAPE)}
CLASSIFIER_OUTPUTS = {"probability": (None, 1), "features": (None, *FEATURE_SHAPE)}
COMPANION_INPUTS = {"features": (1, *FEATURE_SHAPE)}
COMPANION_OUTPUTS = {"logit": (1, 1), "gradient": (1, *FEATURE_SHAPE)}


def signature_tensors(interpreter: Any, content: bytes, inputs: dict[str, tuple[int | None, ...]],
                      outputs: dict[str, tuple[int | None, ...]], name: str, kind: str,
                      optional: tuple[str, ...] = ()) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """The interpreter's input and output details by their names in the file's serving_default signature.

    `inputs` / `outputs` name the tensors expected and their shapes (None: any
    size, e.g. the batch); a name in `optional` may be absent. ModelFileError
    (one line) when the signature is missing, a name is absent or a shape differs.
    """
    signature = signatures(content).get(SIGNATURE)
    if signature is None or signature["subgraph"] != 0:
        raise ModelFileError(f"{name}: no {SIGNATURE} signature naming its inputs and outputs (made by an early "
                             "edge-pcam or another tool); convert it again with `edge-pcam convert`")
    by_index = {int(d["index"]): d for d in (*interpreter.get_input_details(), *interpreter.get_output_details())}
    found: list[dict[str, dict[str, Any]]] = []
    for side, wanted in (("inputs", inputs), ("outputs", outputs)):
        named = signature[side]
        details = {}
        for tensor, shape in wanted.items():
            if tensor not in named:
                if tensor in optional:
                    continue
                raise ModelFileError(f"{name}: not an edge-pcam {kind} (its {SIGNATURE} {side} are "
                                     f"{', '.join(sorted(named)) or 'none'}; expected {', '.join(wanted)})")
            detail = by_index.get(named[tensor])
            actual = tuple(int(s) for s in detail["shape"]) if detail is not None else None
            if actual is None or len(actual) != len(shape) or any(
                    want is not None and got != want for got, want in zip(actual, shape)):
                expected = "[" + ", ".join("B" if d is None else str(d) for d in shape) + "]"
                raise ModelFileError(f"{name}: not an edge-pcam {kind} (its '{tensor}' tensor has shape "
                                     f"{list(actual or [])}, expected {expected})")
            details[tensor] = detail
        found.append(details)
    return found[0], found[1]


def tensor_spec(detail: dict[str, Any]) -> dict[str, Any]:
    """One tensor as the card describes it: shape, dtype and, when quantized, scale and zero point."""
    dtype = np.dtype(detail["dtype"]).name
    scale, zero = detail["quantization"]
    quantized = dtype in ("int8", "uint8")
    return {"shape": [int(s) for s in detail["shape"]], "dtype": dtype,
            "scale": float(scale) if quantized else None, "zero_point": int(zero) if quantized else None}
