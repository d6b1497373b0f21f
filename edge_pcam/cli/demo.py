"""`edge-pcam demo`: train, quantize, convert, benchmark, explain and scan, into one report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edge_pcam.cli.console import out as console
from edge_pcam.cli.options import OptionalData


def demo(data: OptionalData = None,
         out: Annotated[Path, typer.Option("--out", help="Output folder (replaced).")] = Path("runs/demo")) -> None:
    """Run the whole job end to end (default data: ../shared/data/pcam-subset, else synthetic patches)."""
    from edge_pcam.extras import require_train_extra
    require_train_extra("edge-pcam demo (it trains and converts)")
    from edge_pcam.demo import run_demo
    report = run_demo(out, data)
    console.print(f"Report: {report}")
