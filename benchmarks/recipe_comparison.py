"""Recipes compared on a short schedule before a long run is spent on one (issue 16).

Each variant is `edge-pcam train --recipe subset-best --epochs N` with a data mix
and recipe overrides; all share the seed, the 2,000-patch tuning carve (from
their own combined train split), the checkpoint rule (best tuning AUC) and the
precision (mixed bfloat16, which this CPU's AMX units run about 3 times as fast
as float32; the `subset-best-fp32` row is the same recipe in float32). The
report gives, per variant: the tuning AUC that picked the checkpoint, valid
accuracy and AUC (never used for any choice), and the shift benchmark's mean
(edge_pcam.bench.shift) on the valid split.

Training is resumable: run the same command again after an interruption;
finished variants are skipped. `--only NAME` trains or scores one variant.

    nice -n 10 .venv/bin/python benchmarks/recipe_comparison.py --runs runs/recipes-10ep \\
        --out benchmarks/results/recipes-10ep
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SUBSET = "../shared/data/pcam-subset"
EXTRA = "../shared/data/pcam-extra"
PRECISION = ("training.precision=mixed_bfloat16",)  # every variant's, unless it sets its own
KEPT = ("metrics.json", "history.csv", "recipe.toml", "data.json", "versions.json", "best.h5")


@dataclass(frozen=True)
class Variant:
    name: str
    what: str
    data: tuple[str, ...]
    overrides: tuple[str, ...] = field(default_factory=tuple)


VARIANTS = (
    Variant("subset-best", "the current recipe (`train/subset-best.toml`)", (SUBSET,)),
    Variant("hed-light", "+ HED stain augmentation, sigma 0.05", (SUBSET,), ("augment.hed=0.05",)),
    Variant("extra", "+ all 14,062 pcam-extra patches, classes weighted", (SUBSET, EXTRA),
            ("data.balance=weights",)),
    Variant("hed-strong", "+ HED stain augmentation, sigma 0.2", (SUBSET,), ("augment.hed=0.2",)),
    Variant("subset-best-fp32", "the current recipe in float32 (the precision check)", (SUBSET,),
            ("training.precision=float32",)),
    Variant("extra-no-hard", "+ pcam-extra without its 1,806 hard negatives (source MartiHan), classes weighted",
            (SUBSET, f"{EXTRA}?exclude_source=MartiHan"), ("data.balance=weights",)),
)


def train_command(v: Variant, runs: Path, epochs: int) -> list[str]:
    cmd = [str(Path(sys.executable).parent / "edge-pcam"), "train", "--recipe", "subset-best",
           "--epochs", str(epochs), "--out", str(runs / v.name)]
    for spec in v.data:
        cmd += ["--data", spec]
    own = any(o.startswith("training.precision=") for o in v.overrides)
    for o in (*(() if own else PRECISION), *v.overrides):
        cmd += ["--set", o]
    return cmd


def train_all(variants: list[Variant], runs: Path, epochs: int) -> None:
    for v in variants:
        folder = runs / v.name
        if (folder / "metrics.json").is_file():
            continue
        cmd = train_command(v, runs, epochs)
        print("+ " + " ".join(cmd), file=sys.stderr, flush=True)
        subprocess.run(cmd, check=True)


def score(variants: list[Variant], runs: Path, models_out: Path | None, seed: int) -> dict:
    """Valid and tuning figures from each run's metrics.json, and the shift benchmark of every best.h5."""
    from edge_pcam.bench.shift import run_shift_benchmark
    from edge_pcam.runtime.machine import describe_machine

    done = [v for v in variants if (runs / v.name / "metrics.json").is_file()]
    shift = run_shift_benchmark({v.name: runs / v.name / "best.h5" for v in done}, SUBSET, "valid", seed, None)
    rows = []
    for v in done:
        m = json.loads((runs / v.name / "metrics.json").read_text())
        d = json.loads((runs / v.name / "data.json").read_text())
        rows.append({"name": v.name, "what": v.what, "data": list(v.data), "overrides": list(v.overrides),
                     "train_patches": d["used"]["train"], "best_epoch": m["best_epoch"], "epochs": m["epochs_run"],
                     "tuning_auc": m["tuning"]["decision"]["auc"],
                     "valid_accuracy": m["valid"]["decision"]["accuracy"], "valid_auc": m["valid"]["decision"]["auc"],
                     "valid_recall": m["valid"]["decision"]["recall"],
                     "valid_specificity": m["valid"]["decision"]["specificity"],
                     "shift": shift["models"][v.name]})
        if models_out is not None:
            target = models_out / v.name
            target.mkdir(parents=True, exist_ok=True)
            for name in KEPT:
                shutil.copy2(runs / v.name / name, target / name)
    return {"rows": rows, "shifts": shift["shifts"], "seed": seed, "n_valid": shift["n"],
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": describe_machine()}


def markdown(result: dict, epochs: int, command: str) -> str:
    from edge_pcam.runtime.machine import summary_line
    lines = [f"# Recipes compared on a {epochs}-epoch schedule", "",
             f"Valid split of the PCam subset ({result['n_valid']} patches; reported only, never used to choose "
             f"a checkpoint); checkpoint on the best tuning-set AUC (2,000 patches carved from each variant's own "
             f"train split); shift benchmark seed {result['seed']} (`edge_pcam/bench/shift.py`). "
             f"{result['date']}, {summary_line(result['machine'])}.", "",
             "| variant | what changes | train patches | best epoch | tuning AUC | valid accuracy | valid AUC "
             "| sensitivity | specificity | shift mean accuracy | shift mean AUC | valid minus shift mean |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        s = r["shift"]
        lines.append(f"| `{r['name']}` | {r['what']} | {r['train_patches']:,} | {r['best_epoch']}/{r['epochs']} "
                     f"| {r['tuning_auc']:.4f} | {100 * r['valid_accuracy']:.1f}% | {r['valid_auc']:.4f} "
                     f"| {100 * r['valid_recall']:.1f}% | {100 * r['valid_specificity']:.1f}% "
                     f"| {100 * s['mean']['accuracy']:.1f}% | {s['mean']['auc']:.4f} "
                     f"| {100 * s['drop']['accuracy']:+.1f} pt |")
    lines += ["", "Shift benchmark per shift (accuracy / AUC):", "",
              "| variant | " + " | ".join(result["shifts"]) + " |",
              "|---|" + "---:|" * len(result["shifts"])]
    for r in result["rows"]:
        lines.append(f"| `{r['name']}` | " + " | ".join(
            f"{100 * r['shift'][s]['accuracy']:.1f}% / {r['shift'][s]['auc']:.3f}" for s in result["shifts"]) + " |")
    lines += ["", "Train commands (each resumable):", ""]
    lines += [f"    {' '.join(['edge-pcam', *train_command(v, Path('RUNS'), epochs)[1:]])}"
              for v in VARIANTS if v.name in {r["name"] for r in result["rows"]}]
    lines += ["", "Regenerate this report:", "", f"    {command}", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=Path, default=Path("runs/recipes-10ep"), help="run folders (not committed)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/recipes-10ep"))
    parser.add_argument("--models-out", type=Path, default=Path("benchmarks/models/recipes-10ep"),
                        help="where each run's best.h5, metrics and recipe are copied for the record")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0, help="shift benchmark seed")
    parser.add_argument("--only", action="append", help="variant name (repeatable); default: all")
    parser.add_argument("--train-only", action="store_true")
    args = parser.parse_args(argv)
    variants = [v for v in VARIANTS if not args.only or v.name in args.only]
    if args.only and len(variants) != len(args.only):
        parser.error(f"--only: known variants are {', '.join(v.name for v in VARIANTS)}")
    train_all(variants, args.runs, args.epochs)
    if args.train_only:
        return 0
    result = score(variants, args.runs, args.models_out, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/recipe_comparison.py " + " ".join(argv if argv is not None else sys.argv[1:])
    (args.out / "results.json").write_text(json.dumps({**result, "epochs": args.epochs}, indent=1) + "\n")
    (args.out / "report.md").write_text(markdown(result, args.epochs, command))
    print(args.out / "report.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
