"""Helpers of run.sh (x86-64 side): which files to run, synthetic input patches, and the x86 vs aarch64 comparison.

    check.py classifiers DIR          the edge-pcam classifier .tflite files in DIR, one per line
    check.py is-classifier FILE       exit 0 when FILE is one
    check.py companion FILE           the Grad-CAM companion FILE names, if it exists
    check.py patches DIR [N]          N synthetic 96x96 PNG patches (half tumour-like), nothing real
    check.py compare RESULTS --models DIR --report FILE.md --command CMD

`compare` takes the x86-64 ai-edge-litert run as the reference and checks every
other run (x86-64 tflite-runtime, each emulated CPU with each interpreter):
identical labels; int8 probabilities within one step of the output's
quantization scale; float probabilities within 1e-5; Grad-CAM maps within 1e-5
(float) or 0.05 (int8 and dynamic range, whose pool3 features may round one
step apart). It writes the report and exits 1 on any mismatch or missing run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from edge_pcam.errors import EdgePcamError  # noqa: E402
from edge_pcam.runtime.metadata import read_metadata  # noqa: E402

REFERENCE = "x86_64-ai-edge-litert"
FLOAT_TOLERANCE = 1e-5
INT8_CAM_TOLERANCE = 0.05
INT8_FORMATS = ("int8", "edgetpu")


def _meta(path: Path) -> dict | None:
    try:
        return read_metadata(path)
    except EdgePcamError:
        return None


def classifiers(folder: Path) -> list[Path]:
    return [p for p in sorted(folder.glob("*.tflite")) if (m := _meta(p)) and m.get("format") not in ("gradcam", "edgetpu")]


def companion(path: Path) -> Path | None:
    comp = ((_meta(path) or {}).get("companion") or {}).get("file")
    return path.parent / comp if comp and (path.parent / comp).is_file() else None


def write_patches(folder: Path, n: int = 8) -> None:
    from PIL import Image

    from edge_pcam.runtime.datasets.spec import open_dataset

    split = open_dataset("synthetic:400:11").split("test")
    tumour, normal = np.flatnonzero(split.labels == 1), np.flatnonzero(split.labels == 0)
    pick = np.concatenate([tumour[: n // 2], normal[: n - n // 2]])
    folder.mkdir(parents=True, exist_ok=True)
    for i, idx in enumerate(pick):
        Image.fromarray(split.read([idx])[0]).save(folder / f"synthetic_{i:02d}_label{split.labels[idx]}.png")


def output_step(path: Path) -> float | None:
    """The probability output's quantization scale (one int8 step); None for a float output."""
    from edge_pcam.runtime.interpreter import open_interpreter, read_model_file, resolve_runtime

    _, content, _ = read_model_file(path)
    it = open_interpreter(content, resolve_runtime("auto"), 1)
    for d in it.get_output_details():
        if [int(s) for s in d["shape"]][1:] == [1] and d["dtype"] != np.float32:
            return float(d["quantization"][0])
    return None


def _load_run(folder: Path) -> tuple[dict[str, tuple[float, str]] | None, dict[str, np.ndarray] | None]:
    preds = cams = None
    if (folder / "predict.json").is_file():
        data = json.loads((folder / "predict.json").read_text())
        preds = {Path(p["path"]).name: (float(p["probability"]), p["prediction"]) for p in data["predictions"]}
    if (folder / "gradcam" / "gradcam.csv").is_file():
        cams = {Path(f).name.removesuffix("_cam.npy"): np.load(f) for f in sorted((folder / "gradcam").glob("*_cam.npy"))}
    return preds, cams


def same_runtime_reference(run: str, runs: list[str]) -> str:
    """The x86-64 run with the interpreter of `run` when there is one, else REFERENCE."""
    runtime = "tflite-runtime" if run.endswith("tflite-runtime") else "ai-edge-litert"
    candidate = f"x86_64-{runtime}"
    return candidate if candidate in runs and candidate != run else REFERENCE


def compare(results: Path, models: Path, report: Path, command: str) -> bool:
    runs = sorted(p.name for p in results.iterdir() if p.is_dir())
    if REFERENCE not in runs:
        raise SystemExit(f"no reference run {REFERENCE} in {results}")
    others = [r for r in runs if r != REFERENCE]
    rows, ok = [], True
    for model in [m for sub in sorted(models.iterdir()) if sub.is_dir() for m in classifiers(sub)]:
        key = f"{model.parent.name}/{model.stem}"  # results are kept per source folder
        fmt = _meta(model)["format"]
        step = output_step(model)
        tol = step if fmt in INT8_FORMATS and step else FLOAT_TOLERANCE
        # dynamic-range files quantize activations at run time, with CPU-dependent kernels: their pool3
        # features, hence Grad-CAM maps, may differ like an int8 file's (probabilities still within 1e-5)
        cam_tol = INT8_CAM_TOLERANCE if fmt in INT8_FORMATS + ("dynamic",) else FLOAT_TOLERANCE
        has_cam = bool(_meta(model).get("companion"))  # a file shipped without a companion has no Grad-CAM
        if _load_run(results / REFERENCE / key)[0] is None:
            raise SystemExit(f"the reference run has no results for {key}")
        for run in others:
            # An aarch64 run is compared with x86-64 running the same interpreter (the question is the CPU);
            # x86-64 tflite-runtime with x86-64 ai-edge-litert (the question is the interpreter).
            ref = same_runtime_reference(run, runs)
            ref_p, ref_c = _load_run(results / ref / key)
            if ref_p is None or (has_cam and ref_c is None):
                ref, (ref_p, ref_c) = REFERENCE, _load_run(results / REFERENCE / key)
            preds, cams = _load_run(results / run / key)
            row = {"run": f"{run} vs {ref}", "model": f"{model.parent.name}/{model.name}", "format": fmt, "n": len(ref_p), "tol": tol, "cam_tol": cam_tol}
            if fmt == "dynamic" and run.endswith("tflite-runtime"):
                row.update(verdict="➖ not supported: tflite-runtime 2.14 cannot run dynamic-range files from "
                           "TensorFlow 2.21 (edge-pcam says so and stops)")
                rows.append(row)
                continue
            if preds is None or (has_cam and cams is None) or set(preds) != set(ref_p):
                log = results / run / key / ("predict.log" if preds is None else "gradcam.log")
                why = log.read_text().strip().splitlines()[-1:] if log.is_file() else ["no output"]
                row.update(verdict="❌ did not run: " + (why[0][:200] if why else "no output"))
                rows.append(row)
                ok = False
                continue
            dp = max(abs(preds[k][0] - ref_p[k][0]) for k in ref_p)
            same = sum(preds[k][1] == ref_p[k][1] for k in ref_p)
            dc = max(float(np.max(np.abs(cams[k] - ref_c[k]))) for k in ref_c) if has_cam and ref_c else None
            passed = same == len(ref_p) and dp <= tol * (1 + 1e-6) and (dc is None or dc <= cam_tol)
            ok &= passed
            row.update(same=same, dp=dp, dc=dc, verdict="✅ pass" if passed else "❌ FAIL")
            rows.append(row)
    _write_report(results, report, command, rows, ok, others)
    return ok


def _write_report(results: Path, report: Path, command: str, rows: list[dict], ok: bool, runs: list[str]) -> None:
    env = (results / "environment.txt").read_text().strip().splitlines() if (results / "environment.txt").is_file() else []
    import datetime as dt
    lines = [
        "# edge-pcam on aarch64 under emulation: correctness against x86-64",
        "",
        "The device runtime (`edge-pcam predict` and `edge-pcam gradcam`) run on an arm64 Debian bookworm root "
        "under qemu user-mode emulation, with ai-edge-litert and tflite-runtime, on the emulated CPUs of a "
        "Raspberry Pi 4 (Cortex-A72) and a Raspberry Pi 5 (Cortex-A76), compared with the same commands on "
        "this x86-64 machine. This checks that the aarch64 wheels and kernels give the same answers; it says "
        "nothing about speed (emulation is tens of times slower than the boards).",
        "",
        f"Regenerate: `{command}` (as root; see devices/arm-emulation/run.sh). Created "
        f"{dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}.",
        "",
        "## Environment",
        "",
        *[f"- {line}" for line in env],
        "",
        "## Results",
        "",
        "Reference: each aarch64 run against x86-64 with the same interpreter, x86-64 tflite-runtime against "
        f"`{REFERENCE}`. Inputs: synthetic patches "
        "(devices/arm-emulation/check.py patches; nothing real). Pass: identical labels, probabilities within "
        "one output quantization step (int8) or 1e-5 (float, dynamic range), Grad-CAM 12x12 maps within 0.05 "
        "(int8, dynamic range: activations quantized at run time) or 1e-5 (float32, float16).",
        "",
        "| Run | Model | Format | Patches | Same label | max abs Δ probability | tolerance | max abs Δ Grad-CAM | tolerance | Verdict |",
        "|---|---|---|--:|--:|--:|--:|--:|--:|---|",
    ]
    for r in rows:
        if "dp" in r:
            lines.append(f"| {r['run']} | {r['model']} | {r['format']} | {r['n']} | {r['same']}/{r['n']} | "
                         f"{r['dp']:.3g} | {r['tol']:.3g} | {'no companion' if r['dc'] is None else format(r['dc'], '.3g')} | "
                         f"{r['cam_tol']:.3g} | {r['verdict']} |")
        else:
            lines.append(f"| {r['run']} | {r['model']} | {r['format']} | {r['n']} | — | — | {r['tol']:.3g} | — | "
                         f"{r['cam_tol']:.3g} | {r['verdict']} |")
    lines += ["", f"**{'All runs agree with x86-64.' if ok else 'Some runs disagree or did not run: see the table.'}**",
              f"Runs compared: {', '.join(runs)}. What is known about failures: devices/arm-emulation/README.md.", ""]
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("classifiers").add_argument("folder", type=Path)
    sub.add_parser("is-classifier").add_argument("file", type=Path)
    sub.add_parser("companion").add_argument("file", type=Path)
    p = sub.add_parser("patches")
    p.add_argument("folder", type=Path)
    p.add_argument("n", type=int, nargs="?", default=8)
    c = sub.add_parser("compare")
    c.add_argument("results", type=Path)
    c.add_argument("--models", type=Path, required=True)
    c.add_argument("--report", type=Path, required=True)
    c.add_argument("--command", default="make arm-check")
    args = ap.parse_args()
    if args.cmd == "classifiers":
        print("\n".join(map(str, classifiers(args.folder))))
    elif args.cmd == "is-classifier":
        sys.exit(0 if args.file in classifiers(args.file.parent) else 1)
    elif args.cmd == "companion":
        comp = companion(args.file)
        print(comp or "")
    elif args.cmd == "patches":
        write_patches(args.folder, args.n)
    else:
        sys.exit(0 if compare(args.results, args.models, args.report, args.command) else 1)


if __name__ == "__main__":
    main()
