"""`edge-pcam scan SLIDE... --out DIR`: tumour heatmap, burden, top tiles and viewer files of slides, on the device."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from edge_pcam.cli.console import err, out, progress
from edge_pcam.cli.options import ModelFile, Out, Runtime


def scan(
    slides: Annotated[list[Path], typer.Argument(help="Whole-slide images (SVS, NDPI, MRXS, DICOM, tiled TIFF / "
                                                      "OME-TIFF, what else OpenSlide reads) or plain TIFF/PNG/JPEG; "
                                                      "or folders of slides (subfolders too).")],
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
    reader: Annotated[str, typer.Option("--reader", help="auto (tifffile for SVS and generic/OME-TIFF, OpenSlide "
                                        "for the other vendors' formats, Pillow for PNG/JPEG; the next one when a "
                                        "reader cannot open or decode the file), openslide, tifffile or pillow.")
                      ] = "auto",
    runtime: Runtime = "auto",
    threads: Annotated[Optional[int], typer.Option("--threads", help="Interpreter threads.", min=1)] = None,
    device: Annotated[Optional[str], typer.Option("--device", help="Edge TPU (usb, pci or :N) for a model "
                                                  "compiled with edgetpu_compiler.")] = None,
) -> None:
    """Scan slides at PCam's magnification over tissue only; a killed scan resumes where it stopped.

    One slide: its results go into DIR. Several, or a folder: into DIR/<slide name>/ each, with one row per
    slide in DIR/summary.csv; a slide that fails is a row with its reason, and a batch started again skips
    the slides already done.
    """
    from edge_pcam.runtime.fileio import check_output_folder

    check_output_folder(out_dir)  # before the slides and models are opened: a bad --out is said at once
    bar = progress()
    task = None

    def update(done: int, total: int) -> None:
        nonlocal task
        if task is None:  # started with the first tile, so early errors print alone
            bar.start()
            task = bar.add_task("scanning", total=total)
        bar.update(task, completed=done, total=total)

    def announce(line: str) -> None:  # between slides: the bar of the slide before goes
        nonlocal task
        if task is not None:
            bar.stop()
            bar.remove_task(task)
            task = None
        err.print(line, markup=False, highlight=False, soft_wrap=True)

    options: dict[str, Any] = dict(stride=stride, mpp=mpp, batch=batch, top_k=top_k, explain=explain,
                                   runtime=runtime, threads=threads, device=device, reader=reader,
                                   progress=update if err.is_terminal else None)  # no bar in logs
    try:
        if len(slides) == 1 and not slides[0].is_dir():
            _scan_one(slides[0], out_dir, model, options)
        else:
            _scan_many(slides, out_dir, model, options, announce)
    finally:
        if task is not None:
            bar.stop()


def _scan_one(image: Path, out_dir: Path, model: Optional[Path], options: dict[str, Any]) -> None:
    from edge_pcam.runtime.scan import scan_slide
    from edge_pcam.runtime.slide_result import summary_line

    report = scan_slide(image, out_dir, model, **options).report
    if report.slide_result is not None:
        out.print(summary_line(report.slide_result), highlight=False, soft_wrap=True)
    for warning in report.warnings:
        err.print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)  # one line each, in logs too
    tiles, model_info, geometry = report.tiles, report.model, report.geometry
    out.print(f"{image}: {tiles.tissue:,} tissue tiles of {geometry.rows * geometry.cols:,} "
              f"at {geometry.mpp:.3f} µm/px ({tiles.computed:,} classified now, "
              f"{tiles.resumed:,} from an earlier run), read with {report.slide.reader}, model "
              f"{Path(model_info.path).name} run as {Path(model_info.inference_file).name} "
              f"(batch {model_info.inference_batch}) on {model_info.runtime}", soft_wrap=True)
    if report.slide_result is not None:
        left_out = {k: v for k, v in report.slide_result.qc["excluded_mm2"].items() if k != "background" and v}
        if left_out:
            out.print("quality control left out of the tissue: "
                      + ", ".join(f"{reason} {area:.3g} mm²" for reason, area in left_out.items()), soft_wrap=True)
    for name, burden in report.tumour_burden.items():
        if burden is not None and burden.fraction is not None:
            out.print(f"tiles at or above the {name} threshold {burden.threshold:.3f}: "
                      f"{burden.fraction:.1%} ({burden.positive_tiles:,} tiles; a raw count, not the burden)",
                      soft_wrap=True)
    for entry in report.top_tiles:
        out.print(f"  #{entry.rank}: P={entry.probability:.3f} at x={entry.x}, y={entry.y} "
                  f"(level 0, {entry.size:.0f} px)", soft_wrap=True)
    out.print(f"report: {out_dir / 'scan.json'}; heatmap: {out_dir / 'heatmap.png'}; QuPath: "
              f"{out_dir / report.files['geojson']}; ASAP: {out_dir / report.files['asap_xml']}", soft_wrap=True)


def _scan_many(images: list[Path], out_dir: Path, model: Optional[Path], options: dict[str, Any],
               announce: Callable[[str], None]) -> None:
    from edge_pcam.runtime.results import describe_event
    from edge_pcam.runtime.scan.batch import SlideScanner, batch_slides, scan_batch
    from edge_pcam.runtime.summary import OK, SUMMARY_FILE

    slides = batch_slides(images)
    scanner = SlideScanner(model, **options)  # the models once, for every slide
    rows = scan_batch(slides, out_dir, scanner, on_event=lambda event: announce(describe_event(event)))
    failed = [row for row in rows if row["status"] != OK]
    out.print(f"{len(rows)} slide{'s' * (len(rows) != 1)} scanned now ({len(rows) - len(failed)} ok, "
              f"{len(failed)} failed), {len(slides) - len(rows)} done earlier; summary: {out_dir / SUMMARY_FILE}",
              highlight=False, soft_wrap=True)
    if failed:
        raise typer.Exit(1)
