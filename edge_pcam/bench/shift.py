"""Controlled shifts of a patch set that stand in for another lab's slides (numpy and Pillow only).

Each shift maps uint8 patches (N, 96, 96, 3) to uint8 patches of the same
shape, drawing its per-patch parameters from a generator seeded by the
benchmark seed and the shift's name, so every model sees exactly the same
shifted pixels and a rerun reproduces them:

    hed-light, hed-strong  stain variation in HED space (Tellez et al. 2019), sigma 0.05 and 0.2
    brightness             add U(-0.12, 0.12)
    contrast               scale about the patch mean by U(0.7, 1.3)
    gamma                  x ** U(0.7, 1.4)
    jpeg                   re-encode at a JPEG quality drawn from 50-90
    blur                   a mild defocus: Gaussian blur, sigma 1 pixel
    scale-0.9, scale-1.1   magnification 0.9x (reflect-padded) and 1.1x (centre-cropped) about the centre

`shift_benchmark` scores any number of models on the unshifted patches and
under every shift: accuracy and AUC at each model's own decision threshold,
and their means over the shifts.
"""

from __future__ import annotations

import io
import sys
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from edge_pcam.data.stain import random_hed
from edge_pcam.runtime.datasets import open_dataset
from edge_pcam.runtime.machine import describe_machine, package_versions, summary_line
from edge_pcam.runtime.metrics import binary_metrics

Predict = Callable[[np.ndarray], np.ndarray]  # uint8 patches -> P(tumour)
IDENTITY = "none"


@dataclass(frozen=True)
class Shift:
    name: str
    description: str
    apply: Callable[[np.ndarray, np.random.Generator], np.ndarray]


def _float_op(fn: Callable[[np.ndarray, np.random.Generator], np.ndarray]):
    def apply(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        x = fn(images.astype(np.float64) / 255.0, rng)
        return np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)
    return apply


def _per_patch(rng: np.random.Generator, n: int, low: float, high: float) -> np.ndarray:
    return rng.uniform(low, high, size=(n, 1, 1, 1))


def _contrast(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    return (x - mean) * _per_patch(rng, len(x), 0.7, 1.3) + mean


def _pillow_each(fn: Callable[[Image.Image, np.random.Generator], Image.Image]):
    def apply(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return np.stack([np.asarray(fn(Image.fromarray(p), rng).convert("RGB")) for p in images])
    return apply


def _jpeg(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=int(rng.integers(50, 91)))
    buf.seek(0)
    return Image.open(buf)


def _scale(factor: float):
    def apply(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        side = images.shape[1]
        size = int(round(side * factor))
        out = []
        for p in images:
            big = np.asarray(Image.fromarray(p).resize((size, size), Image.BICUBIC))
            if size >= side:
                o = (size - side) // 2
                out.append(big[o:o + side, o:o + side])
            else:
                before = (side - size) // 2
                after = side - size - before
                out.append(np.pad(big, ((before, after), (before, after), (0, 0)), mode="reflect"))
        return np.stack(out)
    return apply


SHIFTS: dict[str, Shift] = {s.name: s for s in (
    Shift("hed-light", "HED stain variation, sigma 0.05", lambda x, rng: random_hed(x, 0.05, rng)),
    Shift("hed-strong", "HED stain variation, sigma 0.2", lambda x, rng: random_hed(x, 0.2, rng)),
    Shift("brightness", "brightness + U(-0.12, 0.12)",
          _float_op(lambda x, rng: x + _per_patch(rng, len(x), -0.12, 0.12))),
    Shift("contrast", "contrast x U(0.7, 1.3) about the mean", _float_op(_contrast)),
    Shift("gamma", "gamma U(0.7, 1.4)", _float_op(lambda x, rng: x ** _per_patch(rng, len(x), 0.7, 1.4))),
    Shift("jpeg", "JPEG re-encoding, quality 50-90", _pillow_each(_jpeg)),
    Shift("blur", "Gaussian blur, sigma 1 px (mild defocus)",
          _pillow_each(lambda im, rng: im.filter(ImageFilter.GaussianBlur(radius=1.0)))),
    Shift("scale-0.9", "magnification 0.9x", _scale(0.9)),
    Shift("scale-1.1", "magnification 1.1x", _scale(1.1)),
)}


def load_predictor(path: Path) -> tuple[Predict, float]:
    """A uint8-patches -> P(tumour) function for a Keras .h5 or a .tflite file, and its decision threshold."""
    if Path(path).suffix.lower() == ".tflite":
        from edge_pcam.runtime.interpreter import load_model
        model = load_model(path)
        return model.predict, float(model.thresholds.get("decision", 0.5))
    from edge_pcam.training.modelio import load_model as load_keras
    keras_model = load_keras(path)
    return (lambda x: np.asarray(keras_model.predict_on_batch(x.astype(np.float32) / 255.0)).reshape(-1)), 0.5


def shifted(images: np.ndarray, name: str, seed: int) -> np.ndarray:
    """`images` under shift `name` (IDENTITY: unchanged), reproducibly for (`seed`, `name`)."""
    if name == IDENTITY:
        return images
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    return SHIFTS[name].apply(images, rng)


def shift_benchmark(models: dict[str, Predict], images: np.ndarray, labels: np.ndarray, *,
                    thresholds: dict[str, float] | None = None, seed: int = 0,
                    shifts: Iterable[str] = tuple(SHIFTS), batch: int = 500,
                    progress: Callable[[str], None] | None = None) -> dict:
    """Accuracy and AUC of each model on `images` unshifted and under each shift.

    Returns {"shifts": [...], "models": {name: {"none": {...}, shift: {...}, ...,
    "mean": {"accuracy", "auc"}, "drop": {"accuracy", "auc"}}}}: `mean` averages the
    shifts (not the unshifted row); `drop` is unshifted minus mean.
    """
    shifts = list(shifts)
    thresholds = thresholds or {}
    out: dict = {"shifts": shifts, "seed": seed, "n": int(len(labels)),
                 "models": {m: {} for m in models}}
    for name in [IDENTITY, *shifts]:
        if progress is not None:
            progress(name)
        x = shifted(images, name, seed)
        for model, predict in models.items():
            probs = np.concatenate([np.asarray(predict(x[i:i + batch]), np.float64).reshape(-1)
                                    for i in range(0, len(x), batch)])
            point = binary_metrics(labels, probs, thresholds.get(model, 0.5))
            out["models"][model][name] = {"accuracy": point["accuracy"], "auc": point["auc"]}
    for model, rows in out["models"].items():
        mean = {k: float(np.mean([rows[s][k] for s in shifts])) for k in ("accuracy", "auc")}
        rows["mean"] = mean
        rows["drop"] = {k: rows[IDENTITY][k] - mean[k] for k in mean}
    return out


PACKAGES = ("tensorflow", "tf-keras", "ai-edge-litert", "numpy", "pillow")


def run_shift_benchmark(models: dict[str, Path], data: str, split: str, seed: int, limit: int | None) -> dict:
    """Load the split and the models, run every shift, return the results with their provenance."""
    part = open_dataset(data).split(split)
    rows = np.arange(len(part))
    if limit is not None and limit < len(part):  # a random subset (the split's files are sorted by label)
        rows = np.sort(np.random.default_rng(seed).choice(len(part), limit, replace=False))
    images, labels = part.read(rows), part.labels[rows]
    predictors, thresholds = {}, {}
    for name, path in models.items():
        predictors[name], thresholds[name] = load_predictor(path)
    start = time.perf_counter()
    results = shift_benchmark(predictors, images, labels, thresholds=thresholds, seed=seed,
                              progress=lambda s: print(f"shift {s}", file=sys.stderr, flush=True))
    results.update({
        "data": data, "split": split, "thresholds": thresholds,
        "model_files": {k: str(v) for k, v in models.items()},
        "seconds": round(time.perf_counter() - start, 1),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": describe_machine(), "packages": package_versions(PACKAGES),
    })
    return results


def shift_report(results: dict, command: str) -> str:
    """The report: one row per shift, accuracy and AUC of each model, then the means."""
    models = list(results["models"])
    lines = ["# Shift benchmark", "",
             f"{results['n']} patches of the {results['split']} split of `{results['data']}`, seed {results['seed']}; "
             f"{results['date']}; {summary_line(results['machine'])}; "
             + ", ".join(f"{k} {v}" for k, v in results["packages"].items() if v) + ".", "",
             "Models: " + "; ".join(f"**{m}** `{results['model_files'][m]}` (threshold {results['thresholds'][m]:.3g})"
                                    for m in models) + ".", "",
             "| shift | what | " + " | ".join(f"{m} accuracy | {m} AUC" for m in models) + " |",
             "|---|---|" + "---:|---:|" * len(models)]

    def row(key: str, label: str, what: str) -> str:
        cells = [f"{100 * results['models'][m][key]['accuracy']:.1f}% | {results['models'][m][key]['auc']:.4f}"
                 for m in models]
        return f"| {label} | {what} | " + " | ".join(cells) + " |"

    lines.append(row(IDENTITY, "none", "the split as it is"))
    lines += [row(s, s, SHIFTS[s].description) for s in results["shifts"]]
    lines.append(row("mean", "**mean of the shifts**", ""))
    lines.append("| unshifted minus mean | | " + " | ".join(
        f"{100 * results['models'][m]['drop']['accuracy']:+.1f} pt | {results['models'][m]['drop']['auc']:+.4f}"
        for m in models) + " |")
    lines += ["", f"Took {results['seconds']} s. Regenerate:", "", f"    {command}", ""]
    return "\n".join(lines)
