"""Per-patch latency of the device runtime, interpreter by interpreter; cold start of `edge-pcam predict`.

    .venv/bin/python benchmarks/runtime_latency.py            # a few minutes on 2 cores; tflite-runtime rows need
                                                              # .venv-tflite (make .venv-tflite/.installed)

Every measurement runs in a fresh process (one interpreter, one thread
setting), so thread pools and caches do not leak between them, in rounds that
interleave the configurations; each configuration's better round is kept.
Rows: the bundled int8 and float32 files through edge-pcam's runtime
(`load_model(...).predict`) in every interpreter, and, for the int8 file, the
file in each interpreter directly, as a user's own code opens it
(edge_pcam.bench.raw_interpreter): a file that runs as it was written is as
fast either way. The options table tries
ai-edge-litert's own interpreter options on the raw int8 file. Timing loops:
edge_pcam.bench.timing; cold start: edge_pcam.bench.coldstart.time_process.
Writes runtime_latency.{json,md} into --out (default benchmarks/results).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENV_PY = REPO / ".venv" / "bin" / "python"
TFLITE_PY = REPO / ".venv-tflite" / "bin" / "python"
BUNDLED = REPO / "edge_pcam" / "models"
FULL = {"repeats": 400, "warmup": 50, "rounds": 2, "threads": [1, 2], "cold_repeats": 5, "throughput_files": 300,
        "knobs": True}
QUICK = {"repeats": 20, "warmup": 3, "rounds": 1, "threads": [1], "cold_repeats": 1, "throughput_files": 8,
         "knobs": False}
RAW_FORMATS = ("int8",)
KNOBS = (("experimental_op_resolver_type", "AUTO"), ("experimental_op_resolver_type", "BUILTIN"),
         ("experimental_op_resolver_type", "BUILTIN_WITHOUT_DEFAULT_DELEGATES"),
         ("experimental_default_delegate_latest_features", True), ("experimental_disable_delegate_clustering", True))
KNOB_THREADS = 2
NAMES = {"litert": "ai-edge-litert", "tf": "tf.lite", "tflite-runtime": "tflite-runtime"}


# ----------------------------------------------------------------------------- one measurement, in its own process

def worker(cfg: dict) -> dict:
    """Latency of one configuration in this process (and, through the runtime, end-to-end throughput)."""
    import numpy as np

    from edge_pcam.bench.raw_interpreter import RawInterpreter, xnnpack_partitions
    from edge_pcam.bench.timing import time_calls
    from edge_pcam.runtime.interpreter import load_model

    x = np.random.default_rng(0).integers(0, 256, (1, 96, 96, 3), dtype=np.uint8)
    if cfg["kind"] == "raw":
        engine = RawInterpreter(cfg["model"], cfg["runtime"], cfg["threads"], **cfg.get("options", {}))
        interpreter = engine.interpreter
    else:
        engine = load_model(cfg["model"], runtime=cfg["runtime"], threads=cfg["threads"])
        interpreter = engine._interpreter
    timed = time_calls(lambda: engine.predict(x), warmup=cfg["warmup"], runs=cfg["repeats"])
    timed.pop("samples_ms")
    out = {**cfg, **timed, "partitions": xnnpack_partitions(interpreter), "runtime_version": engine.runtime_version}
    if cfg.get("throughput_dir"):
        import time

        from edge_pcam.runtime.classify import classify
        start = time.perf_counter()
        result = classify([cfg["throughput_dir"]], engine)
        out["throughput_per_s"] = len(result.predictions) / (time.perf_counter() - start)
    return out


def run_worker(python: Path, cfg: dict) -> dict | None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([str(python), __file__, "--worker", json.dumps(cfg)], capture_output=True,
                          text=True, env=env, cwd=REPO)
    if proc.returncode != 0:
        print(f"  failed: {cfg} -> {proc.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- the driver

def write_patches(folder: Path, n: int) -> Path:
    """`n` synthetic PNG patches in folder/pngs, and folder/one.png; returns one.png."""
    from PIL import Image

    from edge_pcam.runtime.datasets.synthetic import synthetic_patch
    pngs = folder / "pngs"
    pngs.mkdir()
    for i in range(n):
        Image.fromarray(synthetic_patch(3, i)[0]).save(pngs / f"p{i:04d}.png")
    Image.fromarray(synthetic_patch(3, 0)[0]).save(folder / "one.png")
    return folder / "one.png"


def plan(models: dict[str, Path], s: dict, pngs: str, have_tflite: bool) -> list[tuple[Path, dict]]:
    """(python, configuration) for every row."""
    interpreters = [(VENV_PY, "litert"), (VENV_PY, "tf")] + ([(TFLITE_PY, "tflite-runtime")] if have_tflite else [])
    configs = []
    for fmt, path in models.items():
        for threads in s["threads"]:
            for python, runtime in interpreters:
                base = {"model": str(path), "fmt": fmt, "threads": threads, "runtime": runtime,
                        "repeats": s["repeats"], "warmup": s["warmup"]}
                configs.append((python, {**base, "kind": "edge-pcam", "throughput_dir": pngs}))
                if fmt in RAW_FORMATS:
                    configs.append((python, {**base, "kind": "raw"}))
    return configs


def run(models: dict[str, Path], s: dict, out: Path, command: str) -> dict:
    from edge_pcam.bench.coldstart import time_process
    from edge_pcam.runtime.fileio import atomic_write_json, atomic_write_text
    from edge_pcam.runtime.machine import describe_machine, load_average, package_versions_in

    have_tflite = TFLITE_PY.exists()
    report: dict = {
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "command": command,
        "machine": describe_machine(), "load_average_before": load_average(), "settings": s,
        "models": {k: str(v.relative_to(REPO)) if v.is_relative_to(REPO) else v.name for k, v in models.items()},
        "versions": {".venv": package_versions_in(VENV_PY, ("ai-edge-litert", "tensorflow", "numpy")),
                     ".venv-tflite": package_versions_in(TFLITE_PY, ("tflite-runtime", "numpy")) if have_tflite else {}},
        "latency": [], "knobs": [], "cold_start": {}}
    with tempfile.TemporaryDirectory(prefix="edge-pcam-latency-") as tmp:
        one = write_patches(Path(tmp), s["throughput_files"])
        configs = plan(models, s, str(Path(tmp) / "pngs"), have_tflite)
        best: dict[int, dict] = {}
        for _ in range(s["rounds"]):  # interleaved rounds: keep each configuration's better one
            for i, (python, cfg) in enumerate(configs):
                res = run_worker(python, cfg)
                if res and (i not in best or res["p50_ms"] < best[i]["p50_ms"]):
                    best[i] = res
        for i in sorted(best):
            res = best[i]
            res.pop("throughput_dir", None)
            report["latency"].append(res)
            print(f"{res['kind']:9s} {res['runtime']:15s} {res['fmt']:8s} thr={res['threads']} "
                  f"p50 {res['p50_ms']:.3f} ms  p95 {res['p95_ms']:.3f}  cores {res['cores']:.2f}", file=sys.stderr)
        for knob, value in (KNOBS if s["knobs"] else ()):
            res = run_worker(VENV_PY, {"kind": "raw", "runtime": "litert", "model": str(models["int8"]), "fmt": "int8",
                                       "threads": KNOB_THREADS, "options": {knob: value}, "repeats": s["repeats"],
                                       "warmup": s["warmup"]})
            if res:
                report["knobs"].append(res)
        predict = ["-m", "edge_pcam", "predict", str(one), "--model", str(models["int8"])]
        cold = report["cold_start"]
        cold["predict_litert"] = time_process(predict, VENV_PY, s["cold_repeats"], cwd=REPO)
        if have_tflite:
            cold["predict_tflite_runtime"] = time_process(predict, TFLITE_PY, s["cold_repeats"], cwd=REPO)
        cold["import_tensorflow"] = time_process(["-c", "import tensorflow"], VENV_PY, s["cold_repeats"])
        cold["python_only"] = time_process(["-c", "pass"], VENV_PY, s["cold_repeats"])
    report["load_average_after"] = load_average()
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "runtime_latency.json", report, indent=1)
    atomic_write_text(out / "runtime_latency.md", markdown(report))
    print(f"wrote {out / 'runtime_latency.json'} and .md", file=sys.stderr)
    return report


def markdown(r: dict) -> str:
    """The report: tables of this run's measurements, and how they were taken."""
    from edge_pcam.runtime.machine import conditions_line

    s, v = r["settings"], r["versions"]
    lines = [
        "# Runtime latency: edge-pcam's device runtime, interpreter by interpreter", "",
        f"- Machine: {conditions_line(r['machine'], r['load_average_before'], r['load_average_after'])}",
        f"- Packages: .venv: {', '.join(f'{k} {x}' for k, x in v['.venv'].items() if x)}; .venv-tflite: "
        f"{', '.join(f'{k} {x}' for k, x in v['.venv-tflite'].items() if x) or 'absent'}",
        f"- Models: {', '.join(f'{k} `{p}`' for k, p in r['models'].items())}",
        f"- Created {r['created']} by `{r['command']}`", "",
        "## Per-patch latency, batch 1", "",
        f"One patch per call, {s['repeats']} calls after {s['warmup']} warm-up calls, each configuration in its "
        f"own process, {s['rounds']} interleaved round(s), the better kept. *edge-pcam*: `load_model(...).predict`; "
        "*raw*: the file in the interpreter's own `Interpreter`, tensors by signature name, as a user's code runs it; "
        "both: input, invoke, the probability. *p10*: the calls that had the cores to themselves on a shared machine. "
        "*CPU ms*: "
        "process CPU time per call, all threads. *cores*: CPU time over wall time. *patches/s*: end to end, "
        "`classify` over a folder of PNG patches (decode, predict, label).", "",
        "| interpreter | file | path | threads | p50 ms | p95 ms | p10 ms | CPU ms | cores | patches/s | ops outside XNNPACK |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for x in r["latency"]:
        tput = f"{x['throughput_per_s']:.0f}" if x.get("throughput_per_s") else "—"
        lines.append(f"| {NAMES.get(x['runtime'], x['runtime'])} {x.get('runtime_version') or ''} | {x['fmt']} | "
                     f"{x['kind']} | {x['threads']} | {x['p50_ms']:.3f} | {x['p95_ms']:.3f} | {x['p10_ms']:.3f} | "
                     f"{x['cpu_ms']:.3f} | {x['cores']:.2f} | {tput} | {_ops(x)} |")
    if r["knobs"]:
        lines += ["", f"## ai-edge-litert options on the raw int8 file ({KNOB_THREADS} threads)", "",
                  "| option | p50 ms | p95 ms | min ms | CPU ms | XNNPACK partitions | ops outside XNNPACK |",
                  "|---|---:|---:|---:|---:|---:|---|"]
        for x in r["knobs"]:
            (knob, value), = x["options"].items()
            lines.append(f"| {knob} = {value} | {x['p50_ms']:.3f} | {x['p95_ms']:.3f} | {x['min_ms']:.3f} | "
                         f"{x['cpu_ms']:.3f} | {x['partitions'].get('xnnpack_partitions', '—')} | {_ops(x)} |")
    names = {"predict_litert": "`edge-pcam predict one.png` (ai-edge-litert, .venv)",
             "predict_tflite_runtime": "`edge-pcam predict one.png` (tflite-runtime, .venv-tflite)",
             "import_tensorflow": "`python -c 'import tensorflow'`", "python_only": "`python -c pass`"}
    lines += ["", "## Cold start", "",
              f"A fresh process from start to exit, median of {s['cold_repeats']}: wall time and peak resident "
              "memory (VmHWM).", "", "| command | wall s | fastest s | peak RSS MB |", "|---|---:|---:|---:|"]
    for k, x in r["cold_start"].items():
        lines.append(f"| {names.get(k, k)} | {x['wall_s']:.2f} | {x['wall_min_s']:.2f} | {x['peak_rss_mb']:.0f} |")
    return "\n".join(lines) + "\n"


def _ops(x: dict) -> str:
    kinds = x["partitions"].get("builtin_kinds")
    return "not listed" if kinds is None else (", ".join(kinds) or "none")


def main(argv: list[str] | None = None) -> None:
    from edge_pcam.runtime.fileio import atomic_write_text

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--quick", action="store_true", help="a smoke run: one thread count, few calls, no options table")
    ap.add_argument("--int8", type=Path, default=BUNDLED / "edge_pcam_int8.tflite")
    ap.add_argument("--float32", type=Path, default=BUNDLED / "edge_pcam_float32.tflite")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    ap.add_argument("--report-only", action="store_true", help="rewrite the .md from the .json in --out")
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    if args.report_only:
        record = json.loads((args.out / "runtime_latency.json").read_text())
        atomic_write_text(args.out / "runtime_latency.md", markdown(record))
        return
    command = " ".join([".venv/bin/python benchmarks/runtime_latency.py", *(argv if argv is not None else sys.argv[1:])])
    run({"int8": args.int8.resolve(), "float32": args.float32.resolve()}, QUICK if args.quick else FULL, args.out,
        command)


if __name__ == "__main__":
    main()
