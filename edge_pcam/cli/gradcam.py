"""`edge-pcam gradcam PATH... --out DIR`: Grad-CAM of the deployed model, computed on the device."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from edge_pcam.cli.console import err, progress
from edge_pcam.cli.options import ModelFile, Out, Runtime
from edge_pcam.cli.predict import Device, NoCrop, OptThreads, Paths, Threshold, Triage


def gradcam(paths: Paths, out: Out, model: ModelFile = None,
            companion: Annotated[Optional[Path], typer.Option("--companion", help="The Grad-CAM companion "
                                                              "(default: the one named in the model).")] = None,
            threshold: Threshold = None, triage: Triage = False, threads: OptThreads = None,
            runtime: Runtime = "auto", device: Device = None, no_crop: NoCrop = False) -> None:
    """Write an overlay PNG, a heatmap PNG and a 12x12 .npy map per patch (and gradcam.csv) to --out."""
    from edge_pcam.errors import DataError
    from edge_pcam.runtime.fileio import check_output_folder
    from edge_pcam.runtime.gradcam import load_companion, run_gradcam
    from edge_pcam.runtime.interpreter import load_model

    check_output_folder(out)  # before the models load: a bad --out is the first thing said
    patch_model = load_model(model, runtime=runtime, threads=threads, device=device)
    comp = load_companion(patch_model, companion)
    with progress(transient=True) as bar:
        task = bar.add_task("gradcam", total=None)
        result = run_gradcam(paths, patch_model, out, companion=comp, threshold=threshold, triage=triage,
                             crop=not no_crop, on_start=lambda n: bar.update(task, total=n),
                             progress=lambda k: bar.advance(task, k),
                             on_error=lambda p: err.print(f"edge-pcam: skipped {p.path}: {p.error}",
                                                          markup=False, highlight=False, soft_wrap=True))
    failed = f"; {len(result.errors)} failed" if result.errors else ""
    err.print(f"{len(result.rows)} Grad-CAM maps in {out} (index: gradcam.csv){failed}; "
              f"{patch_model.describe()}; {result.seconds:.2f} s", markup=False, highlight=False, soft_wrap=True)
    if not result.rows:
        raise DataError("no patch could be read" if result.errors else "no patches given")
    if result.errors:
        raise typer.Exit(1)
