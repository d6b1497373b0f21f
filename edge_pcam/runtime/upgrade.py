"""`edge-pcam upgrade OLD.tflite NEW.tflite`: bring a file made by an earlier edge-pcam up to date.

Earlier versions wrote int8 files whose attention K and V had asymmetric
quantization and made them symmetric in memory at every load; the metrics and
thresholds in their cards were measured that way. Their cards (schema 1) had
no integrity digest and no operating characteristics. Upgrading writes a copy
that carries exactly the graph those versions ran (the same rewrite, now in
the bytes: edge_pcam.runtime.symmetric_matmul), a schema-2 card with the
flatbuffer's digest and the operating characteristics taken from the counts
the card already holds, and a record of the upgrade. The companion named in
the card is upgraded beside the copy and the copy records its new digest.

Then it re-verifies: the copy is read back as any model is (schema, digest,
signature names) and run next to the old file run the way earlier versions
ran it, on synthetic patches; the outputs must be identical. The original
is never changed. Nothing here needs TensorFlow.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_pcam.errors import EdgePcamError, ModelFileError
from edge_pcam.runtime.datasets.synthetic import synthetic_patch
from edge_pcam.runtime.fileio import check_output_folder
from edge_pcam.runtime.flatbuffer import check_model
from edge_pcam.runtime.interpreter import PatchModel, load_model, open_interpreter, resolve_runtime
from edge_pcam.runtime.signature import CLASSIFIER_INPUTS, CLASSIFIER_OUTPUTS, signature_tensors, tensor_spec
from edge_pcam.runtime.metadata import (SCHEMA_VERSION, associated_files, atomic_write_bytes, metadata_from_bytes,
                                        model_bytes, operating_characteristics, sha256_file, with_metadata)
from edge_pcam.runtime.symmetric_matmul import symmetric_matmul_operands

CHECK_PATCHES = 32
CHECK_SEED = 20261201


@dataclass
class UpgradeReport:
    source: Path
    out: Path
    from_schema: int
    symmetric_tensors: int
    companion: Path | None
    check: str


def upgrade(source: str | os.PathLike, out: str | os.PathLike, runtime: str = "auto") -> UpgradeReport:
    """Write `out`: the file `source` (an earlier version's) with its quantization settled and a schema-2 card."""
    source, out = Path(source), Path(out)
    if out.suffix.lower() != ".tflite":
        raise EdgePcamError(f"{out}: the upgraded copy must be a .tflite file")
    if out.exists() and out.resolve() == source.resolve():
        raise EdgePcamError(f"{out}: give a new file; upgrade never overwrites the original")
    if out.is_dir():
        raise EdgePcamError(f"{out}: is a folder, not a file")
    check_output_folder(out.parent, "folder for the upgraded copy")  # made if missing, parents too
    data, meta = _read(source)
    if meta["format"] == "gradcam":
        raise EdgePcamError(f"{source}: a Grad-CAM companion; upgrade the classifier that names it (the "
                            "companion is upgraded beside it)")
    flatbuffer, changed = symmetric_matmul_operands(model_bytes(data))
    new_meta = copy.deepcopy(meta)
    new_meta.update(batch=meta.get("batch", 1), outputs=meta.get("outputs") or _outputs(flatbuffer, runtime),
                    operating_characteristics=_operating_from_card(meta, source))
    new_meta["upgraded"] = _record(source, meta, changed, f"identical outputs to the original run as edge-pcam "
                                   f"before schema 2 ran it, on {CHECK_PATCHES} synthetic patches")
    written: list[Path] = []
    companion = _companion(source, meta, out)
    if companion is not None:
        new_meta["companion"] = {"file": companion[0].name, "sha256": hashlib.sha256(companion[1]).hexdigest()}
    content = with_metadata(flatbuffer, new_meta, associated_files(data))  # validated before anything is written
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        for path, payload in ([companion] if companion else []) + [(out, content)]:
            atomic_write_bytes(path, payload)
            written.append(path)
        check = _verify(out, source, meta, model_bytes(data), runtime)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return UpgradeReport(source, out, int(meta["schema_version"]), changed, companion[0] if companion else None,
                         check)


def _outputs(flatbuffer: bytes, runtime: str) -> dict[str, Any]:
    """The card's `outputs` entry, read from the file itself (schema-1 cards could lack it)."""
    interpreter = open_interpreter(flatbuffer, resolve_runtime(runtime), 1)
    _, outputs = signature_tensors(interpreter, flatbuffer, CLASSIFIER_INPUTS, CLASSIFIER_OUTPUTS, "model",
                                   "patch classifier", optional=("features",))
    return {name: tensor_spec(detail) for name, detail in outputs.items()}


def _record(source: Path, meta: dict[str, Any], changed: int, check: str) -> dict[str, Any]:
    return {"from_schema": int(meta["schema_version"]), "tool": _tool(), "original_sha256": sha256_file(source),
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "symmetric_tensors": changed,
            "check": check}


def _read(path: Path) -> tuple[bytes, dict[str, Any]]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot read model file ({exc.strerror or exc})") from None
    meta = metadata_from_bytes(data, str(path))
    if int(meta["schema_version"]) >= SCHEMA_VERSION:
        raise EdgePcamError(f"{path}: already a schema-{meta['schema_version']} file (its quantization settled "
                            "and its integrity recorded); nothing to upgrade")
    try:
        check_model(model_bytes(data))
    except ValueError as exc:
        raise ModelFileError(f"{path}: damaged model file ({exc}); copy or convert it again") from None
    return data, meta


def _operating_from_card(meta: dict[str, Any], source: Path) -> dict[str, Any]:
    """Operating characteristics from the counts in the card's metrics (at its stored thresholds)."""
    metrics = meta.get("metrics") or {}
    if not metrics or not all({"tp", "fn", "fp", "tn"} <= set(m) for m in metrics.values()):
        raise EdgePcamError(f"{source}: its card holds no counts to derive operating characteristics from; "
                            "convert the model again with `edge-pcam convert`")
    if meta.get("calibration"):
        cal = meta["calibration"]
        return operating_characteristics(metrics, "calibration", f"{cal['data']}, {cal['n']:,} patches "
                                         "(from the card's calibration metrics, by edge-pcam upgrade)")
    validation = meta.get("validation") or {}
    return operating_characteristics(metrics, "valid", f"{validation.get('split', 'valid')} split of "
                                     f"{validation.get('data', 'unknown data')}, {validation.get('n', '?')} patches "
                                     "(from the card's metrics, by edge-pcam upgrade)")


def _companion(source: Path, meta: dict[str, Any], out: Path) -> tuple[Path, bytes] | None:
    """The companion named by `source`, upgraded (in memory), and where it goes beside `out`
    (under another name when that is where the original lies or the name is taken)."""
    named = (meta.get("companion") or {}).get("file")
    if not named or not (source.parent / named).is_file():
        return None
    original = source.parent / named
    data, comp_meta = _read(original)
    if sha256_file(original) != meta["companion"].get("sha256"):
        raise ModelFileError(f"{original}: not the Grad-CAM companion of {source.name} (its sha256 differs "
                             "from the one recorded in the model)")
    target = out.parent / named
    if target.resolve() == original.resolve() or target.exists():
        target = out.with_name(f"{out.stem}_gradcam.tflite")
    comp_meta = {**comp_meta, "upgraded": _record(original, comp_meta, 0, "float32 companion: graph unchanged")}
    return target, with_metadata(data, comp_meta)


def _verify(out: Path, source: Path, meta: dict[str, Any], original_flatbuffer: bytes, runtime: str) -> str:
    """Load `out` as any model is loaded and compare it with the original run as earlier versions ran it."""
    model = load_model(out, runtime=runtime, threads=1)
    as_before, _ = symmetric_matmul_operands(original_flatbuffer)  # what load_model did before schema 2
    backend = resolve_runtime(model.runtime)
    reference = PatchModel(source, meta, open_interpreter(as_before, backend, 1, name=str(source)), backend, 1,
                           None, as_before)
    x = np.stack([synthetic_patch(CHECK_SEED, i)[0] for i in range(CHECK_PATCHES)])
    mine, theirs = model.predict(x), reference.predict(x)
    if not np.array_equal(mine, theirs):
        raise ModelFileError(f"{out}: the upgraded file's outputs differ from the original's (max "
                             f"{np.abs(mine - theirs).max():.3g}); the original was left as it is")
    return f"identical outputs on {CHECK_PATCHES} synthetic patches in {model.runtime} {model.runtime_version}"


def _tool() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return f"edge-pcam {version('edge-pcam')}"
    except PackageNotFoundError:
        return "edge-pcam"
