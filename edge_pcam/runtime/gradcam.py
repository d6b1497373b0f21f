"""Grad-CAM of the deployed model, computed on the device without TensorFlow.

The deployed classifier (int8 or float) has the pool3 feature map as its
second output; the Grad-CAM companion (a float32 .tflite named in the
classifier's metadata, format "gradcam") takes that map and returns the logit
and its gradient. edge_pcam.runtime.cam turns the two into the 12 x 12 map.
Per patch, `run_gradcam` writes the map as .npy, a heatmap PNG and an overlay
PNG (the patch with the map on top and the centre 32 x 32 box that decides the
PCam label outlined), plus an index CSV.
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from edge_pcam.errors import EdgePcamWarning, ModelFileError
from edge_pcam.runtime.cam import cam_from_gradients, upsample_cam
from edge_pcam.runtime.classify import InputProblem, choose_threshold, input_batches, labels_of
from edge_pcam.runtime.interpreter import PatchModel, open_interpreter, read_model_file, resolve_runtime
from edge_pcam.runtime.signature import COMPANION_INPUTS, COMPANION_OUTPUTS, signature_tensors
from edge_pcam.runtime.fileio import atomic_write_bytes, check_output_folder, commit_files
from edge_pcam.runtime.metadata import sha256_file
from edge_pcam.runtime.output_pictures import output_mark

CENTRE = (32, 64)
INDEX_FILE, REPLACED_INDEX = "gradcam.csv", ".gradcam.csv.replaced"
INDEX_COLUMNS = ("path", "probability", "prediction", "overlay", "heatmap", "cam")
OVERLAY_ALPHA = 0.55


class Companion:
    """The Grad-CAM companion: features (N, 12, 12, 256) -> logits (N,), gradients (N, 12, 12, 256)."""

    def __init__(self, path: Path, interpreter: Any, content: bytes):
        self.path = path
        self._it = interpreter
        inputs, outputs = signature_tensors(interpreter, content, COMPANION_INPUTS, COMPANION_OUTPUTS, str(path),
                                            "Grad-CAM companion")
        self._input, self._logit, self._grad = inputs["features"], outputs["logit"], outputs["gradient"]

    def gradients(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        features = np.asarray(features, dtype=np.float32)
        logits = np.empty(len(features), np.float32)
        grads = np.empty(features.shape, np.float32)
        for i, f in enumerate(features):
            self._it.set_tensor(self._input["index"], f[None])
            self._it.invoke()
            logits[i] = self._it.get_tensor(self._logit["index"])[0, 0]
            grads[i] = self._it.get_tensor(self._grad["index"])[0]
        return logits, grads


def load_companion(model: PatchModel, path: str | os.PathLike | None = None) -> Companion:
    """The companion named in `model`'s metadata (or `path`), in the same interpreter as `model`.

    Whether given or found beside the model, the companion must be the one
    converted with it: the SHA-256 the model records for it, or (for a model
    that records none) the same source model; its own digest is checked as for
    every model file.
    """
    named = model.companion_path
    path = Path(path) if path is not None else named
    if path is None:
        raise ModelFileError(f"{model.path}: names no Grad-CAM companion (convert it again with "
                             "`edge-pcam convert`, which writes one beside it)")
    if not path.is_file():
        raise ModelFileError(f"{path}: Grad-CAM companion of {model.path.name} not found (keep it in the "
                             "same folder as the model)")
    path, content, meta = read_model_file(path)
    if meta.get("format") != "gradcam":
        raise ModelFileError(f"{path}: not a Grad-CAM companion (format {meta.get('format')})")
    _check_pairing(model, path, meta)
    backend = resolve_runtime(model.runtime)
    return Companion(path, open_interpreter(content, backend, model.threads, name=str(path)), content)


def _check_pairing(model: PatchModel, path: Path, meta: dict[str, Any]) -> None:
    """ModelFileError when the companion at `path` was not converted with `model`."""
    expected = (model.metadata.get("companion") or {}).get("sha256")
    if expected:
        if sha256_file(path) != expected:
            raise ModelFileError(f"{path}: not the Grad-CAM companion of {model.path.name} (its sha256 differs "
                                 "from the one recorded in the model); use the companion converted with it")
        return
    mine = (model.metadata.get("source_model") or {}).get("sha256")
    theirs = (meta.get("source_model") or {}).get("sha256")
    if mine and theirs and mine != theirs:
        raise ModelFileError(f"{path}: converted from another model than {model.path.name} (source model "
                             "sha256 differs); use the companion converted with it")
    if not (mine and theirs):
        warnings.warn(EdgePcamWarning(f"{path}: cannot check that this companion belongs to {model.path.name} "
                                      "(neither records the other's digest)"), stacklevel=3)


def gradcam_maps(model: PatchModel, companion: Companion, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities (N,) and Grad-CAM maps (N, 12, 12) in [0, 1] for uint8 patches (N, 96, 96, 3)."""
    probs, features = model.predict_with_features(images)
    _, grads = companion.gradients(features)
    return probs, np.stack([cam_from_gradients(f, g) for f, g in zip(features, grads)]).astype(np.float32)


def jet(values: np.ndarray) -> np.ndarray:
    """The jet colour map (blue - cyan - yellow - red) of values in [0, 1], uint8 RGB."""
    v = np.clip(np.asarray(values, dtype=np.float32), 0.0, 1.0)[..., None]
    centres = np.array([3.0, 2.0, 1.0], np.float32)  # red, green, blue peaks at 3/4, 1/2, 1/4
    rgb = np.clip(1.5 - np.abs(4.0 * v - centres), 0.0, 1.0)
    return np.round(rgb * 255).astype(np.uint8)


def heatmap_image(cam: np.ndarray, size: int = 96) -> np.ndarray:
    """The map upsampled to the patch and coloured, uint8 (size, size, 3)."""
    return jet(upsample_cam(cam, size))


def overlay_image(patch: np.ndarray, cam: np.ndarray, alpha: float = OVERLAY_ALPHA) -> np.ndarray:
    """The patch with the coloured map blended in where the map is high, and the centre 32 x 32 outlined."""
    up = upsample_cam(cam, patch.shape[0])[..., None]
    a = alpha * up
    out = (1.0 - a) * patch.astype(np.float32) + a * jet(up[..., 0]).astype(np.float32)
    out = np.round(out).astype(np.uint8)
    lo, hi = CENTRE
    for y in range(lo - 1, hi + 1, 2):  # dotted white box
        out[y, [lo - 1, hi]] = 255
    for x in range(lo - 1, hi + 1, 2):
        out[[lo - 1, hi], x] = 255
    return out


@dataclass
class GradcamRow:
    path: str
    probability: float
    prediction: str
    overlay: str
    heatmap: str
    cam: str


@dataclass
class GradcamResult:
    model: str
    companion: str
    runtime: str
    threshold: float
    threshold_name: str
    out: str
    rows: list[GradcamRow] = field(default_factory=list)
    errors: list[InputProblem] = field(default_factory=list)
    seconds: float = 0.0


def _stem(pid: str, used: set[str]) -> str:
    """A file-name stem for a patch id, unique in this run: `name`, `name_h5_12`, then `name-2`..."""
    path, _, row = pid.partition("#")
    base = Path(path).stem + (f"_{Path(path).suffix.lstrip('.')}_{row}" if row else "")
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", base) or "patch"
    stem, k = base, 1
    while stem in used:
        k += 1
        stem = f"{base}-{k}"
    used.add(stem)
    return stem


def run_gradcam(paths: Sequence[str | os.PathLike], model: PatchModel, out: str | os.PathLike, *,
                companion: Companion | None = None, threshold: float | None = None, triage: bool = False,
                crop: bool = True, on_start: Callable[[int], None] | None = None,
                progress: Callable[[int], None] | None = None,
                on_error: Callable[[InputProblem], None] | None = None) -> GradcamResult:
    """Grad-CAM for every patch under `paths`: per patch `<stem>_overlay.png`, `<stem>_heatmap.png`
    and `<stem>_cam.npy` (12 x 12 float32) in `out`, and `gradcam.csv` indexing them.

    The files are made in a hidden folder inside `out` and moved in when the run
    ends with at least one map (`publish`): until then `out` keeps the earlier
    run's files as they were; a run that reads no patch changes nothing.
    """
    out = check_output_folder(out)
    companion = companion or load_companion(model)
    value, name = choose_threshold(model, threshold, triage)
    negative, positive = labels_of(model)
    result = GradcamResult(str(model.path), str(companion.path), model.runtime, value, name, str(out))
    t0 = time.perf_counter()
    made = None if out.exists() else next(p for p in (out, *out.parents) if p.parent.exists())
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".gradcam-", suffix=".tmp", dir=out))
    try:
        used: set[str] = set()
        for ids, images in input_batches(paths, crop, result.errors, on_start, on_error):
            probs, cams = gradcam_maps(model, companion, images)
            for pid, patch, p, cam in zip(ids, images, probs, cams):
                stem = _stem(pid, used)
                files = {kind: f"{stem}_{kind}.{ext}"
                         for kind, ext in (("overlay", "png"), ("heatmap", "png"), ("cam", "npy"))}
                Image.fromarray(overlay_image(patch, cam)).save(staging / files["overlay"],
                                                                pnginfo=output_mark("gradcam overlay"))
                Image.fromarray(heatmap_image(cam)).save(staging / files["heatmap"],
                                                         pnginfo=output_mark("gradcam heatmap"))
                np.save(staging / files["cam"], cam)
                result.rows.append(GradcamRow(pid, float(p), positive if p >= value else negative,
                                              *(files[k] for k in ("overlay", "heatmap", "cam"))))
            if progress:
                progress(len(ids))
        if result.rows:
            publish(staging, out, result.rows)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if made is not None and not result.rows:
            shutil.rmtree(made, ignore_errors=True)  # made for this run, which wrote nothing there
    result.seconds = time.perf_counter() - t0
    return result


def publish(staging: Path, out: Path, rows: Sequence[GradcamRow]) -> None:
    """Replace the earlier run's files in `out` by this run's (made in `staging`), index last.

    The earlier index is first renamed to `.gradcam.csv.replaced` (so a run
    killed part-way leaves no index naming a mix of runs, and the next run still
    knows the earlier maps); this run's maps are moved in; the earlier maps the
    new index does not name are removed; the new index is written; the renamed
    one goes. Only files an index named are ever removed.
    """
    index, replaced = out / INDEX_FILE, out / REPLACED_INDEX
    earlier = indexed_files(index) | indexed_files(replaced)
    if index.exists():
        os.replace(index, replaced)
    names = {name for r in rows for name in (r.overlay, r.heatmap, r.cam)}
    commit_files([(staging / name, out / name) for name in sorted(names)])
    for name in earlier - names:
        (out / name).unlink(missing_ok=True)
    text = io.StringIO()  # patch ids are printable (edge_pcam.runtime.pathtext): always valid UTF-8
    w = csv.writer(text, lineterminator="\n")
    w.writerow(INDEX_COLUMNS)
    for r in rows:
        w.writerow([r.path, f"{r.probability:.6f}", r.prediction, r.overlay, r.heatmap, r.cam])
    atomic_write_bytes(index, text.getvalue().encode("utf-8"))
    replaced.unlink(missing_ok=True)


def indexed_files(index: Path) -> set[str]:
    """The map files a gradcam.csv names (plain names in its folder; anything else is ignored)."""
    try:
        with index.open(newline="", encoding="utf-8", errors="replace") as f:
            rows = list(csv.DictReader(f))
    except FileNotFoundError:
        return set()
    names = {row.get(kind) or "" for row in rows for kind in ("overlay", "heatmap", "cam")}
    return {n for n in names if n and n == Path(n).name and not n.startswith(".") and n != INDEX_FILE}
