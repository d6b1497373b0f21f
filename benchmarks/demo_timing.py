"""How long `make demo` took, from the demo's own record: benchmarks/results/demo-timing.{md,json}.

    make demo && .venv/bin/python benchmarks/demo_timing.py            # runs/demo/timing.json by default
    .venv/bin/python benchmarks/demo_timing.py --timing OUT/timing.json

`edge-pcam demo` writes OUT/timing.json (each step's wall time, the whole run's, the machine and the
load around it); this copies it into the committed results with a table, so README's demo time
comes from a file. The virtual environment is built before the demo starts and is not counted.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edge_pcam.runtime.fileio import atomic_write_json, atomic_write_text  # noqa: E402
from edge_pcam.runtime.machine import conditions_line  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"


def markdown(t: dict) -> str:
    """The report: the run's steps and total, the machine and the load around it."""
    data = f"`{t['data']}` ({'real PCam subset' if t['real_data'] else 'synthetic patches'})"
    lines = ["# `make demo`: wall time", "",
             f"- Machine: {conditions_line(t['machine'], t['load_average_before'], t['load_average_after'])}",
             f"- Data: {data}; created {t['created']}", "",
             "| step | seconds |", "|---|---:|"]
    lines += [f"| {name} | {seconds:.0f} |" for name, seconds in t["steps"].items()]
    lines += [f"| **whole demo** (steps and the demo's own work) | **{t['total_seconds']:.0f}** "
              f"({t['total_minutes']:.1f} minutes) |", "",
              "Regenerate: `make demo && .venv/bin/python benchmarks/demo_timing.py` (the virtual environment is "
              "built before the demo starts and not counted)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--timing", type=Path, default=REPO / "runs" / "demo" / "timing.json",
                        help="the demo's record (default: runs/demo/timing.json)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if not args.timing.is_file():
        raise SystemExit(f"{args.timing} not found: run `make demo` first")
    timing = json.loads(args.timing.read_text())
    timing["total_minutes"] = timing["total_seconds"] / 60
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "demo-timing.json", timing)
    atomic_write_text(args.out / "demo-timing.md", markdown(timing))
    print(markdown(timing))


if __name__ == "__main__":
    main()
