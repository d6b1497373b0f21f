"""`edge-pcam demo`: the whole job on one machine, as the commands a user would type.

data -> a short training run -> QAT -> int8 conversion with the parity gate ->
bench -> Grad-CAM overlays -> a scan of a slide made from validation patches ->
`OUT/report.md`. Each step is the real `edge-pcam` command, run as a child
process (its log in OUT/logs/), so the report shows exactly what to type to
reproduce it. A short run is a demonstration of the pipeline, not the bundled
model: the report says how to reproduce that one (MODEL_CARD.md). `OUT/timing.json`
holds each step's wall time, the whole run's and the machine's description;
benchmarks/demo_timing.py copies it into benchmarks/results/demo-timing.md.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from edge_pcam.errors import EdgePcamError
from edge_pcam.runtime.constants import PCAM_MPP
from edge_pcam.runtime.datasets import PatchDataset, open_dataset
from edge_pcam.runtime.fileio import atomic_write_json
from edge_pcam.runtime.machine import describe_machine, load_average, summary_line
from edge_pcam.training.recipe import load_recipe

SUBSET = Path("../shared/data/pcam-subset")
SYNTHETIC = "synthetic:4000"
MOSAIC_GRID = 24          # 24 x 24 patches = 2,304 x 2,304 pixels
MOSAIC_TUMOUR = 0.0625    # the share of tumour patches planted in one region
GRADCAM_PATCHES = 8


@dataclass
class Step:
    """One command of the demo and how it went."""

    name: str
    argv: list[str]
    seconds: float = 0.0
    log: str = ""


@dataclass
class Demo:
    out: Path
    data: str
    steps: list[Step] = field(default_factory=list)

    def run(self, name: str, *args: str) -> Step:
        """Run `edge-pcam ARGS` as a child process, logging to OUT/logs/NAME.log; raise on failure."""
        step = Step(name, ["edge-pcam", *args])
        log = self.out / "logs" / f"{name}.log"
        print(f"[demo] {name}: {shlex.join(step.argv)}", flush=True)
        start = time.perf_counter()
        with open(log, "w") as f:
            rc = subprocess.call([sys.executable, "-m", "edge_pcam", *args], stdout=f, stderr=subprocess.STDOUT)
        step.seconds = time.perf_counter() - start
        step.log = str(log.relative_to(self.out))
        self.steps.append(step)
        if rc != 0:
            tail = log.read_text(errors="replace").strip().splitlines()[-3:]
            raise EdgePcamError(f"demo step '{name}' failed (exit {rc}); see {log}: " + " | ".join(tail))
        print(f"[demo] {name}: done in {step.seconds:.0f} s", flush=True)
        return step


def default_data() -> str:
    """The real subset where it is (../shared/data/pcam-subset), else synthetic patches."""
    return str(SUBSET) if (SUBSET / "labels.csv").is_file() else SYNTHETIC


def run_demo(out: str | Path = "runs/demo", data: str | None = None, overwrite: bool = True) -> Path:
    """Run the whole job into `out`; return the path of report.md."""
    start, load_before = time.perf_counter(), load_average()
    out = Path(out)
    if out.exists() and overwrite:
        shutil.rmtree(out)
    (out / "logs").mkdir(parents=True, exist_ok=True)
    demo = Demo(out, data or default_data())
    dataset = open_dataset(demo.data)
    real = dataset.kind != "synthetic"
    print(f"[demo] data: {demo.data} ({dataset.kind}); report in {out / 'report.md'}", flush=True)

    # Thresholds on the tuning set the demo recipe carves from train (the same patches), never on valid.
    thresholds = ("--tune-from-train", str(load_recipe("demo")["training"]["tune_from_train"]))
    demo.run("train", "train", "--data", demo.data, "--out", str(out / "train"), "--recipe", "demo")
    demo.run("qat", "qat", str(out / "train" / "best.h5"), "--data", demo.data, "--out", str(out / "qat"),
             "--recipe", "demo", "--epochs", "1")
    demo.run("convert-float", "convert", str(out / "train" / "best.h5"), "--data", demo.data,
             "--out", str(out / "models" / "ptq"), "--float32", "--int8", "--limit", "1000", *thresholds)
    demo.run("convert-qat", "convert", str(out / "qat" / "best.h5"), "--data", demo.data,
             "--out", str(out / "models" / "qat"), "--int8", "--limit", "1000", *thresholds)
    demo.run("bench", "bench", "--models", str(out / "models"), "--data", demo.data, "--out", str(out / "bench"),
             "--limit", "1000", "--threads", "1,2")

    int8 = out / "models" / "qat" / "edge_pcam_int8.tflite"
    patches = _write_gradcam_patches(dataset, out / "patches")
    demo.run("gradcam", "gradcam", *map(str, patches), "--model", str(int8), "--out", str(out / "gradcam"))
    truth = _write_mosaic(dataset, out / "slide.png")
    demo.run("scan", "scan", str(out / "slide.png"), "--model", str(int8), "--out", str(out / "scan"),
             "--mpp", str(PCAM_MPP), "--stride", "96", "--explain")

    timing = {"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "data": demo.data,
              "real_data": real, "steps": {s.name: s.seconds for s in demo.steps},
              "total_seconds": time.perf_counter() - start, "load_average_before": load_before,
              "load_average_after": load_average(), "machine": describe_machine()}
    atomic_write_json(out / "timing.json", timing)
    report = out / "report.md"
    report.write_text(_report(demo, real, truth, timing))
    return report


def _write_gradcam_patches(dataset: PatchDataset, folder: Path) -> list[Path]:
    """Half tumour, half normal validation patches as PNG files (local to the run; never committed)."""
    valid = dataset.split("valid")
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = np.concatenate([rng.choice(np.flatnonzero(valid.labels == c), GRADCAM_PATCHES // 2, replace=False)
                           for c in (1, 0)])
    paths = []
    for row, image in zip(rows, valid.read(rows)):
        path = folder / f"valid_{row:05d}_label{valid.labels[row]}.png"
        Image.fromarray(image).save(path)
        paths.append(path)
    return paths


def _write_mosaic(dataset: PatchDataset, path: Path) -> dict:
    """A slide made of validation patches: a round region of tumour patches in normal tissue.

    The planted share is MOSAIC_TUMOUR of the tiles, like a mostly negative slide
    (where false positives dominate the burden estimate at threshold 0.5).
    """
    valid = dataset.split("valid")
    rng = np.random.default_rng(1)
    g = MOSAIC_GRID
    yy, xx = np.mgrid[:g, :g]
    distance = np.hypot(yy - g * 0.35, xx - g * 0.6)
    n_tumour = int(round(MOSAIC_TUMOUR * g * g))
    tumour_cells = np.zeros(g * g, bool)
    tumour_cells[np.argsort(distance.ravel(), kind="stable")[:n_tumour]] = True
    pos, neg = np.flatnonzero(valid.labels == 1), np.flatnonzero(valid.labels == 0)
    rows = np.where(tumour_cells, rng.choice(pos, g * g), rng.choice(neg, g * g))
    tiles = valid.read(rows)
    mosaic = tiles.reshape(g, g, 96, 96, 3).transpose(0, 2, 1, 3, 4).reshape(g * 96, g * 96, 3)
    Image.fromarray(mosaic).save(path)
    return {"grid": g, "tumour_tiles": n_tumour, "tumour_fraction": n_tumour / (g * g)}


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _metrics_row(name: str, m: dict) -> str:
    cells = [f"{m.get(k, float('nan')):.3f}" for k in ("accuracy", "precision", "recall", "f1", "auc")]
    return f"| {name} | " + " | ".join(cells) + " |"


def _report(demo: Demo, real: bool, truth: dict, timing: dict) -> str:
    out = demo.out
    train = _read_json(out / "train" / "metrics.json")
    qat = _read_json(out / "qat" / "metrics.json")
    scan = _read_json(out / "scan" / "scan.json")
    lines = [
        "# edge-pcam demo report", "",
        f"Data: `{demo.data}` ({'real PCam subset, JPEG' if real else 'synthetic patches'}). "
        "A short run that shows the whole pipeline on this machine; the bundled model's numbers are in "
        "MODEL_CARD.md.", "",
        "## Commands", "", "| step | command | seconds | log |", "|---|---|---:|---|",
        *[f"| {s.name} | `{shlex.join(s.argv)}` | {s.seconds:.0f} | [{s.log}]({s.log}) |" for s in demo.steps],
        "", f"The whole demo: {timing['total_seconds'] / 60:.1f} minutes on {summary_line(timing['machine'])} "
        "([timing.json](timing.json); the virtual environment was built before).",
        "", "## Keras models on the valid split (threshold 0.5)", "",
        "| model | accuracy | precision | recall | F1 | AUC |", "|---|---:|---:|---:|---:|---:|",
    ]
    for name, metrics in (("float (train/best.h5)", train), ("QAT (qat/best.h5)", qat)):
        valid = metrics.get("valid", {}).get("decision") or metrics.get("valid", {})
        if valid:
            lines.append(_metrics_row(name, valid))
    for sub in ("ptq", "qat"):
        summary = out / "models" / sub / "summary.md"
        if summary.is_file():
            lines += ["", f"## Conversion ({sub})", "", _demote(summary.read_text())]
    bench = out / "bench" / "report.md"
    if bench.is_file():
        lines += ["", "## Benchmark", "", _demote(bench.read_text().replace("](", "](bench/"))]
    overlays = sorted((out / "gradcam").glob("*overlay*.png"))
    if overlays:
        lines += ["", "## Grad-CAM on the device (int8 file + companion)", "",
                  " ".join(f"![{p.stem}]({p.relative_to(out)})" for p in overlays)]
    if scan:
        burden = scan.get("burden") or scan.get("tumour_burden") or {}
        lines += ["", "## Scan of a slide made from validation patches", "",
                  f"Planted tumour share: {truth['tumour_fraction']:.1%} of {truth['grid'] ** 2} tiles.", "",
                  "```json", json.dumps(burden, indent=1), "```", "", "![heatmap](scan/heatmap.png)"]
    return "\n".join(lines) + "\n"


def _demote(markdown: str) -> str:
    """Push a sub-report's headings one level down so they nest under ours."""
    return "\n".join("#" + line if line.startswith("#") else line for line in markdown.splitlines())
