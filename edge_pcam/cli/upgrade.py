"""`edge-pcam upgrade OLD.tflite NEW.tflite`: a file from an earlier edge-pcam, brought up to date."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edge_pcam.cli.console import out
from edge_pcam.cli.options import Runtime


def upgrade(source: Annotated[Path, typer.Argument(help="A .tflite file made by an earlier edge-pcam "
                                                    "(left unchanged).")],
            target: Annotated[Path, typer.Argument(help="The upgraded copy (.tflite).")],
            runtime: Runtime = "auto") -> None:
    """Settle the int8 quantization in the file, give it an integrity-checked card, re-verify its outputs."""
    from edge_pcam.runtime.upgrade import upgrade as run

    report = run(source, target, runtime=runtime)
    out.print(f"wrote {report.out} (schema {report.from_schema} -> 2; {report.symmetric_tensors} attention "
              f"tensors made symmetric, as earlier versions did at every load)", soft_wrap=True, highlight=False)
    if report.companion is not None:
        out.print(f"wrote {report.companion} (its Grad-CAM companion)", soft_wrap=True, highlight=False)
    out.print(f"verified: {report.check}; the original {source} is unchanged", soft_wrap=True, highlight=False)
