"""`edge-pcam watch INBOX --out DIR`: the service next to the scanner; each new slide scanned once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from edge_pcam.cli.console import out
from edge_pcam.cli.options import ModelFile, Out, Runtime


def watch(
    inbox: Annotated[Path, typer.Argument(help="The folder the scanner (or a copy job) writes slides into; "
                                                "subfolders too.")],
    out_dir: Out,
    model: ModelFile = None,
    settle: Annotated[float, typer.Option("--settle", min=0, help="Seconds a slide's size must stay the same "
                                          "before it is read (a file still being copied is left alone).")] = 30.0,
    poll: Annotated[float, typer.Option("--poll", min=0.05, help="Seconds between looks at the inbox.")] = 5.0,
    once: Annotated[bool, typer.Option("--once", help="Handle the slides in the inbox now, then exit.")] = False,
    reader: Annotated[str, typer.Option("--reader", help="Slide reader: auto (the best for each file, the next "
                                        "when one fails), openslide, tifffile or pillow.")] = "auto",
    runtime: Runtime = "auto",
    threads: Annotated[Optional[int], typer.Option("--threads", help="Interpreter threads.", min=1)] = None,
    device: Annotated[Optional[str], typer.Option("--device", help="Edge TPU (usb, pci or :N) for a model "
                                                  "compiled with edgetpu_compiler.")] = None,
) -> None:
    """Scan each new slide in INBOX into DIR/<slide>/, one row per slide in DIR/summary.csv; SIGTERM stops it."""
    from edge_pcam.runtime.results import describe_event
    from edge_pcam.runtime.scan.batch import SlideScanner
    from edge_pcam.runtime.watch import Watcher

    scan_one = SlideScanner(model, reader=reader, runtime=runtime, threads=threads, device=device)  # models once
    watcher = Watcher(inbox, out_dir, scan_one, settle_seconds=settle, poll_seconds=poll,
                      on_event=lambda event: out.print(describe_event(event), highlight=False))
    watcher.run(once=once)
