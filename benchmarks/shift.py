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
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edge_pcam.bench.shift import run_shift_benchmark, shift_report  # noqa: E402


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
    results = run_shift_benchmark(models, args.data, args.split, args.seed, args.limit)
    args.out.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/shift.py " + " ".join(argv if argv is not None else sys.argv[1:])
    (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    (args.out / "report.md").write_text(shift_report(results, command))
    print(args.out / "report.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
