"""Scan throughput against the raw interpreter on the same tiles, and wall time for the test slide.

    .venv/bin/python benchmarks/scan.py                 # ~4 min on 2 cores (converts models with TF)
    .venv/bin/python benchmarks/scan.py --models DIR    # int8 files already converted (batch 1 + batched)

Models: the design's attention-CNN converted to int8 with `edge_pcam.export.tflite.convert_model`
at batch 1 and at the batches in BATCHES (what `edge-pcam convert --batch N` writes), all with the
same `source_model` so the scan finds the batched files beside the batch-1 file. The weights are a
random initialisation unless --weights names a trained .h5: throughput does not depend on them.

Slides (synthetic, `edge_pcam.runtime.synthetic_slide`): the test slide (20,000 x 20,000 pixels at
0.486 µm/px, tissue in the middle fifth: ~380 tiles) for the wall time, and a tissue-rich slide of
the same size (tissue over the middle 70%: ~3,500 tiles, JPEG-compressed like a scanner's) for throughput.

For each model file: the scan's tile loop (read TIFF tiles, resample, cut, classify, append to
tiles.csv) in tiles/s, from scan.json's `tile_seconds`; and the raw interpreter on the same tiles
already in memory (`PatchModel.predict`: set input, invoke, read output) in tiles/s. Overhead =
1 - scan / raw. Best of REPEATS runs of each, interleaved, because the machine is shared.
Results: benchmarks/results/scan.{json,md}.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
RESULTS = REPO / "benchmarks" / "results"
BATCHES = (16, 64)
REPEATS = 3
SLIDE_SIZE = 20_000
SLIDE_MPP = 0.486


def make_models(folder: Path, weights: str | None) -> None:
    """Convert the model to int8 at batch 1 and each of BATCHES, with metadata (needs TensorFlow)."""
    import hashlib

    from edge_pcam.export.representative import calibration_batches
    from edge_pcam.export.tflite import convert_model, input_spec
    from edge_pcam.model import build_model
    from edge_pcam.runtime.datasets.synthetic import open_synthetic
    from edge_pcam.runtime.metadata import with_metadata

    model = build_model(l2=0.0)
    if weights:
        model.load_weights(weights)
    source = hashlib.sha256(b"".join(w.tobytes() for w in model.get_weights())).hexdigest()
    split = open_synthetic("synthetic:640:3").split("train")
    images = split.read(np.arange(len(split)))
    for batch in (1, *BATCHES):
        data = convert_model(model, "int8", batch=batch, representative=calibration_batches(images, batch))
        meta = {"format": "int8", "source": "ptq", "batch": batch, "input": input_spec(data).as_metadata(),
                "labels": ["normal", "tumour"], "thresholds": {"decision": 0.5, "high_specificity": 0.9},
                "source_model": {"file": weights or "random initialisation", "sha256": source},
                "companion": None, "command": "benchmarks/scan.py"}
        name = "bench_int8.tflite" if batch == 1 else f"bench_int8_b{batch}.tflite"
        (folder / name).write_bytes(with_metadata(data, meta))


def tissue_tiles_of(slide_path: Path) -> np.ndarray:
    """Every tissue tile of the slide at scan scale, in memory: the raw interpreter's input."""
    from edge_pcam.runtime.scan import TILE, find_tissue, iter_tiles, plan_geometry
    from edge_pcam.runtime.slide import open_slide

    with open_slide(slide_path) as slide:
        geometry = plan_geometry(slide, TILE)
        _, _, mask = find_tissue(slide, geometry)
        return np.concatenate([tiles for _, tiles in iter_tiles(slide, geometry, mask)])


def raw_throughput(model_path: Path, tiles: np.ndarray) -> float:
    from edge_pcam.runtime.interpreter import load_model

    model = load_model(model_path)
    model.predict(tiles[:model.batch])  # warm-up
    start = time.perf_counter()
    model.predict(tiles)
    return len(tiles) / (time.perf_counter() - start)


def scan_once(slide_path: Path, model_dir: Path, out: Path) -> dict:
    from edge_pcam.runtime.scan import scan_slide

    shutil.rmtree(out, ignore_errors=True)
    return scan_slide(slide_path, out, model_dir / "bench_int8.tflite", batch=None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=Path, help="folder with bench_int8.tflite and bench_int8_bN.tflite")
    parser.add_argument("--weights", help="a trained .h5 to convert instead of a random initialisation")
    parser.add_argument("--work", type=Path, help="working folder (default: a temporary one)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    from edge_pcam.bench.machine import describe_machine
    from edge_pcam.runtime.synthetic_slide import write_synthetic_slide

    work = args.work or Path(tempfile.mkdtemp(prefix="edge-pcam-bench-scan-"))
    work.mkdir(parents=True, exist_ok=True)
    models = args.models
    if models is None:
        models = work / "models"
        models.mkdir(exist_ok=True)
        command = [sys.executable, __file__, "--make-models-into", str(models)] + (
            ["--weights", args.weights] if args.weights else [])
        subprocess.run(command, check=True)
    load_before = os.getloadavg()

    t0 = time.perf_counter()
    test_slide = write_synthetic_slide(work / "test_slide.tif", SLIDE_SIZE, SLIDE_SIZE, mpp=SLIDE_MPP)
    write_seconds = time.perf_counter() - t0
    # Scanners write JPEG tiles (Aperio SVS, most pyramidal TIFFs); decoding them needs imagecodecs.
    compression = "jpeg" if importlib.util.find_spec("imagecodecs") else "zlib"
    rich = write_synthetic_slide(work / "tissue_rich.tif", SLIDE_SIZE, SLIDE_SIZE, mpp=SLIDE_MPP,
                                 tissue=(3000, 3000, 17000, 17000), tumour=(6000, 6000, 9000, 9000),
                                 compression=compression)
    tiles = tissue_tiles_of(rich.path)

    rows = []
    for batch in (1, *BATCHES):
        # A folder holding the batch-1 file and only this batch's file: the scan picks what is there.
        folder = work / f"models_b{batch}"
        folder.mkdir(exist_ok=True)
        shutil.copy(models / "bench_int8.tflite", folder)
        if batch > 1:
            shutil.copy(models / f"bench_int8_b{batch}.tflite", folder)
        inference_file = folder / ("bench_int8.tflite" if batch == 1 else f"bench_int8_b{batch}.tflite")
        raw, scans = [], []
        for _ in range(REPEATS):
            raw.append(raw_throughput(inference_file, tiles))
            scans.append(scan_once(rich.path, folder, work / "scan_rich"))
        assert scans[0]["model"]["inference_batch"] == batch
        best = max(scans, key=lambda r: r["timing"]["tiles_per_second"])
        test_runs = [scan_once(test_slide.path, folder, work / "scan_test") for _ in range(REPEATS)]
        test_best = min(test_runs, key=lambda r: r["timing"]["wall_seconds"])
        rows.append({
            "batch": batch, "file": inference_file.name, "tiles": best["tiles"]["computed"],
            "raw_tiles_per_second": max(raw), "scan_tiles_per_second": best["timing"]["tiles_per_second"],
            "overhead": 1 - best["timing"]["tiles_per_second"] / max(raw),
            "scan_wall_seconds": best["timing"]["wall_seconds"],
            "test_slide_tiles": test_best["tiles"]["computed"],
            "test_slide_wall_seconds": test_best["timing"]["wall_seconds"],
            "test_slide_tile_seconds": test_best["timing"]["tile_seconds"],
            "runs": {"raw": raw, "scan": [r["timing"] for r in scans],
                     "test_slide": [r["timing"] for r in test_runs]},
        })
    result = {
        "machine": describe_machine(), "load_average_before": load_before, "load_average_after": os.getloadavg(),
        "threads": scans[0]["model"]["threads"], "runtime": scans[0]["model"]["runtime"],
        "runtime_version": scans[0]["model"]["runtime_version"],
        "slides": {"test": {"size": [SLIDE_SIZE, SLIDE_SIZE], "mpp": SLIDE_MPP, "tissue": test_slide.tissue,
                            "tumour": test_slide.tumour, "write_seconds": write_seconds},
                   "tissue_rich": {"size": [SLIDE_SIZE, SLIDE_SIZE], "mpp": SLIDE_MPP, "tissue": rich.tissue,
                                   "compression": compression,
                                   "tumour": rich.tumour, "tiles": int(len(tiles))}},
        "weights": args.weights or "random initialisation (throughput does not depend on weights)",
        "rows": rows, "command": "python benchmarks/scan.py",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scan.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / "scan.md").write_text(markdown(result))
    print(markdown(result))


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = [
        "# Scan throughput",
        "",
        f"Machine: {m['cpu']}, {m['usable_cores']} usable cores of {m['cores']}, {m['memory_gb']} GB, "
        f"{m['os']}; Python {m['python']}; {result['runtime']} {result['runtime_version']}, "
        f"{result['threads']} threads; numpy {m['packages'].get('numpy')}, pillow {m['packages'].get('pillow')}. "
        f"Load average before/after: {result['load_average_before'][0]:.1f} / "
        f"{result['load_average_after'][0]:.1f} (a shared machine: best of {REPEATS} runs).",
        "",
        "Model: the design's attention-CNN, int8, " + result["weights"] + ".",
        f"Throughput slide: {SLIDE_SIZE:,} x {SLIDE_SIZE:,} pixels at {SLIDE_MPP} µm/px, "
        f"{result['slides']['tissue_rich']['tiles']:,} tissue tiles, "
        f"{result['slides']['tissue_rich']['compression']} tiles of 512 (the test slide: zlib). Scan tiles/s: the tile loop "
        "(read TIFF tiles, resample to 0.972 µm/px, cut, classify, append to tiles.csv); raw: the same "
        "tiles already in memory through `PatchModel.predict`.",
        "",
        "| inference file | batch | raw tiles/s | scan tiles/s | overhead | scan wall (s) | test slide: tiles | test slide wall (s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(f"| {r['file']} | {r['batch']} | {r['raw_tiles_per_second']:.0f} | "
                     f"{r['scan_tiles_per_second']:.0f} | {r['overhead']:.1%} | {r['scan_wall_seconds']:.1f} | "
                     f"{r['test_slide_tiles']} | {r['test_slide_wall_seconds']:.2f} |")
    lines += ["", "Scan wall time adds opening the slide, the tissue thumbnail, model loading, the heatmap and "
              "the top tiles to the tile loop. The test slide is the one tests/runtime/test_scan.py writes.",
              "", f"Regenerate: `{result['command']}` ({result['created']}).", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--make-models-into":
        weights = sys.argv[sys.argv.index("--weights") + 1] if "--weights" in sys.argv else None
        make_models(Path(sys.argv[2]), weights)
    else:
        main()
