"""The static layer table `edge-pcam info` shows without TensorFlow is the Keras model's own summary."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.tf


def test_static_table_equals_the_keras_model():
    from edge_pcam.architecture import MODEL_NAME, design_layers
    from edge_pcam.model import build_model

    model = build_model()
    keras_rows = []
    for layer in model.layers:
        shape = layer.output_shape
        shape = shape[0] if isinstance(shape, list) else shape
        keras_rows.append((layer.name, type(layer).__name__, tuple(shape[1:]), layer.count_params()))
    static_rows = [(r.name, r.kind, r.output, r.parameters) for r in design_layers()]
    assert static_rows == keras_rows
    assert model.name == MODEL_NAME
    assert sum(r[3] for r in static_rows) == model.count_params() == 494_337  # the design's stated total
