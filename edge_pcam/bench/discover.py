"""Find the model files to benchmark in a folder, and what each is, from its metadata (never its name).

A .tflite file says its format in the edge-pcam model card (`format`:
float32, float16, dynamic, int8, edgetpu; `source`: float, ptq, qat). A Keras
.h5 file is recognised from the model config that Keras stores in it (read
with h5py, so no TensorFlow is needed to list it); QAT models are those whose
layers tensorflow-model-optimization wrapped (`quant_*`). Files that cannot be
read are still returned, with the problem, so the report can say why.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_pcam.errors import EdgePcamError
from edge_pcam.runtime.metadata import read_metadata

KERAS = "keras"
COMPANION = "gradcam"
# Report order: from the reference float model down to the accelerator.
FORMAT_ORDER = ("keras-float", "keras-qat", "float32", "float16", "dynamic", "int8", "edgetpu")
FORMAT_LABELS = {
    "keras-float": "Keras float32 (.h5)",
    "keras-qat": "Keras QAT (.h5)",
    "float32": "TFLite float32",
    "float16": "TFLite float16",
    "dynamic": "TFLite dynamic range",
    "int8": "TFLite int8",
    "edgetpu": "Edge TPU int8",
}
SUFFIXES = (".tflite", ".h5", ".hdf5")


@dataclass
class Candidate:
    """One model file and what its metadata says it is."""

    path: Path
    kind: str                    # "tflite" or "keras"
    format: str                  # a FORMAT_ORDER key, or "unknown"
    source: str | None = None    # float, ptq or qat
    batch: int = 1
    metadata: dict[str, Any] = field(default_factory=dict)
    problem: str | None = None   # why it cannot be benchmarked
    tag: str = ""                # set when two files would otherwise share a label

    @property
    def size_bytes(self) -> int:
        return self.path.stat().st_size

    @property
    def label(self) -> str:
        """Human name of the format, e.g. 'TFLite int8 (QAT)' or 'TFLite float32, batch 64'."""
        text = FORMAT_LABELS.get(self.format, f"{self.path.name} ({self.format})")
        if self.format in ("int8", "edgetpu") and self.source in ("ptq", "qat"):
            text += f" ({self.source.upper()})"
        if self.batch > 1:
            text += f", batch {self.batch}"
        return f"{text} [{self.tag}]" if self.tag else text

    @property
    def order(self) -> tuple[int, int, str]:
        rank = FORMAT_ORDER.index(self.format) if self.format in FORMAT_ORDER else len(FORMAT_ORDER)
        return rank, self.batch, str(self.path)


def find_models(folder: str | Path) -> tuple[list[Candidate], list[Path]]:
    """Candidates in `folder` (recursively), in report order, and the Grad-CAM companions seen.

    Companions (format "gradcam") are not classifiers: they are listed apart, not benchmarked.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise EdgePcamError(f"{folder}: no such folder of models")
    candidates: list[Candidate] = []
    companions: list[Path] = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES):
        cand = describe_file(path)
        if cand.format == COMPANION:
            companions.append(path)
        else:
            candidates.append(cand)
    candidates.sort(key=lambda c: c.order)
    labels = [c.label for c in candidates]
    for cand in candidates:
        if labels.count(cand.label) > 1:
            cand.tag = str(cand.path.relative_to(folder))
    return candidates, companions


def describe_file(path: Path) -> Candidate:
    """What `path` is, from its metadata; a Candidate with `problem` set when that cannot be told."""
    if path.suffix.lower() == ".tflite":
        try:
            meta = read_metadata(path)
        except EdgePcamError as exc:
            return Candidate(path, "tflite", "unknown", problem=str(exc))
        batch = int(meta.get("batch") or (meta.get("input", {}).get("shape") or [1])[0] or 1)
        return Candidate(path, "tflite", str(meta["format"]), meta.get("source"), batch, meta)
    return _describe_keras(path)


def _describe_keras(path: Path) -> Candidate:
    try:
        import h5py
        with h5py.File(path, "r") as f:
            config = f.attrs.get("model_config")
    except (OSError, ImportError) as exc:
        return Candidate(path, KERAS, "unknown", problem=f"{path}: not a readable HDF5 file ({exc})")
    if config is None:
        return Candidate(path, KERAS, "unknown", problem=f"{path}: an HDF5 file without a Keras model "
                         "(weights only, or PCam data?)")
    if isinstance(config, bytes):
        config = config.decode()
    try:
        layers = json.loads(config).get("config", {}).get("layers", [])
    except ValueError:
        return Candidate(path, KERAS, "unknown", problem=f"{path}: unreadable Keras model config")
    names = [str(layer.get("config", {}).get("name", layer.get("name", ""))) for layer in layers]
    classes = {str(layer.get("class_name", "")) for layer in layers}
    qat = any(n.startswith("quant_") for n in names) or "QuantizeWrapperV2" in classes or "QuantizeWrapper" in classes
    return Candidate(path, KERAS, "keras-qat" if qat else "keras-float", "qat" if qat else "float")
