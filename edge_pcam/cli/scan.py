"""`edge-pcam scan IMAGE --out DIR`: tumour heatmap, burden and top tiles of a slide, on the device."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from edge_pcam.cli.console import err, out, progress
from edge_pcam.cli.options import ModelFile, Out, Runtime


def scan(
    image: Annotated[Path, typer.Argument(help="A whole-slide image (tiled pyramidal TIFF, SVS, NDPI; other "
                                                "formats with openslide) or a plain TIFF/PNG/JPEG.")],
    out_dir: Out,
    model: ModelFile = None,
    stride: Annotated[int, typer.Option("--stride", help="Pixels between tiles at 0.972 µm/px (96: no overlap).",
                                        min=1)] = 96,
    mpp: Annotated[Optional[float], typer.Option("--mpp", help="µm per pixel of the image's full resolution "
                                                 "(overrides its metadata; needed when it has none).")] = None,
    batch: Annotated[Optional[int], typer.Option("--batch", help="Use the batched conversion with this batch "
                                                 "found beside the model (default: the largest there).",
                                                 min=1)] = None,
    top_k: Annotated[int, typer.Option("--top-k", help="How many suspicious tiles to report.", min=0)] = 8,
    explain: Annotated[bool, typer.Option("--explain", help="Also save Grad-CAM overlays of the top tiles.")] = False,
    reader: Annotated[str, typer.Option("--reader", help="auto (tifffile for TIFF/SVS/NDPI, Pillow for PNG/JPEG, "
                                        "openslide for other formats), tifffile, openslide, tiffslide or pillow.")
                      ] = "auto",
    runtime: Runtime = "auto",
    threads: Annotated[Optional[int], typer.Option("--threads", help="Interpreter threads.", min=1)] = None,
    device: Annotated[Optional[str], typer.Option("--device", help="Edge TPU (usb, pci or :N) for a model "
                                                  "compiled with edgetpu_compiler.")] = None,
) -> None:
    """Scan a slide at PCam's magnification over tissue only; a killed scan resumes where it stopped."""
    from edge_pcam.runtime.scan import scan_slide

    bar = progress()
    task = None

    def update(done: int, total: int) -> None:
        nonlocal task
        if task is None:  # started with the first tile, so early errors print alone
            bar.start()
            task = bar.add_task(f"scanning {image.name}", total=total)
        bar.update(task, completed=done, total=total)

    try:
        result = scan_slide(image, out_dir, model, stride=stride, mpp=mpp, batch=batch, top_k=top_k,
                            explain=explain, runtime=runtime, threads=threads, device=device, reader=reader,
                            progress=update if err.is_terminal else None)  # no bar in logs
    finally:
        if task is not None:
            bar.stop()
    report = result.report
    for warning in report.warnings:
        err.print(f"[yellow]warning:[/] {warning}")
    tiles, model_info, geometry = report.tiles, report.model, report.geometry
    out.print(f"{image}: {tiles.tissue:,} tissue tiles of {geometry.rows * geometry.cols:,} "
              f"at {geometry.mpp:.3f} µm/px ({tiles.computed:,} classified now, "
              f"{tiles.resumed:,} from an earlier run), model {Path(model_info.path).name} "
              f"run as {Path(model_info.inference_file).name} (batch {model_info.inference_batch}) "
              f"on {model_info.runtime}")
    for name, burden in report.tumour_burden.items():
        if burden is not None and burden.fraction is not None:
            out.print(f"tumour burden at {name} threshold {burden.threshold:.3f}: "
                      f"{burden.fraction:.1%} ({burden.positive_tiles:,} tiles)")
    for entry in report.top_tiles:
        out.print(f"  #{entry.rank}: P={entry.probability:.3f} at x={entry.x}, y={entry.y} "
                  f"(level 0, {entry.size:.0f} px)")
    out.print(f"report: {out_dir / 'scan.json'}; heatmap: {out_dir / 'heatmap.png'}")
