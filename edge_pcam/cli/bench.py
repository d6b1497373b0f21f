"""`edge-pcam bench`: latency and accuracy of every model format in every installed runtime."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from edge_pcam.cli.console import err, out
from edge_pcam.cli.options import Data, Out
from edge_pcam.errors import EdgePcamError


def bench(
    data: Data,
    out_dir: Out,
    models: Annotated[Optional[Path], typer.Option("--models", help="Folder of model files (.tflite made by "
                                                   "edge-pcam convert, Keras .h5); formats are read from their "
                                                   "metadata. Default: the bundled models.")] = None,
    split: Annotated[Optional[str], typer.Option("--split", help="Split to measure on (default: test, else valid).")] = None,
    runtimes: Annotated[Optional[str], typer.Option("--runtimes", help="Comma-separated: ai-edge-litert, "
                                                    "tflite-runtime, tf.lite (default: every installed one).")] = None,
    threads: Annotated[str, typer.Option("--threads", help="Comma-separated thread counts for latency.")] = "1,2,4",
    device: Annotated[Optional[str], typer.Option("--device", help="Compare with a device's reference latency "
                                                  "(raspberry-pi-4, raspberry-pi-5, coral-usb, coral-dev-board, or a "
                                                  "reference.csv), ±30%.")] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", help="At most N patches for the accuracy figures "
                                                 "(a seeded random sample).", min=1)] = None,
    budget: Annotated[float, typer.Option("--budget", help="Seconds of timed calls per row and thread count.",
                                          min=0.0)] = 2.0,
    cold_start: Annotated[bool, typer.Option("--cold-start/--no-cold-start", help="Measure cold start and peak "
                                             "memory in a fresh process per row.")] = True,
    peak: Annotated[bool, typer.Option("--peak/--no-peak", help="Measure the machine's int8 arithmetic limit.")] = True,
    paired: Annotated[bool, typer.Option("--paired/--no-paired", help="Measure the performance goals' latencies "
                                         "side by side in rotating rounds (robust to a busy machine).")] = True,
    peak_model: Annotated[Optional[Path], typer.Option("--peak-model", help="The int8 FULLY_CONNECTED probe "
                                                       "file to time (default: built with TensorFlow and cached).")] = None,
) -> None:
    """Benchmark every format x runtime: size, accuracy, F1, AUC, latency p50/p95, throughput, cold start."""
    from edge_pcam.bench.report import write_report
    from edge_pcam.bench.runner import BenchSettings, command_line, run_bench
    from edge_pcam.runtime.fileio import check_output_folder

    check_output_folder(out_dir)  # before the work: a bad --out is the first thing said
    if models is None:
        from edge_pcam.runtime.bundled import MODELS_DIR
        models = MODELS_DIR
    try:
        thread_list = [int(t) for t in threads.split(",") if t.strip()]
    except ValueError:
        raise EdgePcamError(f"--threads {threads}: give comma-separated whole numbers, e.g. 1,2,4") from None
    if not thread_list:
        raise EdgePcamError(f"--threads {threads}: give at least one thread count of 1 or more")
    from edge_pcam.runtime.interpreter import check_threads
    try:
        thread_list = [check_threads(t) for t in thread_list]
    except EdgePcamError as exc:
        raise EdgePcamError(f"--threads {threads}: {exc}") from None
    settings = BenchSettings(
        models=models, data=data, out=out_dir, split=split,
        runtimes=[r for r in runtimes.split(",") if r.strip()] if runtimes else None,
        threads=thread_list, limit=limit, device=device, budget_s=budget, cold_start=cold_start,
        peak=peak, peak_model=peak_model, paired=paired, command=command_line())
    with err.status("benchmarking") as status:
        result = run_bench(settings, log=lambda msg: status.update(f"bench: {msg}"))
    files = write_report(result, out_dir)
    counts = {s: sum(r["status"] == s for r in result["rows"]) for s in ("ok", "skipped", "failed")}
    out.print(f"{len(result['rows'])} rows: {counts['ok']} ok, {counts['skipped']} skipped, {counts['failed']} failed")
    out.print(f"report: {files[0].parent / 'report.md'}")
