"""The shift benchmark: models on the valid split under controlled shifts that stand in for another lab.

Stain variation in HED space (light and strong), brightness, contrast, gamma,
JPEG re-encoding, mild defocus blur and 0.9x / 1.1x magnification
(edge_pcam.bench.shift); accuracy and AUC per shift and their mean, for every
model side by side (Keras .h5 or .tflite, each at its own decision threshold).
It is the team's proxy for slides the model has never seen.

    .venv/bin/python benchmarks/shift.py \\
        float=edge_pcam/models/edge_pcam_float32.tflite int8=edge_pcam/models/edge_pcam_int8.tflite \\
        --data ../shared/data/pcam-subset --out benchmarks/results/shift
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edge_pcam.bench.machine import describe_machine, package_versions, summary_line  # noqa: E402
from edge_pcam.bench.shift import IDENTITY, SHIFTS, load_predictor, shift_benchmark  # noqa: E402

PACKAGES = ("tensorflow", "tf-keras", "ai-edge-litert", "numpy", "pillow")


def run(models: dict[str, Path], data: str, split: str, seed: int, limit: int | None) -> dict:
    """Load the split and the models, run every shift, return the results with their provenance."""
    from edge_pcam.runtime.datasets import open_dataset
    part = open_dataset(data).split(split)
    rows = np.arange(len(part))
    if limit is not None and limit < len(part):  # a random subset (the split's files are sorted by label)
        rows = np.sort(np.random.default_rng(seed).choice(len(part), limit, replace=False))
    images, labels = part.read(rows), part.labels[rows]
    predictors, thresholds = {}, {}
    for name, path in models.items():
        predictors[name], thresholds[name] = load_predictor(path)
    start = time.perf_counter()
    results = shift_benchmark(predictors, images, labels, thresholds=thresholds, seed=seed,
                              progress=lambda s: print(f"shift {s}", file=sys.stderr, flush=True))
    results.update({
        "data": data, "split": split, "thresholds": thresholds,
        "model_files": {k: str(v) for k, v in models.items()},
        "seconds": round(time.perf_counter() - start, 1),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": describe_machine(), "packages": package_versions(PACKAGES),
    })
    return results


def markdown(results: dict, command: str) -> str:
    """The report: one row per shift, accuracy and AUC of each model, then the means."""
    models = list(results["models"])
    lines = ["# Shift benchmark", "",
             f"{results['n']} patches of the {results['split']} split of `{results['data']}`, seed {results['seed']}; "
             f"{results['date']}; {summary_line(results['machine'])}; "
             + ", ".join(f"{k} {v}" for k, v in results["packages"].items() if v) + ".", "",
             "Models: " + "; ".join(f"**{m}** `{results['model_files'][m]}` (threshold {results['thresholds'][m]:.3g})"
                                    for m in models) + ".", "",
             "| shift | what | " + " | ".join(f"{m} accuracy | {m} AUC" for m in models) + " |",
             "|---|---|" + "---:|---:|" * len(models)]

    def row(key: str, label: str, what: str) -> str:
        cells = [f"{100 * results['models'][m][key]['accuracy']:.1f}% | {results['models'][m][key]['auc']:.4f}"
                 for m in models]
        return f"| {label} | {what} | " + " | ".join(cells) + " |"

    lines.append(row(IDENTITY, "none", "the split as it is"))
    lines += [row(s, s, SHIFTS[s].description) for s in results["shifts"]]
    lines.append(row("mean", "**mean of the shifts**", ""))
    lines.append("| unshifted minus mean | | " + " | ".join(
        f"{100 * results['models'][m]['drop']['accuracy']:+.1f} pt | {results['models'][m]['drop']['auc']:+.4f}"
        for m in models) + " |")
    lines += ["", f"Took {results['seconds']} s. Regenerate:", "", f"    {command}", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("models", nargs="+", help="NAME=PATH (.h5 or .tflite)")
    parser.add_argument("--data", default="../shared/data/pcam-subset")
    parser.add_argument("--split", default="valid")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None, help="N random patches only (smoke runs)")
    parser.add_argument("--out", type=Path, required=True, help="folder for report.md and results.json")
    args = parser.parse_args(argv)
    models = {}
    for item in args.models:
        name, sep, path = item.partition("=")
        if not sep or not Path(path).is_file():
            parser.error(f"{item}: expected NAME=PATH to an existing .h5 or .tflite file")
        models[name] = Path(path)
    results = run(models, args.data, args.split, args.seed, args.limit)
    args.out.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/shift.py " + " ".join(argv if argv is not None else sys.argv[1:])
    (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    (args.out / "report.md").write_text(markdown(results, command))
    print(args.out / "report.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
