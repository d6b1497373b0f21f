"""The design's attention-CNN described without TensorFlow: its layers, their output shapes and parameters.

`edge-pcam info` shows this table on any install, a device without TensorFlow
included. It is derived from the same sizes as edge_pcam.model.build_model
(which imports them from here), in the order Keras lists the layers, and a test
pins it to the Keras model's own summary.
"""

from __future__ import annotations

from dataclasses import dataclass

PATCH_SIZE = 96
CHANNELS = 3
CONV_FILTERS = (64, 128, 256)
KERNEL = 3
ATTENTION_DIM = 128
HEAD_UNITS = 64
PARAMETER_COUNT = 494_337  # the design document's total
MODEL_NAME = "edge_pcam_attention_cnn"

Shape = tuple[int, ...]


@dataclass(frozen=True)
class LayerRow:
    """One layer: its name in the Keras model, its Keras class, output shape (no batch) and parameters."""

    name: str
    kind: str
    output: Shape
    parameters: int = 0


def _dense(inputs: int, units: int) -> int:
    return inputs * units + units


def design_layers() -> list[LayerRow]:
    """The layers of build_model(), in Keras's order."""
    rows: list[LayerRow] = []

    def add(name: str, kind: str, output: Shape, parameters: int = 0) -> Shape:
        rows.append(LayerRow(name, kind, output, parameters))
        return output

    x = add("image", "InputLayer", (PATCH_SIZE, PATCH_SIZE, CHANNELS))
    for i, filters in enumerate(CONV_FILTERS, start=1):
        x = add(f"conv{i}", "Conv2D", (x[0], x[1], filters), KERNEL * KERNEL * x[2] * filters + filters)
        x = add(f"pool{i}", "MaxPooling2D", (x[0] // 2, x[1] // 2, x[2]))
    tokens, width = x[0] * x[1], x[2]
    add("tokens", "Reshape", (tokens, width))
    for name in ("q", "k"):
        add(name, "Dense", (tokens, ATTENTION_DIM), _dense(width, ATTENTION_DIM))
    add("scores", "Dot", (tokens, tokens))
    add("scale", "Rescaling", (tokens, tokens))
    add("attn", "Softmax", (tokens, tokens))
    add("v", "Dense", (tokens, ATTENTION_DIM), _dense(width, ATTENTION_DIM))
    add("context", "Dot", (tokens, ATTENTION_DIM))
    add("o", "Dense", (tokens, ATTENTION_DIM), _dense(ATTENTION_DIM, ATTENTION_DIM))
    add("gap", "GlobalAveragePooling1D", (ATTENTION_DIM,))
    add("fc", "Dense", (HEAD_UNITS,), _dense(ATTENTION_DIM, HEAD_UNITS))
    add("dropout", "Dropout", (HEAD_UNITS,))
    add("logit", "Dense", (1,), _dense(HEAD_UNITS, 1))
    add("prob", "Activation", (1,))
    return rows
