"""`edge-pcam convert MODEL --data SPEC --out DIR [--float32] [--float16] [--dynamic] [--int8] [--edgetpu]`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from edge_pcam.cli.console import out
from edge_pcam.cli.options import Data


def convert(
    model: Annotated[Path, typer.Argument(help="A trained .h5 model (float, or QAT from `edge-pcam qat`).")],
    data: Data,
    out_dir: Annotated[Path, typer.Option("--out", help="Output folder for the .tflite files and the report.")],
    float32: Annotated[bool, typer.Option("--float32", help="Float32 (the reference; must match Keras to 1e-4).")] = False,
    float16: Annotated[bool, typer.Option("--float16", help="Float16 weights (half the size).")] = False,
    dynamic: Annotated[bool, typer.Option("--dynamic", help="Dynamic range: int8 weights, float activations "
                                          "(ai-edge-litert only; tflite-runtime 2.14 cannot run it).")] = False,
    int8: Annotated[bool, typer.Option("--int8", help="Full integer: uint8 input taking raw pixels, int8 ops.")] = False,
    edgetpu: Annotated[bool, typer.Option("--edgetpu", help="int8, then edgetpu_compiler (must be on PATH).")] = False,
    recipe: Annotated[Optional[str], typer.Option("--recipe", help="A set of formats from convert/ (edge, all, "
                                                  "coral, scan) or a .toml file; default edge when no format "
                                                  "flag is given.")] = None,
    representative: Annotated[Optional[int], typer.Option("--representative", min=1, help="int8 calibration "
                                                          "patches from the train split (default 500, balanced).")] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", min=1, help="Validate on N random valid patches "
                                                 "(default: all; 1,000 carry about +-0.5 point of noise).")] = None,
    max_drop: Annotated[Optional[float], typer.Option("--max-drop", min=0.0, help="Accuracy points a quantized "
                                                      "file may lose against Keras (default 1.0).")] = None,
    batch: Annotated[Optional[int], typer.Option("--batch", min=1, help="Fixed batch of the files (default 1; "
                                                 "e.g. 64 for edge-pcam scan).")] = None,
    tune_from_train: Annotated[Optional[int], typer.Option("--tune-from-train", min=0, help="Choose the "
                                                           "thresholds on N balanced patches carved from the train "
                                                           "split, as `edge-pcam train` carves its tuning set (same "
                                                           "N and seed 0: same patches); 0 (default): on valid.")] = None,
    companion: Annotated[Optional[bool], typer.Option("--companion/--no-companion", help="Also write the "
                                                      "Grad-CAM companion (default on).")] = None,
    name: Annotated[str, typer.Option("--name", help="File name prefix.")] = "edge_pcam",
) -> None:
    """Convert a Keras model to TFLite files with metadata, gated against the Keras model on validation data."""
    from edge_pcam.extras import require_train_extra
    require_train_extra("edge-pcam convert")
    import os
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from edge_pcam.export.recipe import DEFAULT_RECIPE, load_convert_recipe

    flags = [f for f, on in (("float32", float32), ("float16", float16), ("dynamic", dynamic),
                             ("int8", int8), ("edgetpu", edgetpu)) if on]
    chosen = load_convert_recipe(recipe or DEFAULT_RECIPE) if recipe or not flags else {}
    settings = {"formats": flags or chosen["formats"],
                "companion": companion if companion is not None else chosen.get("companion", True),
                "representative": representative or chosen.get("representative", 500),
                "limit": limit if limit is not None else chosen.get("limit"),
                "max_drop": max_drop if max_drop is not None else chosen.get("max_drop", 1.0),
                "batch": batch or chosen.get("batch", 1),
                "tune_from_train": (tune_from_train if tune_from_train is not None
                                    else chosen.get("tune_from_train", 0))}

    from edge_pcam.cli.console import progress
    from edge_pcam.export.conversion import convert as run_conversion
    with progress(transient=True) as bar:
        tasks: dict[str, int] = {}

        def advance(done: int, total: int) -> None:
            if not tasks:
                tasks["patches"] = bar.add_task("patches", total=total)
            bar.update(tasks["patches"], completed=done, total=total)

        result = run_conversion(model, out_dir, data, name=name, recipe=chosen or None,
                                log=lambda msg: bar.console.print(f"[dim]{msg}[/dim]"), progress=advance,
                                **settings)
    for f in result.files + ([result.companion] if result.companion else []):
        status = "[green]ok[/green]" if f.accepted else "[red]REJECTED[/red]"
        detail = ""
        if f.parity and "max_abs_dprob" in f.parity:
            detail = (f"max|dprob| {f.parity['max_abs_dprob']:.1e}, agreement {100 * f.parity['agreement']:.1f}%, "
                      f"accuracy {f.parity['accuracy_drop_points']:+.2f} pt drop")
        elif f.parity and "correlation" in f.parity:
            detail = f"Grad-CAM correlation {f.parity['correlation']:.4f}"
        out.print(f"{status} {f.path} ({f.size_bytes / 1e6:.2f} MB) {detail}", soft_wrap=True)
    if result.partition:
        p = result.partition
        out.print(f"Edge TPU: {p['ops_on_edgetpu']}/{p['op_count']} ops, {p['mac_share_on_edgetpu']:.1%} of MACs "
                  "would map" + (f"; cut at {p['first_unmappable']['op']} (op {p['first_unmappable']['index']})"
                                 if p["first_unmappable"] else ""), soft_wrap=True)
    out.print(f"report: {result.summary_md}", soft_wrap=True)
    result.raise_for_failures()
