"""Soft tiles: how the scan enlarges a slightly coarser level, and when it warns that a slide is soft.

Evidence on real valid patches for two choices of the scan:

1. Enlarging. A 40x scan (0.25 µm/px) has a level at 4x, about 1.0 µm/px, a
   little coarser than PCam's 0.972; the scan reads that level and enlarges it
   by about 3% (`Slide.read_scaled`). Each patch is shrunk to 93 x 93 pixels
   by area averaging (that coarser level, as a scanner's pyramid is made) and
   enlarged back to 96 x 96 with each of Pillow's filters.
2. The soft-slide warning (`TissueQC.soft`). Gaussian blur of growing sigma
   stands for a scan slightly out of focus; the per-tile blur check
   (BLUR_RATIO) passes all of it, while the model's rates move.

Per row: the median tile sharpness (edge_pcam.runtime.tissue.sharpness) as a
share of the unchanged patches', whether the scan would call a slide of such
tiles soft, the bundled model's sensitivity, specificity, accuracy and AUC at
its decision threshold, and the bias of the burden estimate its card's rates
give for slides of such tiles with 6.25% and 25% tumour (the expected bin
counts of 1,024 tiles, estimated as a scan does; the planted 8 x 8 and
16 x 16 blocks of benchmarks/burden.py). Filters: CPU cost per tile of
enlarging a 512 x 512 region. The unchanged row's median is the reference
the scan compares a slide with (PCAM_SHARPNESS_MEDIAN).

    .venv/bin/python benchmarks/softness.py            # about a minute; writes benchmarks/results/softness.{md,json}
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edge_pcam.runtime.burden import OperatingCharacteristics, bin_rates, mixture_mle  # noqa: E402
from edge_pcam.runtime.constants import PATCH_SHAPE  # noqa: E402
from edge_pcam.runtime.datasets import open_dataset  # noqa: E402
from edge_pcam.runtime.interpreter import load_model  # noqa: E402
from edge_pcam.runtime.machine import describe_machine, package_versions, summary_line  # noqa: E402
from edge_pcam.runtime.metadata import sha256_file  # noqa: E402
from edge_pcam.runtime.metrics import binary_metrics  # noqa: E402
from edge_pcam.runtime.slide_base import ENLARGE_FILTER  # noqa: E402
from edge_pcam.runtime.tissue import PCAM_SHARPNESS_MEDIAN, SOFT_SLIDE_RATIO, median_in_focus, sharpness  # noqa: E402

COARSE = 93  # pixels of a 96-pixel PCam patch at a level of about 1.0 µm/px
FILTERS = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC,
           "lanczos": Image.LANCZOS}
SIGMAS = (0.2, 0.25, 0.3, 0.4, 0.6, 1.0)
BURDENS = (0.0625, 0.25)
SLIDE_TILES = 1024
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


def burden_bias(probs: np.ndarray, labels: np.ndarray, oc: OperatingCharacteristics) -> dict[str, float]:
    """Burden estimate minus truth (points) for slides of these tiles at each of BURDENS, from expected counts."""
    tumour_rate, normal_rate = (bin_rates(counts) for counts in oc.bin_counts())
    bins = len(oc.thresholds) + 1
    edges = oc.thresholds
    share = {label: np.bincount(np.searchsorted(edges, probs[labels == label], side="right"), minlength=bins)
             / max(1, int((labels == label).sum())) for label in (0, 1)}
    return {f"{b:g}": 100 * (float(mixture_mle(SLIDE_TILES * (b * share[1] + (1 - b) * share[0]),
                                               tumour_rate, normal_rate)) - b) for b in BURDENS}


def run(data: str) -> dict:
    part = open_dataset(data).split("valid")
    images, labels = part.read(np.arange(len(part))), part.labels
    model = load_model(None)
    oc = OperatingCharacteristics.from_card(model.metadata)
    threshold = float(model.thresholds.get("decision", 0.5))
    patches = [Image.fromarray(x) for x in images]
    variants: list[tuple[str, str, object]] = [("unchanged", "", None)]
    variants += [(f"enlarged, {name}", "enlarge", method) for name, method in FILTERS.items()]
    variants += [(f"Gaussian blur, sigma {s:g} px", "blur", s) for s in SIGMAS]
    rows = {}
    for name, kind, how in variants:
        if kind == "enlarge":
            x = np.stack([enlarge(p, how) for p in patches])
        elif kind == "blur":
            x = np.stack([np.asarray(p.filter(ImageFilter.GaussianBlur(radius=how))) for p in patches])
        else:
            x = images
        probs = np.concatenate([model.predict(x[i:i + 256]) for i in range(0, len(x), 256)])
        point = binary_metrics(labels, probs, threshold)
        rows[name] = {"median_sharpness": median_in_focus(sharpness(x)), "sensitivity": point["recall"],
                      "specificity": point["specificity"], "accuracy": point["accuracy"], "auc": point["auc"],
                      "burden_bias": burden_bias(probs, labels, oc),
                      "ms_per_tile": cost_ms_per_tile(how) if kind == "enlarge" else None}
    return {"data": data, "n": int(len(labels)), "threshold": threshold, "model": model.path.name,
            "model_sha256": sha256_file(model.path), "scan_enlarges_with": ENLARGE_FILTER.name.lower(),
            "pcam_sharpness_median": PCAM_SHARPNESS_MEDIAN, "soft_slide_ratio": SOFT_SLIDE_RATIO, "rows": rows,
            "machine": describe_machine(), "packages": package_versions(PACKAGES),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def report(results: dict, command: str) -> str:
    ref = results["rows"]["unchanged"]["median_sharpness"]
    soft_line = results["soft_slide_ratio"] * results["pcam_sharpness_median"]
    lines = ["# Soft tiles: the enlargement filter and the soft-slide warning", "",
             f"{summary_line(results['machine'])}; " + ", ".join(f"{k} {v}" for k, v in results["packages"].items() if v)
             + f"; {results['date']}.", "",
             f"{results['n']:,} patches of the valid split of `{results['data']}` with the bundled "
             f"`{results['model']}` (sha256 {results['model_sha256'][:12]}…) at its decision threshold "
             f"{results['threshold']:g}. Enlarged: each patch shrunk to {COARSE} x {COARSE} pixels by area averaging "
             "(a level of about 1.0 µm/px, as a 40x scan's 4x level) and enlarged back to 96 x 96; the scan "
             f"enlarges with `{results['scan_enlarges_with']}`. Gaussian blur: a scan slightly out of focus.", "",
             f"Soft: a slide whose tiles' median sharpness is below {results['soft_slide_ratio']:.0%} of PCam's "
             f"validation patches' ({results['pcam_sharpness_median']:g} in the scan's code, {ref:.2f} measured "
             f"here: below {soft_line:.2f}) gets the scan's soft-slide warning.", "",
             "| tiles | median sharpness (of unchanged) | soft | sensitivity | specificity | accuracy | AUC | "
             + " | ".join(f"burden bias at {100 * float(b):g}% (points)" for b in results["rows"]["unchanged"]["burden_bias"])
             + " | CPU ms per tile |", "|---|---:|---|---:|---:|---:|---:|" + "---:|" * (len(BURDENS) + 1)]
    for name, row in results["rows"].items():
        cost = "-" if row["ms_per_tile"] is None else f"{row['ms_per_tile']:.3f}"
        soft = "yes" if row["median_sharpness"] < soft_line else "no"
        lines.append(f"| {name} | {row['median_sharpness']:.2f} ({row['median_sharpness'] / ref:.0%}) | {soft} | "
                     f"{row['sensitivity']:.3f} | {row['specificity']:.3f} | {row['accuracy']:.1%} | {row['auc']:.3f} | "
                     + " | ".join(f"{v:+.2f}" for v in row["burden_bias"].values()) + f" | {cost} |")
    lines += ["", "Sharpness: variance of the grey Laplacian over the grey variance (the blur check's measure). "
              "Burden bias: the mixture estimate from the card's rates minus the truth, for the expected bin counts "
              f"of a {SLIDE_TILES:,}-tile slide of these tiles (no sampling noise). CPU ms per tile: enlarging a "
              f"{TIMING_REGION} x {TIMING_REGION} region by 96/93, per 96 x 96 tile of output.", "",
              f"Regenerate: `{command}`.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="../shared/data/pcam-subset")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args(argv)
    results = run(args.data)
    args.out.mkdir(parents=True, exist_ok=True)
    command = " ".join(["python benchmarks/softness.py", *(argv if argv is not None else sys.argv[1:])])
    (args.out / "softness.json").write_text(json.dumps(results, indent=1) + "\n")
    (args.out / "softness.md").write_text(report(results, command))
    print(args.out / "softness.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
