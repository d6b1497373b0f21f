"""Which int8 file ships: every candidate converted, gated and shift-benchmarked, then the README's rule applied.

Candidates: post-training int8 of the float model (`ptq`) and int8 from each
quantization-aware fine-tuning run given with `--qat NAME=RUN`. Each is converted
by `edge-pcam convert --int8 --tune-from-train N` on the training data mix (so the
thresholds come from the same tuning set training carved) and gated against its
own Keras model on valid; the float model's float32 file is converted too, as
the reference. All files then run the shift benchmark (edge_pcam.bench.shift).

The rule (README, "Which int8 file ships"): among the candidates that pass the
parity gate, the highest shift-benchmark mean accuracy; a difference under 0.1
point is a tie, decided by the higher valid AUC, then in favour of `ptq`.

    nice .venv/bin/python benchmarks/int8_choice.py --float runs/final \\
        --qat qat-2ep=runs/final-qat-2ep --qat qat-1ep=runs/final-qat-1ep --qat qat-2ep-lr10=runs/final-qat-lr \\
        --data ../shared/data/pcam-subset+../shared/data/pcam-extra --out benchmarks/results/int8-choice
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edge_pcam.bench.shift import run_shift_benchmark, shift_report  # noqa: E402
from edge_pcam.runtime.machine import describe_machine, summary_line  # noqa: E402

TIE_POINTS = 0.1
PTQ = "ptq"


def convert(h5: Path, out: Path, data: str, tune: int, fmt: str) -> dict:
    """Run `edge-pcam convert` (unless its report is already there); its conversion.json, accepted or not."""
    report = out / "conversion.json"
    if not report.is_file():
        cmd = [str(Path(sys.executable).parent / "edge-pcam"), "convert", str(h5), "--data", data, "--out", str(out),
               f"--{fmt}", "--tune-from-train", str(tune)]
        if fmt == "float32":
            cmd.append("--no-companion")
        print("+ " + " ".join(cmd), file=sys.stderr, flush=True)
        done = subprocess.run(cmd)
        if not report.is_file():
            raise SystemExit(f"convert wrote no report for {h5} (exit {done.returncode})")
    return json.loads(report.read_text())


def candidate_row(name: str, source: Path, conversion: dict, folder: Path) -> dict:
    """One candidate's figures from its conversion.json; `file` is the converted file in `folder`
    (the report names files relative to where it is)."""
    entry = next(f for f in conversion["files"] if f["format"] in ("int8", "float32"))
    parity = entry["parity"]
    return {"name": name, "source": str(source), "source_sha256": conversion["source_model"]["sha256"],
            "file": str(folder / entry["file"]),
            "accepted": bool(entry["accepted"]),
            "valid_accuracy": parity["converted"]["accuracy"], "valid_auc": parity["converted"]["auc"],
            "keras_accuracy": parity["keras"]["accuracy"], "agreement": parity.get("agreement"),
            "accuracy_drop_points": parity.get("accuracy_drop_points"), "gate": parity.get("gate"),
            "reason": parity.get("reason", "")}


def choose(rows: list[dict]) -> dict | None:
    """The README's rule over the int8 rows (the float32 reference is not a candidate)."""
    eligible = [r for r in rows if r["name"] != "float32" and r["accepted"]]
    if not eligible:
        return None
    best = max(r["shift_mean_accuracy"] for r in eligible)
    tied = [r for r in eligible if best - r["shift_mean_accuracy"] < TIE_POINTS / 100]
    return max(tied, key=lambda r: (round(r["valid_auc"], 6), r["name"] == PTQ))


def markdown(result: dict, command: str) -> str:
    chosen = result["chosen"]
    ref = next(r for r in result["rows"] if r["name"] == "float32")
    lines = ["# Which int8 file ships", "",
             f"{result['date']}; {summary_line(result['machine'])}. Valid split of the PCam subset "
             f"({result['n_valid']} patches); thresholds chosen on the {result['tune_from_train']}-patch tuning set "
             f"carved from `{result['data']}`; shift benchmark seed {result['seed']}.", "",
             "Rule (README): among the files that pass the parity gate, the highest shift-benchmark mean accuracy; "
             f"under {TIE_POINTS} point apart is a tie, decided by valid AUC, then post-training int8.", "",
             "| file | made from | gate | valid accuracy | valid AUC | vs float32 (valid) | shift mean accuracy "
             "| shift mean AUC | vs float32 (shift) | valid minus shift mean | chosen |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in result["rows"]:
        gate = "reference" if r["name"] == "float32" else ("pass" if r["accepted"] else f"FAIL: {r['reason']}")
        lines.append(
            f"| `{r['name']}` | `{r['source']}` | {gate} | {100 * r['valid_accuracy']:.1f}% | {r['valid_auc']:.4f} "
            f"| {100 * (r['valid_accuracy'] - ref['valid_accuracy']):+.1f} pt | {100 * r['shift_mean_accuracy']:.1f}% "
            f"| {r['shift_mean_auc']:.4f} | {100 * (r['shift_mean_accuracy'] - ref['shift_mean_accuracy']):+.1f} pt "
            f"| {100 * (r['valid_accuracy'] - r['shift_mean_accuracy']):+.1f} pt "
            f"| {'**yes**' if chosen and r['name'] == chosen['name'] else ''} |")
    lines += ["", f"Chosen: `{chosen['name']}` (`{chosen['file']}`)." if chosen else "No candidate passed the gate.",
              "", "Shift benchmark per shift: [shift.md](shift.md). Regenerate:", "", f"    {command}", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--float", dest="float_run", type=Path, required=True, help="the float model's run folder")
    parser.add_argument("--qat", action="append", default=[], help="NAME=RUN folder of a QAT run (repeatable)")
    parser.add_argument("--data", required=True, help="the training data mix (A+B); valid comes from it")
    parser.add_argument("--tune-from-train", type=int, default=2000)
    parser.add_argument("--runs", type=Path, default=Path("runs/int8-choice"), help="converted files (not committed)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/int8-choice"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    sources = {"float32": (args.float_run / "best.h5", "float32"), PTQ: (args.float_run / "best.h5", "int8")}
    for item in args.qat:
        name, sep, run = item.partition("=")
        if not sep or name in sources:
            parser.error(f"--qat {item}: expected a new NAME=RUN")
        sources[name] = (Path(run) / "best.h5", "int8")
    rows = []
    for name, (h5, fmt) in sources.items():
        folder = args.runs / name
        rows.append(candidate_row(name, h5, convert(h5, folder, args.data, args.tune_from_train, fmt), folder))

    shift = run_shift_benchmark({r["name"]: Path(r["file"]) for r in rows}, args.data, "valid", args.seed, None)
    for r in rows:
        r["shift_mean_accuracy"] = shift["models"][r["name"]]["mean"]["accuracy"]
        r["shift_mean_auc"] = shift["models"][r["name"]]["mean"]["auc"]
    result = {"rows": rows, "chosen": choose(rows), "data": args.data, "tune_from_train": args.tune_from_train,
              "seed": args.seed, "n_valid": shift["n"], "shift": shift,
              "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": describe_machine()}
    args.out.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/int8_choice.py " + " ".join(argv if argv is not None else sys.argv[1:])
    (args.out / "results.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / "report.md").write_text(markdown(result, command))
    (args.out / "shift.md").write_text(shift_report(shift, command))
    print(args.out / "report.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
