"""Recalibrate a model's thresholds on a lab's own labelled patches (another scanner, another stain).

The weights stay as they are; what moves is where the probabilities are cut.
The lab's patches are cut in two (`tuning_and_rates`: every other patch of each
class). On the first half: the decision threshold maximises Youden's J
(sensitivity + specificity - 1), the triage threshold is the highest one with
at least 95% sensitivity, the high-specificity one the lowest with at least
99% specificity. On the second half: the metrics before (stored thresholds)
and after (new thresholds), and the operating characteristics (the counts at
the new thresholds) that the slide-level burden and its interval use. Counted
on the patches that chose the thresholds, those would flatter the extreme
points (benchmarks/results/burden-disjoint). A copy of the file is written with
the thresholds, metrics and counts and where they came from; the original file
is never touched. The Grad-CAM companion is copied beside the new file when it
lives elsewhere. A file made by an earlier edge-pcam is upgraded first
(`edge-pcam upgrade`).
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_pcam.errors import DataError, EdgePcamError
from edge_pcam.runtime.datasets import open_dataset
from edge_pcam.runtime.fileio import atomic_path, check_not_input, check_output_file
from edge_pcam.runtime.interpreter import PatchModel, load_model
from edge_pcam.runtime.metadata import (SCHEMA_VERSION, atomic_write_bytes, metadata_from_bytes,
                                        operating_characteristics, read_metadata, verify_integrity,
                                        with_metadata)
from edge_pcam.runtime.metrics import (HIGH_SPECIFICITY, TRIAGE_SENSITIVITY, binary_metrics, choose_thresholds,
                                       roc_curve)
from edge_pcam.runtime.tissue import median_in_focus, sharpness

MIN_PER_CLASS = 20  # below this the thresholds are noise: calibrate refuses without --force
OPERATING_POINTS = ("decision", "triage", "high_specificity")


def tuning_and_rates(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(tuning, rates): indices of the patches that choose the thresholds and of those counted at them.

    Every other patch of each class in the order the data lists them (tuning: the 1st, 3rd, ...; rates:
    the 2nd, 4th, ...), so both halves hold patches from all over a lab's folder (its slides, its days).
    """
    tuning, rates = [], []
    for label in (0, 1):
        index = np.flatnonzero(labels == label)
        tuning.append(index[0::2])
        rates.append(index[1::2])
    return np.sort(np.concatenate(tuning)), np.sort(np.concatenate(rates))


def youden_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The threshold maximising sensitivity + specificity - 1 (the lowest one among ties)."""
    fpr, tpr, thresholds = roc_curve(labels, scores)
    j = tpr - fpr
    best = np.flatnonzero(j == j.max())[-1]
    return float(min(thresholds[best], 1.0))


def new_thresholds(labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    return {**choose_thresholds(labels, scores), "decision": youden_threshold(labels, scores)}


@dataclass
class CalibrationReport:
    model: str
    out: str
    data: str
    splits: list[str]
    n: int
    counts: dict[str, int]
    thresholds_before: dict[str, float]
    thresholds_after: dict[str, float]
    before: dict[str, dict[str, float]] = field(default_factory=dict)
    after: dict[str, dict[str, float]] = field(default_factory=dict)
    runtime: str = ""
    median_sharpness: float | None = None  # of the calibration patches: the reference for soft slides
    n_tuning: int = 0  # patches that chose the thresholds
    n_rates: int = 0  # patches the metrics and the stored counts come from


def read_labelled(spec: str, splits: list[str] | None) -> tuple[list[str], Any]:
    """The dataset's splits to calibrate on (default: all of them) as (names, list of Split)."""
    ds = open_dataset(spec)
    names = list(splits) if splits else list(ds.splits)
    return names, [ds.split(name) for name in names]


def calibrate(model_path: str | os.PathLike, data: str, out: str | os.PathLike, *,
              splits: list[str] | None = None, runtime: str = "auto", threads: int | None = None,
              force: bool = False, on_start: Callable[[int], None] | None = None,
              progress: Callable[[int], None] | None = None) -> CalibrationReport:
    """Write `out`: `model_path` with thresholds set on the labelled patches of `data`."""
    src, out = Path(model_path), Path(out)
    if out.exists() and out.resolve() == src.resolve():
        raise EdgePcamError(f"{out}: --out must be a new file; calibrate never overwrites the original model")
    if out.suffix.lower() != ".tflite":
        raise EdgePcamError(f"{out}: the calibrated copy must be a .tflite file")
    check_output_file(out)  # before the work: a missing or read-only folder is said now
    version = read_metadata(src)["schema_version"]
    if version < SCHEMA_VERSION:
        raise EdgePcamError(f"{src}: made by an earlier edge-pcam (model card schema {version}); run "
                            f"`edge-pcam upgrade {src} NEW.tflite` first, then calibrate NEW.tflite")
    model = load_model(src, runtime=runtime, threads=threads)
    check_not_input(out, [src, *([model.companion_path] if model.companion_path else [])], "--out")
    names, parts = read_labelled(data, splits)
    total = sum(len(p) for p in parts)
    if on_start:
        on_start(total)
    labels, scores, sharp = _predict(model, parts, progress)
    counts = {"normal": int(np.sum(labels == 0)), "tumour": int(np.sum(labels == 1))}
    if min(counts.values()) == 0:
        raise DataError(f"{data}: calibration needs labelled patches of both classes (has {counts})")
    if min(counts.values()) < MIN_PER_CLASS and not force:
        raise DataError(f"{data}: only {counts} patches; at least {MIN_PER_CLASS} of each class are needed "
                        "for thresholds worth storing (--force to calibrate anyway)")
    if min(counts.values()) < 2:
        raise DataError(f"{data}: calibration needs at least 2 patches of each class (has {counts}): half of "
                        "them choose the thresholds, the other half measures the rates")

    tuning, rates = tuning_and_rates(labels)
    before = model.thresholds
    after = new_thresholds(labels[tuning], scores[tuning])
    report = CalibrationReport(str(src), str(out), data, names, int(len(labels)), counts, before, after,
                               runtime=f"{model.runtime} {model.runtime_version}",
                               median_sharpness=median_in_focus(sharp), n_tuning=len(tuning), n_rates=len(rates))
    held_out = labels[rates], scores[rates]
    report.before = {k: binary_metrics(*held_out, before[k]) for k in OPERATING_POINTS if k in before}
    report.after = {k: binary_metrics(*held_out, after[k]) for k in OPERATING_POINTS}
    _write(model, src, out, report)
    return report


def _predict(model: PatchModel, parts, progress) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels, P(tumour) and sharpness of every patch."""
    labels, scores, sharp = [], [], []
    for part in parts:
        for images, y, _ in part.batches(64):
            scores.append(model.predict(images))
            sharp.append(sharpness(images))
            labels.append(y)
            if progress:
                progress(len(y))
    if not labels:
        raise DataError("no labelled patches to calibrate on")
    return (np.concatenate(labels).astype(np.uint8), np.concatenate(scores).astype(np.float64),
            np.concatenate(sharp))


def _write(model: PatchModel, src: Path, out: Path, report: CalibrationReport) -> None:
    data = src.read_bytes()
    meta = metadata_from_bytes(data, str(src))
    verify_integrity(data, meta, str(src))
    new = copy.deepcopy(meta)
    new["thresholds"] = report.thresholds_after
    new["metrics"] = report.after
    new["operating_characteristics"] = operating_characteristics(
        report.after, "calibration", f"{report.data} ({', '.join(report.splits)}), {report.n_rates:,} of "
        f"{report.n:,} labelled patches (every other patch of each class), measured with {report.runtime}; "
        f"thresholds chosen on the other {report.n_tuning:,}", report.median_sharpness)
    new["calibration"] = {
        "data": report.data, "splits": report.splits, "n": report.n, "counts": report.counts,
        "halves": {"tuning": report.n_tuning, "rates": report.n_rates,
                   "rule": "every other patch of each class in the data's order: the thresholds from the 1st, "
                           "3rd, ...; the metrics and the operating characteristics from the 2nd, 4th, ..."},
        "runtime": report.runtime, "rule": {"decision": "max Youden J", "triage": f"sensitivity >= {TRIAGE_SENSITIVITY}",
                                            "high_specificity": f"specificity >= {HIGH_SPECIFICITY}"},
        "before": {"thresholds": report.thresholds_before, "metrics": report.before},
        "after": {"thresholds": report.thresholds_after, "metrics": report.after},
        "original": {"file": src.name, "sha256": hashlib.sha256(data).hexdigest(), "thresholds": meta.get("thresholds"),
                     "metrics": meta.get("metrics"), "validation": meta.get("validation")},
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    atomic_write_bytes(out, with_metadata(data, new))
    companion = model.companion_path
    if companion is not None and companion.is_file():
        target = out.parent / companion.name
        if not target.exists():
            with atomic_path(target) as tmp:
                shutil.copy2(companion, tmp)
