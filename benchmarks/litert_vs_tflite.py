"""edge-pcam's runtime against the raw interpreters on one int8 file, paired: what the runtime adds or saves.

At each thread count, every installed interpreter (ai-edge-litert, tf.lite,
tflite-runtime) runs the file twice: through edge-pcam's runtime
(`load_model(...).predict`, what `edge-pcam predict` runs) and raw (the file in
the interpreter's own `Interpreter`, as a user's code opens it, nothing of
edge-pcam in between: edge_pcam.bench.raw_interpreter). All are timed side by side on one
patch at batch 1 in paired rounds (edge_pcam.bench.timing.paired_rounds).

    .venv/bin/python benchmarks/litert_vs_tflite.py                # the bundled int8 file, 1 and 2 threads
    .venv/bin/python benchmarks/litert_vs_tflite.py --pause-ms 50  # a pause before every block (see --help)

Writes litert_vs_tflite.md and litert_vs_tflite.json into --out (default benchmarks/results).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

import numpy as np

from edge_pcam.bench.raw_interpreter import RawInterpreter
from edge_pcam.bench.timing import PAUSE_S, SETTLE_CALLS, paired_rounds
from edge_pcam.runtime.bundled import default_model_path
from edge_pcam.runtime.fileio import atomic_write_json, atomic_write_text
from edge_pcam.runtime.interpreter import AUTO_ORDER, TF_LITE, installed_runtimes, load_model
from edge_pcam.runtime.machine import conditions_line, describe_machine, load_average

REPO = Path(__file__).resolve().parents[1]
TARGET_MS = 0.6          # issue 5: the int8 file through the runtime, per patch at batch 1
TARGET_THREADS = 2
FULL = {"rounds": 15, "calls": 40, "warmup": 50}
QUICK = {"rounds": 2, "calls": 5, "warmup": 3}


def measure(path: Path, threads: int, runtimes: list[str], counts: dict, pause_s: float) -> dict:
    """Paired rounds of the runtime and the raw interpreter, for every runtime, at one thread count."""
    x = np.random.default_rng(0).integers(0, 256, (1, 96, 96, 3), dtype=np.uint8)
    engines, about = {}, {}
    for runtime in runtimes:
        model = load_model(path, runtime=runtime, threads=threads)
        raw = RawInterpreter(path, runtime, threads)
        for kind, engine in (("edge-pcam", model), ("raw", raw)):
            name = f"{kind} {runtime}"
            engines[name] = lambda e=engine: e.predict(x)
            about[name] = {"kind": kind, "runtime": runtime, "version": engine.runtime_version}
    timed = paired_rounds(engines, pause_s=pause_s, **counts)
    return {"threads": threads, "engines": about, **timed}


def markdown(r: dict) -> str:
    """The report: the run's own figures and settings only."""
    s = r["settings"]
    before = f"{s['settle_calls']} untimed calls" + (f" after a {s['pause_s'] * 1e3:g} ms pause" if s["pause_s"] else "")
    lines = [
        "# edge-pcam's runtime vs the raw interpreters, paired", "",
        f"- Machine: {conditions_line(r['machine'], r['load_average_before'], r['load_average_after'])}",
        f"- File: `{r['file']}` (sha256 {r['file_sha256'][:12]}…)",
        f"- Method: at each thread count, {s['rounds']} rounds of {s['calls']} calls of each engine in rotating "
        f"order (batch 1, one patch), each block after {before}, following {s['warmup']} warm-up calls of each. "
        "*edge-pcam*: `load_model(...).predict`; *raw*: the file in the interpreter's own `Interpreter`, tensors "
        "by signature name, as a user's code runs it (edge_pcam.bench.raw_interpreter). Both: input, invoke, the "
        "probability. p50 and p95 over every call; fastest round: the lowest mean of one block.",
        f"- Created {r['created']} by `{r['command']}`", "",
        "| threads | engine | version | p50 ms/patch | p95 ms/patch | fastest round ms/patch | p50 / raw p50 |",
        "|---:|---|---|---:|---:|---:|---:|",
    ]
    for m in r["measurements"]:
        for name, info in m["engines"].items():
            ratio = m["ratio_to_raw"].get(name)
            lines.append(f"| {m['threads']} | {name} | {info['version']} | {m['p50_ms'][name]:.3f} | "
                         f"{m['p95_ms'][name]:.3f} | {m['fastest_round_ms'][name]:.3f} | "
                         f"{'—' if ratio is None else f'{ratio:.3f}'} |")
    t = r.get("target")
    if t:
        lines += ["", f"Target: the int8 file through edge-pcam's runtime on {t['engine'].split(' ', 1)[1]} in at most "
                  f"{t['target_ms']:g} ms per patch at {t['threads']} threads: p50 {t['p50_ms']:.3f} ms, "
                  f"{'met' if t['met'] else 'not met'}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, help="int8 .tflite made by edge-pcam convert (default: the bundled one)")
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    ap.add_argument("--pause-ms", type=float, default=PAUSE_S * 1e3,
                    help="sleep before each engine's block, letting the previous engine's threads go idle")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    ap.add_argument("--quick", action="store_true", help="a smoke run: two short rounds")
    args = ap.parse_args(argv)

    path = (args.model or default_model_path()).resolve()
    counts = QUICK if args.quick else FULL
    runtimes = [rt for rt in (*AUTO_ORDER, TF_LITE) if rt in installed_runtimes()]
    load_before = load_average()
    measurements = []
    for threads in (int(t) for t in args.threads.split(",")):
        m = measure(path, threads, runtimes, counts, args.pause_ms / 1e3)
        m["ratio_to_raw"] = {n: m["p50_ms"][n] / m["p50_ms"][f"raw {i['runtime']}"]
                             for n, i in m["engines"].items() if i["kind"] == "edge-pcam"}
        measurements.append(m)
        print(f"{threads} thread(s): " + ", ".join(f"{n} {v:.3f} ms" for n, v in m["p50_ms"].items()), file=sys.stderr)
    from edge_pcam.runtime.metadata import sha256_file

    result = {
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([".venv/bin/python benchmarks/litert_vs_tflite.py",
                             *(argv if argv is not None else sys.argv[1:])]),
        "machine": describe_machine(), "load_average_before": load_before, "load_average_after": load_average(),
        "file": str(path.relative_to(REPO)) if path.is_relative_to(REPO) else path.name,
        "file_sha256": sha256_file(path),
        "settings": {**counts, "pause_s": args.pause_ms / 1e3, "settle_calls": SETTLE_CALLS, "runtimes": runtimes},
        "measurements": measurements, "target": None,
    }
    at_target = next((m for m in measurements if m["threads"] == TARGET_THREADS), None)
    engine = f"edge-pcam {runtimes[0]}" if runtimes else None
    if at_target and engine in at_target["p50_ms"]:
        p50 = at_target["p50_ms"][engine]
        result["target"] = {"engine": engine, "threads": TARGET_THREADS, "target_ms": TARGET_MS, "p50_ms": p50,
                            "met": p50 <= TARGET_MS}
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "litert_vs_tflite.json", result, indent=1)
    atomic_write_text(args.out / "litert_vs_tflite.md", markdown(result))
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
