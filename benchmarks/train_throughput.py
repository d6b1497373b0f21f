"""Float training throughput: our pipeline from the JPEG subset vs a bare model.fit on in-memory arrays.

Ours: `make_dataset` over the data's train split (JPEG files decoded in
tf.data, shuffled, the recipe's augmentation) into the model compiled by
`edge_pcam.training.fit.compile_model`, with the training loop's per-epoch
callbacks (history, best checkpoint, plateau, TensorBoard scalars, progress).
Bare: the same compiled model, `model.fit(x, y)` on float32 arrays already in
memory (the same patches, no augmentation, no callbacks).

Both run the same number of steps in alternating trials (A B A B ...), after
warm-up steps that are not timed (edge_pcam.bench.train_steps.StepTimer); the
best trial of each counts (the machine is shared, so the least-disturbed trial
is the fairest estimate). Target: ours >= TARGET of bare.

    .venv/bin/python benchmarks/train_throughput.py [--data ../shared/data/pcam-subset] [--steps 20] [--trials 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
TARGET = 0.9
PACKAGES = ("tensorflow", "tf-keras", "numpy")


def _describe(split) -> str:
    files = split.files()
    if files is None:
        return f"{len(split):,} patches read by index ({type(split).__name__})"
    kinds = sorted({Path(f).suffix.lower() for f in files})
    return f"{len(split):,} {'/'.join(kinds)} files decoded in tf.data"


def markdown(r: dict) -> str:
    """The report: this run's trials, and how they were taken."""
    from edge_pcam.runtime.machine import conditions_line

    best, cpu, trials, cpu_trials = r["best"], r["cpu_ms_per_patch_best"], r["patches_per_s"], r["cpu_ms_per_patch"]
    aug = ", ".join(k for k, v in r["augmentation"].items() if v not in (False, None, 0, 0.0, [1.0, 1.0]))
    row = (lambda side, what: f"| {side} | {what} | {best[side]:.1f} | {', '.join(f'{x:.1f}' for x in trials[side])} | "
           f"{cpu[side]:.1f} | {', '.join(f'{x:.1f}' for x in cpu_trials[side])} |")
    return "\n".join([
        "# Float training throughput: our pipeline vs bare `model.fit`", "",
        f"- Machine: {conditions_line(r['machine'], r['load_average_before'], r['load_average_after'])}",
        f"- Packages: {', '.join(f'{k} {v}' for k, v in r['versions'].items() if v)}",
        f"- Recipe `{r['recipe']}` (batch {r['batch_size']}, the design's model and optimizer). {r['trials']} trial(s) of "
        f"each side, alternating, {r['steps_per_trial']} timed steps each after {r['warmup_steps']} untimed warm-up "
        "step(s); the best trial counts. CPU ms a patch: the process's CPU time, all threads, which other jobs on "
        "the machine disturb less than wall time.",
        f"- Created {r['created']} by `{r['command']}`", "",
        "| side | what | patches/s (best) | trials | CPU ms a patch (best) | trials |",
        "|---|---|---:|---|---:|---|",
        row("ours", f"`make_dataset` over {r['ours_source']}: shuffle, augmentation ({aug or 'none'}), the training "
                    "loop's callbacks"),
        row("bare", f"`model.fit(x, y)` on {r['bare_patches']} float32 patches in memory, no augmentation, no callbacks"),
        "",
        f"Ours / bare, wall-clock throughput: **{r['ratio']:.0%}** (target ≥ {r['target']:.0%}: "
        f"{'met' if r['met'] else 'NOT met'}).",
        f"Ours / bare by CPU time a patch (bare's / ours'): **{r['cpu_ratio']:.0%}**.", ""])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "pcam-subset"))
    parser.add_argument("--recipe", default="subset-cpu")
    parser.add_argument("--batch-size", type=int, help="override the recipe's batch size")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per trial")
    parser.add_argument("--warmup", type=int, default=4, help="untimed steps per trial (at least 1)")
    parser.add_argument("--trials", type=int, default=3, help="trials of each side, alternating")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    import tf_keras as keras

    from edge_pcam.bench.train_steps import StepTimer
    from edge_pcam.data.tfdata import make_dataset
    from edge_pcam.runtime.datasets import open_dataset
    from edge_pcam.runtime.fileio import atomic_write_json, atomic_write_text
    from edge_pcam.runtime.machine import describe_machine, load_average, package_versions
    from edge_pcam.training import callbacks as cb
    from edge_pcam.training.fit import augmentation, compile_model
    from edge_pcam.training.recipe import load_recipe

    recipe = load_recipe(args.recipe).with_overrides({"training.batch_size": args.batch_size})
    batch = recipe["training"]["batch_size"]
    split = open_dataset(args.data).split("train")
    steps = args.warmup + args.steps
    keras.utils.set_random_seed(0)
    # The bare side's arrays: enough distinct patches for a few batches, cycled by epochs.
    n_mem = min(batch * 16, len(split) // batch * batch)
    rows = np.sort(np.random.default_rng(0).choice(len(split), n_mem, replace=False))
    x = split.read(rows).astype(np.float32) / 255.0
    y = split.labels[rows].astype(np.float32).reshape(-1, 1)
    ours_ds = make_dataset(split, batch, training=True, seed=0, repeat=True, drop_remainder=True,
                           augmentation=augmentation(recipe))

    def run_ours(tmp: Path) -> dict:
        model = compile_model(recipe, steps)
        timer = StepTimer(args.warmup)
        history = tmp / "history.csv"
        history.unlink(missing_ok=True)
        callbacks = [cb.ProgressLines(1, steps, write=lambda m: None), cb.HistoryCSV(history),
                     cb.BestCheckpoint(history, tmp / "best.h5"),
                     cb.ReduceLROnPlateau(history, "val_auc", "max", 0.3, 1),
                     cb.TensorBoardScalars(tmp / "logs"), timer.callback]
        model.fit(ours_ds, epochs=1, steps_per_epoch=steps, callbacks=callbacks, verbose=0)
        return timer.rate(batch, args.steps)

    def run_bare(_tmp: Path) -> dict:
        model = compile_model(recipe, steps)
        timer = StepTimer(args.warmup)
        epochs = -(-steps // (n_mem // batch))
        model.fit(x, y, batch_size=batch, epochs=epochs, shuffle=True, callbacks=[timer.callback], verbose=0)
        return timer.rate(batch, args.steps)

    load_before = load_average()
    trials: dict[str, list[float]] = {"ours": [], "bare": []}
    cpu_ms: dict[str, list[float]] = {"ours": [], "bare": []}
    with tempfile.TemporaryDirectory(prefix="train-throughput-") as tmp:
        for t in range(args.trials):
            for name, fn in (("ours", run_ours), ("bare", run_bare)):
                rate = fn(Path(tmp))
                trials[name].append(rate["patches_per_s"])
                cpu_ms[name].append(rate["cpu_ms_per_patch"])
                print(f"trial {t + 1} {name}: {rate['patches_per_s']:.1f} patches/s, {rate['cpu_ms_per_patch']:.1f} "
                      f"CPU ms a patch, over {rate['steps']} steps", file=sys.stderr, flush=True)
    best = {k: max(v) for k, v in trials.items()}
    cpu_best = {k: min(v) for k, v in cpu_ms.items()}
    result = {
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([".venv/bin/python benchmarks/train_throughput.py",
                             *(argv if argv is not None else sys.argv[1:])]),
        "machine": describe_machine(), "load_average_before": load_before, "load_average_after": load_average(),
        "versions": package_versions(PACKAGES), "recipe": args.recipe, "batch_size": batch,
        "augmentation": augmentation(recipe).to_dict(), "steps_per_trial": args.steps, "warmup_steps": args.warmup,
        "trials": args.trials, "ours_source": _describe(split), "bare_patches": n_mem,
        "patches_per_s": trials, "best": best, "ratio": best["ours"] / best["bare"], "target": TARGET,
        "met": best["ours"] / best["bare"] >= TARGET, "cpu_ms_per_patch": cpu_ms, "cpu_ms_per_patch_best": cpu_best,
        "cpu_ratio": cpu_best["bare"] / cpu_best["ours"],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "train_throughput.json", result, indent=2)
    atomic_write_text(args.out / "train_throughput.md", markdown(result))
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
