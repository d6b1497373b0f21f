"""`edge-pcam data info SPEC` and `edge-pcam data download DIR`."""

from __future__ import annotations

from typing import Annotated

import typer

from edge_pcam.cli.console import out

app = typer.Typer(help="Inspect and download PCam data.", no_args_is_help=True)


@app.command("info")
def info(spec: Annotated[str, typer.Argument(help="A --data spec: synthetic:N, tfds:patch_camelyon or a folder.")]) -> None:
    """Count patches per split and label."""
    from rich.table import Table

    from edge_pcam.runtime.datasets import open_dataset
    ds = open_dataset(spec)
    table = Table(title=f"{spec} ({ds.kind})")
    for col in ("split", "normal", "tumour", "total"):
        table.add_column(col, justify="left" if col == "split" else "right")
    for split, counts in ds.counts().items():
        table.add_row(split, f"{counts['normal']:,}", f"{counts['tumour']:,}", f"{sum(counts.values()):,}")
    out.print(table)
