"""Tumour burden, regions and size class of `edge-pcam scan` against a planted truth, on real patches.

    .venv/bin/python benchmarks/burden.py                     # 20 mosaics per size: ~30 min on 2 cores
    .venv/bin/python benchmarks/burden.py --per-size 4 --seed 500 --results /tmp/pilot   # a pilot

Mosaics: 32 x 32 patches of the valid split of ../shared/data/pcam-subset, random normal patches with
a square block of 0, 4x4, 8x8, 12x12 or 16x16 random tumour patches at a random place (different
patches and place per mosaic and seed). Each 96-pixel patch is upsampled 2x and the mosaic written as
a JPEG-tiled Aperio SVS at 0.486 µm/px (a 20x scan; levels 1, 4 and 16), so the scan reads level 0
and resamples to PCam's 0.972 µm/px; with stride 96 each scan tile is one patch again.

`--upsample nearest` (the default) replicates pixels, so the scan's area averaging gives each patch
back up to the JPEG compression, as a real 20x or 40x scan averages real detail into the patch PCam
made: the benchmark then measures the estimator and the model as they are. `--upsample bicubic`
interpolates a smoother slide than the patches came from, a mild blur the model is sensitive to (the
shift benchmark's blur row): its tiles' true- and false-positive rates move away from the card's,
which is what `edge-pcam calibrate` on a lab's own scans corrects (the report's oracle row).

Each mosaic is scanned with the bundled int8 model by `edge-pcam scan` (a child process), and its
slide result read from the scan's scan.json (`slide_result`: the burden with its interval, the
regions and the size class, over the tiles that passed the scan's tissue QC, which tiles.csv
lists). Truth: the planted block's share of the tiles that pass QC; its longest diameter (the
square's diagonal) and Camelyon17 class.

Compared, on the same scans: burden estimators (the raw count at the decision threshold, the mean
probability, adjusted classify-and-count at one stored threshold, the mixture maximum likelihood over
all stored thresholds) and region rules (tiles above the threshold, a 3x3 mean of P, the module's rule
with and without its support rule). Each scan's soft-slide warning is counted. A last section
simulates how much of the outcome is chance: mosaics laid out as these (`mosaic_layout`), each patch
with its mean probability over the scans, show how often one mosaic misses each target and how often
a whole run meets it with this model.

Mosaics are derived from real patches: they stay in --work (default runs/burden-benchmark, not in git)
and are deleted once analysed unless --keep. Results: benchmarks/results/burden.{json,md}.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edge_pcam.runtime.burden import (  # noqa: E402
    OperatingCharacteristics, bin_rates, estimate_burden, mixture_mle)
from edge_pcam.runtime.regions import (  # noqa: E402
    find_regions, neighbourhood_mean, region_mask, regions_from_mask, size_category)
from edge_pcam.runtime.scan.findings import tile_weight  # noqa: E402
from edge_pcam.runtime.slide_result import sharpness_reference  # noqa: E402
from edge_pcam.runtime.tissue import SOFT_SLIDE_RATIO  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
SIZES = (0, 4, 8, 12, 16)
GRID = 32
PATCH = 96
UPSAMPLE = 2
UPSAMPLING = {"nearest": Image.NEAREST, "bicubic": Image.BICUBIC}  # --upsample (see the docstring)
SLIDE_MPP = 0.486
JPEG_QUALITY = 80
SVS_TILE = 256
STRIDE = 96
ORACLE = "mixture ML, rates of the other mosaics' tiles (oracle)"
ESTIMATORS = ("raw count at decision", "mean probability", "ACC at decision", "ACC at high_specificity",
              "mixture ML (chosen)", ORACLE)
REGION_RULES = ("tiles >= threshold", "3x3 mean of P >= threshold", "chosen without support rule", "chosen")
TARGETS = {"burden_error_points": 2.0, "coverage": 0.90, "diameter_relative_error": 0.40}
CHANCE_MOSAICS = 1000  # simulated mosaics per planted size (chance_of_targets)
RECORD_VERSION = 2  # records hold the soft-slide flag (older ones are scanned again: the scans resume)
LEFT_OUT = ("ink", "blur")  # QC reasons that take tissue away (the mosaics hold no glass)


def default_data() -> Path:
    """$EDGE_PCAM_SUBSET, else ../shared/data/pcam-subset from the checkout or any folder above it."""
    if os.environ.get("EDGE_PCAM_SUBSET"):
        return Path(os.environ["EDGE_PCAM_SUBSET"])
    found = (up / "shared" / "data" / "pcam-subset" for up in REPO.parents)
    return next((p for p in found if p.is_dir()), REPO.parent / "shared" / "data" / "pcam-subset")


def mosaic_layout(normal: np.ndarray, tumour: np.ndarray, block: int, rng: np.random.Generator
                  ) -> tuple[np.ndarray, np.ndarray]:
    """((GRID, GRID) labels, the split's patch index of each tile in reading order): a block x block
    tumour square at a random place, random patches of each class: distinct where the class has
    enough of them (the whole valid split), with repeats where it has not (--disjoint's half)."""
    labels = np.zeros((GRID, GRID), np.uint8)
    if block:
        r, c = rng.integers(0, GRID - block + 1, size=2)
        labels[r:r + block, c:c + block] = 1
    order = np.empty(GRID * GRID, np.int64)
    flat = labels.reshape(-1).astype(bool)
    for tiles, pool in ((~flat, normal), (flat, tumour)):
        count = int(tiles.sum())
        order[tiles] = rng.choice(pool, count, replace=count > len(pool))
    return labels, order


def halves(labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(card half, mosaic half): the split's indices cut in two at random, half of each class in each."""
    rng = np.random.default_rng(seed)
    card, mosaics = [], []
    for label in (0, 1):
        index = rng.permutation(np.nonzero(labels == label)[0])
        card.append(index[:len(index) // 2])
        mosaics.append(index[len(index) // 2:])
    return np.sort(np.concatenate(card)), np.sort(np.concatenate(mosaics))


def calibrated_on_half(split: Any, card_half: np.ndarray, model_path: Path, work: Path) -> Path:
    """`model_path` calibrated (`edge-pcam calibrate`) on the patches `card_half` of the valid split:
    a folder of links to them is the lab's data, the calibrated copy is written beside it and reused
    (its scans resume) while the model and calibrate's code are the same."""
    import hashlib

    from edge_pcam.runtime import calibrate as calibration
    from edge_pcam.runtime.metadata import sha256_file

    code = hashlib.sha256(Path(calibration.__file__).read_bytes()).hexdigest()
    folder = work / "disjoint" / f"card-half-{sha256_file(model_path)[:12]}-{code[:12]}"
    out = folder / "calibrated.tflite"
    if out.exists():
        return out
    for index in card_half:
        source = Path(split.paths[index]).resolve()
        link = folder / "valid" / str(int(split.labels[index])) / source.name
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.is_symlink():
            link.symlink_to(source)
    calibration.calibrate(model_path, str(folder), out.with_suffix(".part.tflite"))
    out.with_suffix(".part.tflite").replace(out)
    return out


def build_mosaic(split: Any, normal: np.ndarray, tumour: np.ndarray, block: int, rng: np.random.Generator,
                 upsample: str = "nearest") -> tuple[np.ndarray, np.ndarray]:
    """(level-0 RGB image, (GRID, GRID) labels): random normal patches, a block x block tumour square,
    each patch upsampled UPSAMPLE times by `upsample` (a key of UPSAMPLING)."""
    labels, order = mosaic_layout(normal, tumour, block, rng)
    patches = split.read(order)
    side = PATCH * UPSAMPLE
    image = np.empty((GRID * side, GRID * side, 3), np.uint8)
    for k, patch in enumerate(patches):
        r, c = divmod(k, GRID)
        image[r * side:(r + 1) * side, c * side:(c + 1) * side] = np.asarray(
            Image.fromarray(patch).resize((side, side), UPSAMPLING[upsample]))
    return image, labels


def write_svs(path: Path, image: np.ndarray, mpp: float) -> None:
    """A JPEG-tiled Aperio SVS: level 0, a thumbnail, then levels at 4x and 16x."""
    import tifffile

    h, w = image.shape[:2]
    description = (f"Aperio Image Library v12.0.15 \r\n{w}x{h} [0,0 {w}x{h}] ({SVS_TILE}x{SVS_TILE}) "
                   f"JPEG/RGB Q={JPEG_QUALITY}|AppMag = 20|MPP = {mpp}")
    options = dict(photometric="rgb", compression="jpeg", compressionargs={"level": JPEG_QUALITY})
    reduced = {f: np.asarray(Image.fromarray(image).reduce(f)) for f in (4, 16)}
    with tifffile.TiffWriter(path) as tif:
        tif.write(image, tile=(SVS_TILE, SVS_TILE), description=description, **options)
        tif.write(np.asarray(Image.fromarray(reduced[16]).reduce(2)), subfiletype=0, **options)  # thumbnail
        for f in (4, 16):
            tif.write(reduced[f], tile=(SVS_TILE, SVS_TILE), subfiletype=0, **options)


def read_tiles_csv(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """tiles.csv (header, then x, y, width, height, probability, row, col) as the (rows, cols) grid, NaN
    where the scan gave no tile (off the tissue, or left out by its quality control)."""
    grid = np.full(shape, np.nan)
    for row in csv.DictReader(path.read_text().splitlines()):
        grid[int(row["row"]), int(row["col"])] = float(row["probability"])
    return grid


def analyse(scan_dir: Path, labels: np.ndarray, block: int, card: dict[str, Any]) -> dict[str, Any]:
    """The scan's slide result (scan.json) against the truth, and competing estimators and region rules
    on the same tiles (tiles.csv: those that passed the scan's tissue QC)."""
    from edge_pcam.runtime.scan import ScanReport

    report = ScanReport.from_json(json.loads((scan_dir / "scan.json").read_text()))
    result, geometry = report.slide_result, report.geometry
    thresholds = report.model.thresholds
    oc = OperatingCharacteristics.from_card(card)
    probabilities = read_tiles_csv(scan_dir / "tiles.csv", geometry.shape)
    geo = (geometry.origin, geometry.tile_level0, geometry.stride_level0, geometry.slide_mpp)

    kept = np.isfinite(probabilities)
    values, truth = probabilities[kept], float(labels[kept].mean())
    decision = thresholds["decision"]
    estimates: dict[str, dict[str, Any]] = {
        "raw count at decision": {"burden": float((values >= decision).mean())},
        "mean probability": {"burden": float(values.mean())},
        "mixture ML (chosen)": {"burden": result.burden, "ci": list(result.burden_ci)}}
    for name, subset in (("ACC at decision", oc.only("decision")),
                         ("ACC at high_specificity", oc.only("high_specificity"))):
        est = estimate_burden(values, subset, tile_weight=tile_weight(geometry.stride))
        estimates[name] = {"burden": est.burden, "ci": list(est.ci)}
    # The scan's estimate is the module's on the tiles it wrote: a check that tiles.csv holds the counted tiles.
    again = estimate_burden(values, oc, tile_weight=tile_weight(geometry.stride))
    assert math.isclose(again.burden, result.burden) and np.allclose(again.ci, result.burden_ci)

    grid = np.where(kept, probabilities, np.nan)
    masks = {"tiles >= threshold": grid >= decision, "3x3 mean of P >= threshold": neighbourhood_mean(grid) >= decision,
             "chosen without support rule": region_mask(grid, decision)}
    largest = {name: _largest(regions_from_mask(mask, grid, decision, *geo, min_area_mm2=0.0))
               for name, mask in masks.items()}
    largest["chosen"] = result.largest_region_mm
    assert math.isclose(_largest(find_regions(grid, decision, *geo)), result.largest_region_mm)
    bins = np.searchsorted(oc.thresholds, values, side="right")
    per_class = {name: np.bincount(bins[labels[kept] == label], minlength=len(oc.points) + 1).tolist()
                 for name, label in (("tumour", 1), ("normal", 0))}
    patch_mm = PATCH * UPSAMPLE * SLIDE_MPP / 1000
    true_diameter = block * math.sqrt(2) * patch_mm
    excluded = {reason: round(area / geometry.cell_mm2) for reason, area in result.qc["excluded_mm2"].items()
                if reason in LEFT_OUT}
    return {"block": block, "truth": {"burden": truth, "diameter_mm": true_diameter,
                                      "category": size_category(true_diameter)},
            "tiles": int(kept.sum()), "excluded_tiles": excluded,
            "estimates": estimates, "largest_region_mm": largest, "category": result.category,
            "region_count": result.region_count, "raw_counts": result.raw_counts, "bins": per_class,
            "median_sharpness": result.qc["sharpness"]["median"], "soft": result.qc["sharpness"]["soft"],
            "scan_seconds": report.timing.wall_seconds}


def _largest(regions: list[Any]) -> float:
    return regions[0].diameter_mm if regions else 0.0


def scan(svs: Path, out: Path, model: Path | None, attempts: int = 5) -> None:
    """`edge-pcam scan` in a child process (each scan's interpreter threads and memory end with it).

    A shared machine can briefly run out of processes or threads: such a failure is retried (the
    scan resumes from its progress log).
    """
    import subprocess

    command = [sys.executable, "-m", "edge_pcam", "scan", str(svs), "--out", str(out), "--stride", str(STRIDE)]
    command += ["--model", str(model)] if model else []
    done = None
    for _ in range(attempts):
        try:
            done = subprocess.run(command, capture_output=True, text=True)
        except BlockingIOError:
            time.sleep(30)
            continue
        if done.returncode == 0:
            return
        if "new thread" not in done.stderr and "temporarily unavailable" not in done.stderr:
            break
        time.sleep(30)
    sys.exit(f"scan of {svs} failed: {done.stderr.strip().splitlines()[-1:] if done else 'no process'}")


def finished(records_file: Path, made_with: dict[str, str]) -> dict[tuple[int, int], dict[str, Any]]:
    """The mosaics `records_file` holds that were made with `made_with` (the model file's SHA-256,
    the data, the upsampling), by (block, seed): a record made otherwise (or before records named
    what made them) is scanned again, never mixed in."""
    done = {}
    if records_file.exists():
        for line in records_file.read_text().splitlines():
            record = json.loads(line)
            if all(record.get(key) == value for key, value in made_with.items()):
                done[record["block"], record["seed"]] = record
    return done


def model_work(work: Path, model_sha256: str, upsample: str) -> Path:
    """Where the mosaics of one model file and one upsampling are scanned: a scan folder refuses to
    resume another model's scan, so each model gets its own (and each upsampling its own mosaics)."""
    return Path(work) / f"model-{model_sha256[:12]}-{upsample}"


def run(args: argparse.Namespace, model_path: Path, split: Any, pools: tuple[np.ndarray, np.ndarray]
        ) -> list[dict[str, Any]]:
    """Build, scan and analyse every mosaic not yet in the records (normal and tumour patches from `pools`)."""
    from edge_pcam.runtime.interpreter import load_model
    from edge_pcam.runtime.metadata import sha256_file

    normal, tumour = pools
    card = load_model(model_path).metadata
    model_sha256 = sha256_file(model_path)
    work = model_work(args.work, model_sha256, args.upsample)
    work.mkdir(parents=True, exist_ok=True)
    records_file = work / "records.jsonl"
    made_with = {"model_sha256": model_sha256, "data": str(Path(args.data).resolve()), "upsample": args.upsample,
                 "record_version": RECORD_VERSION}
    done = finished(records_file, made_with)
    records = []
    jobs = [(block, args.seed + 1000 * size_index + i) for size_index, block in enumerate(SIZES)
            for i in range(args.per_size)]
    started = time.perf_counter()
    for n, (block, seed) in enumerate(jobs, start=1):
        if (block, seed) in done:
            records.append(done[block, seed])
            continue
        mosaic_started = time.perf_counter()
        rng = np.random.default_rng(seed)
        image, labels = build_mosaic(split, normal, tumour, block, rng, args.upsample)
        svs, scan_dir = work / f"mosaic_{block}_{seed}.svs", work / f"scan_{block}_{seed}"
        write_svs(svs, image, SLIDE_MPP)
        del image
        scan(svs, scan_dir, model_path)
        record = {"seed": seed, **made_with, **analyse(scan_dir, labels, block, card)}
        record["seconds"] = time.perf_counter() - mosaic_started
        np.savez_compressed(work / f"grid_{block}_{seed}.npz", labels=labels,
                            probabilities=read_tiles_csv(scan_dir / "tiles.csv", labels.shape))
        if not args.keep:
            svs.unlink()
        with open(records_file, "a") as f:
            f.write(json.dumps(record) + "\n")
        records.append(record)
        chosen = record["estimates"]["mixture ML (chosen)"]
        elapsed = time.perf_counter() - started
        print(f"[{n:3d}/{len(jobs)}] block {block:2d}x{block:<2d} seed {seed}: burden {chosen['burden']:6.1%} "
              f"(truth {record['truth']['burden']:6.1%}, CI {chosen['ci'][0]:.1%}-{chosen['ci'][1]:.1%}); "
              f"largest region {record['largest_region_mm']['chosen']:.2f} mm (truth "
              f"{record['truth']['diameter_mm']:.2f}), {record['category']}; {elapsed / 60:.1f} min", flush=True)
    return records


def scanned_rates(records: list[dict[str, Any]], oc: OperatingCharacteristics) -> dict[str, Any]:
    """Each stored point's TPR and FPR on the card and on the scanned tiles (all mosaics pooled)."""
    tumour = np.sum([r["bins"]["tumour"] for r in records], axis=0)
    normal = np.sum([r["bins"]["normal"] for r in records], axis=0)
    rates = {}
    for k, p in enumerate(oc.points, start=1):
        rates[p.name] = {"threshold": p.threshold, "card_tpr": p.tp / oc.n_positive, "card_fpr": p.fp / oc.n_negative,
                         "scanned_tpr": float(tumour[k:].sum() / tumour.sum()),
                         "scanned_fpr": float(normal[k:].sum() / normal.sum())}
    return {"points": rates, "tumour_tiles": int(tumour.sum()), "normal_tiles": int(normal.sum())}


def add_oracle(records: list[dict[str, Any]]) -> None:
    """The chosen estimator with the rates measured on the scanned tiles of all other mosaics instead of
    the card's: what is left of its error when the card's rates are exactly those of the scanned tiles."""
    tumour = np.sum([r["bins"]["tumour"] for r in records], axis=0)
    normal = np.sum([r["bins"]["normal"] for r in records], axis=0)
    for r in records:
        t, n = tumour - r["bins"]["tumour"], normal - r["bins"]["normal"]
        counts = np.add(r["bins"]["tumour"], r["bins"]["normal"]).astype(np.float64)
        r["estimates"][ORACLE] = {"burden": float(mixture_mle(counts, t / t.sum(), n / n.sum()))}


def chance_of_targets(scans: Path, records: list[dict[str, Any]], oc: OperatingCharacteristics, decision: float,
                      classes: tuple[np.ndarray, np.ndarray], per_size: int, seed: int) -> dict[str, Any]:
    """How often one mosaic misses each target by chance, and how often a run of `per_size` mosaics per
    size meets it, with the model as it is: simulated mosaics laid out as the benchmark's (`mosaic_layout`
    over `classes`, the normal and tumour indices the mosaics were drawn from), each patch taking its
    mean probability over this run's scans, estimated with the card's rates and measured with the scan's
    region rule."""
    total, seen = np.zeros(max(map(np.max, classes)) + 1), np.zeros(max(map(np.max, classes)) + 1)
    for r in records:  # each tile's patch, from the mosaic's seed as build_mosaic drew it
        grid = np.load(scans / f"grid_{r['block']}_{r['seed']}.npz")["probabilities"].reshape(-1)
        order = mosaic_layout(*classes, r["block"], np.random.default_rng(r["seed"]))[1]
        kept = np.isfinite(grid)
        np.add.at(total, order[kept], grid[kept])
        np.add.at(seen, order[kept], 1)
    probability = np.divide(total, seen, out=np.full_like(total, np.nan), where=seen > 0)
    normal, tumour = (idx[seen[idx] > 0] for idx in classes)  # the patches the scans classified
    tumour_rate, normal_rate = (bin_rates(counts) for counts in oc.bin_counts())
    tile0 = PATCH * UPSAMPLE  # level-0 pixels of one tile

    def origin(row: int, col: int) -> tuple[float, float]:
        return (col * tile0, row * tile0)

    rng = np.random.default_rng(seed)
    sizes = {}
    for block in SIZES:
        truth, true_d = block * block / GRID ** 2, block * math.sqrt(2) * tile0 * SLIDE_MPP / 1000
        misses = {"burden": 0, "diameter": 0, "category": 0}
        for _ in range(CHANCE_MOSAICS):
            labels, order = mosaic_layout(normal, tumour, block, rng)
            grid = probability[order].reshape(labels.shape)
            counts = np.bincount(np.searchsorted(oc.thresholds, grid.ravel(), side="right"),
                                 minlength=len(oc.points) + 1).astype(np.float64)
            error = float(mixture_mle(counts, tumour_rate, normal_rate)) - truth
            regions = find_regions(grid, decision, origin, tile0, tile0, SLIDE_MPP)
            diameter = regions[0].diameter_mm if regions else 0.0
            category = size_category(diameter)
            misses["burden"] += 100 * abs(error) > TARGETS["burden_error_points"]
            misses["diameter"] += bool(block) and abs(diameter - true_d) > TARGETS["diameter_relative_error"] * true_d
            misses["category"] += not (category == size_category(true_d) or (block == 0 and category == "itc"))
        sizes[str(block)] = {name: count / CHANCE_MOSAICS for name, count in misses.items()}
    run_meets = {name: float(np.prod([(1 - size[name]) ** per_size for size in sizes.values()]))
                 for name in ("burden", "diameter", "category")}
    return {"mosaics_per_size": CHANCE_MOSAICS, "per_size": per_size, "tumour_patches": int(len(tumour)),
            "normal_patches": int(len(normal)), "sizes": sizes, "run_meets": run_meets}


def median_or_none(values: list[float | None]) -> float | None:
    """Median of the values that are not None (a scan with no tissue measures no sharpness)."""
    kept = [v for v in values if v is not None]
    return float(np.median(kept)) if kept else None


def summarise(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per planted size: estimator errors and coverage, region diameters and categories."""
    add_oracle(records)
    sizes = {}
    for block in sorted({r["block"] for r in records}):
        rows = [r for r in records if r["block"] == block]
        truth = np.array([r["truth"]["burden"] for r in rows])
        per_estimator = {}
        for name in ESTIMATORS:
            est = np.array([r["estimates"][name]["burden"] for r in rows])
            entry = {"mean_error_points": float(100 * (est - truth).mean()),
                     "worst_error_points": float(100 * (est - truth)[np.argmax(np.abs(est - truth))])}
            if "ci" in rows[0]["estimates"][name]:
                ci = np.array([r["estimates"][name]["ci"] for r in rows])
                entry["coverage"] = float(((ci[:, 0] <= truth) & (truth <= ci[:, 1])).mean())
                entry["mean_ci_width_points"] = float(100 * (ci[:, 1] - ci[:, 0]).mean())
            per_estimator[name] = entry
        true_d = rows[0]["truth"]["diameter_mm"]
        per_rule = {}
        for name in REGION_RULES:
            d = np.array([r["largest_region_mm"][name] for r in rows])
            categories = [size_category(x) for x in d]
            right = [c == rows[0]["truth"]["category"] or (block == 0 and c == "itc") for c in categories]
            rel = (d - true_d) / true_d if block else None
            per_rule[name] = {"mean_mm": float(d.mean()), "min_mm": float(d.min()), "max_mm": float(d.max()),
                              "mean_relative_error": float(rel.mean()) if block else None,
                              "worst_relative_error": float(rel[np.argmax(np.abs(rel))]) if block else None,
                              "category_right": int(sum(right)),
                              "categories": {c: categories.count(c) for c in sorted(set(categories))}}
        sizes[str(block)] = {"mosaics": len(rows), "truth_burden_mean": float(truth.mean()),
                             "soft_warnings": int(sum(r["soft"] for r in rows)),
                             "median_sharpness": median_or_none([r["median_sharpness"] for r in rows]),
                             "true_diameter_mm": true_d, "true_category": rows[0]["truth"]["category"],
                             "tiles_mean": float(np.mean([r["tiles"] for r in rows])),
                             "estimators": per_estimator, "regions": per_rule}
    excluded = {k: int(sum(r["excluded_tiles"][k] for r in records)) for k in records[0]["excluded_tiles"]}
    return {"sizes": sizes, "excluded_tiles": excluded,
            "tiles_total": int(sum(r["tiles"] + sum(r["excluded_tiles"].values()) for r in records))}


def targets_met(summary: dict[str, Any]) -> dict[str, bool]:
    sizes = summary["sizes"].values()
    chosen = [s["estimators"]["mixture ML (chosen)"] for s in sizes]
    regions = [s["regions"]["chosen"] for s in sizes]
    return {"mean burden error within ±2 points, every size":
                all(abs(c["mean_error_points"]) <= TARGETS["burden_error_points"] for c in chosen),
            "worst burden error within ±2 points, every size":
                all(abs(c["worst_error_points"]) <= TARGETS["burden_error_points"] for c in chosen),
            "interval coverage >= 90%, every size": all(c["coverage"] >= TARGETS["coverage"] for c in chosen),
            "largest region's diameter within 40% of the truth, every non-empty mosaic":
                all(abs(r["worst_relative_error"]) <= TARGETS["diameter_relative_error"]
                    for s, r in zip(sizes, regions) if s["true_category"] != "negative"),
            "category right for every mosaic": all(r["category_right"] == s["mosaics"]
                                                   for s, r in zip(sizes, regions))}


def markdown(result: dict[str, Any]) -> str:
    from edge_pcam.runtime.machine import summary_line

    s, card = result["summary"], result["model"]
    reference = s["sharpness_reference"]
    sharpness = {b: "no tissue" if row["median_sharpness"] is None else f"{row['median_sharpness']:.2f}"
                 for b, row in s["sizes"].items()}
    lines = ["# Tumour burden, regions and size class against a planted truth", "",
             f"Machine: {summary_line(result['machine'])}. Runtime: {result['runtime']}.", "",
             f"Model: `{card['file']}` ({card['format']}, sha256 {card['sha256'][:12]}…); "
             f"operating characteristics: {card['rates']}.", "",
             f"Mosaics: {GRID} x {GRID} patches of the valid split of `{result['data']}` (random normal patches, "
             f"a planted square of random tumour patches), written as JPEG-tiled (Q{JPEG_QUALITY}) Aperio SVS at "
             f"{SLIDE_MPP} µm/px (each patch upsampled {UPSAMPLE}x, {result['upsample']}), scanned by `edge-pcam scan` at stride {STRIDE} "
             f"(resampled to 0.972 µm/px by area averaging); {result['per_size']} mosaics per size, seeds from "
             f"{result['seed']}. "
             "Truth: the block's share of the tiles that pass tissue QC; its diameter is the square's diagonal.", "",
             *_disjoint_lines(result.get("disjoint")),
             "## Chosen method", "",
             "| planted block | truth (mean) | mean error (points) | worst error (points) | 95% CI coverage "
             "| mean CI width (points) | largest region (mm): truth / mean [min-max] | worst diameter error "
             "| category (truth: count) |",
             "|---|---:|---:|---:|---:|---:|---|---:|---|"]
    for block, row in s["sizes"].items():
        chosen, region = row["estimators"]["mixture ML (chosen)"], row["regions"]["chosen"]
        worst_d = "-" if region["worst_relative_error"] is None else f"{region['worst_relative_error']:+.0%}"
        categories = ", ".join(f"{k} {v}" for k, v in region["categories"].items())
        lines.append(f"| {block}x{block} | {row['truth_burden_mean']:.1%} | {chosen['mean_error_points']:+.2f} "
                     f"| {chosen['worst_error_points']:+.2f} | {chosen['coverage']:.0%} "
                     f"| {chosen['mean_ci_width_points']:.1f} | {row['true_diameter_mm']:.2f} / "
                     f"{region['mean_mm']:.2f} [{region['min_mm']:.2f}-{region['max_mm']:.2f}] | {worst_d} "
                     f"| {row['true_category']}: {categories} |")
    lines += ["", "Targets (issue 13): " + "; ".join(f"{k}: {'met' if v else 'NOT met'}"
                                                  for k, v in result["targets"].items()) + "."]

    def estimator_cell(name: str, row: dict[str, Any]) -> str:
        e = row["estimators"][name]
        return (f"{e['mean_error_points']:+.2f} / {e['worst_error_points']:+.2f}"
                + (f" ({e['coverage']:.0%})" if "coverage" in e else ""))

    def rule_cell(name: str, row: dict[str, Any]) -> str:
        r = row["regions"][name]
        size = "" if r["mean_relative_error"] is None else (
            f"{r['mean_relative_error']:+.0%} / {r['worst_relative_error']:+.0%}, ")
        return f"{size}{r['category_right']}/{row['mosaics']} right"

    lines += comparison("Burden estimators on the same scans", "Mean / worst error in points (coverage of the "
                        "95% interval where the method has one).", "estimator", ESTIMATORS, s, estimator_cell)
    lines += comparison("Region rules on the same scans", "Largest region: mean relative diameter error / worst, "
                        "and mosaics with the right category.", "rule", REGION_RULES, s, rule_cell)
    rates = s["rates"]
    lines += ["", "## The model's rates: card against scanned tiles", "",
              f"True- and false-positive rates at the stored thresholds: on the card (its validation split) and on "
              f"the scanned mosaics' tiles ({rates['tumour_tiles']:,} tumour, {rates['normal_tiles']:,} normal, "
              "pooled). A burden estimate is as unbiased as these agree.", "",
              "| point | threshold | TPR card | TPR scanned | FPR card | FPR scanned |",
              "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {name} | {p['threshold']:.4g} | {p['card_tpr']:.3f} | {p['scanned_tpr']:.3f} | "
              f"{p['card_fpr']:.4f} | {p['scanned_fpr']:.4f} |" for name, p in rates["points"].items()]
    chance = s["chance"]
    labels = {"burden": "burden error beyond ±2 points", "diameter": "largest region's diameter off by more than 40%",
              "category": "category wrong"}
    lines += ["", "## How much of the outcome is chance", "",
              f"{chance['mosaics_per_size']:,} simulated mosaics per size, laid out as the benchmark's (random "
              f"patches drawn as its mosaics were, from the {chance['tumour_patches']:,} tumour and "
              f"{chance['normal_patches']:,} normal patches its scans classified), each "
              "patch taking its mean probability over this run's scans, estimated with the card's rates and "
              "measured with the scan's region rule: how often one mosaic misses each target by chance, and the "
              f"chance that a run of {chance['per_size']} mosaics per size meets it with this model (no mosaic "
              "missing it at any size).",
              "", "| one mosaic misses: | " + " | ".join(f"{b}x{b}" for b in chance["sizes"])
              + f" | a run of {chance['per_size']} per size meets the target |",
              "|---|" + "---:|" * (len(chance["sizes"]) + 1)]
    lines += [f"| {text} | " + " | ".join(f"{size[name]:.1%}" for size in chance["sizes"].values())
              + f" | {chance['run_meets'][name]:.0%} |" for name, text in labels.items()]
    ex = s["excluded_tiles"]
    lines += ["", f"Tissue QC of the scan on these real patches: of {s['tiles_total']:,} tiles over tissue, "
              + ", ".join(f"{v} left out as {k}" for k, v in ex.items())
              + " (counted in neither the burden nor its truth).",
              "", "Soft-slide warning (the scan's median tile sharpness below "
              f"{SOFT_SLIDE_RATIO:.0%} of {reference['patches']} {reference['median']:g}; "
              "benchmarks/results/softness.md), scans warned per planted size (median of their median "
              "sharpness): " + ", ".join(f"{b}x{b} {row['soft_warnings']} of {row['mosaics']} ({sharpness[b]})"
                                        for b, row in s["sizes"].items())
              + ".", "",
              f"Regenerate: `python benchmarks/burden.py --per-size {result['per_size']} --seed {result['seed']} "
              f"--upsample {result['upsample']}{' --disjoint' if result.get('disjoint') else ''}"
              f"{result['results_option']}` "
              f"({result['created']}; {result['minutes']:.0f} min of building, scanning and analysing mosaics "
              "on this shared machine)."]
    return "\n".join(lines) + "\n"


def _disjoint_lines(disjoint: dict[str, Any] | None) -> list[str]:
    """The report's paragraph on --disjoint's halves (nothing for a run on the whole split)."""
    if not disjoint:
        return []
    return [f"Disjoint halves (`--disjoint`): the model was calibrated with `edge-pcam calibrate` on "
            f"{disjoint['card_patches']:,} patches of the valid split (half of each class, drawn with seed "
            f"{disjoint['seed']}), which set its thresholds and the rates its card stores; the mosaics are built "
            f"from the other half only ({disjoint['mosaic_normal']:,} normal and {disjoint['mosaic_tumour']:,} "
            "tumour patches), with repeats where a mosaic needs more patches of a class than the half has. "
            "The rates the estimator uses were therefore not measured on the mosaics' patches: the interval "
            "has to carry their sampling error, as after a lab's own calibration.", ""]


def comparison(title: str, note: str, what: str, names: tuple[str, ...], summary: dict[str, Any],
               cell: Any) -> list[str]:
    """A markdown table: one row per name, one column per planted size, `cell(name, size_row)` in each."""
    sizes = summary["sizes"]
    return (["", f"## {title}", "", note, "", f"| {what} | " + " | ".join(f"{b}x{b}" for b in sizes) + " |",
             "|---|" + "---:|" * len(sizes)]
            + [f"| {name} | " + " | ".join(cell(name, row) for row in sizes.values()) + " |" for name in names])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-size", type=int, default=20, help="mosaics per planted size")
    parser.add_argument("--seed", type=int, default=13_000, help="first seed (the pilot used other seeds)")
    parser.add_argument("--data", type=Path, default=default_data())
    parser.add_argument("--model", type=Path, default=None, help="a .tflite (default: the bundled int8)")
    parser.add_argument("--upsample", choices=sorted(UPSAMPLING), default="nearest",
                        help="how each patch is upsampled into the 0.486 µm/px slide (see the docstring)")
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "burden-benchmark")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--keep", action="store_true", help="keep the mosaics (real-patch derivatives)")
    parser.add_argument("--disjoint", action="store_true",
                        help="calibrate the model on half of the valid split (half of each class, --seed) and "
                             "build the mosaics from the other half: rates not measured on the mosaics' patches")
    args = parser.parse_args()
    if not (args.data / "valid").is_dir():
        sys.exit(f"{args.data}: no valid split (the PCam subset is expected at ../shared/data/pcam-subset)")
    from edge_pcam.runtime.machine import describe_machine
    from edge_pcam.runtime.bundled import default_model_path
    from edge_pcam.runtime.interpreter import load_model

    from edge_pcam.runtime.datasets.spec import open_dataset

    model_path = args.model or default_model_path()
    split = open_dataset(str(args.data)).split("valid")
    mosaic_half = np.arange(len(split.labels))
    disjoint = None
    if args.disjoint:
        card_half, mosaic_half = halves(split.labels, args.seed)
        model_path = calibrated_on_half(split, card_half, model_path, args.work)
        disjoint = {"card_patches": int(len(card_half)), "mosaic_normal": int(np.sum(split.labels[mosaic_half] == 0)),
                    "mosaic_tumour": int(np.sum(split.labels[mosaic_half] == 1)), "seed": args.seed}
    pools = tuple(mosaic_half[split.labels[mosaic_half] == label] for label in (0, 1))
    records = run(args, model_path, split, pools)
    model = load_model(model_path)
    oc = OperatingCharacteristics.from_card(model.metadata)
    summary = summarise(records)
    summary["rates"] = scanned_rates(records, oc)
    median, patches = sharpness_reference(oc)  # what the scans judged softness against
    summary["sharpness_reference"] = {"patches": f"{patches}'", "median": median}
    scans = model_work(args.work, records[0]["model_sha256"], args.upsample)
    summary["chance"] = chance_of_targets(scans, records, oc, model.thresholds.get("decision", 0.5), pools,
                                          args.per_size, args.seed)
    first = json.loads((scans / f"scan_{records[0]['block']}_{records[0]['seed']}" / "scan.json").read_text())
    runtime = f"{first['model']['runtime']} {first['model']['runtime_version']}, {first['model']['threads']} threads"
    result = {"machine": describe_machine(), "runtime": runtime, "data": args.data.name,
              "per_size": args.per_size, "seed": args.seed, "upsample": args.upsample, "disjoint": disjoint,
              "results_option": "" if args.results == RESULTS else f" --results {args.results}",
              "model": {"file": model_path.name, "sha256": records[0]["model_sha256"], "format": model.format,
                        "rates": f"{oc.description}, split {oc.split!r}" if oc else "none"},
              "summary": summary, "targets": targets_met(summary), "records": records,
              "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "minutes": sum(r["seconds"] for r in records) / 60}
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "burden.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.results / "burden.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main()
