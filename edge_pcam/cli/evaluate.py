"""`edge-pcam evaluate MODEL --data SPEC [--split valid] [--tta] [--limit N]`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from edge_pcam.cli.console import err, out, progress
from edge_pcam.cli.options import Data, Split

KERAS_SUFFIXES = (".h5", ".hdf5", ".keras")


def evaluate(
    model: Annotated[Path, typer.Argument(help="A Keras .h5 (from edge-pcam train / qat) or a .tflite file.")],
    data: Data,
    split: Split = "valid",
    tta: Annotated[bool, typer.Option("--tta", help="Average the 8 flips/rotations of each patch.")] = False,
    limit: Annotated[Optional[int], typer.Option("--limit", help="Only the first N patches of the split.", min=1)] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Patches per forward pass.", min=1)] = 256,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write the metrics to this JSON file.")] = None,
) -> None:
    """Accuracy, precision, recall, specificity, F1 and AUC at 0.5, at the triage threshold
    (95% sensitivity) and at 99% specificity."""
    if model.suffix.lower() in KERAS_SUFFIXES:
        from edge_pcam.extras import require_train_extra
        require_train_extra(f"evaluating a Keras model ({model.name})")
    from edge_pcam.runtime.classify import check_outputs
    check_outputs([model], json=json_out)  # before the work: a bad --json is the first thing said
    import os
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from rich.table import Table

    from edge_pcam.runtime.datasets import open_dataset
    from edge_pcam.training.evaluate import evaluate_model

    n = len(open_dataset(data).split(split))
    total = n if limit is None else min(limit, n)
    with progress(transient=True) as bar:
        task = bar.add_task(f"{model.name} on {split}{' (TTA x8)' if tta else ''}", total=total)
        result = evaluate_model(model, data, split, batch_size=batch_size, limit=limit, tta=tta,
                                progress=lambda k: bar.advance(task, k))
    table = Table(title=f"{model} on {data}, split {split}, n={result.n}{', TTA x8' if tta else ''}")
    for col in ("point", "thresh", "acc", "prec", "recall", "spec", "F1", "AUC"):
        table.add_column(col, justify="left" if col == "point" else "right")
    for point, p in result.metrics.items():
        table.add_row(point, *(_cell(p[k]) for k in ("threshold", "accuracy", "precision", "recall", "specificity",
                                                      "f1", "auc")))
    out.print(table)
    for warning in result.warnings:
        err.print(f"edge-pcam: warning: {warning}", markup=False, highlight=False, soft_wrap=True)
    if json_out is not None:
        from edge_pcam.runtime.fileio import atomic_write_json
        atomic_write_json(json_out, result.to_json(), indent=2)


def _cell(value: float | None) -> str:
    """A table cell: three decimals, or '-' for a metric the data leaves undefined."""
    return "-" if value is None else f"{value:.3f}"
