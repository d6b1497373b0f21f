"""`edge-pcam calibrate MODEL.tflite --data SPEC --out NEW.tflite`: thresholds from a lab's own patches."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from edge_pcam.cli.console import err, out, progress
from edge_pcam.cli.options import Data, Runtime
from edge_pcam.cli.predict import OptThreads


def calibrate(model: Annotated[Path, typer.Argument(help="The .tflite model to recalibrate (left unchanged).")],
              data: Data,
              out_file: Annotated[Path, typer.Option("--out", help="The recalibrated copy (.tflite).")],
              split: Annotated[Optional[list[str]], typer.Option("--split", help="Split(s) of --data to use "
                                                                 "(default: all).")] = None,
              force: Annotated[bool, typer.Option("--force", help="Calibrate even with fewer than 20 patches "
                                                  "of a class.")] = False,
              threads: OptThreads = None, runtime: Runtime = "auto") -> None:
    """Set new decision / triage / high-specificity thresholds on labelled patches; write a copy."""
    from rich.table import Table

    from edge_pcam.runtime.calibrate import OPERATING_POINTS, calibrate as run

    with progress(transient=True) as bar:
        task = bar.add_task("calibrate", total=None)
        report = run(model, data, out_file, splits=split, runtime=runtime, threads=threads, force=force,
                     on_start=lambda n: bar.update(task, total=n), progress=lambda k: bar.advance(task, k))
    table = Table(title=f"{model.name} on {data} ({report.n} patches: {report.counts['normal']} normal, "
                        f"{report.counts['tumour']} tumour; thresholds from {report.n_tuning}, the figures below "
                        f"on the other {report.n_rates})")
    for col in ("threshold", "before", "after", "sensitivity", "specificity", "accuracy"):
        table.add_column(col, justify="left" if col == "threshold" else "right")
    for name in OPERATING_POINTS:
        b, a = report.before.get(name), report.after[name]
        sens = f"{b['recall']:.3f} -> {a['recall']:.3f}" if b else f"{a['recall']:.3f}"
        spec = f"{b['specificity']:.3f} -> {a['specificity']:.3f}" if b else f"{a['specificity']:.3f}"
        acc = f"{b['accuracy']:.3f} -> {a['accuracy']:.3f}" if b else f"{a['accuracy']:.3f}"
        table.add_row(name, f"{b['threshold']:.4f}" if b else "-", f"{a['threshold']:.4f}", sens, spec, acc)
    out.print(table)
    err.print(f"wrote {out_file} (the original {model} is unchanged)", markup=False, highlight=False, soft_wrap=True)
