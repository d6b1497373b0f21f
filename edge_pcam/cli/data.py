"""`edge-pcam data info SPEC` and `edge-pcam data download DIR`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from edge_pcam.cli.console import out

app = typer.Typer(help="Inspect and download PCam data.", no_args_is_help=True)


@app.command("info")
def info(spec: Annotated[str, typer.Argument(help="A --data spec: synthetic:N, tfds:patch_camelyon or a folder.")],
         check: Annotated[bool, typer.Option("--check", help="Also check every image file's header (96x96 RGB).")] = False,
         ) -> None:
    """Count patches per split and label."""
    from rich.table import Table

    from edge_pcam.runtime.datasets import open_dataset
    ds = open_dataset(spec)
    if check:
        ds.check()
    table = Table(title=f"{spec} ({ds.kind})")
    for col in ("split", "normal", "tumour", "total"):
        table.add_column(col, justify="left" if col == "split" else "right")
    for split, counts in ds.counts().items():
        table.add_row(split, f"{counts['normal']:,}", f"{counts['tumour']:,}", f"{sum(counts.values()):,}")
    out.print(table)


@app.command("download")
def download(
    dest: Annotated[Path, typer.Argument(help="Folder for the files (created if needed).")],
    split: Annotated[Optional[list[str]], typer.Option("--split", help="train, valid or test; repeat for several (default: all).")] = None,
    base_url: Annotated[Optional[str], typer.Option("--base-url", help="Fetch from this URL instead of the manifest's (a mirror).")] = None,
    manifest: Annotated[Optional[Path], typer.Option("--manifest", help="A manifest JSON to use instead of the packaged one.")] = None,
) -> None:
    """Fetch the official PCam .h5.gz files with MD5 checks; an interrupted download resumes."""
    from rich.table import Table

    from edge_pcam.runtime.datasets.base import SPLITS
    from edge_pcam.runtime.datasets.download import download as fetch
    from edge_pcam.runtime.datasets.download import load_manifest
    done = fetch(dest, splits=split or SPLITS, base_url=base_url,
                 manifest=load_manifest(manifest) if manifest else None)
    table = Table(title=f"PCam files in {dest}")
    for col in ("file", "bytes", "MD5", "status"):
        table.add_column(col, justify="right" if col == "bytes" else "left")
    for item in done:
        table.add_row(item.name, f"{item.size:,}", "ok", item.status)
    out.print(table)
    out.print(f"Read them with --data {dest} (the .h5.gz files are decompressed beside themselves on first use).")
