"""`edge-pcam predict PATH...`: P(tumour) and a label per patch, on the device runtime."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from edge_pcam.cli.console import err, progress
from edge_pcam.cli.options import ModelFile, Runtime

Paths = Annotated[list[Path], typer.Argument(help="Images (PNG, JPEG, TIFF), folders of them, PCam HDF5 files.",
                                             show_default=False)]
OptThreads = Annotated[Optional[int], typer.Option("--threads", min=1, help="Interpreter threads "
                                                   "(default: every core, up to 4).")]
Device = Annotated[Optional[str], typer.Option("--device", help="Edge TPU: usb, pci or :N (needs libedgetpu "
                                               "and a model compiled for it).")]
NoCrop = Annotated[bool, typer.Option("--no-crop", help="Refuse images larger than 96x96 instead of "
                                      "centre-cropping them.")]
Threshold = Annotated[Optional[float], typer.Option("--threshold", help="Label threshold (default: the "
                                                    "decision threshold stored in the model).")]
Triage = Annotated[bool, typer.Option("--triage", help="Use the stored 95%-sensitivity threshold.")]


def predict(paths: Paths, model: ModelFile = None,
            csv: Annotated[Optional[Path], typer.Option("--csv", help="Write path,probability,prediction rows here "
                                                        "(default: to stdout unless --json).")] = None,
            json: Annotated[Optional[Path], typer.Option("--json", help="Write rows, settings and summary as JSON.")] = None,
            tta: Annotated[bool, typer.Option("--tta", help="Average over the 8 flips/rotations (8x slower).")] = False,
            threshold: Threshold = None, triage: Triage = False, threads: OptThreads = None,
            runtime: Runtime = "auto", device: Device = None, no_crop: NoCrop = False) -> None:
    """Classify patches with a .tflite model, without TensorFlow."""
    import sys

    from edge_pcam.errors import DataError
    from edge_pcam.runtime.classify import check_outputs, classify, csv_text, write_csv, write_json
    from edge_pcam.runtime.interpreter import load_model

    check_outputs(paths, csv=csv, json=json)  # before the work: a bad --csv or --json is the first thing said
    patch_model = load_model(model, runtime=runtime, threads=threads, device=device)
    with progress(transient=True) as bar:
        task = bar.add_task("predict", total=None)
        result = classify(paths, patch_model, threshold=threshold, triage=triage, tta=tta, crop=not no_crop,
                          on_start=lambda n: bar.update(task, total=n),
                          progress=lambda k: bar.advance(task, k),
                          on_error=lambda p: err.print(f"edge-pcam: skipped {p.path}: {p.error}",
                                                       markup=False, highlight=False, soft_wrap=True))
    if not result.predictions:  # before any file is written: a run that read nothing changes nothing
        _summary(result, patch_model, tta)
        raise DataError("no patch could be read" if result.errors else "no patches given")
    if csv is not None:
        write_csv(result, csv)
    if json is not None:
        write_json(result, json)
    if csv is None and json is None:
        sys.stdout.write(csv_text(result))
    _summary(result, patch_model, tta)
    if result.errors:
        raise typer.Exit(1)


def _summary(result, patch_model, tta: bool) -> None:
    """The run's one line on stderr: counts per label, failures, model and runtime, time."""
    counts = ", ".join(f"{n} {label}" for label, n in sorted(result.counts().items())) or "none"
    failed = f"; {len(result.errors)} failed" if result.errors else ""
    n = len(result.predictions)
    err.print(f"{n} patch{'es' * (n != 1)}: {counts} (threshold {result.threshold:.4g}, "
              f"{result.threshold_name}{', TTA' if tta else ''}){failed}; {patch_model.describe()}; "
              f"{result.seconds:.2f} s", markup=False, highlight=False, soft_wrap=True)
