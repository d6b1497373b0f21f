"""`edge-pcam convert`: a Keras model in, gated .tflite files with metadata and a report out.

    OUT/<name>_<format>[_b<N>].tflite    accepted files (float32, float16, dynamic, int8)
    OUT/<name>_int8_edgetpu.tflite        compiled for the Edge TPU (where edgetpu_compiler exists)
    OUT/<name>_gradcam.tflite             the Grad-CAM companion (float32)
    OUT/*.rejected.tflite                 files that failed the parity gate: kept for inspection,
                                          never under the deployable name
    OUT/conversion.json, OUT/summary.md   parity, metrics, thresholds, Edge TPU partition

Thresholds: chosen on each file's own predictions of the valid split, or, with
`tune_from_train=N`, on the N-patch tuning set carved from the train split
exactly as training carves it (same N and seed give the same patches), so the
valid split that the metrics are reported on is never tuned on.

Order: check everything cheap first (formats, compiler, model, data, output
folder), convert every format (int8 with its quantization settled, and the
standard TFLite metadata added: export/tflite_metadata.py) into hidden
temporary files, run all of them and the Keras model side by side in one pass
over the validation patches with the interpreter edge-pcam runs them with,
then gate each file, write its final card (thresholds, metrics and operating
characteristics measured on this very flatbuffer, which is checked to be the
one written) and rename it into place. A failure never leaves a partial file
under a final name.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_pcam.errors import DataError, EdgePcamError, ModelFileError
from edge_pcam.export import metadata_writer as mw
from edge_pcam.export.parity import Parity, compare
from edge_pcam.export.recipe import DEFAULTS, check_formats, ordered_formats
from edge_pcam.runtime.datasets.base import LABEL_NAMES, PatchDataset
from edge_pcam.runtime.metadata import (atomic_write_bytes, model_bytes, operating_characteristics, sha256_file,
                                        with_metadata)
from edge_pcam.runtime.fileio import prepare_output_folder, to_json
from edge_pcam.runtime.metrics import choose_thresholds, operating_points

Log = Callable[[str], None]
Progress = Callable[[int, int], None]
COMPANION_CHECK_PATCHES = 64
PREDICT_BATCH = 256


@dataclass
class ConvertedFile:
    """One output file and how it fared."""

    format: str
    path: Path
    accepted: bool
    size_bytes: int
    sha256: str
    parity: dict[str, Any] | None
    thresholds: dict[str, float]
    metrics: dict[str, Any] | None
    note: str = ""


@dataclass
class ConversionResult:
    out_dir: Path
    files: list[ConvertedFile] = field(default_factory=list)
    companion: ConvertedFile | None = None
    partition: dict[str, Any] | None = None
    failures: list[str] = field(default_factory=list)
    report_json: Path | None = None
    summary_md: Path | None = None

    def raise_for_failures(self) -> None:
        """EdgePcamError (one line) when any file failed its gate."""
        if self.failures:
            raise EdgePcamError("; ".join(self.failures))


def convert(model_path: str | Path, out_dir: str | Path, data: str | PatchDataset, *,
            formats: list[str] | None = None, companion: bool = True,
            representative: int = DEFAULTS["representative"], limit: int | None = None,
            max_drop: float = DEFAULTS["max_drop"], batch: int = 1, name: str = "edge_pcam",
            tune_from_train: int = DEFAULTS["tune_from_train"], recipe: dict[str, Any] | None = None,
            seed: int = 0, log: Log | None = None,
            progress: Progress | None = None) -> ConversionResult:
    """Convert `model_path` (.h5, float or QAT) to `formats`, gate every file, write the report.

    `data` is a --data spec (or an opened PatchDataset): its valid split is the
    parity/threshold data (`limit` patches of it, chosen at random, or all), its
    train split the int8 calibration data (`representative` balanced patches) and,
    with `tune_from_train` > 0, the tuning set the thresholds are chosen on.
    Gate failures are collected in `result.failures` (see `raise_for_failures`);
    bad input raises EdgePcamError subclasses before any file is written.
    `log(message)` hears each step, `progress(done, total)` the validation pass.
    """
    say = log or (lambda _msg: None)
    check_formats(list(formats or []))
    formats = ordered_formats(list(formats or DEFAULTS["formats"]))
    if batch < 1:
        raise EdgePcamError(f"--batch must be at least 1, got {batch}")
    if limit is not None and limit < 1:
        raise EdgePcamError(f"--limit must be at least 1, got {limit}")
    if tune_from_train < 0:
        raise EdgePcamError(f"--tune-from-train must be >= 0 patches, got {tune_from_train}")
    if max_drop < 0:
        raise EdgePcamError(f"--max-drop must be >= 0 accuracy points, got {max_drop}")
    if "edgetpu" in formats:
        from edge_pcam.export.edgetpu import require_compiler
        require_compiler()
        if batch != 1:
            raise EdgePcamError("--edgetpu needs batch 1 (the Edge TPU compiler takes static batch-1 models)")

    model_path = Path(model_path)
    model, qat = _load_source(model_path)
    dataset = _open(data)
    valid = dataset.split("valid")
    if len(valid) == 0:
        raise DataError(f"{dataset.spec}: the valid split is empty (parity and thresholds need it)")
    rows = _validation_rows(len(valid), limit, seed)
    tuning = None
    if tune_from_train:
        from edge_pcam.training.splits import carve_tuning
        _, tuning = carve_tuning(dataset.split("train"), tune_from_train, seed)
    calibration = None
    if "int8" in formats:
        from edge_pcam.export.representative import representative_images
        calibration = representative_images(dataset.split("train"), representative, seed)
        say(f"int8 calibration: {len(calibration)} train patches, balanced across labels")
    out_dir = Path(out_dir)
    prepare_output_folder(out_dir)

    recipe_used = {"formats": formats, "companion": companion, "representative": representative,
                   "max_drop": max_drop, "batch": batch, "limit": limit, "tune_from_train": tune_from_train,
                   **({"source": recipe["source"]} if recipe and "source" in recipe else {})}
    source_model = {"file": model_path.name, "sha256": sha256_file(model_path)}
    validation = {"data": dataset.spec, "split": "valid", "n": int(len(rows)), "of": int(len(valid)),
                  "thresholds_from": ({"split": "valid"} if tuning is None else
                                      {"split": "tuning", "carved_from": "train", "n": len(tuning), "seed": seed})}
    result = ConversionResult(out_dir)
    suffix = f"_b{batch}" if batch != 1 else ""
    temps: dict[str, Path] = {}
    try:
        companion_meta = None
        if companion:
            result.companion = _write_companion(model, qat, out_dir / f"{name}_gradcam.tflite", valid, rows,
                                                source_model, recipe_used, say)
            if result.companion.accepted:
                companion_meta = {"file": result.companion.path.name, "sha256": result.companion.sha256}
            else:
                result.failures.append(result.companion.note)

        from edge_pcam.export.tflite import convert_model, input_spec, output_details
        from edge_pcam.export.tflite_metadata import classifier_info, with_tflite_metadata
        converted: dict[str, bytes] = {}
        files: dict[str, dict[str, bytes]] = {}
        for fmt in [f for f in formats if f != "edgetpu"]:
            say(f"converting to {fmt}{f' (batch {batch})' if batch != 1 else ''}")
            rep = None
            if fmt == "int8":
                from edge_pcam.export.representative import calibration_batches
                rep = calibration_batches(calibration, batch)
            flatbuffer = convert_model(model, fmt, batch=batch, representative=rep)
            spec = input_spec(flatbuffer).as_metadata()
            info = classifier_info(fmt, mw.source_kind(fmt, qat), spec, list(LABEL_NAMES), mw.model_version(source_model))
            converted[fmt], files[fmt] = with_tflite_metadata(flatbuffer, info)
            provisional = mw.build_metadata(
                fmt=fmt, source=mw.source_kind(fmt, qat), batch=batch, input_spec=spec,
                outputs={k: mw.output_spec(v) for k, v in output_details(converted[fmt]).items()}, thresholds={},
                metrics=None, validation=None, source_model=source_model, recipe=recipe_used,
                operating=mw.unmeasured())
            temps[fmt] = _temp_file(out_dir, f"{name}_{fmt}{suffix}")
            temps[fmt].write_bytes(with_metadata(converted[fmt], provisional, files[fmt]))

        say(f"running Keras and {', '.join(converted)} on {len(rows):,} validation patches")
        labels, keras_probs, file_probs, runtime = _predict_all(model, valid, rows, temps, progress)
        validation["runtime"] = runtime
        tuned = None
        if tuning is not None:
            say(f"choosing thresholds on {len(tuning):,} tuning patches carved from the train split")
            tune_labels, _, tune_probs, _ = _predict_all(None, tuning, np.arange(len(tuning)), temps, progress)
            tuned = {fmt: choose_thresholds(tune_labels, p) for fmt, p in tune_probs.items()}

        partition = None
        for fmt, data_ in converted.items():
            if model_bytes(temps[fmt].read_bytes()) != data_:
                raise EdgePcamError(f"{temps[fmt]}: changed while it was being measured")
            parity = compare(fmt, labels, keras_probs, file_probs[fmt], max_drop=max_drop)
            points = operating_points(labels, file_probs[fmt], None if tuned is None else tuned[fmt])
            edgetpu_meta = None
            if fmt == "int8":
                from edge_pcam.export.edgetpu import partition_report
                partition = partition_report(data_)
                edgetpu_meta = mw.edgetpu_summary(partition)
            meta = mw.build_metadata(
                fmt=fmt, source=mw.source_kind(fmt, qat), batch=batch,
                input_spec=input_spec(data_).as_metadata(),
                outputs={k: mw.output_spec(v) for k, v in output_details(data_).items()},
                thresholds={k: v["threshold"] for k, v in points.items()}, metrics=points,
                validation=validation, parity=_parity_meta(parity), companion=companion_meta,
                source_model=source_model, recipe=recipe_used, edgetpu=edgetpu_meta,
                operating=operating_characteristics(points, "valid", mw.evaluation_text(validation)))
            target = out_dir / f"{name}_{fmt}{suffix}.tflite"
            result.files.append(_place(target, with_metadata(data_, meta, files[fmt]), parity, points))
            if not parity.passed:
                stale = (f"; the {target.name} already there is from an earlier conversion"
                         if target.exists() else "")
                result.failures.append(f"{fmt}: {parity.reason}; put aside as {result.files[-1].path.name} "
                                       f"({target.name} was not written{stale})")
        result.partition = partition

        if "edgetpu" in formats:
            int8 = next(f for f in result.files if f.format == "int8")
            if int8.accepted:
                result.files.append(_compile_edgetpu(converted["int8"], int8, out_dir / f"{name}_int8_edgetpu.tflite",
                                                     result, say))
            else:
                result.failures.append("edgetpu: not compiled because the int8 file failed its gate")
    finally:
        for tmp in temps.values():
            tmp.unlink(missing_ok=True)

    _write_report(result, model_path, source_model, qat, validation, recipe_used, calibration)
    return result


def _load_source(model_path: Path):
    from edge_pcam.model import is_edge_pcam_model
    from edge_pcam.training.modelio import load_model
    from edge_pcam.training.qat import is_qat_model

    model = load_model(model_path)
    if not is_edge_pcam_model(model):
        raise ModelFileError(f"{model_path}: not an edge-pcam model (no pool3/logit/q/k/v/o layers)")
    return model, is_qat_model(model)


def _open(data: str | PatchDataset) -> PatchDataset:
    if isinstance(data, PatchDataset):
        return data
    from edge_pcam.runtime.datasets import open_dataset
    return open_dataset(data)


def _validation_rows(n: int, limit: int | None, seed: int) -> np.ndarray:
    """All rows, or `limit` of them drawn at random (sorted; files are often grouped by label)."""
    if limit is None or limit >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))


def _temp_file(out_dir: Path, stem: str) -> Path:
    fd, path = tempfile.mkstemp(prefix=f".{stem}.", suffix=".partial.tflite", dir=out_dir)
    os.close(fd)
    return Path(path)


def _predict_all(model, split, rows: np.ndarray, temps: dict[str, Path], progress: Progress | None
                 ) -> tuple[np.ndarray, np.ndarray | None, dict[str, np.ndarray], str]:
    """One pass over `rows` of `split`: labels, Keras probabilities (None without a `model`), each file's
    (in the interpreter `edge-pcam predict` uses), and that interpreter's name and version."""
    from edge_pcam.runtime.interpreter import load_model
    from edge_pcam.training.evaluate import keras_probabilities

    runners = {fmt: load_model(path, runtime="auto") for fmt, path in temps.items()}
    keras_probs = None if model is None else np.empty(len(rows), np.float64)
    file_probs = {fmt: np.empty(len(rows), np.float64) for fmt in temps}
    done = 0
    for images, _, _ in split.batches(PREDICT_BATCH, rows):
        span = slice(done, done + len(images))
        if keras_probs is not None:
            keras_probs[span] = keras_probabilities(model, images)
        for fmt, runner in runners.items():
            file_probs[fmt][span] = runner.predict(images)
        done += len(images)
        if progress is not None:
            progress(done, len(rows))
    runtime = next((f"{r.runtime} {r.runtime_version}" for r in runners.values()), "none")
    return split.labels[rows], keras_probs, file_probs, runtime


def _parity_meta(p: Parity) -> dict[str, Any]:
    return {"reference": "keras", "n": p.n, "max_abs_dprob": p.max_abs_dprob, "agreement": p.agreement,
            "accuracy_drop_points": p.accuracy_drop_points, "auc_change": p.auc_change, "gate": p.gate,
            "passed": p.passed}


def _place(target: Path, content: bytes, parity: Parity, points: dict[str, Any]) -> ConvertedFile:
    """Write an accepted file under its name, a rejected one beside it as *.rejected.tflite."""
    rejected = target.with_name(target.stem + ".rejected.tflite")
    path = target if parity.passed else rejected
    atomic_write_bytes(path, content)
    if parity.passed:
        rejected.unlink(missing_ok=True)  # a failure from an earlier run no longer applies
    return ConvertedFile(parity.format, path, parity.passed, len(content), sha256_file(path), parity.as_dict(),
                         {k: v["threshold"] for k, v in points.items()}, points,
                         "" if parity.passed else parity.reason)


def _write_companion(model, qat: bool, target: Path, valid, rows: np.ndarray, source_model: dict[str, str],
                     recipe: dict[str, Any], say: Log) -> ConvertedFile:
    from edge_pcam.export.gradcam_companion import companion_correlation, companion_gate, convert_companion
    from edge_pcam.export.tflite_metadata import companion_info, with_tflite_metadata

    say("converting the Grad-CAM companion")
    data, files = with_tflite_metadata(convert_companion(model), companion_info("qat" if qat else "float",
                                                                                 mw.model_version(source_model)))
    check_rows = rows[:COMPANION_CHECK_PATCHES]
    images = valid.read(check_rows).astype(np.float32) / np.float32(255.0)
    check = companion_correlation(model, data, images)
    gate, passed = companion_gate(check, qat)
    check = {**check, "gate": gate, "passed": passed}
    meta = mw.build_metadata(
        fmt="gradcam", source="qat" if qat else "float", batch=1,
        input_spec={"shape": [1, 12, 12, 256], "dtype": "float32", "scale": None, "zero_point": None,
                    "range": None},
        outputs={"logit": {"shape": [1, 1], "dtype": "float32", "scale": None, "zero_point": None},
                 "gradient": {"shape": [1, 12, 12, 256], "dtype": "float32", "scale": None, "zero_point": None}},
        thresholds={}, metrics=None, validation=None, source_model=source_model, recipe=recipe,
        parity={"reference": "keras_gradcam", **check})
    path = target if passed else target.with_name(target.stem + ".rejected.tflite")
    content = with_metadata(data, meta, files)
    atomic_write_bytes(path, content)
    note = "" if passed else (f"gradcam: the companion's Grad-CAM correlates {check['correlation']:.4f} with "
                              f"TensorFlow's Grad-CAM of the model and {check['head_correlation']:.4f} with its "
                              f"head's (needs {gate}); put aside as {path.name}")
    return ConvertedFile("gradcam", path, passed, len(content), sha256_file(path), check, {}, None, note)


def _compile_edgetpu(int8_flatbuffer: bytes, int8: ConvertedFile, target: Path, result: ConversionResult,
                     say: Log) -> ConvertedFile:
    from edge_pcam.export.edgetpu import compile_edgetpu, merge_compiler_log
    from edge_pcam.runtime.metadata import associated_files, read_metadata

    say("compiling for the Edge TPU")
    compiled, log = compile_edgetpu(int8_flatbuffer)
    result.partition = merge_compiler_log(result.partition, log)
    meta = dict(read_metadata(int8.path))
    meta.update(format="edgetpu", edgetpu=mw.edgetpu_summary(result.partition),
                parity={"reference": int8.path.name, "passed": None,
                        "note": "not run: needs an Edge TPU; thresholds and metrics are the int8 file's"})
    content = with_metadata(compiled, meta, associated_files(int8.path.read_bytes()))
    atomic_write_bytes(target, content)
    return ConvertedFile("edgetpu", target, True, len(content), sha256_file(target), None, int8.thresholds,
                         int8.metrics, "thresholds and metrics of the int8 file (no Edge TPU to run it here)")


def _write_report(result: ConversionResult, model_path: Path, source_model: dict[str, str], qat: bool,
                  validation: dict[str, Any], recipe: dict[str, Any], calibration: np.ndarray | None) -> None:
    from edge_pcam.export.report import conversion_json, summary_markdown

    report = conversion_json(result, model_path, source_model, qat, validation, recipe,
                             None if calibration is None else len(calibration))
    result.report_json = result.out_dir / "conversion.json"
    result.summary_md = result.out_dir / "summary.md"
    atomic_write_bytes(result.report_json, (to_json(report) + "\n").encode())
    atomic_write_bytes(result.summary_md, summary_markdown(report).encode())
