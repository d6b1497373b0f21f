"""Input-pipeline throughput (patches/s, with augmentation) next to the model's training-step rate.

Measures make_dataset(training=True) with the design's augmentation at batch 64
from the JPEG subset folder and from an HDF5 file (synthetic patches written to
a temporary folder outside the repository), and the attention-CNN's
training-step rate (model.fit) at batch 64 on this CPU, in memory and fed by the pipeline. The pipeline must stay well ahead
of training (target: at least 5x).

    .venv/bin/python benchmarks/input_pipeline.py            # writes benchmarks/results/input_pipeline.{md,json}
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DEFAULT_SUBSET = REPO.parent / "shared" / "data" / "pcam-subset"
PACKAGES = ("tensorflow", "tf-keras", "numpy", "h5py", "pillow")
# SPEC.md section 4: the design's recipe on the 20,000-patch subset takes about 2.5 min an epoch on a quiet
# machine at batch 64, i.e. about 133 patches/s including the pipeline.
QUIET_TRAINING_RATE = 20000 / 150


def pipeline_rate(split, batch: int, batches: int, warmup: int = 5, **options) -> dict:
    """Patches/s of make_dataset(training=True, augmented) over `batches` batches after `warmup`."""
    from edge_pcam.data.tfdata import make_dataset
    it = iter(make_dataset(split, batch, training=True, seed=0, repeat=True, drop_remainder=True, **options))
    for _ in range(warmup):
        next(it)
    start = time.perf_counter()
    for _ in range(batches):
        x, _ = next(it)
    x.numpy()
    seconds = time.perf_counter() - start
    return {"patches": batch * batches, "seconds": round(seconds, 3), "patches_per_s": round(batch * batches / seconds, 1)}


def fit_rate(batch: int, steps: int, split=None, warmup: int = 3) -> dict:
    """Patches/s of model.fit on the design's model (Adam, binary cross-entropy), timed per step after
    `warmup` steps. Fed by make_dataset(split) when a split is given, else by one fixed in-memory batch
    (the training step alone, no input cost)."""
    import tensorflow as tf
    import tf_keras as keras

    from edge_pcam.data.tfdata import make_dataset
    from edge_pcam.model import build_model
    model = build_model()
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy", metrics=["accuracy"])
    if split is None:
        rng = np.random.default_rng(0)
        x = rng.random((batch, 96, 96, 3), dtype=np.float32)
        y = rng.integers(0, 2, (batch, 1)).astype(np.float32)
        data = tf.data.Dataset.from_tensors((x, y)).repeat()
    else:
        data = make_dataset(split, batch, training=True, seed=0, repeat=True, drop_remainder=True)
    ends: list[float] = []
    clock = keras.callbacks.LambdaCallback(on_train_batch_end=lambda *_: ends.append(time.perf_counter()))
    model.fit(data, steps_per_epoch=warmup + steps, epochs=1, verbose=0, callbacks=[clock])
    seconds = ends[-1] - ends[warmup - 1]
    return {"steps": steps, "seconds": round(seconds, 3), "step_ms": round(1000 * seconds / steps, 1),
            "patches_per_s": round(batch * steps / seconds, 1)}


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


def machine() -> dict:
    from edge_pcam.runtime.machine import describe_machine
    return {**describe_machine(), "platform": platform.platform(),
            "load_average_1min_at_start": round(os.getloadavg()[0], 2)}


def versions() -> dict:
    from edge_pcam.runtime.machine import package_versions
    return package_versions(PACKAGES)


def markdown(result: dict) -> str:
    m, r = result["machine"], result["results"]
    train = r["training_step"]["patches_per_s"]
    lines = [
        "# Input pipeline vs training step",
        "",
        f"Measured {result['date']} on {m['cpu']} ({m['cores']} cores, shared; 1-minute load average "
        f"{m['load_average_1min_at_start']} at start, {result['load_average_1min_at_end']} at end), "
        f"Python {m['python']}, " + ", ".join(f"{k} {v}" for k, v in result["versions"].items() if v) + ".",
        "",
        f"Batch {result['batch']}, training mode (shuffle + the design's augmentation: flips, brightness "
        "±0.1, contrast 0.8–1.2), `make_dataset(..., repeat=True)`.",
        "",
        "| what | patches/s | × training step |",
        "|---|---:|---:|",
    ]
    for key, label in (("jpeg_folder", f"JPEG folder ({result['sources']['jpeg_folder']})"),
                       ("hdf5", f"HDF5 ({result['sources']['hdf5']})")):
        if key in r:
            rate = r[key]["patches_per_s"]
            lines.append(f"| pipeline: {label} | {rate:,.0f} | {rate / train:.1f}× |")
    lines += [f"| training step: attention-CNN `model.fit` on a fixed in-memory batch of {result['batch']} "
              f"({r['training_step']['step_ms']:.0f} ms a step) | {train:,.0f} | 1.0× |",
              "",
              f"Target: pipeline ≥ 5× the training-step rate. Result: "
              f"{'met' if result['target_met'] else 'NOT met'}.",
              ""]
    if "fit_from_jpeg_folder" in result:
        fit = result["fit_from_jpeg_folder"]
        share = fit["patches_per_s"] / train
        verdict = ("input does not slow training down" if share >= 0.9 else
                   f"it ran at {share:.0%} of the in-memory rate (input overhead, or the load changed)")
        lines.append(f"Check: `model.fit` fed by the JPEG pipeline ran {fit['patches_per_s']:,.0f} patches/s "
                     f"({fit['step_ms']:.0f} ms a step) against {train:,.0f} patches/s on a fixed in-memory batch: "
                     f"{verdict}.")
    quiet = result["ratios_to_quiet_machine_reference"]
    lines += ["",
              f"Against the quiet-machine training rate in SPEC.md section 4 (about {QUIET_TRAINING_RATE:.0f} "
              "patches/s: 2.5 min an epoch of 20,000 patches), the pipeline rates above are "
              + ", ".join(f"{v:.1f}× ({k})" for k, v in quiet.items()) + ".",
              "",
              "The CPU is shared by other jobs, so absolute rates vary from run to run; both sides were "
              "measured in the same run, one after the other.",
              "",
              f"Regenerate: `{result['command']}`", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subset", type=Path, default=DEFAULT_SUBSET, help="The JPEG {split}/{label}/ folder.")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--batches", type=int, default=80, help="Timed pipeline batches per source.")
    parser.add_argument("--steps", type=int, default=10, help="Timed training steps.")
    parser.add_argument("--hdf5-patches", type=int, default=4096, help="Synthetic patches in the temporary HDF5.")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "input_pipeline")
    args = parser.parse_args()

    from edge_pcam.runtime.datasets import open_dataset
    result = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine(),
              "versions": versions(), "batch": args.batch, "results": {}, "sources": {},
              "command": " ".join([".venv/bin/python benchmarks/input_pipeline.py", *sys.argv[1:]])}
    if (args.subset / "train").is_dir():
        train = open_dataset(str(args.subset)).split("train")
        result["sources"]["jpeg_folder"] = f"PCam subset train split, {len(train):,} JPEG files"
        result["results"]["jpeg_folder"] = pipeline_rate(train, args.batch, args.batches)
        print("jpeg folder", result["results"]["jpeg_folder"], flush=True)
    else:
        print(f"skipping the JPEG folder: {args.subset} not found", flush=True)
    with tempfile.TemporaryDirectory(prefix="edge-pcam-bench-") as tmp:
        split = synthetic_hdf5(Path(tmp), args.hdf5_patches)
        result["sources"]["hdf5"] = f"{len(split):,} synthetic patches, uncompressed HDF5 in /tmp, random batches"
        result["results"]["hdf5"] = pipeline_rate(split, args.batch, args.batches)
        print("hdf5", result["results"]["hdf5"], flush=True)
    result["results"]["training_step"] = fit_rate(args.batch, args.steps)
    print("training step", result["results"]["training_step"], flush=True)
    if (args.subset / "train").is_dir():
        result["fit_from_jpeg_folder"] = fit_rate(args.batch, args.steps, train)
        print("fit fed by the JPEG pipeline", result["fit_from_jpeg_folder"], flush=True)
    train_rate = result["results"]["training_step"]["patches_per_s"]
    pipes = [v["patches_per_s"] for k, v in result["results"].items() if k != "training_step"]
    result["ratios"] = {k: round(v["patches_per_s"] / train_rate, 2) for k, v in result["results"].items()
                        if k != "training_step"}
    result["ratios_to_quiet_machine_reference"] = {
        k: round(v["patches_per_s"] / QUIET_TRAINING_RATE, 2) for k, v in result["results"].items()
        if k != "training_step"}
    result["target_met"] = min(pipes) >= 5 * train_rate
    result["load_average_1min_at_end"] = round(os.getloadavg()[0], 2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
