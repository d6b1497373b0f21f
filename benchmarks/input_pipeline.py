"""Input-pipeline throughput (patches/s, with augmentation) next to the model's training-step rate.

Measures make_dataset(training=True) with the recipe's augmentation from a
JPEG {split}/{label}/ folder (the PCam subset by default) and from an HDF5 file
(synthetic patches written to a temporary folder outside the repository), and
the attention-CNN's training-step rate (`model.fit` on the model compiled by
edge_pcam.training.fit.compile_model) on a fixed in-memory batch and fed by
the JPEG pipeline. The pipeline must stay well ahead of training
(TARGET_RATIO). Timing: edge_pcam.bench.timing and edge_pcam.bench.train_steps.

    .venv/bin/python benchmarks/input_pipeline.py        # writes benchmarks/results/input_pipeline.{md,json}
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
DEFAULT_SUBSET = REPO.parent / "shared" / "data" / "pcam-subset"
PACKAGES = ("tensorflow", "tf-keras", "numpy", "h5py", "pillow")
TARGET_RATIO = 5.0        # pipeline patches/s over training-step patches/s, at least
NO_SLOWDOWN = 0.9         # fit fed by the pipeline at this share of the in-memory rate or more: input costs nothing
FULL = {"batches": 80, "steps": 10, "warmup": 5, "hdf5_patches": 4096}
QUICK = {"batches": 3, "steps": 2, "warmup": 1, "hdf5_patches": 64}


def pipeline_rate(split, batch: int, batches: int, warmup: int, augmentation) -> dict:
    """Patches/s of make_dataset(training=True, augmented) over `batches` batches after `warmup`."""
    from edge_pcam.bench.timing import time_calls
    from edge_pcam.data.tfdata import make_dataset

    it = iter(make_dataset(split, batch, training=True, seed=0, repeat=True, drop_remainder=True,
                           augmentation=augmentation))
    timed = time_calls(lambda: next(it), warmup=warmup, runs=batches)
    return {"batches": batches, "batch_ms": timed["mean_ms"], "patches_per_s": batch * 1000.0 / timed["mean_ms"]}


def fit_rate(recipe, batch: int, steps: int, warmup: int, split=None) -> dict:
    """Training-step rate of the recipe's compiled model after `warmup` steps: fed by make_dataset(split) when
    a split is given, else by one fixed in-memory batch (the step alone, no input cost)."""
    import tensorflow as tf

    from edge_pcam.bench.train_steps import StepTimer
    from edge_pcam.data.tfdata import make_dataset
    from edge_pcam.training.fit import augmentation, compile_model

    model = compile_model(recipe, warmup + steps)
    if split is None:
        rng = np.random.default_rng(0)
        x = rng.random((batch, 96, 96, 3), dtype=np.float32)
        y = rng.integers(0, 2, (batch, 1)).astype(np.float32)
        data = tf.data.Dataset.from_tensors((x, y)).repeat()
    else:
        data = make_dataset(split, batch, training=True, seed=0, repeat=True, drop_remainder=True,
                            augmentation=augmentation(recipe))
    timer = StepTimer(warmup)
    model.fit(data, steps_per_epoch=warmup + steps, epochs=1, verbose=0, callbacks=[timer.callback])
    return timer.rate(batch, steps)


def synthetic_hdf5(folder: Path, count: int):
    """Write `count` synthetic patches as PCam-style x/y HDF5 files and open them as a split."""
    import h5py

    from edge_pcam.runtime.datasets.hdf5 import HDF5Split, file_name
    from edge_pcam.runtime.datasets.synthetic import synthetic_patch
    pairs = [synthetic_patch(0, i) for i in range(count)]
    x_path, y_path = folder / file_name("train", "x"), folder / file_name("train", "y")
    with h5py.File(x_path, "w") as f:
        f.create_dataset("x", data=np.stack([p[0] for p in pairs]))
    with h5py.File(y_path, "w") as f:
        f.create_dataset("y", data=np.array([p[1] for p in pairs], np.uint8).reshape(-1, 1, 1, 1))
    return HDF5Split("train", x_path, y_path)


def markdown(r: dict) -> str:
    """The report: this run's measurements, and how they were taken."""
    from edge_pcam.runtime.machine import conditions_line

    res, train = r["results"], r["results"]["training_step"]
    aug = ", ".join(k if v is True else f"{k} {v}" for k, v in r["augmentation"].items()
                    if v not in (False, None, 0, 0.0))
    lines = [
        "# Input pipeline vs training step", "",
        f"- Machine: {conditions_line(r['machine'], r['load_average_before'], r['load_average_after'])}",
        f"- Packages: {', '.join(f'{k} {v}' for k, v in r['versions'].items() if v)}",
        f"- Recipe `{r['recipe']}`, batch {r['batch']}; pipeline in training mode, `make_dataset(..., repeat=True)`: "
        f"shuffle and the recipe's augmentation ({aug or 'none'}); {r['settings']['batches']} timed batches after "
        f"{r['settings']['warmup']} untimed ones; training: {r['settings']['steps']} timed steps after "
        f"{r['settings']['warmup']} untimed ones. Both sides measured in the same run, one after the other.",
        f"- Created {r['created']} by `{r['command']}`", "",
        "| what | patches/s | × training step |", "|---|---:|---:|"]
    for key in ("jpeg_folder", "hdf5"):
        if key in res:
            lines.append(f"| pipeline: {r['sources'][key]} | {res[key]['patches_per_s']:,.0f} | {r['ratios'][key]:.1f}× |")
    lines += [f"| training step: `model.fit` on a fixed in-memory batch ({train['step_ms']:.0f} ms a step) | "
              f"{train['patches_per_s']:,.0f} | (reference) |", "",
              f"Target: pipeline ≥ {r['target_ratio']:g}× the training-step rate: "
              f"{'met' if r['target_met'] else 'NOT met'}."]
    fit = r.get("fit_from_jpeg_folder")
    if fit:
        verdict = ("the input does not slow training down" if fit["share_of_in_memory"] >= r["no_slowdown_share"]
                   else "slower than in memory (input overhead, or the load changed)")
        lines += ["", f"`model.fit` fed by the JPEG pipeline: {fit['patches_per_s']:,.0f} patches/s ({fit['step_ms']:.0f} ms "
                  f"a step), {fit['share_of_in_memory']:.0%} of the in-memory rate: {verdict}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subset", type=Path, default=DEFAULT_SUBSET, help="A JPEG {split}/{label}/ folder.")
    parser.add_argument("--recipe", default="pcam", help="Training recipe: the model, its optimizer, the augmentation.")
    parser.add_argument("--batch", type=int, help="Batch size (default: the recipe's).")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--quick", action="store_true", help="A smoke run: a few batches and steps.")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from edge_pcam.runtime.datasets import open_dataset
    from edge_pcam.runtime.fileio import atomic_write_json, atomic_write_text
    from edge_pcam.runtime.machine import describe_machine, load_average, package_versions
    from edge_pcam.training.fit import augmentation
    from edge_pcam.training.recipe import load_recipe

    s = QUICK if args.quick else FULL
    recipe = load_recipe(args.recipe)
    batch = args.batch or recipe["training"]["batch_size"]
    aug = augmentation(recipe)
    result = {"created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "command": " ".join([".venv/bin/python benchmarks/input_pipeline.py",
                                   *(argv if argv is not None else sys.argv[1:])]),
              "machine": describe_machine(), "load_average_before": load_average(),
              "versions": package_versions(PACKAGES), "recipe": args.recipe, "batch": batch, "settings": s,
              "augmentation": aug.to_dict(), "target_ratio": TARGET_RATIO, "no_slowdown_share": NO_SLOWDOWN,
              "results": {}, "sources": {}}
    train = None
    if (args.subset / "train").is_dir():
        train = open_dataset(str(args.subset)).split("train")
        result["sources"]["jpeg_folder"] = f"JPEG folder `{args.subset.name}`, train split, {len(train):,} files"
        result["results"]["jpeg_folder"] = pipeline_rate(train, batch, s["batches"], s["warmup"], aug)
        print("jpeg folder", result["results"]["jpeg_folder"], file=sys.stderr, flush=True)
    else:
        print(f"skipping the JPEG folder: {args.subset} not found", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix="edge-pcam-bench-") as tmp:
        split = synthetic_hdf5(Path(tmp), s["hdf5_patches"])
        result["sources"]["hdf5"] = f"HDF5, {len(split):,} synthetic patches, uncompressed, random batches"
        result["results"]["hdf5"] = pipeline_rate(split, batch, s["batches"], s["warmup"], aug)
        print("hdf5", result["results"]["hdf5"], file=sys.stderr, flush=True)
    step = fit_rate(recipe, batch, s["steps"], s["warmup"])
    result["results"]["training_step"] = step
    print("training step", step, file=sys.stderr, flush=True)
    if train is not None:
        fed = fit_rate(recipe, batch, s["steps"], s["warmup"], train)
        result["fit_from_jpeg_folder"] = {**fed, "share_of_in_memory": fed["patches_per_s"] / step["patches_per_s"]}
        print("fit fed by the JPEG pipeline", fed, file=sys.stderr, flush=True)
    result["ratios"] = {k: v["patches_per_s"] / step["patches_per_s"] for k, v in result["results"].items()
                        if k != "training_step"}
    result["target_met"] = min(result["ratios"].values()) >= TARGET_RATIO
    result["load_average_after"] = load_average()
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "input_pipeline.json", result, indent=2)
    atomic_write_text(args.out / "input_pipeline.md", markdown(result))
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
