"""`edge-pcam train --data SPEC --out RUN_DIR [--recipe NAME_OR_FILE] [flags]`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from edge_pcam.cli.console import err, out


def train(
    out_dir: Annotated[Path, typer.Option("--out", help="Run folder (created; holds best.h5, final.h5, "
                                          "history.csv, metrics.json, logs/ ...).")],
    data: Annotated[Optional[list[str]], typer.Option("--data", help="As for --data elsewhere; repeat it (or join "
                                                      "specs with +) to train on several sources at once. "
                                                      "Default: the recipe's [data] sources.")] = None,
    recipe: Annotated[Optional[str], typer.Option("--recipe", help="A recipe name from train/ (pcam, subset-cpu) "
                                                  "or a .toml file. Default: pcam (or the run's own on --resume).")] = None,
    epochs: Annotated[Optional[int], typer.Option("--epochs", help="Override training.epochs.")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="Override training.batch_size "
                                                      "(per replica).")] = None,
    lr: Annotated[Optional[float], typer.Option("--lr", help="Override optimizer.lr.")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Override training.seed.")] = None,
    tune_from_train: Annotated[Optional[int], typer.Option(
        "--tune-from-train", help="Hold out N train patches for checkpoint selection and thresholds.")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override any recipe key: "
                                                      "section.key=value (repeatable), e.g. augment.rotate90=true.")] = None,
    strategy: Annotated[str, typer.Option("--strategy", help="auto, cpu, gpu, tpu or multi-worker "
                                          "(auto never probes the network).")] = "auto",
    tpu: Annotated[Optional[str], typer.Option("--tpu", help="TPU name or grpc://HOST:PORT "
                                               "(implies --strategy tpu; 'local' on a TPU VM).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the unfinished run in --out "
                                         "(its recipe and data unless given).")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a run already in --out.")] = False,
) -> None:
    """Train the design's attention-CNN; resumable after any interruption (same command again)."""
    from edge_pcam.extras import require_train_extra
    require_train_extra("edge-pcam train")
    import os
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter out of the logs
    from edge_pcam.training.recipe import load_recipe, parse_override

    overrides = {"training.epochs": epochs, "training.batch_size": batch_size, "optimizer.lr": lr,
                 "training.seed": seed, "training.tune_from_train": tune_from_train}
    overrides.update(dict(parse_override(s) for s in set_ or []))
    chosen = None
    if recipe is not None or not resume:
        chosen = load_recipe(recipe or "pcam")
    elif any(v is not None for v in overrides.values()):
        chosen = load_recipe(out_dir / "recipe.toml")
    if chosen is not None:
        chosen = chosen.with_overrides(overrides)

    from edge_pcam.runtime.datasets.combined import join_sources
    from edge_pcam.training.fit import train as run_training
    try:
        result = run_training(join_sources(data) if data else None, out_dir, chosen, strategy=strategy, tpu=tpu, resume=resume, overwrite=overwrite)
    except KeyboardInterrupt:
        err.print(f"interrupted: run the same command again to continue {out_dir} from its last finished epoch")
        raise typer.Exit(130) from None
    if not result.is_chief:
        err.print(f"worker finished ({result.epochs_run} epochs); the chief wrote the run folder")
    else:
        out.print(summary_table(result))
    err.print(f"final weights sha256 {result.weights_sha256}", soft_wrap=True)


def summary_table(result):
    """The end-of-run table: epochs, best epoch and the operating points of best.h5."""
    from rich.table import Table

    m = result.metrics
    title = (f"{result.run_dir}: {result.epochs_run} epochs"
             f"{f' (resumed at epoch {result.resumed_from_epoch + 1})' if result.resumed_from_epoch else ''}"
             f"{', stopped early' if result.stopped_early else ''}; best.h5 = epoch {m['best_epoch']}")
    table = Table(title=title)
    for col in ("split", "point", "thresh", "acc", "prec", "recall", "spec", "F1", "AUC"):
        table.add_column(col, justify="left" if col in ("split", "point") else "right")
    sections = [(name, m[name]) for name in ("tuning", "valid") if name in m]
    if "valid_at_tuning_thresholds" in m:
        sections.append(("valid@tuning", m["valid_at_tuning_thresholds"]))
    for name, points in sections:
        for point in ("decision", "triage"):
            p = points[point]
            table.add_row(name, point, f"{p['threshold']:.3f}", f"{p['accuracy']:.3f}", f"{p['precision']:.3f}",
                          f"{p['recall']:.3f}", f"{p['specificity']:.3f}", f"{p['f1']:.3f}", f"{p['auc']:.3f}")
    return table
