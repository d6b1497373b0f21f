"""The model card carried inside every .tflite file edge-pcam writes.

Mechanism: a zip archive appended after the TFLite flatbuffer (as Ultralytics
does, and as the TFLite metadata standard packs its associated files).
Interpreters read the flatbuffer through offsets from the start of the buffer
and never see the trailing bytes, so the file stays loadable by
ai-edge-litert, tflite-runtime and tf.lite alike. The archive holds the card
(`edge_pcam/metadata.json`) and any associated files of the TFLite metadata
(the output labels); every member is stored uncompressed, which TFLite's C++
metadata extractor requires, so one archive serves both readers. It is read
here with nothing but the standard library.

The card follows edge_pcam/runtime/model_card.schema.json (schema version 2):
it is validated on every read and before every write, and its `integrity`
block holds the SHA-256 of the flatbuffer alone, which `verify_integrity`
checks on every model load.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any

from edge_pcam.errors import ModelFileError
from edge_pcam.runtime.card_schema import card_schema
from edge_pcam.runtime.fileio import atomic_write_bytes, json_default

SCHEMA_VERSION = 2
MEMBER = "edge_pcam/metadata.json"
TFLITE_IDENTIFIER = b"TFL3"
DIGEST = "sha256"
VERIFIED, NO_DIGEST, MISMATCH = "verified", "no digest", "does not match"


def model_bytes(data: bytes) -> bytes:
    """The flatbuffer alone: `data` without an appended archive."""
    start = _archive_start(data)
    return data if start is None else data[:start]


def model_digest(flatbuffer: bytes) -> str:
    """SHA-256 (hex) of the flatbuffer bytes, as the card's `integrity.model_sha256` records it."""
    return hashlib.sha256(flatbuffer).hexdigest()


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The validated card of an edge-pcam .tflite file; a clear error for anything else."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot read model file ({exc.strerror or exc})") from None
    return metadata_from_bytes(data, str(path))


def metadata_from_bytes(data: bytes, name: str = "model") -> dict[str, Any]:
    """The card inside `data`, checked against the schema (ModelFileError, one line, if it is not)."""
    if len(data) < 8 or data[4:8] != TFLITE_IDENTIFIER:
        raise ModelFileError(f"{name}: not a TFLite model file")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            meta = json.loads(zf.read(MEMBER))
    except (zipfile.BadZipFile, KeyError, ValueError, OSError, EOFError):
        raise ModelFileError(f"{name}: a TFLite file without edge-pcam metadata "
                             "(convert it with `edge-pcam convert`)") from None
    check_card(meta, name)
    return meta


def check_card(meta: Any, name: str = "model") -> None:
    """ModelFileError naming the first problem when `meta` does not follow the card schema."""
    if not isinstance(meta, dict):
        raise ModelFileError(f"{name}: the edge-pcam metadata is not a JSON object")
    version = meta.get("schema_version")
    if isinstance(version, int) and not isinstance(version, bool) and version > SCHEMA_VERSION:
        raise ModelFileError(f"{name}: metadata schema {version} is newer than this edge-pcam understands "
                             f"({SCHEMA_VERSION}); upgrade edge-pcam")
    errors = card_schema().errors(meta)
    if errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ModelFileError(f"{name}: invalid model card: {errors[0]}{more}")


def associated_files(data: bytes) -> dict[str, bytes]:
    """The archive's members other than the card (the TFLite metadata's associated files)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            return {i.filename: zf.read(i) for i in zf.infolist() if i.filename != MEMBER}
    except zipfile.BadZipFile:
        return {}


def with_metadata(data: bytes, meta: dict[str, Any], files: dict[str, bytes] | None = None) -> bytes:
    """`data` (a .tflite, with or without an archive) carrying the card `meta` instead.

    The card gets this schema's version and the flatbuffer's digest, and is
    validated before anything is written. Associated files already in `data`
    are kept; `files` adds or replaces some.
    """
    flatbuffer = model_bytes(data)
    meta = {**meta, "schema_version": SCHEMA_VERSION,
            "integrity": {"algorithm": DIGEST, "model_sha256": model_digest(flatbuffer)}}
    meta = json.loads(json.dumps(meta, default=json_default))  # what a reader will see (tuples, numpy, paths)
    check_card(meta, "card to write")
    members = {**associated_files(data), **(files or {})}
    buf = io.BytesIO()
    buf.write(flatbuffer)
    with zipfile.ZipFile(buf, "a", zipfile.ZIP_STORED) as zf:
        for name, content in members.items():
            zf.writestr(_stored(name), content)
        zf.writestr(_stored(MEMBER), json.dumps(meta, indent=1, sort_keys=True))
    return buf.getvalue()


def operating_characteristics(points: dict[str, dict[str, Any]], split: str, description: str,
                              median_sharpness: float | None = None) -> dict[str, Any]:
    """The counts behind each operating point (binary_metrics at the stored thresholds), as the card keeps them,
    and the median sharpness of the patches they were measured on when given."""
    first = next(iter(points.values()))
    block = {"split": split, "description": description,
             "n_positive": int(first["tp"] + first["fn"]), "n_negative": int(first["fp"] + first["tn"]),
             "points": {name: {"threshold": float(m["threshold"]), **{k: int(m[k]) for k in ("tp", "fn", "fp", "tn")}}
                        for name, m in points.items()}}
    if median_sharpness is not None:
        block["median_sharpness"] = float(median_sharpness)
    return block


def verify_integrity(data: bytes, meta: dict[str, Any], name: str = "model") -> str:
    """VERIFIED when the flatbuffer matches the card's digest, NO_DIGEST for a card without one
    (schema 1); ModelFileError, one line naming the file, when it does not match."""
    integrity = meta.get("integrity")
    if not integrity:
        return NO_DIGEST
    if model_digest(model_bytes(data)) != integrity["model_sha256"]:
        raise ModelFileError(f"{name}: integrity check failed: the model's bytes do not match the SHA-256 in "
                             "its card (damaged or altered); copy it again or convert it again")
    return VERIFIED


def inspect_file(path: str | os.PathLike) -> dict[str, Any]:
    """What `edge-pcam info` reports on a file: its validated card and whether its flatbuffer verifies.

    A file that is not an edge-pcam model, or whose card fails the schema, raises
    ModelFileError; a digest that does not match is reported, not raised.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot read model file ({exc.strerror or exc})") from None
    meta = metadata_from_bytes(data, str(path))
    flatbuffer = model_bytes(data)
    try:
        status = verify_integrity(data, meta, str(path))
    except ModelFileError:
        status = MISMATCH
    companion = meta.get("companion") or {}
    beside = path.parent / companion["file"] if companion.get("file") else None
    return {"file": str(path), "size_bytes": len(data), "flatbuffer_bytes": len(flatbuffer),
            "integrity": {"status": status, "sha256": model_digest(flatbuffer),
                          "recorded": (meta.get("integrity") or {}).get("model_sha256")},
            "companion": None if beside is None else {
                "file": str(beside), "status": "not found beside it" if not beside.is_file() else
                VERIFIED if sha256_file(beside) == companion["sha256"] else MISMATCH},
            "associated_files": sorted(associated_files(data)), "card": meta}


def write_metadata(path: str | os.PathLike, meta: dict[str, Any], source: str | os.PathLike | None = None) -> None:
    """Write `source` (default: `path` itself) to `path` with `meta`, atomically."""
    data = Path(source or path).read_bytes()
    atomic_write_bytes(path, with_metadata(data, meta))


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _stored(name: str) -> zipfile.ZipInfo:
    """A member entry stored uncompressed, with a fixed date: the same card gives the same bytes."""
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_STORED
    info.external_attr = 0o644 << 16
    return info


def _archive_start(data: bytes) -> int | None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = zf.infolist()
            return min(i.header_offset for i in infos) if infos else None
    except zipfile.BadZipFile:
        return None
