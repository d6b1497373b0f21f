"""Multiply-accumulates per inference, counted from a .tflite file's own ops and tensor shapes.

Counted: CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED and BATCH_MATMUL (the
ops that carry more than 99% of the arithmetic in the design's model: about
0.3775 GMAC per patch, 94% of it in the three convolutions). Pooling,
softmax and element-wise ops are not MACs and are left out.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def count_macs(interpreter: Any) -> int | None:
    """MACs of one invoke of an allocated interpreter; None when its ops cannot be listed."""
    try:
        ops = interpreter._get_ops_details()  # public enough: tf.lite, ai-edge-litert and tflite-runtime have it
        tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    except (AttributeError, ValueError, RuntimeError):
        return None

    def shape(index: int) -> np.ndarray:
        return np.asarray(tensors[int(index)]["shape"]) if int(index) in tensors else np.asarray([])

    total = 0
    for op in ops:
        name = op.get("op_name", "")
        inputs, outputs = list(op.get("inputs", [])), list(op.get("outputs", []))
        if not outputs or len(inputs) < 2:
            continue
        out_elems = int(np.prod(shape(outputs[0])))
        weights = shape(inputs[1])
        if name == "CONV_2D" and weights.size == 4:
            total += out_elems * int(np.prod(weights[1:]))
        elif name == "DEPTHWISE_CONV_2D" and weights.size == 4:
            total += out_elems * int(weights[1] * weights[2])
        elif name == "FULLY_CONNECTED" and weights.size == 2:
            total += out_elems * int(weights[1])
        elif name == "BATCH_MATMUL":
            lhs = shape(inputs[0])
            if lhs.size >= 2:
                total += out_elems * int(lhs[-1])
    return total
