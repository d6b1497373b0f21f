"""Classify patches named on the command line: image files, folders of them, PCam HDF5 files.

Each input expands to patches with a readable id: the image's path, or
`file.h5#index` for row `index` of a PCam HDF5 file (dataset `x`, N x 96 x 96
x 3 uint8). A file that cannot be read becomes one error (its id and the
reason) and the rest goes on. Probabilities come from a loaded PatchModel;
the label from the threshold stored in the model file (decision, or triage
for 95% sensitivity) unless one is given.
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_pcam.errors import DataError, EdgePcamError
from edge_pcam.runtime.fileio import check_not_input, check_output_file
from edge_pcam.runtime.images import IMAGE_SUFFIXES, load_patch
from edge_pcam.runtime.interpreter import PatchModel
from edge_pcam.runtime.metadata import atomic_write_bytes
from edge_pcam.runtime.output_pictures import is_output_picture
from edge_pcam.runtime.pathtext import printable, printable_path
from edge_pcam.runtime.tta import predict_tta

HDF5_SUFFIXES = (".h5", ".hdf5")
HDF5_GZ_SUFFIXES = (".h5.gz", ".hdf5.gz")
FOLDER_SUFFIXES = IMAGE_SUFFIXES + HDF5_SUFFIXES + HDF5_GZ_SUFFIXES
HDF5_DATASET = "x"
BATCH = 64

ProgressFn = Callable[[int], None]


@dataclass(frozen=True)
class Source:
    """One input: an image file, or an HDF5 file of `rows` patches."""

    path: Path
    rows: int | None = None  # None: a single image

    def __len__(self) -> int:
        return 1 if self.rows is None else self.rows


@dataclass
class InputProblem:
    path: str
    error: str


def expand_inputs(paths: Sequence[str | os.PathLike]) -> tuple[list[Source], list[InputProblem]]:
    """Sources for `paths` (folders searched recursively, sorted), and the paths that cannot be used.

    In a folder, every image and HDF5 file is an input except PCam's label files
    (`*_y.h5`, the labels beside `*_x.h5`) and the pictures edge-pcam wrote
    (`runtime.output_pictures`: gradcam's overlays and heatmaps); an image named
    `*_y.png` is a patch. An output picture named on its own is an error.
    """
    sources: list[Source] = []
    problems: list[InputProblem] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")
                           and p.name.lower().endswith(FOLDER_SUFFIXES) and not is_pcam_label_file(p)
                           and not is_output_picture(p))
            if not found:
                problems.append(InputProblem(printable_path(path),
                                             "folder holds no images (.png .jpg .tif) or .h5 files"))
            candidates = found
        elif path.exists():
            candidates = [path]
        else:
            problems.append(InputProblem(printable_path(path), "no such file or folder"))
            continue
        for p in candidates:
            try:
                sources.append(_source(p))
            except DataError as exc:
                problems.append(InputProblem(printable_path(p), _reason(exc, p)))
    return sources, problems


def is_pcam_label_file(path: Path) -> bool:
    """True for PCam's label files (`..._y.h5`, `..._y.hdf5`, gzipped or not): labels, not patches."""
    name = path.name.lower().removesuffix(".gz")
    return name.endswith(HDF5_SUFFIXES) and Path(name).stem.endswith("_y")


def _source(path: Path) -> Source:
    name = path.name.lower()
    if is_output_picture(path):
        raise DataError(f"{path}: a picture edge-pcam wrote (Grad-CAM output), not a patch")
    if name.endswith(HDF5_GZ_SUFFIXES):
        raise DataError(f"{path}: gzipped HDF5; decompress it first (gunzip) or use `--data` with its folder")
    if path.suffix.lower() in HDF5_SUFFIXES:
        from edge_pcam.runtime.datasets.hdf5 import patch_rows
        return Source(path, patch_rows(path))
    return Source(path)


def _reason(exc: Exception, path: Path) -> str:
    """The message without a leading 'path: ' (the path is printed beside it), printable."""
    text = str(exc)
    prefix = f"{path}: "
    return printable(text[len(prefix):] if text.startswith(prefix) else text)


def iter_patches(sources: Sequence[Source], crop: bool = True
                 ) -> Iterator[tuple[str, np.ndarray | None, str | None]]:
    """(id, uint8 patch, None) per patch, or (id, None, reason) for one that cannot be read.

    Ids are printable (see edge_pcam.runtime.pathtext): a file name that is not
    valid UTF-8 shows its odd bytes as \\xNN, so every writer can take it.
    """
    for src in sources:
        shown = printable_path(src.path)
        if src.rows is None:
            try:
                yield shown, load_patch(src.path, crop=crop), None
            except DataError as exc:
                yield shown, None, _reason(exc, src.path)
            continue
        import h5py
        done = 0
        try:
            with h5py.File(src.path, "r") as f:
                x = f[HDF5_DATASET]
                for start in range(0, src.rows, BATCH):
                    for i, patch in enumerate(x[start:start + BATCH], start):
                        yield f"{shown}#{i}", patch, None
                        done = i + 1
        except (OSError, KeyError, RuntimeError, ValueError, TypeError) as exc:
            # a file damaged (or replaced) after its header was checked: one line for the rest
            yield f"{shown}#{done}..{src.rows - 1}", None, printable(f"HDF5 read failed ({exc})")


def patch_batches(sources: Sequence[Source], crop: bool, on_error: Callable[[InputProblem], None],
                  size: int = BATCH) -> Iterator[tuple[list[str], np.ndarray]]:
    """(ids, uint8 patches (k, 96, 96, 3)) at most `size` at a time; unreadable ones go to `on_error`."""
    ids: list[str] = []
    batch: list[np.ndarray] = []
    for pid, patch, error in iter_patches(sources, crop):
        if error is not None:
            on_error(InputProblem(pid, error))
            continue
        ids.append(pid)
        batch.append(patch)
        if len(batch) == size:
            yield ids, np.stack(batch)
            ids, batch = [], []
    if batch:
        yield ids, np.stack(batch)


def input_batches(paths: Sequence[str | os.PathLike], crop: bool, errors: list[InputProblem],
                  on_start: Callable[[int], None] | None = None,
                  on_error: Callable[[InputProblem], None] | None = None) -> Iterator[tuple[list[str], np.ndarray]]:
    """Batches of the patches under `paths`; every unusable input goes to `errors` (and `on_error`).

    `on_start(total)` hears the patch count once the inputs are expanded.
    """
    def failed(problem: InputProblem) -> None:
        errors.append(problem)
        if on_error:
            on_error(problem)

    sources, problems = expand_inputs(paths)
    for problem in problems:
        failed(problem)
    if on_start:
        on_start(sum(len(s) for s in sources))
    yield from patch_batches(sources, crop, failed)


@dataclass
class Prediction:
    path: str
    probability: float
    prediction: str


@dataclass
class ClassifyResult:
    """Everything `edge-pcam predict` reports."""

    model: str
    format: str
    runtime: str
    runtime_version: str
    threads: int
    threshold: float
    threshold_name: str
    tta: bool
    predictions: list[Prediction] = field(default_factory=list)
    errors: list[InputProblem] = field(default_factory=list)
    seconds: float = 0.0

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for p in self.predictions:
            out[p.prediction] = out.get(p.prediction, 0) + 1
        return out

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["counts"] = self.counts()
        d["n"] = len(self.predictions)
        return d


def choose_threshold(model: PatchModel, threshold: float | None = None, triage: bool = False) -> tuple[float, str]:
    """The threshold to label with, and its name: given, the stored triage one, or the stored decision one."""
    if threshold is not None and triage:
        raise EdgePcamError("give --threshold or --triage, not both")
    if threshold is not None:
        if not 0.0 <= threshold <= 1.0:
            raise EdgePcamError(f"--threshold must lie in [0, 1], got {threshold}")
        return float(threshold), "given"
    name = "triage" if triage else "decision"
    stored = model.thresholds
    if name not in stored:
        raise EdgePcamError(f"{model.path}: the model file stores no {name} threshold; pass --threshold")
    return stored[name], name


def labels_of(model: PatchModel) -> tuple[str, str]:
    labels = model.metadata.get("labels") or ["normal", "tumour"]
    return str(labels[0]), str(labels[1])


def classify(paths: Sequence[str | os.PathLike], model: PatchModel, *, threshold: float | None = None,
             triage: bool = False, tta: bool = False, crop: bool = True,
             on_start: Callable[[int], None] | None = None, progress: ProgressFn | None = None,
             on_error: Callable[[InputProblem], None] | None = None) -> ClassifyResult:
    """Probability and label for every patch under `paths`.

    `on_start(total)` is called once the inputs are counted, `progress(k)` after
    each k patches, `on_error(problem)` for each input that could not be used.
    """
    value, name = choose_threshold(model, threshold, triage)
    negative, positive = labels_of(model)
    result = ClassifyResult(str(model.path), model.format, model.runtime, model.runtime_version,
                            model.threads, value, name, tta)
    t0 = time.perf_counter()
    predict = (lambda x: predict_tta(model.predict, x)) if tta else model.predict

    for ids, images in input_batches(paths, crop, result.errors, on_start, on_error):
        for pid, p in zip(ids, predict(images)):
            result.predictions.append(Prediction(pid, float(p), positive if p >= value else negative))
        if progress:
            progress(len(ids))
    result.seconds = time.perf_counter() - t0
    return result


def csv_text(result: ClassifyResult) -> str:
    """Rows `path,probability,prediction`, with a header."""
    buffer = io.StringIO()
    w = csv.writer(buffer, lineterminator="\n")
    w.writerow(["path", "probability", "prediction"])
    for p in result.predictions:
        w.writerow([p.path, f"{p.probability:.6f}", p.prediction])
    return buffer.getvalue()


def check_outputs(inputs: Sequence[str | os.PathLike], **files: str | os.PathLike | None) -> None:
    """Refuse, before any work, output files (by option name, e.g. csv=...) that cannot be written, that
    name one file twice, or that are one of the `inputs`."""
    given = {f"--{option}": Path(path) for option, path in files.items() if path is not None}
    for option, path in given.items():
        check_output_file(path)
        check_not_input(path, list(inputs), option)
    if len({os.path.abspath(p) for p in given.values()}) < len(given):
        raise EdgePcamError(f"{' and '.join(given)} name the same file {next(iter(given.values()))}; give two files")


def write_csv(result: ClassifyResult, path: str | os.PathLike) -> None:
    """The CSV rows to `path`, written whole or not at all (a temporary file, then a rename)."""
    atomic_write_bytes(path, csv_text(result).encode("utf-8"))


def write_json(result: ClassifyResult, path: str | os.PathLike) -> None:
    """Rows, settings and summary as JSON, written whole or not at all."""
    atomic_write_bytes(path, (json.dumps(result.as_dict(), indent=1) + "\n").encode("utf-8"))
