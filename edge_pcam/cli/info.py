"""`edge-pcam info [MODEL]`: the design's layer table, or what a model file carries."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from edge_pcam.cli.console import out


def info(model: Annotated[Optional[Path], typer.Argument(help="A .tflite file to describe; none for the design's model.")] = None) -> None:
    """Print the model's layers and parameter count, or a .tflite file's metadata."""
    if model is not None:
        from edge_pcam.runtime.metadata import read_metadata
        out.print_json(json.dumps(read_metadata(model)))
        return
    from rich.table import Table

    from edge_pcam.architecture import MODEL_NAME, PARAMETER_COUNT, design_layers
    layers = design_layers()  # a static description: no TensorFlow needed
    table = Table(title=f"{MODEL_NAME}: the design's attention-CNN")
    for col in ("layer", "type", "output shape", "parameters"):
        table.add_column(col, justify="right" if col == "parameters" else "left")
    for layer in layers:
        table.add_row(layer.name, layer.kind, str(layer.output), f"{layer.parameters:,}")
    out.print(table)
    total = sum(layer.parameters for layer in layers)
    out.print(f"Total parameters: {total:,} (the design states {PARAMETER_COUNT:,})")
