"""The run folder: what a training run writes, and whether it may start, resume or must refuse.

    RUN/best.h5        model at the best validation AUC (the one to convert)
    RUN/final.h5       model after the last epoch
    RUN/history.csv    one row per epoch: epoch, lr, loss, accuracy, auc, val_*
    RUN/metrics.json   operating points of best.h5 (written last: its presence = finished)
    RUN/recipe.toml    the recipe actually used (flags applied)
    RUN/versions.json  packages, Python, machine, git commit
    RUN/data.json      the --data spec, counts per split, the tuning carve-out
    RUN/logs/          TensorBoard event files
    RUN/backup/        BackupAndRestore state while the run is unfinished
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from edge_pcam.errors import EdgePcamError
from edge_pcam.runtime.fileio import prepare_output_folder
from edge_pcam.training.recipe import Recipe, load_recipe

FILES = ("best.h5", "final.h5", "history.csv", "metrics.json", "recipe.toml", "versions.json", "data.json")
FOLDERS = ("logs", "backup")


@dataclass(frozen=True)
class RunDir:
    """Paths inside one run folder."""

    path: Path

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    @property
    def finished(self) -> bool:
        return (self.path / "metrics.json").is_file()

    @property
    def started(self) -> bool:
        return (self.path / "recipe.toml").is_file()

    def saved_data_spec(self) -> str | None:
        try:
            return json.loads((self.path / "data.json").read_text())["spec"]
        except (OSError, ValueError, KeyError):
            return None

    def clear(self) -> None:
        """Delete what a previous run wrote here (only edge-pcam's own files and folders)."""
        for name in FILES:
            (self.path / name).unlink(missing_ok=True)
        for name in FOLDERS:
            shutil.rmtree(self.path / name, ignore_errors=True)


def check_writable(path: Path) -> None:
    """Create `path` if needed and prove a file can be written there."""
    prepare_output_folder(path, "run folder")


def prepare(run: RunDir, recipe: Recipe | None, data: str | None, *, resume: bool, overwrite: bool
            ) -> tuple[Recipe, str, bool]:
    """Decide how to use `run`: returns (recipe, data spec, resuming).

    - finished run: refused unless `overwrite` (which clears it);
    - unfinished run: continued when the recipe matches the saved one or `resume` is given;
    - `resume` with nothing unfinished there: refused.
    With `resume`, a missing recipe or data spec is taken from the run folder.
    """
    if run.path.exists() and not run.path.is_dir():
        raise EdgePcamError(f"{run.path}: exists and is not a folder")
    if overwrite and resume:
        raise EdgePcamError("--resume and --overwrite contradict each other (pick one)")
    if overwrite:
        if run.path.is_dir():
            check_writable(run.path)
            run.clear()
    elif run.finished:
        if resume:
            raise EdgePcamError(f"{run.path}: holds a finished run, nothing to resume "
                                "(use --overwrite to train it again, or another --out)")
        raise EdgePcamError(f"{run.path}: holds a finished run (metrics.json); use --overwrite to replace it "
                            "or choose another --out")
    elif run.started:
        saved = load_recipe(run / "recipe.toml")
        saved_data = run.saved_data_spec()
        if resume:
            recipe = recipe or saved
            data = data or saved_data
        else:
            diffs = recipe.differences(saved) if recipe is not None else []
            if diffs:
                raise EdgePcamError(f"{run.path}: holds an unfinished run with another recipe ({'; '.join(diffs)}); "
                                    "use --resume to continue it with the new values, or --overwrite to start again")
            if data is not None and saved_data is not None and data != saved_data:
                raise EdgePcamError(f"{run.path}: holds an unfinished run on --data {saved_data}, not {data}; "
                                    "use --overwrite to start again")
        if data is None:
            raise EdgePcamError(f"{run.path}: no data spec saved; give --data")
        check_writable(run.path)
        return recipe or saved, data, True
    elif resume:
        raise EdgePcamError(f"{run.path}: no unfinished run to resume (drop --resume to start one)")
    if recipe is None or data is None:
        raise EdgePcamError("give --data (and optionally --recipe) to start a run")
    check_writable(run.path)
    return recipe, data, False
