"""How the scan should enlarge a pyramid level slightly coarser than the model's scale: evidence on real patches.

A 40x scan (0.25 µm/px) has a level at 4x, about 1.0 µm/px, a little coarser
than PCam's 0.972; the scan reads that level and enlarges it by about 3%
(`Slide.read_scaled`). Here each valid patch (0.972 µm/px) is first shrunk to
93 x 93 pixels by area averaging (the coarser level, as a scanner's pyramid
is made) and enlarged back to 96 x 96 with each of Pillow's filters, the
`box` arithmetic being the scan's. Per filter: the median tile sharpness
(edge_pcam.runtime.tissue.sharpness, the blur check's measure), the bundled
model's sensitivity, specificity, accuracy and AUC at its decision threshold,
and the filter's cost per tile on a 512 x 512 region. The unchanged patches
are the reference row.

    .venv/bin/python benchmarks/resample.py            # about a minute; writes benchmarks/results/resample.{md,json}
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edge_pcam.runtime.constants import PATCH_SHAPE  # noqa: E402
from edge_pcam.runtime.datasets import open_dataset  # noqa: E402
from edge_pcam.runtime.interpreter import load_model  # noqa: E402
from edge_pcam.runtime.machine import describe_machine, package_versions, summary_line  # noqa: E402
from edge_pcam.runtime.metadata import sha256_file  # noqa: E402
from edge_pcam.runtime.metrics import binary_metrics  # noqa: E402
from edge_pcam.runtime.slide_base import ENLARGE_FILTER  # noqa: E402
from edge_pcam.runtime.tissue import sharpness  # noqa: E402

COARSE = 93  # pixels of a 96-pixel PCam patch at a level of about 1.0 µm/px
FILTERS = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC,
           "lanczos": Image.LANCZOS}
TIMING_REGION = 512
PACKAGES = ("ai-edge-litert", "numpy", "pillow")


def enlarge(patch: Image.Image, method: int) -> np.ndarray:
    """The patch shrunk to COARSE pixels by area averaging, then enlarged back with `method`."""
    side = PATCH_SHAPE[0]
    coarse = patch.resize((COARSE, COARSE), Image.BOX)
    return np.asarray(coarse.resize((side, side), method, box=(0, 0, COARSE, COARSE)))


def cost_ms_per_tile(method: int, repeats: int = 30) -> float:
    """CPU milliseconds of enlarging a TIMING_REGION-pixel region by 96/93, per 96 x 96 output tile."""
    rng = np.random.default_rng(0)
    region = Image.fromarray(rng.integers(0, 256, (TIMING_REGION, TIMING_REGION, 3), np.uint8))
    ratio = COARSE / PATCH_SHAPE[0]
    out = int(TIMING_REGION / ratio) - 1
    start = time.process_time()
    for _ in range(repeats):
        region.resize((out, out), method, box=(0.25, 0.25, 0.25 + out * ratio, 0.25 + out * ratio))
    return (time.process_time() - start) / repeats * 1000 / (out * out / PATCH_SHAPE[0] ** 2)


def run(data: str) -> dict:
    part = open_dataset(data).split("valid")
    images, labels = part.read(np.arange(len(part))), part.labels
    model = load_model(None)
    threshold = float(model.thresholds.get("decision", 0.5))
    patches = [Image.fromarray(x) for x in images]
    rows = {}
    for name, method in [("unchanged", None), *FILTERS.items()]:
        x = images if method is None else np.stack([enlarge(p, method) for p in patches])
        probs = np.concatenate([model.predict(x[i:i + 256]) for i in range(0, len(x), 256)])
        point = binary_metrics(labels, probs, threshold)
        rows[name] = {"median_sharpness": float(np.median(sharpness(x))), "sensitivity": point["recall"],
                      "specificity": point["specificity"], "accuracy": point["accuracy"], "auc": point["auc"],
                      "ms_per_tile": None if method is None else cost_ms_per_tile(method)}
    return {"data": data, "n": int(len(labels)), "threshold": threshold, "model": model.path.name,
            "model_sha256": sha256_file(model.path), "scan_uses": ENLARGE_FILTER.name.lower(), "rows": rows,
            "machine": describe_machine(), "packages": package_versions(PACKAGES),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def report(results: dict, command: str) -> str:
    ref = results["rows"]["unchanged"]
    lines = ["# Enlarging a slightly coarser level: which filter", "",
             f"{summary_line(results['machine'])}; " + ", ".join(f"{k} {v}" for k, v in results["packages"].items() if v)
             + f"; {results['date']}.", "",
             f"{results['n']:,} patches of the valid split of `{results['data']}`, each shrunk to {COARSE} x {COARSE} "
             f"pixels by area averaging (a level of about 1.0 µm/px, as a 40x scan's 4x level) and enlarged back to "
             f"96 x 96 with each filter; the bundled int8 model (sha256 {results['model_sha256'][:12]}…) at its "
             f"decision threshold {results['threshold']:g}. The scan enlarges with `{results['scan_uses']}`.", "",
             "| enlarged with | median sharpness (of unchanged) | sensitivity | specificity | accuracy | AUC | "
             "CPU ms per tile |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name, row in results["rows"].items():
        cost = "-" if row["ms_per_tile"] is None else f"{row['ms_per_tile']:.3f}"
        lines.append(f"| {name} | {row['median_sharpness']:.2f} ({row['median_sharpness'] / ref['median_sharpness']:.0%}) | "
                     f"{row['sensitivity']:.3f} | {row['specificity']:.3f} | {row['accuracy']:.1%} | "
                     f"{row['auc']:.3f} | {cost} |")
    lines += ["", "Sharpness: variance of the grey Laplacian over the grey variance (the blur check's measure); "
              "CPU ms per tile: enlarging a 512 x 512 region by 96/93, per 96 x 96 tile of output.", "",
              f"Regenerate: `{command}`.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="../shared/data/pcam-subset")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args(argv)
    results = run(args.data)
    args.out.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/resample.py " + " ".join(argv if argv is not None else sys.argv[1:])
    (args.out / "resample.json").write_text(json.dumps(results, indent=1) + "\n")
    (args.out / "resample.md").write_text(report(results, command.strip()))
    print(args.out / "resample.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
