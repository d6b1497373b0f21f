"""`edge-pcam qat MODEL --data SPEC --out RUN_DIR [--epochs N] [--lr LR] [--set KEY=VALUE]`: quantization-aware fine-tuning."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from edge_pcam.cli.console import err, out
from edge_pcam.cli.options import OptionalData


def qat(
    model: Annotated[Path, typer.Argument(help="The trained float model (.h5), e.g. runs/pcam/best.h5.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Run folder for the QAT model (best.h5, final.h5, "
                                          "history.csv, metrics.json, logs/ ...).")],
    data: OptionalData = None,
    epochs: Annotated[Optional[int], typer.Option("--epochs", min=1, help="Fine-tuning epochs (default 3).")] = None,
    lr: Annotated[Optional[float], typer.Option("--lr", help="Learning rate (default: a tenth of the recipe's).")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", min=1, help="Override training.batch_size.")] = None,
    recipe: Annotated[Optional[str], typer.Option("--recipe", help="Training recipe name or .toml (default: the "
                                                  "source run's recipe.toml, else pcam).")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override any recipe key: section.key=value "
                                                      "(repeatable), e.g. optimizer.lr_schedule=constant.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the unfinished QAT run in --out.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a QAT run already in --out.")] = False,
) -> None:
    """Fine-tune a trained model with quantization-aware training (the whole model, attention included)."""
    from edge_pcam.extras import require_train_extra
    require_train_extra("edge-pcam qat")
    import os
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from edge_pcam.cli.train import summary_table
    from edge_pcam.training.qat import qat_finetune
    from edge_pcam.training.recipe import parse_override

    overrides = dict(parse_override(s) for s in set_ or [])
    result = qat_finetune(model, data, out_dir, recipe=recipe, epochs=epochs, lr=lr, batch_size=batch_size,
                          overrides=overrides, resume=resume, overwrite=overwrite)
    if not result.is_chief:
        err.print(f"worker finished ({result.epochs_run} epochs); the chief wrote the run folder")
        return
    out.print(summary_table(result))
    out.print(f"next: edge-pcam convert {out_dir / 'best.h5'} --int8 --data {data or '<same data>'} --out DIR")
